"""aioice.stun: Session Traversal Utilities for NAT (RFC 8489, RFC 5389, RFC 5780).

Sans-I/O cores, which take bytes and ``now`` and return datagrams, events and a
timer deadline:

- :class:`Message` and :func:`parse_message`: the codec.
- :class:`Transaction`: a client transaction with RFC 8489 retransmissions.
- :class:`StunServer`: a Binding server, with RFC 5780 when given two addresses.
- :class:`NatBehaviorDiscovery`: RFC 5780 mapping and filtering discovery.
- :class:`StreamFramer`: STUN (and TURN ChannelData) over TCP/TLS.

Thin asyncio adapters live in :mod:`aioice.stun.asyncio`, imported on first use.

``RETRY_MAX`` and ``RETRY_RTO`` are the aioice 0.x tunables: adapters read them
each time they start a transaction, so patching them takes effect.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .__about__ import __version__
from .attributes import (
    ATTRIBUTES,
    ATTRIBUTES_BY_NAME,
    ATTRIBUTES_BY_TYPE,
    AttributeSpec,
    pack_address,
    pack_xor_address,
    padding_length,
    unpack_address,
    unpack_error_code,
    unpack_xor_address,
)
from .credentials import (
    PasswordAlgorithm,
    SecurityFeature,
    long_term_key,
    make_nonce,
    nonce_security_features,
    opaque_string,
    saslprep,
    userhash,
)
from .errors import (
    NatDiscoveryError,
    StunError,
    StunParseError,
    StunStateError,
    TransactionError,
    TransactionFailed,
    TransactionTimeout,
)
from .framing import StreamFramer
from .message import (
    COOKIE,
    Class,
    Message,
    Method,
    message_fingerprint,
    message_integrity,
    parse_message,
    random_transaction_id,
)
from .nat import FilteringBehavior, MappingBehavior, NatBehavior, NatBehaviorDiscovery
from .server import StunServer, StunServerStats
from .transaction import Transaction, TransactionConfig
from .transmit import Address, Transmit

if TYPE_CHECKING:
    from . import asyncio as asyncio

__all__ = [
    "ATTRIBUTES",
    "ATTRIBUTES_BY_NAME",
    "ATTRIBUTES_BY_TYPE",
    "COOKIE",
    "RETRY_MAX",
    "RETRY_RTO",
    "Address",
    "AttributeSpec",
    "Class",
    "FilteringBehavior",
    "MappingBehavior",
    "Message",
    "Method",
    "NatBehavior",
    "NatBehaviorDiscovery",
    "NatDiscoveryError",
    "PasswordAlgorithm",
    "SecurityFeature",
    "StreamFramer",
    "StunError",
    "StunParseError",
    "StunServer",
    "StunServerStats",
    "StunStateError",
    "Transaction",
    "TransactionConfig",
    "TransactionError",
    "TransactionFailed",
    "TransactionTimeout",
    "Transmit",
    "__version__",
    "long_term_key",
    "make_nonce",
    "message_fingerprint",
    "message_integrity",
    "nonce_security_features",
    "opaque_string",
    "pack_address",
    "pack_xor_address",
    "padding_length",
    "parse_message",
    "random_transaction_id",
    "saslprep",
    "unpack_address",
    "unpack_error_code",
    "unpack_xor_address",
    "userhash",
]

#: Retransmissions after the first request (aioice 0.x tunable; Rc = RETRY_MAX + 1).
RETRY_MAX = 6
#: Initial retransmission timeout in seconds (aioice 0.x tunable).
RETRY_RTO = 0.5


def default_transaction_config(**overrides: Any) -> TransactionConfig:
    """A :class:`TransactionConfig` built from the current ``RETRY_MAX`` / ``RETRY_RTO``.

    Adapters call this when they start a transaction, so that code which patches
    the module tunables (as aiortc's tests do) sees the effect.
    """
    return TransactionConfig(**{"rto": RETRY_RTO, "retransmissions": RETRY_MAX, **overrides})


def __getattr__(name: str) -> Any:
    # The asyncio adapter is imported lazily so that the codec stays light.
    if name == "asyncio":
        import importlib

        return importlib.import_module(".asyncio", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


logging.getLogger(__name__).addHandler(logging.NullHandler())
