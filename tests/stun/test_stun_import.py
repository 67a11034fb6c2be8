"""``import aioice.stun`` stays within the standard library."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
before = set(sys.modules)
import aioice.stun
import aioice.stun.message, aioice.stun.transaction, aioice.stun.server, aioice.stun.nat
new = sorted(set(sys.modules) - before)
outside = [
    m for m in new
    if m.split(".")[0] not in sys.stdlib_module_names and not m.startswith("aioice")
]
print(",".join(outside) or "-")
print(",".join(m for m in new if m.split(".")[0] == "asyncio") or "-")
siblings = [m for m in new if m.startswith("aioice.") and not m.startswith("aioice.stun")]
print(",".join(siblings) or "-")
"""


def test_import_stun_uses_only_the_standard_library() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHECK], check=True, capture_output=True, text=True
    ).stdout.split()
    assert out[0] == "-", f"non-stdlib modules imported: {out[0]}"
    # The asyncio adapter is loaded on first use only.
    assert out[1] == "-", f"asyncio imported by the core: {out[1]}"
    # And no sibling package comes along.
    assert out[2] == "-", f"other aioice packages imported: {out[2]}"
