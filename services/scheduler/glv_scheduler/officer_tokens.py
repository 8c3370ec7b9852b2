"""Officers' agenda and feed tokens: issued, revoked, listed and looked up by their hash.

A token is shown once, when it is issued; the table keeps its SHA-256 only
(glv_runtime.tokens). A token authenticates while it is not revoked and its officer is
in the catalog (an officer the catalog no longer lists is inactive: their tokens stop).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from glv_runtime.db import DbConnection
from glv_runtime.tokens import MAX_TOKEN_LENGTH, new_token, token_hash

Purpose = Literal["agenda", "feed"]
PURPOSES: tuple[Purpose, ...] = ("agenda", "feed")
# What a token starts with tells a leaked one's purpose at a glance.
TOKEN_KINDS: dict[Purpose, str] = {"agenda": "glvoa", "feed": "glvof"}


class UnknownOfficer(LookupError):
    """No active officer with this id in the catalog."""


@dataclass(frozen=True)
class TokenRecord:
    token_id: uuid.UUID
    officer_id: str
    purpose: Purpose
    created_at: datetime
    revoked_at: datetime | None


async def issue(conn: DbConnection, officer_id: str, purpose: Purpose, now: datetime) -> tuple[str, int]:
    """A new token for the officer and purpose, and how many earlier live ones it revoked."""
    # The officer's row is locked, so that two issues at once take turns (one live token each).
    active = await conn.fetchval("SELECT active FROM officer WHERE officer_id = $1 FOR UPDATE", officer_id)
    if not active:
        raise UnknownOfficer(officer_id)
    replaced = await revoke(conn, officer_id, purpose, now)
    token = new_token(TOKEN_KINDS[purpose])
    await conn.execute(
        "INSERT INTO officer_token (officer_id, purpose, token_sha256, created_at) VALUES ($1, $2, $3, $4)",
        officer_id, purpose, token_hash(token), now,
    )  # fmt: skip
    return token, replaced


async def revoke(conn: DbConnection, officer_id: str, purpose: Purpose | None, now: datetime) -> int:
    """Revoke the officer's live tokens (of one purpose, or all); how many."""
    status: str = await conn.execute(
        "UPDATE officer_token SET revoked_at = $3"
        " WHERE officer_id = $1 AND revoked_at IS NULL AND ($2::text IS NULL OR purpose = $2)",
        officer_id, purpose, now,
    )  # fmt: skip
    return int(status.rsplit(maxsplit=1)[-1])


async def listed(conn: DbConnection, *, revoked: bool = False) -> list[TokenRecord]:
    """Tokens by officer and age (live ones only unless `revoked`); never the tokens themselves."""
    rows = await conn.fetch(
        "SELECT token_id, officer_id, purpose, created_at, revoked_at FROM officer_token"
        " WHERE $1 OR revoked_at IS NULL ORDER BY officer_id, purpose, created_at",
        revoked,
    )
    return [TokenRecord(**dict(r)) for r in rows]


async def officer_of(conn: DbConnection, token: str | None, purpose: Purpose) -> str | None:
    """The officer a live token of this purpose belongs to; None for anything else."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    officer_id: str | None = await conn.fetchval(
        "SELECT t.officer_id FROM officer_token t JOIN officer o USING (officer_id)"
        " WHERE t.token_sha256 = $1 AND t.purpose = $2 AND t.revoked_at IS NULL AND o.active",
        token_hash(token), purpose,
    )  # fmt: skip
    return officer_id
