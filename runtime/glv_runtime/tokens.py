"""Bearer tokens (a portal's status-API token, an officer's agenda and feed tokens).

A token is 256 random bits, shown once when it is issued and stored only as its
SHA-256. A slow password hash would add nothing: nobody can guess 256 random bits,
so a stolen table of hashes yields no token, and lookups stay one index probe.
"""

from __future__ import annotations

import hashlib
import secrets

TOKEN_BYTES = 32
# Longer than any token we issue, short enough that a huge header costs nothing.
MAX_TOKEN_LENGTH = 128


def new_token(kind: str) -> str:
    """A fresh token; `kind` (e.g. "glvp" for portals) tells a leaked one's purpose at a glance."""
    return f"{kind}_{secrets.token_urlsafe(TOKEN_BYTES)}"


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None for anything else,
    an empty or blank token included (an empty token never authenticates)."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    return token
