"""asyncpg queries on the scheduler's own database."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from functools import cached_property
from typing import Any
from uuid import UUID

from glv_runtime.db import DbConnection
from glv_scheduler.agenda import OfficerSlot
from glv_scheduler.assignment import InMemoryBusy, OpenWebinar
from glv_scheduler.calendar import WEEKDAYS, Closures, Interval, Office, Officer, ServiceType, WeeklyHours
from glv_scheduler.catalog import Catalog
from glv_scheduler.meetings import MeetingPlan
from glv_scheduler.round_policy import RoundPolicy


class RequestStatus(StrEnum):
    """Where an accepted ticket stands in the scheduler (the `request` table's `status`)."""

    WAITLISTED = "waitlisted"
    ASSIGNED = "assigned"
    UNSCHEDULABLE = "unschedulable"
    CANCELLED = "cancelled"
    DONE = "done"
    AWAITING_ROUND = "awaiting_round"


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
    await conn.execute("DELETE FROM round_policy")
    await conn.executemany(
        "INSERT INTO round_policy (office_code, service_code, every_minutes, cutoff) VALUES ($1, $2, $3, $4)",
        [(office, service, p.every_minutes, p.cutoff) for (office, service), p in sorted(catalog.rounds.items())],
    )


@dataclass(frozen=True)
class CatalogView:
    """The catalog as the assignment reads it."""

    services: dict[str, ServiceType]
    offices: dict[str, Office]
    officers: list[Officer]
    closures: Closures
    rounds: dict[tuple[str, str], RoundPolicy] = field(default_factory=dict)


async def catalog_version(conn: DbConnection) -> UUID:
    """Changes with every change of the catalog tables (a trigger sets it): the cached catalog is current
    while it stays the same."""
    version: UUID = await conn.fetchval("SELECT version FROM catalog_version")
    return version


async def load_catalog_view(conn: DbConnection) -> CatalogView:
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
    rounds = {
        (r["office_code"], r["service_code"]): RoundPolicy(timedelta(minutes=r["every_minutes"]), r["cutoff"])
        for r in await conn.fetch("SELECT * FROM round_policy")
    }
    return CatalogView(services, offices, officers, Closures(collective_leave=leave), rounds)


# -------------------------------------------------------------------- bookings

# Live bookings of the officers in the spans asked for (officer, from, to): one btree range per
# span (booking_officer_start), whatever the size of the table; no booking lasts a day. OFFSET 0
# keeps the subquery apart, so that the planner cannot turn the probes into a scan of the table.
_BOOKINGS_IN_SPANS = (
    "SELECT q.officer_id, b.s, b.e"
    " FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) AS q (officer_id, lo, hi)"
    " CROSS JOIN LATERAL (SELECT lower(during) AS s, upper(during) AS e FROM booking"
    "  WHERE live AND officer_id = q.officer_id"
    "   AND lower(during) >= q.lo - interval '1 day' AND lower(during) < q.hi AND upper(during) > q.lo"
    "  OFFSET 0) AS b"
)


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


def _merged(spans: Iterable[Interval]) -> list[Interval]:
    """The union of the spans, as sorted disjoint spans."""
    merged: list[Interval] = []
    for s, e in sorted(spans):
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


class BatchBusy(InMemoryBusy):
    """A BusyView for a batch: the officer-days its tickets will likely search are read up front in
    one statement (`read`), any other officer-day when the search reaches it (with the days after
    it, `lookahead`); the batch's own placements are booked in memory as they are made.

    Each officer's time is read at most once per span, whatever the number of tickets searching it."""

    def __init__(self, conn: DbConnection, lookahead: timedelta = timedelta(days=7)) -> None:
        super().__init__({})
        self.conn = conn
        self.lookahead = lookahead
        self._covered: dict[str, list[Interval]] = {}
        self._seen: set[tuple[str, datetime, datetime]] = set()
        self._ready: set[tuple[tuple[str, ...], datetime, datetime]] = set()  # prepared already

    def _covers(self, officer_id: str, start: datetime, end: datetime) -> bool:
        return any(s <= start and end <= e for s, e in self._covered.get(officer_id, ()))

    async def read(self, spans: Iterable[tuple[Sequence[str], datetime, datetime]]) -> None:
        """Read the live bookings of these officers overlapping these spans, in one statement
        (what is read already is not read again)."""
        asked = {(tuple(officer_ids), start, end) for officer_ids, start, end in spans} - self._ready
        wanted: dict[str, list[Interval]] = {}
        for officer_ids, start, end in asked:
            for officer_id in officer_ids:
                if not self._covers(officer_id, start, end):
                    wanted.setdefault(officer_id, []).append((start, end))
        officers: list[str] = []
        starts: list[datetime] = []
        ends: list[datetime] = []
        for officer_id, spans_wanted in wanted.items():
            merged = _merged(spans_wanted)
            self._covered[officer_id] = _merged([*self._covered.get(officer_id, ()), *merged])
            for s, e in merged:
                officers.append(officer_id)
                starts.append(s)
                ends.append(e)
        if officers:
            for r in await self.conn.fetch(_BOOKINGS_IN_SPANS, officers, starts, ends):
                key = (r["officer_id"], r["s"], r["e"])
                if key not in self._seen:  # a booking read with two spans, or booked here and written
                    self._seen.add(key)
                    super().book(r["officer_id"], (r["s"], r["e"]))
        self._ready |= asked  # the search's prepare for these spans reads nothing more

    async def prepare(self, officer_ids: Sequence[str], start: datetime, end: datetime) -> None:
        asked = (tuple(officer_ids), start, end)
        if asked in self._ready:
            return
        if not all(self._covers(o, start, end) for o in officer_ids):
            await self.read([(officer_ids, start, end + self.lookahead)])
        self._ready.add(asked)

    def book(self, officer_id: str, interval: Interval) -> None:
        self._seen.add((officer_id, *interval))
        super().book(officer_id, interval)

    def forget(self, officer_ids: Iterable[str]) -> None:
        """Drop these officers' time, read or booked: it is read again when searched."""
        dropped = set(officer_ids)
        super().forget(dropped)
        for officer_id in dropped:
            self._covered.pop(officer_id, None)
        self._seen = {key for key in self._seen if key[0] not in dropped}
        self._ready = {key for key in self._ready if dropped.isdisjoint(key[0])}


@dataclass(frozen=True)
class NewSlotRow:
    """A slot to insert, with its officers' bookings [starts_at, ends_at + buffer)."""

    slot_id: UUID
    office_code: str
    service: ServiceType
    starts_at: datetime
    ends_at: datetime
    plan: MeetingPlan
    officer_ids: tuple[str, ...]

    @cached_property
    def meeting(self) -> dict[str, Any]:
        return {
            "provider": self.plan.provider,
            "room_id": self.plan.room_id,
            "valid_from": self.plan.valid_from.isoformat(),
            "valid_until": self.plan.valid_until.isoformat(),
            "officer_ids": list(self.officer_ids),
        }

    def record(self) -> SlotRecord:
        return SlotRecord(
            self.slot_id, self.office_code, self.service.code, self.service.kind, self.starts_at, self.ends_at,
            self.meeting,
        )  # fmt: skip


async def insert_slots(conn: DbConnection, slots: Sequence[NewSlotRow]) -> set[tuple[UUID, str]]:
    """Insert slots (no seat taken yet) and their officers' bookings in one statement; returns the
    (slot, officer) bookings inserted. A booking the exclusion constraint refuses (another
    transaction booked the officer at an overlapping time first) is left out, not raised."""
    if not slots:
        return set()
    bookings = [
        (s.slot_id, officer, s.starts_at, s.ends_at + s.service.buffer) for s in slots for officer in s.officer_ids
    ]
    rows = await conn.fetch(
        "WITH new_slot AS ("
        "  INSERT INTO slot (slot_id, office_code, service_code, kind, starts_at, ends_at, capacity, seats_taken,"
        "   meeting)"
        "  SELECT slot_id, office_code, service_code, kind, starts_at, ends_at, capacity, 0, meeting::jsonb"
        "  FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[], $7::int[],"
        "   $8::text[]) AS s (slot_id, office_code, service_code, kind, starts_at, ends_at, capacity, meeting)"
        "  RETURNING slot_id)"
        " INSERT INTO booking (slot_id, officer_id, during)"
        " SELECT b.slot_id, b.officer_id, tstzrange(b.lo, b.hi)"
        " FROM unnest($9::uuid[], $10::text[], $11::timestamptz[], $12::timestamptz[])"
        "  AS b (slot_id, officer_id, lo, hi)"
        " JOIN new_slot USING (slot_id)"
        " ON CONFLICT DO NOTHING RETURNING slot_id, officer_id",
        [s.slot_id for s in slots], [s.office_code for s in slots], [s.service.code for s in slots],
        [s.service.kind for s in slots], [s.starts_at for s in slots], [s.ends_at for s in slots],
        [s.service.capacity for s in slots], [json.dumps(s.meeting) for s in slots],
        [b[0] for b in bookings], [b[1] for b in bookings], [b[2] for b in bookings], [b[3] for b in bookings],
    )  # fmt: skip
    return {(r["slot_id"], r["officer_id"]) for r in rows}


async def drop_slots(conn: DbConnection, slot_ids: Sequence[UUID]) -> None:
    """Delete slots this transaction inserted, with their bookings (placed again after a clash)."""
    if slot_ids:
        await conn.execute(
            "WITH gone AS (DELETE FROM booking WHERE slot_id = ANY($1::uuid[]))"
            " DELETE FROM slot WHERE slot_id = ANY($1::uuid[])",
            list(slot_ids),
        )


async def add_seats(conn: DbConnection, seats: Sequence[tuple[UUID, UUID]], now: datetime) -> None:
    """Give each (ticket, slot) a live seat, count it in its slot and mark the ticket assigned, in
    one statement.

    A ticket moved out of a webinar and back into it finds its old seat row: it is made live
    again (the primary key is (ticket, slot)). A slot's CHECK refuses more seats than capacity."""
    if not seats:
        return
    await conn.execute(
        "WITH counted AS ("
        "  UPDATE slot SET seats_taken = seats_taken + c.n"
        "  FROM (SELECT slot_id, count(*)::int AS n FROM unnest($2::uuid[]) AS x (slot_id) GROUP BY slot_id) AS c"
        "  WHERE slot.slot_id = c.slot_id),"
        " assigned AS ("
        "  UPDATE request SET status = 'assigned', waitlisted_at = NULL WHERE ticket_id = ANY($1::uuid[]))"
        " INSERT INTO seat (ticket_id, slot_id, assigned_at)"
        " SELECT t, s, $3 FROM unnest($1::uuid[], $2::uuid[]) AS x (t, s)"
        " ON CONFLICT (ticket_id, slot_id) DO UPDATE"
        "  SET live = true, assigned_at = EXCLUDED.assigned_at, released_at = NULL",
        [t for t, _ in seats], [s for _, s in seats], now,
    )  # fmt: skip


async def lock_open_webinars(
    conn: DbConnection,
    lines: Sequence[tuple[str, str, datetime, datetime]],
    *,
    leaving: UUID | None = None,
) -> dict[tuple[str, str], list[tuple[OpenWebinar, SlotRecord]]]:
    """Live webinars with a free seat, per (office, service, from, to): starting at or after `from`
    and ending by `to`; not `leaving`, the one a rescheduled ticket leaves. Locked until commit
    (in slot id order, the same in every transaction), so the free seats counted stay free."""
    if not lines:
        return {}
    rows = await conn.fetch(
        f"SELECT {_SLOT_COLUMNS}, s.capacity - s.seats_taken AS seats_left FROM slot s"
        " JOIN unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[])"
        "  AS w (office_code, service_code, lo, hi)"
        "  ON s.office_code = w.office_code AND s.service_code = w.service_code"
        "  AND s.starts_at >= w.lo AND s.ends_at <= w.hi"
        " WHERE s.live AND s.kind = 'webinar' AND s.seats_taken < s.capacity AND s.slot_id IS DISTINCT FROM $5"
        " ORDER BY s.slot_id FOR UPDATE OF s",
        [line[0] for line in lines], [line[1] for line in lines], [line[2] for line in lines],
        [line[3] for line in lines], leaving,
    )  # fmt: skip
    found: dict[tuple[str, str], list[tuple[OpenWebinar, SlotRecord]]] = {}
    for r in sorted(rows, key=lambda r: r["starts_at"]):
        slot = _slot(r)
        webinar = OpenWebinar(str(slot.slot_id), slot.starts_at, slot.ends_at, r["seats_left"])
        found.setdefault((slot.office_code, slot.service_code), []).append((webinar, slot))
    return found


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
    status: RequestStatus


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
        status=RequestStatus(row["status"]),
    )


