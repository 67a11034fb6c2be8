"""aioice: Interactive Connectivity Establishment (RFC 8445) for asyncio.

This is the only ``__init__.py`` at the root of the ``aioice`` namespace; the
other distributions (aioice-stun, aioice-turn, aioice-mdns) are PEP 420
portions found through :func:`pkgutil.extend_path`. Re-exports are lazy
(PEP 562), so ``import aioice.stun`` does not load the ICE package.
"""

from typing import TYPE_CHECKING, Any

__path__ = __import__("pkgutil").extend_path(__path__, __name__)

if TYPE_CHECKING:
    from aioice.ice import Candidate, Connection, ConnectionClosed, TransportPolicy, __version__

__all__ = ["Candidate", "Connection", "ConnectionClosed", "TransportPolicy", "__version__"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        import aioice.ice

        return getattr(aioice.ice, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
