"""``import aioice.mdns`` is light: no dnspython, no asyncio; dnspython comes on first parse."""

from __future__ import annotations

import os
import re
import subprocess
import sys

CHECK = """
import sys
before = set(sys.modules)
import aioice.mdns
new = sorted(set(sys.modules) - before)
print(",".join(m for m in new if m.split(".")[0] == "dns") or "-")
print(",".join(m for m in new if m.split(".")[0] == "asyncio") or "-")
print(",".join(
    m for m in new
    if m.split(".")[0] not in sys.stdlib_module_names and not m.startswith("aioice")
) or "-")
siblings = [m for m in new if m.startswith("aioice.") and not m.startswith("aioice.mdns")]
print(",".join(siblings) or "-")
from aioice.mdns import wire
assert "dns" not in sys.modules
packet = wire.parse(wire.response([wire.Record("a.local", "10.0.0.1", 120)]))
assert packet is not None and packet.strict and packet.records[0].address == "10.0.0.1"
print("dns.message" in sys.modules)
print("asyncio" in sys.modules)
"""

# Measured here (a 2-CPU container, Python 3.11): about 20-25 ms for ``aioice.mdns``
# with everything it imports, against over 100 ms for dnspython.
IMPORT_BUDGET_US = 50_000


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE")}
    return subprocess.run(
        [sys.executable, *args], check=True, capture_output=True, text=True, env=env
    )


def test_import_mdns_is_light_and_dnspython_lazy() -> None:
    out = run("-c", CHECK).stdout.split()
    assert out[0] == "-", f"dnspython imported by aioice.mdns: {out[0]}"
    assert out[1] == "-", f"asyncio imported by the core: {out[1]}"
    assert out[2] == "-", f"non-stdlib modules imported: {out[2]}"
    assert out[3] == "-", f"other aioice packages imported: {out[3]}"
    # The first parse imports dnspython, and still not asyncio.
    assert out[4:] == ["True", "False"]


def import_time_us() -> int:
    """Cumulative ``-X importtime`` of ``aioice.mdns``, in microseconds."""
    stderr = run("-X", "importtime", "-c", "import aioice.mdns").stderr
    match = re.search(r"^import time:\s+\d+ \|\s+(\d+) \| aioice\.mdns$", stderr, re.MULTILINE)
    assert match is not None, stderr[-2000:]
    return int(match.group(1))


def test_import_mdns_is_fast() -> None:
    # The best of three runs, so that a busy machine does not fail the test.
    best = min(import_time_us() for _ in range(3))
    assert best < IMPORT_BUDGET_US, f"import aioice.mdns took {best / 1000:.1f} ms"
