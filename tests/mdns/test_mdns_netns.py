"""Real multicast between two network namespaces, through ``python -m aioice.mdns``."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.mdns.conftest import MdnsLab

pytestmark = pytest.mark.netns


def _name() -> str:
    return f"{uuid.uuid4()}.local"


@pytest.mark.parametrize("family", [4, 6], ids=["A", "AAAA"])
def test_publish_then_resolve(mdns_lab: MdnsLab, family: int) -> None:
    address = mdns_lab.a_ipv4 if family == 4 else mdns_lab.a_ipv6
    name = _name()
    publisher = mdns_lab.mdns(mdns_lab.a, "publish", name, address)
    line = mdns_lab.wait_for_line(publisher, "published", timeout=10)
    assert line == f"published {name} {address}"

    code, output = mdns_lab.run_mdns(mdns_lab.b, "resolve", name, "--timeout", "5", timeout=15)
    assert code == 0, output
    assert output.strip() == address

    # Upper case and a final dot are the same name.
    code, output = mdns_lab.run_mdns(
        mdns_lab.b, "resolve", name.upper() + ".", "--timeout", "5", timeout=15
    )
    assert (code, output.strip()) == (0, address)

    mdns_lab.stop(publisher)
    assert publisher.returncode == 0  # SIGTERM: goodbye sent, clean exit


def test_resolve_unknown_fails_within_timeout(mdns_lab: MdnsLab) -> None:
    publisher = mdns_lab.mdns(mdns_lab.a, "publish", _name(), mdns_lab.a_ipv4)
    mdns_lab.wait_for_line(publisher, "published", timeout=10)
    started = time.monotonic()
    code, output = mdns_lab.run_mdns(mdns_lab.b, "resolve", _name(), "--timeout", "1", timeout=10)
    elapsed = time.monotonic() - started
    assert code == 1, output
    assert "no answer" in output
    assert elapsed < 6, elapsed  # 1 s of waiting plus interpreter start-up


def test_resolve_after_unpublish_fails(mdns_lab: MdnsLab) -> None:
    name = _name()
    publisher = mdns_lab.mdns(mdns_lab.a, "publish", name, mdns_lab.a_ipv4)
    mdns_lab.wait_for_line(publisher, "published", timeout=10)
    mdns_lab.stop(publisher)
    code, output = mdns_lab.run_mdns(mdns_lab.b, "resolve", name, "--timeout", "1", timeout=10)
    assert code == 1, output
