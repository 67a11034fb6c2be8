"""aioice: Interactive Connectivity Establishment (RFC 8445) for asyncio.

This is the only ``__init__.py`` at the root of the ``aioice`` namespace; the
other distributions (aioice-stun, aioice-turn, aioice-mdns) are PEP 420
portions found through :func:`pkgutil.extend_path`.
"""

__path__ = __import__("pkgutil").extend_path(__path__, __name__)

from aioice.ice import __version__  # noqa: E402

__all__ = ["__version__"]
