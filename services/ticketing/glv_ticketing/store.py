"""asyncpg queries on ticketing's own database."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID

import asyncpg

from glv_runtime.db import DbConnection
from glv_schemas.events import OfficeCatalogUpdated
from glv_ticketing.domain import Office, ServiceRule, Status, Ticket


@dataclass(frozen=True)
class HistoryEntry:
    ticket_id: str
    entry: str
    status: Status
    event_id: str
    at: datetime
    detail: dict[str, Any]


def _office(row: asyncpg.Record) -> Office:
    services = json.loads(row["services"])
    return Office(
        code=row["office_code"],
        zone=row["zone"],
        active=row["active"],
        services={
            s["service_code"]: ServiceRule(
                code=s["service_code"],
                duration_minutes=s["duration_minutes"],
                min_notice_hours=s["min_notice_hours"],
                booking_horizon_days=s["booking_horizon_days"],
                kind=s.get("kind"),
            )
            for s in services
        },
    )


async def load_offices(conn: DbConnection) -> dict[str, Office]:
    rows = await conn.fetch("SELECT office_code, zone, services, active FROM office")
    return {r["office_code"]: _office(r) for r in rows}


async def upsert_office(conn: DbConnection, entry: OfficeCatalogUpdated) -> Office:
    services = json.dumps([s.model_dump(mode="json") for s in entry.services])
    row = await conn.fetchrow(
        "INSERT INTO office (office_code, name, city, zone, services, active, updated_at)"
        " VALUES ($1, $2, $3, $4, $5::jsonb, true, $6)"
        " ON CONFLICT (office_code) DO UPDATE SET name = EXCLUDED.name, city = EXCLUDED.city,"
        "  zone = EXCLUDED.zone, services = EXCLUDED.services, active = true, updated_at = EXCLUDED.updated_at"
        "  WHERE office.updated_at <= EXCLUDED.updated_at"
        " RETURNING office_code, zone, services, active",
        entry.office_code,
        entry.name,
        entry.city,
        entry.zone,
        services,
        entry.updated_at,
    )
    if row is None:  # an older entry than the one we have: keep ours
        row = await conn.fetchrow(
            "SELECT office_code, zone, services, active FROM office WHERE office_code = $1", entry.office_code
        )
    assert row is not None
    return _office(row)


async def load_tickets(conn: DbConnection, ticket_ids: Iterable[UUID]) -> dict[str, Ticket]:
    rows = await conn.fetch(
        "SELECT ticket_id, portal_id, content_hash, status, office_code, service_code, ticket_code"
        " FROM ticket WHERE ticket_id = ANY($1::uuid[])",
        list(set(ticket_ids)),
    )
    return {
        str(r["ticket_id"]): Ticket(
            ticket_id=str(r["ticket_id"]),
            portal_id=r["portal_id"],
            content_hash=r["content_hash"],
            status=Status(r["status"]),
            office_code=r["office_code"],
            service_code=r["service_code"],
            ticket_code=r["ticket_code"],
        )
        for r in rows
    }


async def reserve_code_numbers(conn: DbConnection, office_code: str, local_day: date, count: int) -> int:
    """Reserve `count` consecutive numbers for the office's day; return the first."""
    last: int = await conn.fetchval(
        "INSERT INTO ticket_code_counter (office_code, local_day, last_number) VALUES ($1, $2, $3)"
        " ON CONFLICT (office_code, local_day) DO UPDATE"
        "  SET last_number = ticket_code_counter.last_number + EXCLUDED.last_number"
        " RETURNING last_number",
        office_code,
        local_day,
        count,
    )
    return last - count + 1


