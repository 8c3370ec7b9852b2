"""Batched assignment at the use case on a real PostgreSQL (no Kafka): a batch's acceptances are
placed together, in arrival order; events of one ticket keep their order within the batch;
webinars and multi-officer meetings; a clash with another replica places again only the tickets
of the office it concerns."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from prometheus_client import REGISTRY

from glv_runtime.unit_of_work import Database
from glv_scheduler import store
from glv_scheduler.catalog import read_catalog
from glv_scheduler.handlers import SchedulerUseCase
from glv_schemas.events import TicketAccepted, TicketCancelled
from tests.conftest import Clock
from tests.integration.scheduler_use_case import (
    apply,
    inbound,
    scheduler_database,
    until_another_transaction_waits,
    use_case_at,
)

ZONE = ZoneInfo("Asia/Makassar")
DAY = datetime(2031, 6, 10, tzinfo=ZONE)  # a Tuesday's local midnight; no holiday in the days after
HOUR = timedelta(hours=9)  # every office works 09:00-10:00, every day


def _catalog(path: Path) -> Path:
    every_day = {day: ["09:00-10:00"] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    catalog = {
        "working_hours": every_day,
        "services": {
            "lelang": {"name_id": "Lelang", "name_en": "Auctions", "kind": "consultation", "duration_minutes": 45,
                       "buffer_minutes": 15, "min_notice_hours": 0, "booking_horizon_days": 3},
            "sosialisasi": {"name_id": "Sosialisasi", "name_en": "Webinar", "kind": "webinar",
                            "duration_minutes": 60, "buffer_minutes": 0, "min_notice_hours": 0,
                            "booking_horizon_days": 10, "capacity": 2},
            "rapat": {"name_id": "Rapat", "name_en": "Meeting", "kind": "internal_meeting", "duration_minutes": 60,
                      "buffer_minutes": 0, "min_notice_hours": 0, "booking_horizon_days": 10,
                      "officers_required": 2},
        },
        "offices": [
            {"office_code": "TNY", "name": "KPKNL Uji", "city": "Palopo", "zone": "Asia/Makassar",
             "services": ["lelang", "sosialisasi", "rapat"],
             "officers": [{"officer_id": f"TNY-{n:02d}", "skills": ["lelang", "sosialisasi", "rapat"]}
                          for n in (1, 2)]},
            {"office_code": "TWO", "name": "KPKNL Dua", "city": "Palu", "zone": "Asia/Makassar",
             "services": ["lelang"], "officers": [{"officer_id": "TWO-01", "skills": ["lelang"]}]},
        ],
    }  # fmt: skip
    path.write_text(yaml.safe_dump(catalog), encoding="utf-8")
    return path


@pytest.fixture
async def db(scheduler_database_url: str, tmp_path: Path) -> AsyncIterator[Database]:
    async with scheduler_database(scheduler_database_url, _catalog(tmp_path / "catalog.yaml")) as database:
        yield database


def scheduler() -> SchedulerUseCase:
    return use_case_at(Clock(DAY))


@pytest.fixture
def use_case() -> SchedulerUseCase:
    return scheduler()


_codes = itertools.count(1)


def accepted(ticket_id: uuid.UUID, service: str = "lelang", office: str = "TNY") -> TicketAccepted:
    return TicketAccepted(
        ticket_id=ticket_id,
        ticket_code=f"{office}-310610-{next(_codes):04d}",
        portal_id="sim-portal",
        office_code=office,
        service_code=service,
        kind={"sosialisasi": "webinar", "rapat": "internal_meeting"}.get(service, "consultation"),  # type: ignore[arg-type]
        stakeholder_ref=f"ref-{ticket_id.hex[:8]}",
        locale="id",
        preferred_windows=[],
        filed_at=DAY,
        accepted_at=DAY,
    )


def cancelled(ticket_id: uuid.UUID) -> TicketCancelled:
    return TicketCancelled(
        ticket_id=ticket_id, ticket_code="TNY-310610-9999", portal_id="sim-portal", office_code="TNY", cancelled_at=DAY
    )


async def overlaps(db: Database) -> int:
    return await db.pool.fetchval(  # type: ignore[no-any-return]
        "SELECT count(*) FROM booking a JOIN booking b ON a.officer_id = b.officer_id"
        " AND a.slot_id < b.slot_id AND a.live AND b.live AND a.during && b.during"
    )


def slots(published: list[tuple[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    return {data["ticket_id"]: data for kind, data in published if kind == "SlotAssigned"}


def start(data: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(data["starts_at"])


def clashes() -> float:
    return REGISTRY.get_sample_value("glv_scheduler_booking_clashes_total") or 0.0


# --------------------------------------------------------------------------- tests


async def test_a_batch_is_placed_first_come_first_served(db: Database, use_case: SchedulerUseCase) -> None:
    tickets = [uuid.uuid4() for _ in range(8)]
    published = await apply(db, use_case, *(accepted(t) for t in tickets))
    # Two officers, one session a day each, three days: the first six get them, in order.
    assert [kind for kind, _ in published] == ["SlotAssigned"] * 6 + ["SchedulingFailed"] * 2
    assert [data["ticket_id"] for _, data in published] == [str(t) for t in tickets]
    starts = [datetime.fromisoformat(data["starts_at"]) for _, data in published[:6]]
    assert starts == sorted(starts) and starts[0] == DAY + HOUR and starts[-1] == DAY + timedelta(days=2) + HOUR
    assert all(data["waitlisted"] and data["reason"] == "no_capacity" for _, data in published[6:])
    statuses = await db.pool.fetch("SELECT status FROM request ORDER BY arrival")
    assert [r["status"] for r in statuses] == ["assigned"] * 6 + ["waitlisted"] * 2
    waited = await db.pool.fetchval(
        "SELECT count(*) FROM request WHERE status = 'waitlisted' AND waitlisted_at = $1", DAY
    )
    assert waited == 2
    assert await overlaps(db) == 0
    assert await db.pool.fetchval("SELECT count(*) FROM seat WHERE live") == 6


async def test_a_ticket_accepted_twice_in_a_batch_is_placed_once(db: Database, use_case: SchedulerUseCase) -> None:
    ticket = uuid.uuid4()
    published = await apply(db, use_case, accepted(ticket), accepted(ticket))
    assert [kind for kind, _ in published] == ["SlotAssigned"]


async def test_a_cancellation_after_its_acceptance_in_one_batch_sees_the_slot(
    db: Database, use_case: SchedulerUseCase
) -> None:
    ticket, other = uuid.uuid4(), uuid.uuid4()
    published = await apply(db, use_case, accepted(ticket), cancelled(ticket), accepted(other))
    assert [(kind, data["ticket_id"]) for kind, data in published] == [
        ("SlotAssigned", str(ticket)),
        ("SlotReleased", str(ticket)),
        ("SlotAssigned", str(other)),
    ]
    # The released time went to the ticket after it.
    assert published[2][1]["starts_at"] == published[0][1]["starts_at"]
    assert await db.pool.fetchval("SELECT status FROM request WHERE ticket_id = $1", ticket) == "cancelled"
    assert await db.pool.fetchval("SELECT count(*) FROM seat WHERE ticket_id = $1 AND live", ticket) == 0


async def test_webinars_in_one_batch_fill_their_seats_before_new_ones_open(
    db: Database, use_case: SchedulerUseCase
) -> None:
    tickets = [uuid.uuid4() for _ in range(5)]
    published = slots(await apply(db, use_case, *(accepted(t, "sosialisasi") for t in tickets)))
    by_slot: dict[str, list[str]] = {}
    for t in tickets:
        by_slot.setdefault(published[str(t)]["slot_id"], []).append(str(t))
    # Two seats each: 1+2 in one webinar, 3+4 in another at the same hour (the other officer), 5 the next day.
    assert sorted(by_slot.values()) == sorted([[str(tickets[0]), str(tickets[1])], [str(tickets[2]), str(tickets[3])],
                                               [str(tickets[4])]])  # fmt: skip
    assert published[str(tickets[4])]["starts_at"] > published[str(tickets[0])]["starts_at"]
    rows = await db.pool.fetch(
        "SELECT s.seats_taken, count(t.ticket_id) AS seats FROM slot s JOIN seat t ON t.slot_id = s.slot_id AND t.live"
        " GROUP BY s.slot_id, s.seats_taken"
    )
    assert sorted((r["seats_taken"], r["seats"]) for r in rows) == [(1, 1), (2, 2), (2, 2)]
    # A later batch fills the third webinar's free seat.
    later = uuid.uuid4()
    [again] = (await apply(db, use_case, accepted(later, "sosialisasi"))) or [("", {})]
    assert again[1]["slot_id"] == published[str(tickets[4])]["slot_id"]


async def test_a_meeting_in_a_batch_books_every_officer_it_needs(db: Database, use_case: SchedulerUseCase) -> None:
    meeting, consult1, consult2 = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    published = slots(await apply(db, use_case, accepted(consult1), accepted(meeting, "rapat"), accepted(consult2)))
    # The first consultation takes one officer at 09:00 on day 0; the meeting needs both: day 1.
    assert start(published[str(meeting)]) == DAY + timedelta(days=1) + HOUR
    booked = await db.pool.fetch(
        "SELECT officer_id FROM booking WHERE slot_id = $1 AND live ORDER BY 1",
        uuid.UUID(published[str(meeting)]["slot_id"]),
    )
    assert [r["officer_id"] for r in booked] == ["TNY-01", "TNY-02"]
    assert start(published[str(consult2)]) == DAY + HOUR  # the other officer, day 0
    assert await overlaps(db) == 0


async def test_a_clash_places_again_only_the_tickets_of_its_office(db: Database, use_case: SchedulerUseCase) -> None:
    """Another replica books an officer while this batch is placed: the batch's ticket whose booking
    is refused, and the later ones of its office, are placed again on fresh bookings; the other
    office's ticket keeps its placement. Nothing overlaps, nobody passes an earlier ticket."""
    theirs, first, elsewhere, second = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    before = clashes()
    other = scheduler()  # another replica
    async with db.unit_of_work() as replica:
        await other.router().apply(replica, [inbound(accepted(theirs))])  # books TNY-01 at 09:00, uncommitted
        ours = asyncio.create_task(
            apply(db, use_case, accepted(first), accepted(elsewhere, office="TWO"), accepted(second))
        )
        await until_another_transaction_waits(db)  # our batch read the bookings (not theirs), waits on its insert
        assert not ours.done()
    published = slots(await asyncio.wait_for(ours, 10))
    assert clashes() > before
    # The one refused and the one after it in its office were placed again, in order.
    assert start(published[str(first)]) == DAY + HOUR
    assert published[str(first)]["officer_id"] == "TNY-02"
    assert start(published[str(second)]) == DAY + timedelta(days=1) + HOUR
    # The other office's ticket kept its slot (09:00 on day 0: nothing else wanted TWO-01).
    assert start(published[str(elsewhere)]) == DAY + HOUR
    assert await overlaps(db) == 0
    assert await db.pool.fetchval("SELECT count(*) FROM slot") == 4  # the refused slots are gone
    assert await db.pool.fetchval("SELECT count(*) FROM seat WHERE live") == 4


