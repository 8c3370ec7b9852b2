"""Scheduler defects, at the use case on a real PostgreSQL (no Kafka): events out of
order, a webinar ticket moved back into a webinar it held, and the waitlist's order
under new tickets and concurrent refills."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from glv_runtime.unit_of_work import Database
from glv_scheduler.handlers import SchedulerUseCase
from glv_schemas.base import TimeWindow
from glv_schemas.events import RescheduleApproved, TicketAccepted, TicketCancelled
from tests.conftest import Clock
from tests.integration.scheduler_use_case import (
    apply,
    inbound,
    published_since,
    scheduler_database,
    until_another_transaction_waits,
    use_case_at,
)

ZONE = ZoneInfo("Asia/Makassar")
# Local midnight of a Tuesday; no national holiday in the weeks that follow.
DAY = datetime(2031, 6, 10, tzinfo=ZONE)
CONSULTATION = "lelang"  # 45 minutes + 15 of buffer: one per officer in the 09:00-10:00 hour
WEBINAR = "sosialisasi"  # 60 minutes, two seats: one per officer in that hour


def _catalog(path: Path) -> Path:
    every_day = {day: ["09:00-10:00"] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    catalog = {
        "working_hours": every_day,
        "services": {
            CONSULTATION: {"name_id": "Lelang", "name_en": "Auctions", "kind": "consultation",
                           "duration_minutes": 45, "buffer_minutes": 15, "min_notice_hours": 0,
                           "booking_horizon_days": 1},
            WEBINAR: {"name_id": "Sosialisasi", "name_en": "Webinar", "kind": "webinar", "duration_minutes": 60,
                      "buffer_minutes": 0, "min_notice_hours": 0, "booking_horizon_days": 10, "capacity": 2},
        },
        "offices": [
            {"office_code": "TNY", "name": "KPKNL Uji", "city": "Palopo", "zone": "Asia/Makassar",
             "services": [CONSULTATION, WEBINAR],
             "officers": [{"officer_id": f"TNY-{n:02d}", "skills": [CONSULTATION, WEBINAR]} for n in (1, 2)]},
        ],
    }  # fmt: skip
    path.write_text(yaml.safe_dump(catalog), encoding="utf-8")
    return path


@pytest.fixture
async def db(scheduler_database_url: str, tmp_path: Path) -> AsyncIterator[Database]:
    async with scheduler_database(scheduler_database_url, _catalog(tmp_path / "catalog.yaml")) as database:
        yield database


@pytest.fixture
def clock() -> Clock:
    return Clock(DAY)


@pytest.fixture
def use_case(clock: Clock) -> SchedulerUseCase:
    return use_case_at(clock)


# ------------------------------------------------------------------- helpers


def window(day: int) -> TimeWindow:
    """The office's working hour on DAY + day."""
    start = DAY + timedelta(days=day, hours=9)
    return TimeWindow(start=start, end=start + timedelta(hours=1))


_codes = itertools.count(1)


def accepted(ticket_id: uuid.UUID, service: str = CONSULTATION, windows: tuple[int, ...] = ()) -> TicketAccepted:
    return TicketAccepted(
        ticket_id=ticket_id,
        ticket_code=f"TNY-310610-{next(_codes):04d}",
        portal_id="sim-portal",
        office_code="TNY",
        service_code=service,
        kind="webinar" if service == WEBINAR else "consultation",
        stakeholder_ref=f"ref-{ticket_id.hex[:8]}",
        locale="id",
        preferred_windows=[window(d) for d in windows],
        filed_at=DAY,
        accepted_at=DAY,
    )


def cancelled(ticket_id: uuid.UUID) -> TicketCancelled:
    return TicketCancelled(
        ticket_id=ticket_id, ticket_code="TNY-310610-9999", portal_id="sim-portal", office_code="TNY", cancelled_at=DAY
    )


def reschedule(ticket_id: uuid.UUID, service: str, day: int) -> RescheduleApproved:
    return RescheduleApproved(
        ticket_id=ticket_id,
        ticket_code="TNY-310610-9999",
        office_code="TNY",
        service_code=service,
        preferred_windows=[window(day)],
        approved_at=DAY,
    )


async def status_of(db: Database, ticket_id: uuid.UUID) -> str | None:
    return await db.pool.fetchval("SELECT status FROM request WHERE ticket_id = $1", ticket_id)  # type: ignore[no-any-return]


