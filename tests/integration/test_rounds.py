"""Scheduling rounds on the real Kafka and PostgreSQL, the scheduler as real processes: a round
assigns its backlog together while an immediate service goes on as before, and a replica takes
over a round whose runner was killed between the solve and the write."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import yaml

from glv_devtools.portal import PortalClient, accepted_for, record_for, ticket
from glv_devtools.probe import EventProbe
from glv_scheduler.settings import SchedulerSettings
from glv_schemas.base import TimeWindow
from glv_schemas.events import TicketAccepted
from glv_schemas.topics import ALL_TOPICS, PORTAL_UPDATES
from tests.conftest import free_port
from tests.integration.conftest import OVERLAPPING_BOOKINGS, Glv, scheduler_on_catalog
from tests.integration.processes import ServiceProcess

EVERY_DAY = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def rounds_catalog(path: Path) -> Path:
    """One office, open every day; lelang decided in rounds every minute, penilaian at once."""
    catalog: dict[str, Any] = {
        "working_hours": {day: ["08:00-16:00"] for day in EVERY_DAY},
        "services": {
            "lelang": {"name_id": "Lelang", "name_en": "Auctions", "kind": "consultation", "duration_minutes": 45,
                       "buffer_minutes": 15, "min_notice_hours": 0, "booking_horizon_days": 3,
                       "rounds": {"every_minutes": 1}},
            "penilaian": {"name_id": "Penilaian", "name_en": "Valuation", "kind": "consultation",
                          "duration_minutes": 30, "min_notice_hours": 0, "booking_horizon_days": 3},
        },
        "offices": [
            {"office_code": "TNY", "name": "KPKNL Uji", "city": "Palopo", "zone": "Asia/Makassar",
             "services": ["lelang", "penilaian"],
             "officers": [{"officer_id": f"TNY-{n:02d}", "skills": ["lelang", "penilaian"]} for n in (1, 2)]},
        ],
    }  # fmt: skip
    path.write_text(yaml.safe_dump(catalog), encoding="utf-8")
    return path


@pytest.fixture
async def settings(
    scheduler_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[SchedulerSettings]:
    yield await scheduler_on_catalog(scheduler_env, monkeypatch, rounds_catalog(tmp_path / "rounds.yaml"))


def accepted(service: str, count: int, seed: int, *, windows: bool = True) -> list[TicketAccepted]:
    """Tickets as ticketing accepts them; with windows, half of them narrow, half wide."""
    rng = random.Random(seed)
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    events = []
    for n in range(count):
        filed = ticket(rng, portal_id="sim-portal", office_code="TNY", service_code=service)
        start = tomorrow + timedelta(hours=rng.randint(0, 6))  # 08:00-14:00 WITA
        span = timedelta(hours=1 if n % 2 else 6)
        wanted = [TimeWindow(start=start, end=start + span)] if windows else []
        filed = filed.model_copy(update={"preferred_windows": wanted})
        events.append(accepted_for(filed, f"TNY-261201-{seed:02d}{n:03d}"))
    return events


async def publish(settings: SchedulerSettings, events: list[TicketAccepted]) -> None:
    async with PortalClient(settings.kafka_bootstrap_servers, settings.topic_prefix) as portal:
        await portal.send([record_for(e, source="/glv/ticketing") for e in events])


def replica(env: dict[str, str], name: str, **more: str) -> ServiceProcess:
    return ServiceProcess(
        "glv_scheduler",
        {**env, "GLV_SCHEDULER_HTTP_PORT": str(free_port()), "GLV_SCHEDULER_ROUND_LEASE_S": "3", **more},
        name,
    )


def of(probe: EventProbe, name: str, ids: set[uuid.UUID]) -> list[Any]:
    return [s for s in probe.of_type(name) if s.event.ticket_id in ids]


async def all_decided(probe: EventProbe, ids: set[uuid.UUID], timeout_s: float) -> None:
    """Until each ticket has its slot or its SchedulingFailed."""
    await probe.wait_for(
        lambda _: ids <= {s.event.ticket_id for s in probe.of_type("SlotAssigned") + probe.of_type("SchedulingFailed")},
        timeout_s,
    )


async def invariants(settings: SchedulerSettings, probe: EventProbe, ids: set[uuid.UUID]) -> list[Any]:
    """No overlapping bookings; each ticket decided once (a slot with one live seat, or waiting)."""
    conn = await asyncpg.connect(settings.dsn())
    try:
        overlaps = await conn.fetchval(OVERLAPPING_BOOKINGS)
        seats = await conn.fetch(
            "SELECT r.ticket_id, r.status, count(s.slot_id) AS live FROM request r"
            " LEFT JOIN seat s ON s.ticket_id = r.ticket_id AND s.live WHERE r.ticket_id = ANY($1::uuid[])"
            " GROUP BY r.ticket_id, r.status",
            list(ids),
        )
        rounds = await conn.fetch("SELECT * FROM scheduling_round ORDER BY round_at")
    finally:
        await conn.close()
    assert overlaps == 0
    assert all((r["status"], r["live"]) in (("assigned", 1), ("waitlisted", 0)) for r in seats), seats
    decisions: dict[object, set[str]] = {}
    for seen in of(probe, "SlotAssigned", ids) + of(probe, "SchedulingFailed", ids):
        decisions.setdefault(seen.event.ticket_id, set()).add(seen.headers["ce_id"])
    assert set(decisions) == ids and all(len(d) == 1 for d in decisions.values())
    return list(rounds)


async def test_a_round_assigns_its_backlog_together_and_immediate_services_are_unaffected(
    settings: SchedulerSettings, scheduler_env: dict[str, str]
) -> None:
    topics = [settings.topic_prefix + t.name for t in ALL_TOPICS]
    scheduler = replica(scheduler_env, f"scheduler-rounds-{settings.topic_prefix}")
    before, backlog, meanwhile = accepted("penilaian", 3, 1), accepted("lelang", 24, 2), accepted("penilaian", 2, 3)
    try:
        await scheduler.start()
        async with EventProbe(settings.kafka_bootstrap_servers, topics) as probe:
            # Slots published before the round: the round must leave them where they are.
            await publish(settings, before)
            first = {e.ticket_id for e in before}
            await probe.wait_for(lambda _: len(of(probe, "SlotAssigned", first)) == len(first), 60)
            kept = {s.event.ticket_id: s.event for s in of(probe, "SlotAssigned", first)}

            await publish(settings, backlog)
            waiting = {e.ticket_id for e in backlog}
            await probe.wait_for(lambda _: len(of(probe, "AssignmentPending", waiting)) == len(waiting), 60)
            pending = {s.event.ticket_id: s.event for s in of(probe, "AssignmentPending", waiting)}
            [round_at] = {p.round_at for p in pending.values()}
            assert not of(probe, "SlotAssigned", waiting)  # they wait for the round

            # An immediate service is decided at once, round or no round.
            await publish(settings, meanwhile)
            now_ids = {e.ticket_id for e in meanwhile}
            await probe.wait_for(lambda _: len(of(probe, "SlotAssigned", now_ids)) == len(now_ids), 60)
            assert all(s.event.assigned_at < round_at for s in of(probe, "SlotAssigned", now_ids))

            await probe.wait_for(
                lambda _: (
                    waiting
                    <= {s.event.ticket_id for s in probe.of_type("SlotAssigned")}
                    | {s.event.ticket_id for s in probe.of_type("SchedulingFailed")}
                ),
                150,
            )
            slots = of(probe, "SlotAssigned", waiting)
            assert slots and all(s.event.assigned_at >= round_at for s in slots)
            assert not probe.of_type("SlotReleased")  # nothing published was moved
            assert {s.event.ticket_id: s.event for s in of(probe, "SlotAssigned", first)} == kept
            assert await scheduler.terminate() == 0
            rounds = await invariants(settings, probe, first | waiting | now_ids)
        [decided] = [r for r in rounds if r["round_at"] == round_at]
        assert decided["status"] == "done" and decided["tickets"] == len(backlog)
        assert decided["placed"] == len(slots)
        print(
            f"\nround of {decided['tickets']} tickets: {decided['placed']} placed, {decided['windows_honoured']}"
            f" windows honoured, {decided['method']}, solved in {decided['solve_seconds']:.2f} s"
        )
    finally:
        scheduler.kill()


async def test_a_replica_takes_over_a_round_whose_runner_was_killed(
    settings: SchedulerSettings, scheduler_env: dict[str, str]
) -> None:
    topics = [settings.topic_prefix + t.name for t in ALL_TOPICS]
    doomed = replica(
        scheduler_env, f"scheduler-doomed-{settings.topic_prefix}", GLV_SCHEDULER_ROUND_CRASH_AFTER_SOLVE="true"
    )
    survivor = replica(scheduler_env, f"scheduler-survivor-{settings.topic_prefix}")
    backlog = accepted("lelang", 16, 4)
    waiting = {e.ticket_id for e in backlog}
    try:
        await doomed.start()
        async with EventProbe(settings.kafka_bootstrap_servers, topics) as probe:
            await publish(settings, backlog)
            await probe.wait_for(lambda _: len(of(probe, "AssignmentPending", waiting)) == len(waiting), 60)
            # The round's runner solves, then dies before writing anything.
            assert await doomed.wait_exit(120) != 0
            assert not of(probe, "SlotAssigned", waiting)
            await survivor.start()
            await probe.wait_for(
                lambda _: (
                    waiting
                    <= {s.event.ticket_id for s in probe.of_type("SlotAssigned")}
                    | {s.event.ticket_id for s in probe.of_type("SchedulingFailed")}
                ),
                120,
            )
            assert await survivor.terminate() == 0
            rounds = await invariants(settings, probe, waiting)
        assert [r["status"] for r in rounds] == ["done"]
        assert rounds[0]["tickets"] == len(backlog)
    finally:
        doomed.kill()
        survivor.kill()


@pytest.fixture
def catalog_file(tmp_path: Path) -> Path:
    """The catalog the `glv` fixture (ticketing and the scheduler) loads: TNY's lelang in rounds."""
    return rounds_catalog(tmp_path / "glv-rounds.yaml")


