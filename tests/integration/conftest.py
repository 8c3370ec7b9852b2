"""A ticketing service running in-process against the real stack, catalog loaded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from glv_devtools.probe import EventProbe
from glv_runtime.service import RunningService
from glv_schemas.topics import ALL_TOPICS
from glv_ticketing.app import build_spec
from glv_ticketing.catalog import publish_catalog, read_catalog
from glv_ticketing.settings import TicketingSettings
from tests.conftest import Clock

CATALOG_FILE = Path(__file__).resolve().parents[2] / "deploy" / "catalog" / "offices.yaml"


@dataclass
class Ticketing:
    settings: TicketingSettings
    service: RunningService
    clock: Clock
    probe: EventProbe

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
async def ticketing(ticketing_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Ticketing]:
    settings = settings_from(ticketing_env, monkeypatch)
    clock = Clock()
    service = RunningService(build_spec(settings, clock))
    await service.start()
    offices = read_catalog(CATALOG_FILE)
    await publish_catalog(settings, offices)
    await wait_for_offices(service, len(offices))
    probe = EventProbe(settings.kafka_bootstrap_servers, [settings.topic_prefix + t.name for t in ALL_TOPICS])
    async with probe:
        try:
            yield Ticketing(settings, service, clock, probe)
        finally:
            await service.stop()
