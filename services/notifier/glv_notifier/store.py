"""asyncpg queries on the notifier's own database."""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import datetime
from typing import Any
from uuid import UUID

from glv_notifier.plans import Planned, TicketState
from glv_runtime.db import DbConnection
from glv_schemas import events as ev

_TICKET_COLUMNS = [f.name for f in fields(TicketState)]


# ---------------------------------------------------------------- contacts


async def remember_contact(conn: DbConnection, filed: ev.TicketFiled, portal_id: str, now: datetime) -> bool:
    """The first filing's contact wins (as ticketing's first filing does); True if stored now."""
    person = filed.stakeholder
    status: str = await conn.execute(
        "INSERT INTO contact (ticket_id, portal_id, name, email, phone, locale, stored_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (ticket_id) DO NOTHING",
        filed.ticket_id,
        portal_id,
        person.name,
        str(person.email) if person.email else None,
        person.phone,
        person.locale,
        now,
    )
    return status.endswith(" 1")


async def contact_of(conn: DbConnection, ticket_id: UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT name, email, phone, locale FROM contact WHERE ticket_id = $1", ticket_id)
    return dict(row) if row is not None else None


async def forget(conn: DbConnection, now: datetime, *, closed_days: int, undecided_hours: int) -> dict[str, int]:
    """What no message needs any more: contacts of tickets closed `closed_days` ago (or rejected,
    once told) with nothing left to send, of filings never decided within `undecided_hours`;
    messages that waited that long for a contact that never came; and the records of tickets
    closed `closed_days` ago (their messages, attempts and join links)."""
    forgotten = {}
    forgotten["contacts"] = _count(
        await conn.execute(
            "DELETE FROM contact c WHERE NOT EXISTS ("
            "   SELECT 1 FROM notification n WHERE n.ticket_id = c.ticket_id AND n.state IN ('waiting', 'queued'))"
            " AND (EXISTS ("
            "   SELECT 1 FROM ticket t WHERE t.ticket_id = c.ticket_id AND (t.decision = 'rejected'"
            "    OR t.closed_at < $1::timestamptz - make_interval(days => $2)))"
            "  OR (c.stored_at < $1::timestamptz - make_interval(hours => $3) AND NOT EXISTS ("
            "   SELECT 1 FROM ticket t WHERE t.ticket_id = c.ticket_id AND t.decision IS NOT NULL)))",
            now,
            closed_days,
            undecided_hours,
        )
    )
    forgotten["never_told"] = _count(
        await conn.execute(
            "UPDATE notification SET state = 'skipped', reason = 'no_contact', finished_at = $1"
            " WHERE state = 'waiting' AND created_at < $1::timestamptz - make_interval(hours => $2)",
            now,
            undecided_hours,
        )
    )
    closed = "SELECT ticket_id FROM ticket WHERE closed_at < $1::timestamptz - make_interval(days => $2)"
    forgotten["attempts"] = _count(
        await conn.execute(
            "DELETE FROM delivery_attempt a USING notification n WHERE a.notification_id = n.notification_id"
            f" AND n.state NOT IN ('waiting', 'queued') AND n.ticket_id IN ({closed})",
            now,
            closed_days,
        )
    )
    forgotten["messages"] = _count(
        await conn.execute(
            f"DELETE FROM notification WHERE state NOT IN ('waiting', 'queued') AND ticket_id IN ({closed})",
            now,
            closed_days,
        )
    )
    forgotten["tickets"] = _count(
        await conn.execute(
            "DELETE FROM ticket t WHERE t.closed_at < $1::timestamptz - make_interval(days => $2)"
            " AND NOT EXISTS (SELECT 1 FROM notification n WHERE n.ticket_id = t.ticket_id)"
            " AND NOT EXISTS (SELECT 1 FROM contact c WHERE c.ticket_id = t.ticket_id)",
            now,
            closed_days,
        )
    )
    return forgotten


def _count(status: str) -> int:
    return int(status.rsplit(maxsplit=1)[-1])


# ---------------------------------------------------------------- tickets


async def load_ticket(conn: DbConnection, ticket_id: UUID, now: datetime) -> TicketState:
    row = await conn.fetchrow(f"SELECT {', '.join(_TICKET_COLUMNS)} FROM ticket WHERE ticket_id = $1", ticket_id)
    return TicketState(**dict(row)) if row is not None else TicketState(ticket_id=ticket_id, updated_at=now)


async def save_ticket(conn: DbConnection, state: TicketState) -> None:
    values = [getattr(state, name) for name in _TICKET_COLUMNS]
    placeholders = ", ".join(f"${n}" for n in range(1, len(values) + 1))
    updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in _TICKET_COLUMNS[1:])
    await conn.execute(
        f"INSERT INTO ticket ({', '.join(_TICKET_COLUMNS)}) VALUES ({placeholders})"
        f" ON CONFLICT (ticket_id) DO UPDATE SET {updates}",
        *values,
    )


