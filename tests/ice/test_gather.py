"""Choosing host addresses: explicit ones, enumerated ones, the filter."""

from __future__ import annotations

from aioice.ice.gather import host_addresses
from aioice.stun.asyncio import LoopNet


class FakeNet(LoopNet):
    """Interfaces as given; no socket is opened here."""

    def __init__(self, interfaces: list[tuple[str, list[str]]]) -> None:
        self._interfaces = interfaces

    def interfaces(self) -> list[tuple[str, list[str]]]:
        return self._interfaces


NET = FakeNet(
    [
        ("lo", ["127.0.0.1", "::1"]),
        ("eth0", ["192.0.2.10", "fe80::1", "2001:db8::10", "169.254.1.1"]),
        ("docker0", ["172.17.0.1"]),
        ("eth1", ["192.0.2.10"]),  # the same address twice
    ]
)


def test_enumerated_addresses_skip_loopback_and_link_local() -> None:
    assert host_addresses(NET) == ["192.0.2.10", "2001:db8::10", "172.17.0.1"]


def test_families() -> None:
    assert host_addresses(NET, use_ipv6=False) == ["192.0.2.10", "172.17.0.1"]
    assert host_addresses(NET, use_ipv4=False) == ["2001:db8::10"]


def test_address_filter_sees_the_interface_name() -> None:
    seen: list[tuple[str, str]] = []

    def only_eth0(address: str, interface: str) -> bool:
        seen.append((address, interface))
        return interface == "eth0"

    assert host_addresses(NET, address_filter=only_eth0) == ["192.0.2.10", "2001:db8::10"]
    assert ("172.17.0.1", "docker0") in seen
    assert all(not a.startswith(("127.", "fe80")) for a, _ in seen)  # filtered out before


def test_explicit_addresses_are_used_exactly_loopback_included() -> None:
    assert host_addresses(NET, explicit=["127.0.0.1", "::1", "127.0.0.1"]) == ["127.0.0.1", "::1"]