async def live_seats(db: Database, ticket_id: uuid.UUID) -> list[uuid.UUID]:
    rows = await db.pool.fetch("SELECT slot_id FROM seat WHERE ticket_id = $1 AND live", ticket_id)
    return [r["slot_id"] for r in rows]


# ------------------------------------------- 1. a cancellation before its acceptance


async def test_a_cancellation_that_overtakes_its_acceptance_books_nothing(
    db: Database, use_case: SchedulerUseCase
) -> None:
    ticket = uuid.uuid4()
    # The TicketAccepted was dead-lettered; the TicketCancelled that followed it arrives first.
    assert await apply(db, use_case, cancelled(ticket)) == []
    # The TicketAccepted is replayed from the dead letters later.
    assert await apply(db, use_case, accepted(ticket)) == []
    assert await live_seats(db, ticket) == []
    assert await status_of(db, ticket) == "cancelled"
    assert await db.pool.fetchval("SELECT count(*) FROM booking WHERE live") == 0
    # A second copy of either changes nothing either.
    assert await apply(db, use_case, accepted(ticket), cancelled(ticket)) == []
    assert await live_seats(db, ticket) == []


async def test_a_cancellation_in_the_same_batch_before_its_acceptance_books_nothing(
    db: Database, use_case: SchedulerUseCase
) -> None:
    ticket = uuid.uuid4()
    assert await apply(db, use_case, cancelled(ticket), accepted(ticket)) == []
    assert await live_seats(db, ticket) == []
    assert await status_of(db, ticket) == "cancelled"


# ------------------------------------- 2. a webinar ticket back into a webinar it held


async def test_a_webinar_ticket_moved_back_into_a_webinar_it_held_has_one_live_seat_there(
    db: Database, use_case: SchedulerUseCase
) -> None:
    mover, stayer = uuid.uuid4(), uuid.uuid4()
    [(kind, first)] = await apply(db, use_case, accepted(mover, WEBINAR, windows=(0,)))
    assert kind == "SlotAssigned"
    webinar_a = uuid.UUID(first["slot_id"])
    [(kind, second)] = await apply(db, use_case, accepted(stayer, WEBINAR, windows=(0,)))
    assert kind == "SlotAssigned" and uuid.UUID(second["slot_id"]) == webinar_a  # A is full now

    moved = await apply(db, use_case, reschedule(mover, WEBINAR, day=1))
    assert [k for k, _ in moved] == ["SlotAssigned", "SlotReleased"]
    webinar_b = uuid.UUID(moved[0][1]["slot_id"])
    assert webinar_b != webinar_a and moved[1][1]["slot_id"] == str(webinar_a)

    back = await apply(db, use_case, reschedule(mover, WEBINAR, day=0))
    assert [k for k, _ in back] == ["SlotAssigned", "SlotReleased"]
    assert back[0][1]["slot_id"] == str(webinar_a) and back[0][1]["replaces_slot_id"] == str(webinar_b)
    assert back[1][1]["slot_id"] == str(webinar_b)

    assert await live_seats(db, mover) == [webinar_a]
    assert await live_seats(db, stayer) == [webinar_a]
    a = await db.pool.fetchrow("SELECT live, seats_taken FROM slot WHERE slot_id = $1", webinar_a)
    assert a is not None and a["live"] and a["seats_taken"] == 2
    assert await db.pool.fetchval("SELECT count(*) FROM seat WHERE slot_id = $1 AND live", webinar_a) == 2
    assert not await db.pool.fetchval("SELECT live FROM slot WHERE slot_id = $1", webinar_b)


async def test_a_rescheduled_webinar_ticket_leaves_its_webinar(db: Database, use_case: SchedulerUseCase) -> None:
    ticket = uuid.uuid4()
    [(_, first)] = await apply(db, use_case, accepted(ticket, WEBINAR, windows=(0,)))
    webinar_a = uuid.UUID(first["slot_id"])
    # A still has a free seat, but the ticket asks to be moved: it gets another webinar.
    moved = await apply(db, use_case, reschedule(ticket, WEBINAR, day=1))
    assert [k for k, _ in moved] == ["SlotAssigned", "SlotReleased"]
    [seat] = await live_seats(db, ticket)
    assert seat != webinar_a and seat == uuid.UUID(moved[0][1]["slot_id"])
    assert not await db.pool.fetchval("SELECT live FROM slot WHERE slot_id = $1", webinar_a)


# --------------------------------------------------- 3. the waitlist, first come first served