async def add_requests(
    conn: DbConnection, accepted: Sequence[tuple[RequestRecord, datetime]], now: datetime
) -> dict[UUID, tuple[str, bool]]:
    """Store accepted tickets as waiting (since `now`) in one statement, their `arrival` in the order
    given. For each one that was not known already: the status stored, and whether tickets of its
    office and service were waiting before it.

    A ticket whose TicketCancelled came first (early_cancellation) is stored as cancelled."""
    if not accepted:
        return {}
    rows = await conn.fetch(
        "INSERT INTO request (ticket_id, ticket_code, office_code, service_code, stakeholder_ref,"
        " preferred_windows, accepted_at, status, waitlisted_at)"
        " SELECT r.ticket_id, r.ticket_code, r.office_code, r.service_code, r.stakeholder_ref, r.windows::jsonb,"
        "  r.accepted_at, c.status, CASE WHEN c.status = 'waitlisted' THEN $8::timestamptz END"
        " FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[])"
        "  WITH ORDINALITY AS r (ticket_id, ticket_code, office_code, service_code, stakeholder_ref, windows,"
        "   accepted_at, n)"
        " CROSS JOIN LATERAL (SELECT CASE WHEN EXISTS (SELECT 1 FROM early_cancellation e"
        "  WHERE e.ticket_id = r.ticket_id) THEN 'cancelled' ELSE 'waitlisted' END AS status) AS c"
        " ORDER BY r.n"
        " ON CONFLICT (ticket_id) DO NOTHING"
        # Rows this statement inserts are not visible to its RETURNING: only earlier waiting tickets.
        " RETURNING ticket_id, status, EXISTS (SELECT 1 FROM request w WHERE w.status = 'waitlisted'"
        "  AND w.office_code = request.office_code AND w.service_code = request.service_code"
        "  AND w.arrival < request.arrival) AS behind",
        [r.ticket_id for r, _ in accepted], [r.ticket_code for r, _ in accepted],
        [r.office_code for r, _ in accepted], [r.service_code for r, _ in accepted],
        [r.stakeholder_ref for r, _ in accepted], [_windows_json(r.windows) for r, _ in accepted],
        [at for _, at in accepted], now,
    )  # fmt: skip
    return {r["ticket_id"]: (RequestStatus(r["status"]), r["behind"]) for r in rows}


