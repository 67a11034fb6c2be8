"""aioice.turn: placeholder release.

The sans-I/O core and asyncio adapter arrive in a later release; this release
ships the package skeleton so that dependency pins can already be resolved.
"""

import logging

from .__about__ import __version__

__all__ = ["__version__"]

logging.getLogger(__name__).addHandler(logging.NullHandler())
