"""aioice.vnet: a virtual network in virtual time for aioice's tests (private).

- :class:`Network`: routers (the internet at the root, LANs with NATs below), hosts,
  endpoints, link conditions, a packet trace and counters; everything runs in the
  network's :class:`Scheduler`.
- :mod:`aioice.vnet.nat`: RFC 4787 behaviours and the presets ``FULL_CONE``,
  ``RESTRICTED_CONE``, ``PORT_RESTRICTED_CONE``, ``SYMMETRIC``, ``UDP_BLOCKED``.
- :func:`stun_server`, :func:`turn_server`: the sans-I/O server cores on virtual hosts.
"""

from .__about__ import __version__
from .clock import Scheduler, SchedulerError
from .nat import (
    FULL_CONE,
    PORT_RESTRICTED_CONE,
    RESTRICTED_CONE,
    SYMMETRIC,
    UDP_BLOCKED,
    Dependency,
    Nat,
    NatBehavior,
)
from .network import Endpoint, Hop, Host, LinkConditions, Network, Router
from .servers import ServerHost, stun_server, turn_server

__all__ = [
    "FULL_CONE",
    "PORT_RESTRICTED_CONE",
    "RESTRICTED_CONE",
    "SYMMETRIC",
    "UDP_BLOCKED",
    "Dependency",
    "Endpoint",
    "Hop",
    "Host",
    "LinkConditions",
    "Nat",
    "NatBehavior",
    "Network",
    "Router",
    "Scheduler",
    "SchedulerError",
    "ServerHost",
    "__version__",
    "stun_server",
    "turn_server",
]
