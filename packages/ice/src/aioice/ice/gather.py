"""Where candidates come from: the host's addresses, through an injectable network.

- :class:`HostNet`: the :class:`aioice.stun.asyncio.Net` the ICE adapter needs, plus
  interface enumeration (pion's ``transport.Net``).
- :class:`SystemNet`: the machine's network (``ifaddr`` for interfaces).
- :func:`host_addresses`: the addresses to gather host candidates on.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from typing import Protocol

from aioice.stun.asyncio import LoopNet, Net

__all__ = ["AddressFilter", "HostNet", "SystemNet", "host_addresses"]

AddressFilter = Callable[[str, str], bool]
"``(address, interface name) -> bool``: whether to gather on the address."


class HostNet(Net, Protocol):
    """A network the ICE adapter can gather on."""

    def interfaces(self) -> list[tuple[str, list[str]]]:
        """The interfaces and their addresses: ``[(name, [address, ...]), ...]``."""
        ...


class SystemNet(LoopNet):
    """The machine's network: the running loop's sockets, ``ifaddr``'s interfaces."""

    def interfaces(self) -> list[tuple[str, list[str]]]:
        import ifaddr

        result: list[tuple[str, list[str]]] = []
        for adapter in ifaddr.get_adapters():
            addresses: list[str] = []
            for ip in adapter.ips:
                if isinstance(ip.ip, str):
                    addresses.append(ip.ip)
                elif ip.ip[2] == 0:
                    # IPv6 with a scope ID (link-local) needs the scope on every send:
                    # left out, as aioice 0.x does.
                    addresses.append(ip.ip[0])
            result.append((str(adapter.name), addresses))
        return result


def host_addresses(
    net: HostNet,
    *,
    use_ipv4: bool = True,
    use_ipv6: bool = True,
    explicit: Iterable[str] | None = None,
    address_filter: AddressFilter | None = None,
) -> list[str]:
    """The addresses to gather host candidates on, without duplicates.

    ``explicit`` addresses are used exactly (loopback included) and the interfaces
    are not looked at. Otherwise every interface address of an enabled family except
    loopback and link-local ones, that ``address_filter`` accepts.
    """
    if explicit is not None:
        return list(dict.fromkeys(str(ipaddress.ip_address(a)) for a in explicit))
    chosen: list[str] = []
    for name, addresses in net.interfaces():
        for text in addresses:
            try:
                ip = ipaddress.ip_address(text.split("%", 1)[0])
            except ValueError:
                continue
            if not (use_ipv4 if ip.version == 4 else use_ipv6):
                continue
            if ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast:
                continue
            address = str(ip)
            if address_filter is not None and not address_filter(address, name):
                continue
            if address not in chosen:
                chosen.append(address)
    return chosen