async def test_a_new_ticket_does_not_take_freed_capacity_ahead_of_the_waitlist(
    db: Database, use_case: SchedulerUseCase, clock: Clock
) -> None:
    first, second, waiting1, waiting2, newcomer = (uuid.uuid4() for _ in range(5))
    placed = await apply(db, use_case, accepted(first), accepted(second), accepted(waiting1), accepted(waiting2))
    assert [k for k, _ in placed] == ["SlotAssigned", "SlotAssigned", "SchedulingFailed", "SchedulingFailed"]
    # A day later a new day is inside the horizon (two more slots) and the sweep has not run yet.
    clock.now = DAY + timedelta(days=1)
    published = await apply(db, use_case, accepted(newcomer))
    assert await status_of(db, waiting1) == "assigned"
    assert await status_of(db, waiting2) == "assigned"
    assert await status_of(db, newcomer) == "waitlisted"
    assert await live_seats(db, newcomer) == []
    by_ticket = {(kind, data["ticket_id"]) for kind, data in published}
    assert by_ticket == {
        ("SlotAssigned", str(waiting1)),
        ("SlotAssigned", str(waiting2)),
        ("SchedulingFailed", str(newcomer)),
    }
    [failed] = [data for kind, data in published if kind == "SchedulingFailed"]
    assert failed["waitlisted"] and failed["reason"] == "no_capacity"


async def test_a_new_ticket_is_placed_at_once_when_nobody_waits(db: Database, use_case: SchedulerUseCase) -> None:
    [(kind, _)] = await apply(db, use_case, accepted(uuid.uuid4()))
    assert kind == "SlotAssigned"


async def test_a_waiting_ticket_rescheduled_does_not_overtake_the_ones_before_it(
    db: Database, use_case: SchedulerUseCase, clock: Clock
) -> None:
    tickets = [uuid.uuid4() for _ in range(5)]
    await apply(db, use_case, *(accepted(t) for t in tickets))
    waiting = [t for t in tickets if await status_of(db, t) == "waitlisted"]
    assert waiting == tickets[2:]
    clock.now = DAY + timedelta(days=1)  # two slots enter the horizon
    await apply(db, use_case, reschedule(waiting[2], CONSULTATION, day=1))
    assert [await status_of(db, t) for t in waiting] == ["assigned", "assigned", "waitlisted"]


async def test_concurrent_refills_serve_the_waitlist_once_each_and_in_order(
    db: Database, use_case: SchedulerUseCase
) -> None:
    booked1, booked2, waiting1, waiting2 = (uuid.uuid4() for _ in range(4))
    await apply(db, use_case, accepted(booked1), accepted(booked2), accepted(waiting1), accepted(waiting2))
    assert [await status_of(db, t) for t in (waiting1, waiting2)] == ["waitlisted", "waitlisted"]
    last = await db.pool.fetchval("SELECT max(id) FROM glv_outbox")

    # Two replicas each release one slot at the same moment; each refills the waitlist.
    async with db.unit_of_work() as first:
        await use_case.router().apply(first, [inbound(cancelled(booked1))])
        assert await first.conn.fetchval("SELECT status FROM request WHERE ticket_id = $1", waiting1) == "assigned"
        second = asyncio.create_task(apply(db, use_case, cancelled(booked2)))
        await until_another_transaction_waits(db)  # the second replica's refill waits while the first holds it
    await asyncio.wait_for(second, 10)

    assert await status_of(db, waiting1) == "assigned"
    assert await status_of(db, waiting2) == "assigned"
    published = await published_since(db, last)
    assigned = [data["ticket_id"] for kind, data in published if kind == "SlotAssigned"]
    assert assigned == [str(waiting1), str(waiting2)]  # each once, first come first served
    assert len(await live_seats(db, waiting1)) == 1 and len(await live_seats(db, waiting2)) == 1


async def test_concurrent_sweeps_assign_each_waiting_ticket_once(
    db: Database, use_case: SchedulerUseCase, clock: Clock
) -> None:
    tickets = [uuid.uuid4() for _ in range(6)]
    await apply(db, use_case, *(accepted(t) for t in tickets))
    last = await db.pool.fetchval("SELECT max(id) FROM glv_outbox")
    clock.now = DAY + timedelta(days=1)  # two slots enter the horizon
    await asyncio.gather(use_case.sweep_waitlist(db), use_case.sweep_waitlist(db))
    published = await published_since(db, last)
    assigned = [data["ticket_id"] for kind, data in published if kind == "SlotAssigned"]
    assert assigned == [str(tickets[2]), str(tickets[3])]
    assert [await status_of(db, t) for t in tickets[2:]] == ["assigned", "assigned", "waitlisted", "waitlisted"]