async def test_a_catalog_change_is_seen_by_the_next_batch(
    db: Database, use_case: SchedulerUseCase, tmp_path: Path
) -> None:
    """The catalog is kept from batch to batch while its version stays; a change (here: one of the
    two officers leaves) gives it a new version, and the next batch reads the catalog again."""
    first = slots(await apply(db, use_case, accepted(uuid.uuid4()), accepted(uuid.uuid4())))
    assert {data["officer_id"] for data in first.values()} == {"TNY-01", "TNY-02"}
    version = await db.pool.fetchval("SELECT version FROM catalog_version")
    changed = yaml.safe_load(_catalog(tmp_path / "changed.yaml").read_text(encoding="utf-8"))
    changed["offices"][0]["officers"] = changed["offices"][0]["officers"][:1]
    (tmp_path / "changed.yaml").write_text(yaml.safe_dump(changed), encoding="utf-8")
    async with db.pool.acquire() as conn, conn.transaction():
        await store.save_catalog(conn, read_catalog(tmp_path / "changed.yaml"))
    assert await db.pool.fetchval("SELECT version FROM catalog_version") != version
    later = slots(await apply(db, use_case, *(accepted(uuid.uuid4()) for _ in range(3))))
    assert {data["officer_id"] for data in later.values()} == {"TNY-01"}
    assert len(later) == 2  # TNY-01's days 1 and 2; the third waits
