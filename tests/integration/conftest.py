"""Ticketing (and the scheduler) running in-process against the real stack, catalog loaded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from glv_devtools.catalog import CATALOG_FILE, office_entries, publish_office_entries
from glv_devtools.probe import EventProbe
from glv_runtime.service import RunningService
from glv_scheduler.__main__ import load_catalog
from glv_scheduler.app import build_spec as build_scheduler
from glv_scheduler.catalog import read_catalog
from glv_scheduler.settings import SchedulerSettings
from glv_schemas.topics import ALL_TOPICS
from glv_ticketing.app import build_spec
from glv_ticketing.settings import TicketingSettings
from tests.conftest import Clock


@dataclass
class Ticketing:
    settings: TicketingSettings
    service: RunningService
    clock: Clock
    probe: EventProbe
    # Status-API tokens of the onboarded test portals, by portal id.
    tokens: dict[str, str]

    def auth(self, portal_id: str = "sim-portal") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[portal_id]}"}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.http_port}"

    @property
    def prefix(self) -> str:
        return self.settings.topic_prefix


async def wait_for_offices(service: RunningService, count: int, timeout_s: float = 30) -> None:
    """The catalog arrives on its own topic: wait until ticketing has applied it."""
    assert service.pool is not None
    deadline = asyncio.get_running_loop().time() + timeout_s
    while await service.pool.fetchval("SELECT count(*) FROM office") < count:
        assert asyncio.get_running_loop().time() < deadline, "catalog not applied in time"
        await asyncio.sleep(0.05)


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> TicketingSettings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return TicketingSettings()


@pytest.fixture
async def ticketing(
    ticketing_env: dict[str, str], portal_tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Ticketing]:
    settings = settings_from(ticketing_env, monkeypatch)
    tokens = portal_tokens
    clock = Clock()
    service = RunningService(build_spec(settings, clock))
    await service.start()
    offices = office_entries()
    await publish_office_entries(settings, offices)
    await wait_for_offices(service, len(offices))
    probe = EventProbe(settings.kafka_bootstrap_servers, [settings.topic_prefix + t.name for t in ALL_TOPICS])
    async with probe:
        try:
            yield Ticketing(settings, service, clock, probe, tokens)
        finally:
            await service.stop()


# --------------------------------------------------- ticketing and the scheduler


@dataclass
class Glv:
    ticketing: Ticketing
    scheduler: RunningService
    scheduler_settings: SchedulerSettings

    @property
    def probe(self) -> EventProbe:
        return self.ticketing.probe

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.scheduler_settings.http_port}/v1/webhooks/meetings"


def tiny_catalog(path: Path, *, officers: int = 1, horizon_days: int = 5, hours: str = "09:00-10:00") -> Path:
    """A one-office catalog open every day, small enough to fill in a test."""
    every_day = {day: [hours] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    catalog = {
        "working_hours": every_day,
        "services": {
            "lelang": {"name_id": "Lelang", "name_en": "Auctions", "kind": "consultation", "duration_minutes": 45,
                       "buffer_minutes": 15, "min_notice_hours": 0, "booking_horizon_days": horizon_days},
        },
        "offices": [
            {"office_code": "TNY", "name": "KPKNL Uji", "city": "Palopo", "zone": "Asia/Makassar",
             "services": ["lelang"],
             "officers": [{"officer_id": f"TNY-{n:02d}", "skills": ["lelang"]} for n in range(1, officers + 1)]},
        ],
    }  # fmt: skip
    path.write_text(yaml.safe_dump(catalog), encoding="utf-8")
    return path


@pytest.fixture
def catalog_file() -> Path:
    """The catalog the `glv` fixture loads; a test may override this fixture."""
    return CATALOG_FILE


@pytest.fixture
async def glv(
    ticketing: Ticketing, scheduler_env: dict[str, str], catalog_file: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Glv]:
    for name, value in scheduler_env.items():
        monkeypatch.setenv(name, value)
    settings = SchedulerSettings()
    scheduler = RunningService(build_scheduler(settings))
    await scheduler.start()
    try:
        await load_catalog(settings, catalog_file)
        offices = set(read_catalog(catalog_file).offices) | set(read_catalog(CATALOG_FILE).offices)
        await wait_for_offices(ticketing.service, len(offices))
        yield Glv(ticketing, scheduler, settings)
    finally:
        await scheduler.stop()


async def scheduler_on_catalog(
    scheduler_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, catalog: Path
) -> SchedulerSettings:
    """Settings of a scheduler run as a process (from `scheduler_env`), its catalog loaded."""
    for name, value in scheduler_env.items():
        monkeypatch.setenv(name, value)
    loaded = SchedulerSettings()
    await load_catalog(loaded, catalog)
    return loaded


# Pairs of live bookings of one officer that overlap: the exclusion constraint allows none.
OVERLAPPING_BOOKINGS = (
    "SELECT count(*) FROM booking a JOIN booking b ON a.officer_id = b.officer_id"
    " AND a.slot_id < b.slot_id AND a.live AND b.live AND a.during && b.during"
)
