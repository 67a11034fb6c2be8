"""Ephemeral TURN credentials: the "TURN REST API" (draft-uberti-behave-turn-rest-00).

A web service and the TURN server share a secret. The service hands out a user
name made of an expiry time and an optional user id, and a password that is the
base64 HMAC-SHA1 of that user name under the secret; coturn accepts them with
``--use-auth-secret --static-auth-secret=SECRET``.
"""

from __future__ import annotations

import base64
import hmac

__all__ = ["rest_credentials"]


def rest_credentials(
    secret: str | bytes,
    *,
    now: float,
    ttl: float = 86400.0,
    user: str | None = None,
    separator: str = ":",
) -> tuple[str, str]:
    """Return ``(username, password)`` valid until ``now + ttl``.

    :param secret: the secret shared with the TURN server.
    :param now: the current UNIX time (``time.time()``); the credentials carry an
        absolute expiry, so this is wall-clock time, passed in by the caller.
    :param ttl: how long the credentials stay valid, in seconds.
    :param user: an optional user id appended to the expiry.
    :param separator: between expiry and user id (coturn's ``--rest-api-separator``).
    """
    if ttl <= 0:
        raise ValueError("ttl must be positive")
    expiry = str(int(now + ttl))
    username = expiry if user is None else f"{expiry}{separator}{user}"
    key = secret.encode() if isinstance(secret, str) else secret
    password = base64.b64encode(hmac.digest(key, username.encode(), "sha1")).decode()
    return username, password
