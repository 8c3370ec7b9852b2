"""The waitlist: a full office waitlists, a cancellation refills, first come first served."""

from __future__ import annotations

import itertools
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from glv_devtools.portal import PortalClient, ticket
from glv_scheduler.app import meeting_provider
from glv_scheduler.handlers import SchedulerUseCase
from glv_schemas.events import CancellationRequested
from tests.integration.conftest import Glv, tiny_catalog


@pytest.fixture
def catalog_file(tmp_path: Path) -> Path:
    return tiny_catalog(tmp_path / "tiny.yaml", officers=1, horizon_days=5)


async def test_cancellation_releases_the_slot_and_refills_it_from_the_waitlist(glv: Glv) -> None:
    rng = random.Random(52)
    now = datetime.now(UTC)
    filed = [
        f.model_copy(update={"preferred_windows": []})
        for f in [
            ticket(rng, portal_id="sim-portal", office_code="TNY", service_code="lelang", now=now) for _ in range(9)
        ]
    ]
    async with PortalClient(glv.ticketing.settings.kafka_bootstrap_servers, glv.ticketing.prefix) as portal:
        await portal.file(filed)
    ids = {f.ticket_id for f in filed}

    def placed(_: object) -> set[uuid.UUID]:
        return {s.event.ticket_id for s in glv.probe.of_type("SlotAssigned")} | {
            s.event.ticket_id for s in glv.probe.of_type("SchedulingFailed")
        }

    await glv.probe.wait_for(lambda _: ids <= placed(_))
    assigned = [s.event for s in glv.probe.of_type("SlotAssigned")]
    waiting = [s.event for s in glv.probe.of_type("SchedulingFailed")]
    assert assigned and waiting and len(assigned) + len(waiting) == len(filed)
    assert all(w.waitlisted and w.reason == "no_capacity" for w in waiting)
    # One slot per day, one officer: no two slots overlap.
    starts = sorted(a.starts_at for a in assigned)
    assert all(b - a >= timedelta(hours=1) for a, b in itertools.pairwise(starts))

    victim = assigned[0]
    # First come: the order in which tickets reached the scheduler and found no room.
    assert glv.scheduler.pool is not None
    first_in_line = await glv.scheduler.pool.fetchval(
        "SELECT ticket_id FROM request WHERE status = 'waitlisted' ORDER BY arrival LIMIT 1"
    )
    async with PortalClient(glv.ticketing.settings.kafka_bootstrap_servers, glv.ticketing.prefix) as portal:
        await portal.file([CancellationRequested(ticket_id=victim.ticket_id, portal_id="sim-portal", requested_at=now)])
    await glv.probe.wait_for(lambda _: len(glv.probe.of_type("SlotAssigned")) == len(assigned) + 1)
    [released] = glv.probe.of_type("SlotReleased")
    assert released.event.slot_id == victim.slot_id and released.event.reason == "cancelled"
    refill = glv.probe.of_type("SlotAssigned")[-1].event
    assert refill.ticket_id == first_in_line  # first come, first served
    assert refill.starts_at == victim.starts_at  # the released time, as it is the earliest that fits


async def test_the_periodic_sweep_places_waiting_tickets_once_new_days_enter_the_horizon(glv: Glv) -> None:
    rng = random.Random(57)
    now = datetime.now(UTC)
    filed = [
        ticket(rng, portal_id="sim-portal", office_code="TNY", service_code="lelang", now=now).model_copy(
            update={"preferred_windows": []}
        )
        for _ in range(9)
    ]
    async with PortalClient(glv.ticketing.settings.kafka_bootstrap_servers, glv.ticketing.prefix) as portal:
        await portal.file(filed)
    ids = {f.ticket_id for f in filed}
    await glv.probe.wait_for(
        lambda _: (
            ids
            <= {s.event.ticket_id for s in glv.probe.of_type("SlotAssigned") + glv.probe.of_type("SchedulingFailed")}
        )
    )
    waiting = {s.event.ticket_id for s in glv.probe.of_type("SchedulingFailed")}
    assert waiting
    later = SchedulerUseCase(meeting_provider(glv.scheduler_settings), clock=lambda: now + timedelta(days=3))
    assert glv.scheduler.db is not None
    # The sweep as it runs three days later (its own units of work; the relay publishes).
    placed = await later.sweep_waitlist(glv.scheduler.db)
    assert placed
    await glv.probe.wait_for(
        lambda _: len({s.event.ticket_id for s in glv.probe.of_type("SlotAssigned")} & waiting) >= placed
    )
    slots = [s.event.ticket_id for s in glv.probe.of_type("SlotAssigned") if s.event.ticket_id in waiting]
    assert len(slots) == len(set(slots)) == placed  # each placed once
    overlaps = await glv.scheduler.pool.fetchval(
        "SELECT count(*) FROM booking a JOIN booking b ON a.officer_id = b.officer_id"
        " AND a.slot_id < b.slot_id AND a.live AND b.live AND a.during && b.during"
    )
    assert overlaps == 0
