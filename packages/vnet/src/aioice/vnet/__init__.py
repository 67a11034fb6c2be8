"""aioice.vnet: a virtual network in virtual time for aioice's tests (private).

- :class:`Network`: routers (the internet at the root, LANs with NATs below), hosts,
  UDP endpoints, TCP-like :class:`Stream` s, link conditions, a packet trace and
  counters, over IPv4 and IPv6; everything runs in the network's :class:`Scheduler`.
- :mod:`aioice.vnet.nat`: RFC 4787 behaviours and the presets ``FULL_CONE``,
  ``RESTRICTED_CONE``, ``PORT_RESTRICTED_CONE``, ``SYMMETRIC``, ``UDP_BLOCKED``; the
  same behaviours filter IPv6 as a :class:`Firewall` (RFC 6092).
- :func:`stun_server`, :func:`turn_server`: the sans-I/O server cores on virtual hosts,
  over UDP and streams.
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
    Firewall,
    Nat,
    NatBehavior,
)
from .network import Endpoint, Hop, Host, LinkConditions, Listener, Network, Router, Stream
from .servers import ServerHost, stun_server, turn_server

__all__ = [
    "FULL_CONE",
    "PORT_RESTRICTED_CONE",
    "RESTRICTED_CONE",
    "SYMMETRIC",
    "UDP_BLOCKED",
    "Dependency",
    "Endpoint",
    "Firewall",
    "Hop",
    "Host",
    "LinkConditions",
    "Listener",
    "Nat",
    "NatBehavior",
    "Network",
    "Router",
    "Scheduler",
    "SchedulerError",
    "ServerHost",
    "Stream",
    "__version__",
    "stun_server",
    "turn_server",
]