async def test_the_portal_sees_its_ticket_await_the_round_then_its_slot(glv: Glv) -> None:
    rng = random.Random(5)
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).replace(hour=1, minute=0, second=0, microsecond=0)
    filed = [
        ticket(rng, portal_id="sim-portal", office_code="TNY", service_code="lelang").model_copy(
            update={"preferred_windows": [TimeWindow(start=tomorrow, end=tomorrow + timedelta(hours=2))]}
        )
        for _ in range(3)
    ]
    ids = {f.ticket_id for f in filed}
    updates = glv.ticketing.prefix + PORTAL_UPDATES.for_portal("sim-portal")
    async with EventProbe(glv.ticketing.settings.kafka_bootstrap_servers, [updates]) as portal_sees:
        async with PortalClient(glv.ticketing.settings.kafka_bootstrap_servers, glv.ticketing.prefix) as portal:
            await portal.file(filed)
        await portal_sees.wait_for(
            lambda _: ids <= {s.event.ticket_id for s in portal_sees.of_type("SlotAssigned")}, 150
        )
        pending = {s.event.ticket_id: s.event for s in portal_sees.of_type("AssignmentPending")}
        assert set(pending) == ids
        for slot in portal_sees.of_type("SlotAssigned"):
            assert slot.event.assigned_at >= pending[slot.event.ticket_id].round_at
    async with httpx.AsyncClient(base_url=glv.ticketing.base_url) as client:
        answer = (await client.get(f"/v1/tickets/{filed[0].ticket_id}", headers=glv.ticketing.auth())).json()
    entries = [(h["entry"], h["status"]) for h in answer["history"]]
    assert ("awaiting_round", "awaiting_round") in entries and entries[-1] == ("scheduled", "scheduled")
    [waited] = [h for h in answer["history"] if h["entry"] == "awaiting_round"]
    assert waited["detail"]["round_at"] == pending[filed[0].ticket_id].round_at.isoformat()