def _windows_json(windows: tuple[Interval, ...]) -> str:
    return json.dumps([{"start": s.isoformat(), "end": e.isoformat()} for s, e in windows])


async def set_requests(conn: DbConnection, statuses: Sequence[tuple[UUID, RequestStatus]], now: datetime) -> None:
    """Set the status of tickets in one statement (a waiting ticket keeps the time it started waiting)."""
    if not statuses:
        return
    await conn.execute(
        "UPDATE request r SET status = u.status,"
        " waitlisted_at = CASE WHEN u.status = 'waitlisted' THEN coalesce(r.waitlisted_at, $3) ELSE NULL END"
        " FROM unnest($1::uuid[], $2::text[]) AS u (ticket_id, status) WHERE r.ticket_id = u.ticket_id",
        [t for t, _ in statuses], [status for _, status in statuses], now,
    )  # fmt: skip


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
    conn: DbConnection,
    ticket_id: UUID,
    status: RequestStatus,
    now: datetime,
    windows: tuple[Interval, ...] | None = None,
) -> None:
    await conn.execute(
        "UPDATE request SET status = $2,"
        " waitlisted_at = CASE WHEN $2 = 'waitlisted' THEN coalesce(waitlisted_at, $3) ELSE NULL END,"
        " preferred_windows = coalesce($4::jsonb, preferred_windows) WHERE ticket_id = $1",
        ticket_id, status, now,
        _windows_json(windows) if windows else None,
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


async def lines_waiting(conn: DbConnection, firsts: Sequence[tuple[str, str, UUID]]) -> set[tuple[str, str]]:
    """Of these (office, service, ticket), the office and service pairs with tickets waiting since
    before that ticket, in one statement."""
    if not firsts:
        return set()
    rows = await conn.fetch(
        "SELECT g.office_code, g.service_code FROM unnest($1::text[], $2::text[], $3::uuid[])"
        "  AS g (office_code, service_code, ticket_id)"
        " WHERE EXISTS (SELECT 1 FROM request r WHERE r.status = 'waitlisted'"
        "  AND r.office_code = g.office_code AND r.service_code = g.service_code"
        "  AND r.arrival < (SELECT arrival FROM request WHERE ticket_id = g.ticket_id))",
        [f[0] for f in firsts], [f[1] for f in firsts], [f[2] for f in firsts],
    )  # fmt: skip
    return {(r["office_code"], r["service_code"]) for r in rows}


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


# -------------------------------------------------------------------- officers


async def officer_slots(
    conn: DbConnection, officer_id: str, ending_after: datetime, starting_before: datetime, limit: int
) -> list[OfficerSlot]:
    """The live slots the officer holds that end after `ending_after` and start before
    `starting_before`, in time order, with the live tickets' codes.

    The officer's bookings are one btree range (booking_officer_start): a booking starts
    with its slot and no slot lasts a day."""
    rows = await conn.fetch(
        "SELECT s.slot_id, s.office_code, o.name AS office_name, o.zone, s.service_code,"
        "  coalesce(t.name_id, s.service_code) AS service_name, s.kind, s.starts_at, s.ends_at, s.meeting,"
        "  coalesce((SELECT array_agg(r.ticket_code ORDER BY r.ticket_code) FROM seat"
        "   JOIN request r USING (ticket_id) WHERE seat.slot_id = s.slot_id AND seat.live), '{}') AS ticket_codes"
        " FROM booking b JOIN slot s USING (slot_id)"
        " JOIN office o ON o.office_code = s.office_code"
        " LEFT JOIN service_type t ON t.service_code = s.service_code"
        " WHERE b.live AND b.officer_id = $1 AND lower(b.during) >= $2::timestamptz - interval '1 day'"
        "  AND lower(b.during) < $3 AND s.live AND s.ends_at > $2"
        " ORDER BY s.starts_at, s.slot_id LIMIT $4",
        officer_id, ending_after, starting_before, limit,
    )  # fmt: skip
    return [
        OfficerSlot(
            slot_id=r["slot_id"],
            office_code=r["office_code"],
            office_name=r["office_name"],
            zone=r["zone"],
            service_code=r["service_code"],
            service_name=r["service_name"],
            kind=r["kind"],
            starts_at=r["starts_at"],
            ends_at=r["ends_at"],
            ticket_codes=tuple(r["ticket_codes"]),
            plan=_slot(r).plan(),
        )
        for r in rows
    ]


# ---------------------------------------------------------------------- rounds


async def open_round(conn: DbConnection, office_code: str, round_at: datetime) -> bool:
    """Whether the office's round at `round_at` is still to be decided (its row made if new).

    The row stays share-locked until commit: a round being decided (FOR UPDATE) makes this wait,
    and once it is done a ticket goes to the next round, so none is left behind by a round."""
    await conn.execute(
        "INSERT INTO scheduling_round (office_code, round_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        office_code,
        round_at,
    )
    status: str = await conn.fetchval(
        "SELECT status FROM scheduling_round WHERE office_code = $1 AND round_at = $2 FOR SHARE", office_code, round_at
    )
    return status == "pending"


async def hold_for_round(conn: DbConnection, ticket_ids: Sequence[UUID], round_at: datetime) -> None:
    await conn.execute(
        "UPDATE request SET status = 'awaiting_round', round_at = $2, waitlisted_at = NULL"
        " WHERE ticket_id = ANY($1::uuid[])",
        list(ticket_ids),
        round_at,
    )


async def lock_round(conn: DbConnection, office_code: str, round_at: datetime) -> str | None:
    """The round's status, its row locked until commit (one decision per round, across replicas)."""
    status: str | None = await conn.fetchval(
        "SELECT status FROM scheduling_round WHERE office_code = $1 AND round_at = $2 FOR UPDATE",
        office_code,
        round_at,
    )
    return status


async def round_requests(
    conn: DbConnection, office_code: str, round_at: datetime, services: Sequence[str], *, lock: bool = False
) -> list[RequestRecord]:
    """What a round decides, first come first served: the office's tickets awaiting this round (or
    an earlier one) and those waitlisted on its round services (they join the next round)."""
    rows = await conn.fetch(
        "SELECT * FROM request WHERE office_code = $1"
        " AND ((status = 'awaiting_round' AND round_at <= $2) OR (status = 'waitlisted' AND service_code = ANY($3)))"
        # SKIP LOCKED: a ticket another transaction holds (being cancelled) is not waited for; it
        # is left for the next round (left_behind), so that the two cannot deadlock.
        " ORDER BY arrival" + (" FOR UPDATE SKIP LOCKED" if lock else ""),
        office_code,
        round_at,
        list(services),
    )
    return [_request(r) for r in rows]


async def left_behind(conn: DbConnection, office_code: str, round_at: datetime) -> bool:
    """Whether tickets still await this round or an earlier one (skipped while held elsewhere)."""
    found: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM request WHERE office_code = $1 AND status = 'awaiting_round' AND round_at <= $2)",
        office_code,
        round_at,
    )
    return found


