"""aioice.ice: the ICE agent (RFC 8445).

The sans-I/O agent and the aioice-compatible asyncio ``Connection`` arrive in a
later release; this release ships the package skeleton and its dependencies.
"""

import logging

from .__about__ import __version__

__all__ = ["__version__"]

logging.getLogger(__name__).addHandler(logging.NullHandler())
