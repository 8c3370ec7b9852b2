"""asyncpg queries on the scheduler's own database."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from uuid import UUID

from glv_runtime.db import DbConnection
from glv_scheduler.assignment import InMemoryBusy, OpenWebinar
from glv_scheduler.calendar import WEEKDAYS, Closures, Interval, Office, Officer, ServiceType, WeeklyHours
from glv_scheduler.catalog import Catalog
from glv_scheduler.meetings import MeetingPlan

# --------------------------------------------------------------------- catalog


def _week_json(week: WeeklyHours) -> str:
    return json.dumps(
        {WEEKDAYS[d]: [[s.isoformat("minutes"), e.isoformat("minutes")] for s, e in p] for d, p in week.items()}
    )


def _week(raw: str | None) -> WeeklyHours | None:
    if raw is None:
        return None
    data: dict[str, list[list[str]]] = json.loads(raw)
    return {
        WEEKDAYS.index(day): tuple((time.fromisoformat(s), time.fromisoformat(e)) for s, e in periods)
        for day, periods in data.items()
    }


async def save_catalog(conn: DbConnection, catalog: Catalog) -> None:
    """Make the stored catalog the file's: upsert everything, deactivate officers it no longer lists."""
    await conn.executemany(
        "INSERT INTO service_type (service_code, name_id, name_en, kind, duration_minutes, buffer_minutes,"
        " min_notice_hours, horizon_days, officers_required, capacity)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        " ON CONFLICT (service_code) DO UPDATE SET name_id = EXCLUDED.name_id, name_en = EXCLUDED.name_en,"
        "  kind = EXCLUDED.kind, duration_minutes = EXCLUDED.duration_minutes,"
        "  buffer_minutes = EXCLUDED.buffer_minutes, min_notice_hours = EXCLUDED.min_notice_hours,"
        "  horizon_days = EXCLUDED.horizon_days, officers_required = EXCLUDED.officers_required,"
        "  capacity = EXCLUDED.capacity",
        [
            (
                code, info.name_id, info.name_en, info.service.kind,
                int(info.service.duration.total_seconds() // 60), int(info.service.buffer.total_seconds() // 60),
                int(info.service.min_notice.total_seconds() // 3600), info.service.horizon.days,
                info.service.officers_required, info.service.capacity,
            )
            for code, info in catalog.services.items()
        ],
    )  # fmt: skip
    await conn.executemany(
        "INSERT INTO office (office_code, name, city, zone, hours, closures, services)"
        " VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7)"
        " ON CONFLICT (office_code) DO UPDATE SET name = EXCLUDED.name, city = EXCLUDED.city, zone = EXCLUDED.zone,"
        "  hours = EXCLUDED.hours, closures = EXCLUDED.closures, services = EXCLUDED.services",
        [
            (code, info.name, info.city, info.office.zone, _week_json(info.office.hours),
             sorted(info.office.closures), sorted(info.office.services))
            for code, info in catalog.offices.items()
        ],
    )  # fmt: skip
    await conn.execute("UPDATE officer SET active = false")
    await conn.executemany(
        "INSERT INTO officer (officer_id, office_code, display_name, skills, roster, leave, active)"
        " VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, true)"
        " ON CONFLICT (officer_id) DO UPDATE SET office_code = EXCLUDED.office_code,"
        "  display_name = EXCLUDED.display_name, skills = EXCLUDED.skills, roster = EXCLUDED.roster,"
        "  leave = EXCLUDED.leave, active = true",
        [
            (o.officer_id, o.office_code, o.display_name, sorted(o.skills),
             _week_json(o.roster) if o.roster is not None else None,
             json.dumps([[first.isoformat(), last.isoformat()] for first, last in o.leave]))
            for o in catalog.officers
        ],
    )  # fmt: skip
    await conn.execute("DELETE FROM collective_leave")
    await conn.executemany(
        "INSERT INTO collective_leave (day, name) VALUES ($1, $2)", list(catalog.collective_leave.items())
    )


@dataclass(frozen=True)
class World:
    """The catalog as the assignment reads it."""

    services: dict[str, ServiceType]
    offices: dict[str, Office]
    officers: list[Officer]
    closures: Closures


async def load_world(conn: DbConnection) -> World:
    services = {
        r["service_code"]: ServiceType(
            code=r["service_code"],
            kind=r["kind"],
            duration=timedelta(minutes=r["duration_minutes"]),
            buffer=timedelta(minutes=r["buffer_minutes"]),
            min_notice=timedelta(hours=r["min_notice_hours"]),
            horizon=timedelta(days=r["horizon_days"]),
            officers_required=r["officers_required"],
            capacity=r["capacity"],
        )
        for r in await conn.fetch("SELECT * FROM service_type")
    }
    offices = {
        r["office_code"]: Office(
            code=r["office_code"],
            zone=r["zone"],
            hours=_week(r["hours"]) or {},
            closures=frozenset(r["closures"]),
            services=frozenset(r["services"]),
        )
        for r in await conn.fetch("SELECT * FROM office")
    }
    officers = [
        Officer(
            officer_id=r["officer_id"],
            office_code=r["office_code"],
            skills=frozenset(r["skills"]),
            roster=_week(r["roster"]),
            leave=tuple((date.fromisoformat(a), date.fromisoformat(b)) for a, b in json.loads(r["leave"])),
            display_name=r["display_name"],
        )
        for r in await conn.fetch("SELECT * FROM officer WHERE active ORDER BY officer_id")
    ]
    leave = frozenset(r["day"] for r in await conn.fetch("SELECT day FROM collective_leave"))
    return World(services, offices, officers, Closures(collective_leave=leave))


# -------------------------------------------------------------------- bookings


class DbBusy(InMemoryBusy):
    """A BusyView over the live bookings, read one officer-day at a time as the search goes."""

    def __init__(self, conn: DbConnection) -> None:
        super().__init__({})
        self.conn = conn
        self._read: set[tuple[str, datetime]] = set()
        self._seen: set[tuple[str, datetime, datetime]] = set()

    async def prepare(self, officer_ids: Sequence[str], start: datetime, end: datetime) -> None:
        missing = [o for o in officer_ids if (o, start) not in self._read]
        if not missing:
            return
        # One btree range per officer (booking_officer_start); no booking lasts a day.
        rows = await self.conn.fetch(
            "SELECT officer_id, lower(during) AS s, upper(during) AS e FROM booking"
            " WHERE live AND officer_id = ANY($1::text[])"
            "  AND lower(during) >= $2::timestamptz - interval '1 day' AND lower(during) < $3 AND upper(during) > $2",
            missing, start, end,
        )  # fmt: skip
        self._read.update((officer_id, start) for officer_id in missing)
        for r in rows:
            key = (r["officer_id"], r["s"], r["e"])
            if key not in self._seen:  # a booking across midnight is read with both days
                self._seen.add(key)
                self.book(r["officer_id"], (r["s"], r["e"]))


async def create_slot(
    conn: DbConnection,
    *,
    slot_id: UUID,
    office_code: str,
    service: ServiceType,
    starts_at: datetime,
    ends_at: datetime,
    plan: MeetingPlan,
    officer_ids: Sequence[str],
    ticket_id: UUID,
    now: datetime,
) -> SlotRecord:
    """Insert a slot, its officers' bookings and the ticket's seat in one statement;
    raises ExclusionViolationError when an officer's time is already booked."""
    meeting = {
        "provider": plan.provider,
        "room_id": plan.room_id,
        "valid_from": plan.valid_from.isoformat(),
        "valid_until": plan.valid_until.isoformat(),
        "officer_ids": list(officer_ids),
    }
    await conn.execute(
        "WITH new_slot AS ("
        "  INSERT INTO slot (slot_id, office_code, service_code, kind, starts_at, ends_at, capacity, seats_taken,"
        "   meeting) VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8::jsonb) RETURNING slot_id),"
        " new_bookings AS ("
        "  INSERT INTO booking (slot_id, officer_id, during)"
        "  SELECT slot_id, officer, tstzrange($5, $9) FROM new_slot, unnest($10::text[]) AS officer)"
        " INSERT INTO seat (ticket_id, slot_id, assigned_at) SELECT $11, slot_id, $12 FROM new_slot",
        slot_id, office_code, service.code, service.kind, starts_at, ends_at, service.capacity, json.dumps(meeting),
        ends_at + service.buffer, list(officer_ids), ticket_id, now,
    )  # fmt: skip
    return SlotRecord(slot_id, office_code, service.code, service.kind, starts_at, ends_at, meeting)


async def take_seat(conn: DbConnection, slot_id: UUID, ticket_id: UUID, now: datetime) -> bool:
    """Give the ticket a seat if the slot has room (webinars fill up; the check is atomic).

    A ticket moved out of a webinar and back into it finds its old seat row: it is
    made live again (the primary key is (ticket, slot))."""
    row = await conn.fetchrow(
        "WITH taken AS ("
        "  UPDATE slot SET seats_taken = seats_taken + 1 WHERE slot_id = $1 AND live AND seats_taken < capacity"
        "   AND NOT EXISTS (SELECT 1 FROM seat WHERE ticket_id = $2 AND slot_id = $1 AND live)"
        "  RETURNING slot_id)"
        " INSERT INTO seat (ticket_id, slot_id, assigned_at) SELECT $2, slot_id, $3 FROM taken"
        " ON CONFLICT (ticket_id, slot_id) DO UPDATE"
        "  SET live = true, assigned_at = EXCLUDED.assigned_at, released_at = NULL"
        " RETURNING slot_id",
        slot_id, ticket_id, now,
    )  # fmt: skip
    return row is not None


async def open_webinars(
    conn: DbConnection,
    office_code: str,
    service_code: str,
    start: datetime,
    end: datetime,
    *,
    leaving: UUID | None = None,
) -> list[OpenWebinar]:
    """Live webinars with a free seat in [start, end); not `leaving`, the one a rescheduled ticket leaves."""
    rows = await conn.fetch(
        "SELECT slot_id, starts_at, ends_at, capacity - seats_taken AS seats_left FROM slot"
        " WHERE live AND kind = 'webinar' AND office_code = $1 AND service_code = $2"
        "  AND starts_at >= $3 AND ends_at <= $4 AND seats_taken < capacity AND slot_id IS DISTINCT FROM $5"
        " ORDER BY starts_at",
        office_code, service_code, start, end, leaving,
    )  # fmt: skip
    return [OpenWebinar(str(r["slot_id"]), r["starts_at"], r["ends_at"], r["seats_left"]) for r in rows]


@dataclass(frozen=True)
class SlotRecord:
    slot_id: UUID
    office_code: str
    service_code: str
    kind: str
    starts_at: datetime
    ends_at: datetime
    meeting: dict[str, Any]

    @property
    def officer_ids(self) -> list[str]:
        return list(self.meeting.get("officer_ids", []))

    def plan(self) -> MeetingPlan:
        return MeetingPlan(
            provider=self.meeting["provider"],
            room_id=self.meeting["room_id"],
            valid_from=datetime.fromisoformat(self.meeting["valid_from"]),
            valid_until=datetime.fromisoformat(self.meeting["valid_until"]),
        )


def _slot(row: Any) -> SlotRecord:
    return SlotRecord(
        slot_id=row["slot_id"],
        office_code=row["office_code"],
        service_code=row["service_code"],
        kind=row["kind"],
        starts_at=row["starts_at"],
        ends_at=row["ends_at"],
        meeting=json.loads(row["meeting"]),
    )


_SLOT_COLUMNS = "s.slot_id, s.office_code, s.service_code, s.kind, s.starts_at, s.ends_at, s.meeting"


async def get_slot(conn: DbConnection, slot_id: UUID) -> SlotRecord | None:
    row = await conn.fetchrow(f"SELECT {_SLOT_COLUMNS} FROM slot s WHERE slot_id = $1", slot_id)
    return _slot(row) if row else None


async def slot_by_room(conn: DbConnection, room_id: str) -> SlotRecord | None:
    row = await conn.fetchrow(f"SELECT {_SLOT_COLUMNS} FROM slot s WHERE meeting ->> 'room_id' = $1", room_id)
    return _slot(row) if row else None


async def live_slot_of(conn: DbConnection, ticket_id: UUID) -> SlotRecord | None:
    row = await conn.fetchrow(
        f"SELECT {_SLOT_COLUMNS} FROM seat JOIN slot s USING (slot_id) WHERE seat.ticket_id = $1 AND seat.live",
        ticket_id,
    )
    return _slot(row) if row else None


async def release_seat(conn: DbConnection, ticket_id: UUID, slot_id: UUID, now: datetime) -> None:
    """Give the seat back; a slot left without seats frees its officers' time."""
    await conn.execute(
        "UPDATE seat SET live = false, released_at = $3 WHERE ticket_id = $1 AND slot_id = $2 AND live",
        ticket_id, slot_id, now,
    )  # fmt: skip
    seats = await conn.fetchval(
        "UPDATE slot SET seats_taken = seats_taken - 1 WHERE slot_id = $1 RETURNING seats_taken", slot_id
    )
    if seats == 0:
        await conn.execute("UPDATE slot SET live = false WHERE slot_id = $1", slot_id)
        await conn.execute("UPDATE booking SET live = false WHERE slot_id = $1", slot_id)


async def live_tickets_of(conn: DbConnection, slot_id: UUID) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT r.ticket_id, r.stakeholder_ref FROM seat JOIN request r USING (ticket_id)"
        " WHERE seat.slot_id = $1 AND seat.live ORDER BY r.accepted_at",
        slot_id,
    )
    return [dict(r) for r in rows]


# -------------------------------------------------------------------- requests


@dataclass(frozen=True)
class RequestRecord:
    ticket_id: UUID
    ticket_code: str
    office_code: str
    service_code: str
    stakeholder_ref: str
    windows: tuple[Interval, ...]
    status: str


def _request(row: Any) -> RequestRecord:
    return RequestRecord(
        ticket_id=row["ticket_id"],
        ticket_code=row["ticket_code"],
        office_code=row["office_code"],
        service_code=row["service_code"],
        stakeholder_ref=row["stakeholder_ref"],
        windows=tuple(
            (datetime.fromisoformat(w["start"]), datetime.fromisoformat(w["end"]))
            for w in json.loads(row["preferred_windows"])
        ),
        status=row["status"],
    )


async def add_request(conn: DbConnection, record: RequestRecord, accepted_at: datetime) -> str | None:
    """Store an accepted ticket with `record.status`; the status stored, or None if it was known already.

    A ticket whose TicketCancelled came first (early_cancellation) is stored as cancelled."""
    windows = json.dumps([{"start": s.isoformat(), "end": e.isoformat()} for s, e in record.windows])
    status: str | None = await conn.fetchval(
        "INSERT INTO request (ticket_id, ticket_code, office_code, service_code, stakeholder_ref,"
        " preferred_windows, accepted_at, status) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7,"
        "  CASE WHEN EXISTS (SELECT 1 FROM early_cancellation WHERE ticket_id = $1) THEN 'cancelled' ELSE $8 END)"
        " ON CONFLICT (ticket_id) DO NOTHING RETURNING status",
        record.ticket_id, record.ticket_code, record.office_code, record.service_code, record.stakeholder_ref,
        windows, accepted_at, record.status,
    )  # fmt: skip
    return status


async def remember_cancellation(conn: DbConnection, ticket_id: UUID, cancelled_at: datetime) -> None:
    """A TicketCancelled for a ticket not accepted yet: its TicketAccepted, if it ever comes, books nothing."""
    await conn.execute(
        "INSERT INTO early_cancellation (ticket_id, cancelled_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        ticket_id, cancelled_at,
    )  # fmt: skip


async def get_request(conn: DbConnection, ticket_id: UUID) -> RequestRecord | None:
    row = await conn.fetchrow("SELECT * FROM request WHERE ticket_id = $1", ticket_id)
    return _request(row) if row else None


async def set_request(
    conn: DbConnection, ticket_id: UUID, status: str, now: datetime, windows: tuple[Interval, ...] | None = None
) -> None:
    await conn.execute(
        "UPDATE request SET status = $2,"
        " waitlisted_at = CASE WHEN $2 = 'waitlisted' THEN coalesce(waitlisted_at, $3) ELSE NULL END,"
        " preferred_windows = coalesce($4::jsonb, preferred_windows) WHERE ticket_id = $1",
        ticket_id, status, now,
        json.dumps([{"start": s.isoformat(), "end": e.isoformat()} for s, e in windows]) if windows else None,
    )  # fmt: skip


async def waitlisted_services(conn: DbConnection) -> list[tuple[str, str]]:
    rows = await conn.fetch(
        "SELECT DISTINCT office_code, service_code FROM request WHERE status = 'waitlisted' ORDER BY 1, 2"
    )
    return [(r["office_code"], r["service_code"]) for r in rows]


# Tickets of the office and service waiting since before ticket $3 (all of them when $3 is null).
_AHEAD = (
    "status = 'waitlisted' AND office_code = $1 AND service_code = $2"
    " AND arrival < coalesce((SELECT arrival FROM request WHERE ticket_id = $3), 9223372036854775807)"
)


async def waiting(conn: DbConnection, office_code: str, service_code: str, *, before: UUID | None = None) -> bool:
    """Whether tickets of the office and service wait (since before ticket `before`, when given)."""
    found: bool = await conn.fetchval(
        f"SELECT EXISTS (SELECT 1 FROM request WHERE {_AHEAD})", office_code, service_code, before
    )
    return found


async def waitlist(
    conn: DbConnection, office_code: str, service_code: str, limit: int = 50, *, before: UUID | None = None
) -> list[RequestRecord]:
    """Waiting tickets, first come first served (those waiting since before ticket `before`, when given).

    Rows another transaction holds (a waiting ticket being cancelled or rescheduled) are
    skipped rather than waited for: that transaction may itself wait for this refill's lock."""
    rows = await conn.fetch(
        f"SELECT * FROM request WHERE {_AHEAD} ORDER BY arrival LIMIT $4 FOR UPDATE SKIP LOCKED",
        office_code, service_code, before, limit,
    )  # fmt: skip
    return [_request(r) for r in rows]


async def lock_waitlist(conn: DbConnection, office_code: str, service_code: str) -> None:
    """Serve one office and service's waitlist one transaction at a time, across replicas (until commit)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))", office_code, service_code)


async def lock_waitlists(conn: DbConnection, pairs: Sequence[tuple[str, str]], ticket_ids: Sequence[UUID]) -> None:
    """Take, in one fixed order, the waitlist locks a batch may need: those of the (office, service)
    pairs and of the tickets' own pairs that have tickets waiting. Two batches that take them in
    the same order cannot deadlock on them."""
    rows = await conn.fetch(
        "WITH wanted AS ("
        "  SELECT * FROM unnest($1::text[], $2::text[]) AS w (office_code, service_code)"
        "  UNION SELECT office_code, service_code FROM request WHERE ticket_id = ANY($3::uuid[]))"
        " SELECT office_code, service_code FROM wanted w"
        " WHERE EXISTS (SELECT 1 FROM request r WHERE r.status = 'waitlisted'"
        "  AND r.office_code = w.office_code AND r.service_code = w.service_code)"
        " ORDER BY office_code COLLATE \"C\", service_code COLLATE \"C\"",
        [o for o, _ in pairs], [s for _, s in pairs], list(ticket_ids),
    )  # fmt: skip
    for r in rows:
        await lock_waitlist(conn, r["office_code"], r["service_code"])


# -------------------------------------------------------------------- sessions


async def first_delivery(conn: DbConnection, delivery_id: str) -> bool:
    row = await conn.fetchrow(
        "INSERT INTO webhook_delivery (delivery_id) VALUES ($1) ON CONFLICT DO NOTHING RETURNING delivery_id",
        delivery_id,
    )
    return row is not None


async def record_outcome(
    conn: DbConnection,
    *,
    session_id: UUID,
    slot_id: UUID,
    ticket_id: UUID,
    outcome: str,
    source: str,
    notes: str,
    now: datetime,
) -> bool:
    """Record how the session went for one ticket; False if it was recorded before."""
    row = await conn.fetchrow(
        "INSERT INTO session_outcome (session_id, slot_id, ticket_id, outcome, source, notes, reported_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING RETURNING ticket_id",
        session_id, slot_id, ticket_id, outcome, source, notes, now,
    )  # fmt: skip
    if row is not None:
        await conn.execute("UPDATE request SET status = 'done' WHERE ticket_id = $1", ticket_id)
    return row is not None