async def overdue_rounds(conn: DbConnection, now: datetime, grace: timedelta) -> list[tuple[str, str]]:
    """(office, service) lines with tickets whose round is done or overdue: the sweep's safety net
    (a round that skipped a ticket held elsewhere schedules the next one itself)."""
    rows = await conn.fetch(
        "SELECT DISTINCT r.office_code, r.service_code FROM request r"
        " LEFT JOIN scheduling_round s ON s.office_code = r.office_code AND s.round_at = r.round_at"
        " WHERE r.status = 'awaiting_round' AND (s.status IS DISTINCT FROM 'pending' OR r.round_at < $1)"
        " ORDER BY 1, 2",
        now - grace,
    )
    return [(r["office_code"], r["service_code"]) for r in rows]


@dataclass(frozen=True)
class RoundFigures:
    tickets: int
    placed: int
    windows_honoured: int
    method: str
    fallback_reason: str | None
    solve_seconds: float


async def round_done(
    conn: DbConnection, office_code: str, round_at: datetime, figures: RoundFigures, now: datetime
) -> None:
    await conn.execute(
        "UPDATE scheduling_round SET status = 'done', tickets = $3, placed = $4, windows_honoured = $5,"
        " method = $6, fallback_reason = $7, solve_seconds = $8, decided_at = $9"
        " WHERE office_code = $1 AND round_at = $2",
        office_code, round_at, figures.tickets, figures.placed, figures.windows_honoured,
        figures.method, figures.fallback_reason, figures.solve_seconds, now,
    )  # fmt: skip


async def bookings_between(
    conn: DbConnection, officer_ids: Sequence[str], start: datetime, end: datetime
) -> dict[str, list[Interval]]:
    """Every live booking of these officers overlapping [start, end): what a round must keep."""
    rows = await conn.fetch(
        "SELECT officer_id, lower(during) AS s, upper(during) AS e FROM booking"
        " WHERE live AND officer_id = ANY($1::text[]) AND lower(during) < $3 AND upper(during) > $2",
        list(officer_ids),
        start,
        end,
    )
    booked: dict[str, list[Interval]] = {}
    for r in rows:
        booked.setdefault(r["officer_id"], []).append((r["s"], r["e"]))
    return booked