async def save_tickets(conn: DbConnection, tickets: Sequence[Ticket], now: datetime) -> None:
    if not tickets:
        return
    await conn.execute(
        "INSERT INTO ticket (ticket_id, portal_id, ticket_code, office_code, service_code, status,"
        " content_hash, created_at, updated_at)"
        " SELECT t.*, $8::timestamptz, $8::timestamptz"
        " FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) AS t"
        " ON CONFLICT (ticket_id) DO UPDATE SET status = EXCLUDED.status, updated_at = EXCLUDED.updated_at",
        [t.ticket_id for t in tickets],
        [t.portal_id for t in tickets],
        [t.ticket_code for t in tickets],
        [t.office_code for t in tickets],
        [t.service_code for t in tickets],
        [t.status.value for t in tickets],
        [t.content_hash for t in tickets],
        now,
    )


async def add_history(conn: DbConnection, entries: Sequence[HistoryEntry]) -> None:
    if not entries:
        return
    await conn.execute(
        "INSERT INTO ticket_history (ticket_id, entry, status, event_id, at, detail)"
        " SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::jsonb[])",
        [e.ticket_id for e in entries],
        [e.entry for e in entries],
        [e.status.value for e in entries],
        [e.event_id for e in entries],
        [e.at for e in entries],
        [json.dumps(e.detail) for e in entries],
    )


# ------------------------------------------------------------------ status API


async def find_ticket(
    conn: DbConnection, *, ticket_id: UUID | None = None, code: str | None = None
) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        "SELECT ticket_id, portal_id, ticket_code, office_code, service_code, status, created_at, updated_at"
        " FROM ticket WHERE ticket_id = $1 OR ticket_code = $2",
        ticket_id,
        code,
    )
    if row is None:
        return None
    history = await conn.fetch(
        "SELECT entry, status, at, detail FROM ticket_history WHERE ticket_id = $1 ORDER BY id", row["ticket_id"]
    )
    return {
        "ticket_id": str(row["ticket_id"]),
        "ticket_code": row["ticket_code"],
        "portal_id": row["portal_id"],
        "office_code": row["office_code"],
        "service_code": row["service_code"],
        "status": row["status"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
        "history": [
            {"entry": h["entry"], "status": h["status"], "at": h["at"].isoformat(), "detail": json.loads(h["detail"])}
            for h in history
        ],
    }


# ---------------------------------------------------------------- portals


async def portal_for_token(conn: DbConnection, token_hash: bytes) -> str | None:
    """The onboarded, not revoked portal whose status token hashes to this."""
    portal_id: str | None = await conn.fetchval(
        "SELECT portal_id FROM portal WHERE token_hash = $1 AND revoked_at IS NULL", token_hash
    )
    return portal_id


async def portal_token_state(conn: DbConnection, portal_id: str) -> str:
    """'missing', 'active' or 'revoked'."""
    revoked: bool | None = await conn.fetchval(
        "SELECT revoked_at IS NOT NULL FROM portal WHERE portal_id = $1 FOR UPDATE", portal_id
    )
    return "missing" if revoked is None else "revoked" if revoked else "active"


async def set_portal_token(conn: DbConnection, portal_id: str, token_hash: bytes, now: datetime) -> None:
    await conn.execute(
        "INSERT INTO portal (portal_id, token_hash, onboarded_at, token_issued_at) VALUES ($1, $2, $3, $3)"
        " ON CONFLICT (portal_id) DO UPDATE SET token_hash = EXCLUDED.token_hash,"
        "  token_issued_at = EXCLUDED.token_issued_at, revoked_at = NULL",
        portal_id,
        token_hash,
        now,
    )


async def revoke_portal(conn: DbConnection, portal_id: str, now: datetime) -> bool:
    status: str = await conn.execute(
        "UPDATE portal SET revoked_at = $2 WHERE portal_id = $1 AND revoked_at IS NULL", portal_id, now
    )
    return status.endswith(" 1")


async def list_portals(conn: DbConnection) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT portal_id, onboarded_at, token_issued_at, revoked_at FROM portal ORDER BY portal_id"
    )
    return [dict(r) for r in rows]
