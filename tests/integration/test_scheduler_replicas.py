"""Several scheduler processes on one office, and one killed with SIGKILL mid-stream."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from glv_devtools.portal import PortalClient, accepted_for, record_for, ticket
from glv_devtools.probe import EventProbe
from glv_scheduler.settings import SchedulerSettings
from glv_schemas.events import TicketAccepted
from glv_schemas.topics import ALL_TOPICS
from tests.conftest import free_port
from tests.integration.conftest import OVERLAPPING_BOOKINGS, scheduler_on_catalog, tiny_catalog
from tests.integration.processes import ServiceProcess


@pytest.fixture
async def settings(
    scheduler_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[SchedulerSettings]:
    # Two officers, eight slots a day each, three days ahead: far fewer slots than tickets.
    catalog = tiny_catalog(tmp_path / "tiny.yaml", officers=2, horizon_days=3, hours="08:00-16:00")
    yield await scheduler_on_catalog(scheduler_env, monkeypatch, catalog)


def _accepted(count: int, seed: int) -> list[TicketAccepted]:
    rng = random.Random(seed)
    return [
        accepted_for(
            ticket(rng, portal_id="sim-portal", office_code="TNY", service_code="lelang").model_copy(
                update={"preferred_windows": []}
            ),
            f"TNY-261129-{n:04d}",
        )
        for n in range(1, count + 1)
    ]


def _replica(env: dict[str, str], name: str) -> ServiceProcess:
    return ServiceProcess("glv_scheduler", {**env, "GLV_SCHEDULER_HTTP_PORT": str(free_port())}, name)


async def _publish(settings: SchedulerSettings, events: list[TicketAccepted]) -> None:
    async with PortalClient(settings.kafka_bootstrap_servers, settings.topic_prefix) as portal:
        await portal.send([record_for(e, source="/glv/ticketing") for e in events])


def _placed(probe: EventProbe) -> set[object]:
    return {s.event.ticket_id for s in probe.of_type("SlotAssigned")} | {
        s.event.ticket_id for s in probe.of_type("SchedulingFailed")
    }


async def _assert_invariants(settings: SchedulerSettings, probe: EventProbe, count: int) -> None:
    conn = await asyncpg.connect(settings.dsn())
    try:
        overlaps = await conn.fetchval(OVERLAPPING_BOOKINGS)
        rows = await conn.fetch(
            "SELECT r.status, count(s.slot_id) AS live_seats FROM request r"
            " LEFT JOIN seat s ON s.ticket_id = r.ticket_id AND s.live GROUP BY r.ticket_id, r.status"
        )
    finally:
        await conn.close()
    assert overlaps == 0
    assert len(rows) == count
    assigned = [r for r in rows if r["status"] == "assigned"]
    waiting = [r for r in rows if r["status"] == "waitlisted"]
    assert len(assigned) + len(waiting) == count  # every ticket either has a slot or waits
    assert all(r["live_seats"] == 1 for r in assigned) and all(r["live_seats"] == 0 for r in waiting)
    assert assigned and waiting
    # One decision per ticket (a re-published event keeps its id).
    decisions: dict[object, set[str]] = {}
    for seen in probe.of_type("SlotAssigned") + probe.of_type("SchedulingFailed"):
        decisions.setdefault(seen.event.ticket_id, set()).add(seen.headers["ce_id"])
    assert len(decisions) == count and all(len(ids) == 1 for ids in decisions.values())
    print(f"assigned {len(assigned)}, waitlisted {len(waiting)}, overlapping bookings {overlaps}")


async def test_four_replicas_booking_one_office_never_double_book(
    settings: SchedulerSettings, scheduler_env: dict[str, str]
) -> None:
    events = _accepted(160, seed=61)
    replicas = [_replica(scheduler_env, f"scheduler-{settings.topic_prefix}{n}") for n in range(4)]
    topics = [settings.topic_prefix + t.name for t in ALL_TOPICS]
    try:
        for replica in replicas:
            await replica.start(GLV_SCHEDULER_BATCH_MAX_RECORDS="10")
        async with EventProbe(settings.kafka_bootstrap_servers, topics) as probe:
            await _publish(settings, events)
            ids = {e.ticket_id for e in events}
            await probe.wait_for(lambda _: ids <= _placed(probe), 180)
            clashes = 0.0
            async with httpx.AsyncClient() as client:
                for replica in replicas:
                    metrics = (await client.get(f"http://127.0.0.1:{replica.port}/metrics")).text
                    clashes += sum(
                        float(line.split()[-1])
                        for line in metrics.splitlines()
                        if line.startswith("glv_scheduler_booking_clashes_total ")
                    )
            print(f"booking clashes refused by the exclusion constraint and retried: {clashes:.0f}")
            for replica in replicas:
                assert await replica.terminate() == 0
            await _assert_invariants(settings, probe, len(events))
    finally:
        for replica in replicas:
            replica.kill()


async def test_a_scheduler_killed_mid_stream_leaves_one_live_slot_per_ticket(
    settings: SchedulerSettings, scheduler_env: dict[str, str]
) -> None:
    events = _accepted(120, seed=62)
    topics = [settings.topic_prefix + t.name for t in ALL_TOPICS]
    scheduler = _replica(scheduler_env, f"scheduler-{settings.topic_prefix}kill")
    try:
        await scheduler.start(GLV_SCHEDULER_BATCH_MAX_RECORDS="5")
        async with EventProbe(settings.kafka_bootstrap_servers, topics) as probe:
            await _publish(settings, events)
            await probe.wait_for(lambda _: len(probe.of_type("SlotAssigned")) >= 3)
            scheduler.kill()  # SIGKILL, in the middle of the stream
            print(f"decided before the kill: {len(_placed(probe))} of {len(events)}")
            await scheduler.start()
            ids = {e.ticket_id for e in events}
            await probe.wait_for(lambda _: ids <= _placed(probe), 180)
            assert await scheduler.terminate() == 0
            await probe.poll()
            await _assert_invariants(settings, probe, len(events))
    finally:
        scheduler.kill()