# ---------------------------------------------------------------- offices


async def upsert_office(conn: DbConnection, entry: ev.OfficeCatalogUpdated) -> None:
    services = json.dumps([s.model_dump(mode="json") for s in entry.services])
    await conn.execute(
        "INSERT INTO office (office_code, name, city, zone, services, updated_at)"
        " VALUES ($1, $2, $3, $4, $5::jsonb, $6)"
        " ON CONFLICT (office_code) DO UPDATE SET name = EXCLUDED.name, city = EXCLUDED.city,"
        "  zone = EXCLUDED.zone, services = EXCLUDED.services, updated_at = EXCLUDED.updated_at"
        "  WHERE office.updated_at <= EXCLUDED.updated_at",
        entry.office_code,
        entry.name,
        entry.city,
        entry.zone,
        services,
        entry.updated_at,
    )


async def office_of(conn: DbConnection, office_code: str | None) -> dict[str, Any] | None:
    if office_code is None:
        return None
    row = await conn.fetchrow(
        "SELECT office_code, name, city, zone, services FROM office WHERE office_code = $1", office_code
    )
    if row is None:
        return None
    return dict(row) | {"services": json.loads(row["services"])}


# ---------------------------------------------------------------- notifications


async def add_notification(conn: DbConnection, ticket_id: UUID, planned: Planned, state: str, now: datetime) -> bool:
    """True if this message is new (its delivery key was never planned before)."""
    status: str = await conn.execute(
        "INSERT INTO notification (notification_id, delivery_key, ticket_id, purpose, facts, state, not_before,"
        " created_at) VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8) ON CONFLICT (delivery_key) DO NOTHING",
        planned.notification_id,
        planned.key,
        ticket_id,
        planned.purpose.value,
        json.dumps(planned.facts),
        state,
        planned.not_before,
        now,
    )
    return status.endswith(" 1")


async def release_waiting(conn: DbConnection, ticket_id: UUID) -> list[dict[str, Any]]:
    """Messages that waited for the ticket's contact: queued now; returned to be enqueued."""
    rows = await conn.fetch(
        "UPDATE notification SET state = 'queued' WHERE ticket_id = $1 AND state = 'waiting'"
        " RETURNING notification_id, delivery_key, not_before",
        ticket_id,
    )
    return [dict(r) for r in rows]


async def notification(conn: DbConnection, notification_id: UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        "SELECT notification_id, delivery_key, ticket_id, purpose, facts, state FROM notification"
        " WHERE notification_id = $1",
        notification_id,
    )
    return dict(row) | {"facts": json.loads(row["facts"])} if row is not None else None


async def finish_notification(
    conn: DbConnection, notification_id: UUID, state: str, now: datetime, *, channel: str | None, reason: str | None
) -> None:
    await conn.execute(
        "UPDATE notification SET state = $2, channel = $3, reason = $4, finished_at = $5 WHERE notification_id = $1",
        notification_id,
        state,
        channel,
        reason,
        now,
    )


async def record_attempt(
    conn: DbConnection, notification_id: UUID, channel: str, outcome: str, detail: str | None, now: datetime
) -> None:
    await conn.execute(
        "INSERT INTO delivery_attempt (notification_id, channel, outcome, detail, at) VALUES ($1, $2, $3, $4, $5)",
        notification_id,
        channel,
        outcome,
        detail,
        now,
    )


async def refused_channels(conn: DbConnection, notification_id: UUID) -> set[str]:
    """Channels that refused this message for good on an earlier attempt."""
    rows = await conn.fetch(
        "SELECT DISTINCT channel FROM delivery_attempt WHERE notification_id = $1 AND outcome = 'permanent'",
        notification_id,
    )
    return {r["channel"] for r in rows}


async def last_channel(conn: DbConnection, notification_id: UUID) -> str | None:
    channel: str | None = await conn.fetchval(
        "SELECT channel FROM delivery_attempt WHERE notification_id = $1 AND outcome <> 'deferred'"
        " ORDER BY id DESC LIMIT 1",
        notification_id,
    )
    return channel
