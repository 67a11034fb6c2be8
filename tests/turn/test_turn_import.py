"""``import aioice.turn`` needs only aioice.stun and the standard library; asyncio is lazy."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
before = set(sys.modules)
import aioice.turn
new = sorted(set(sys.modules) - before)
print(",".join(
    m for m in new
    if m.split(".")[0] not in sys.stdlib_module_names
    and not m.startswith(("aioice.turn", "aioice.stun"))
    and m != "aioice"
) or "-")
print(",".join(m for m in new if m.split(".")[0] == "asyncio") or "-")
import aioice.turn as turn
print(turn.create_turn_endpoint.__module__)
"""


def test_import_turn_is_light_and_the_adapter_lazy() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHECK], check=True, capture_output=True, text=True
    ).stdout.split()
    assert out[0] == "-", f"unexpected modules imported: {out[0]}"
    assert out[1] == "-", f"asyncio imported by the core: {out[1]}"
    # aioice 0.x's entry point is still reachable from the package.
    assert out[2] == "aioice.turn.asyncio"
