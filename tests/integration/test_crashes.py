"""SIGKILL between the database commit and the offset commit, and SIGTERM mid-stream."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from glv_devtools.catalog import office_entries, publish_office_entries
from glv_devtools.portal import PortalClient, ticket
from glv_devtools.probe import EventProbe
from glv_schemas.topics import ALL_TOPICS
from glv_ticketing.settings import TicketingSettings
from tests.integration.processes import ServiceProcess


@pytest.fixture
async def process(ticketing_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ServiceProcess]:
    for name, value in ticketing_env.items():
        monkeypatch.setenv(name, value)
    proc = ServiceProcess("glv_ticketing", ticketing_env, f"ticketing-{ticketing_env['GLV_TICKETING_TOPIC_PREFIX']}")
    # First life: create the schema and topics and take in the catalog.
    await proc.start()
    settings = TicketingSettings()
    offices = office_entries()
    await publish_office_entries(settings, offices)
    import asyncpg

    conn = await asyncpg.connect(settings.dsn())
    try:
        while await conn.fetchval("SELECT count(*) FROM office") < len(offices):
            await conn.execute("SELECT pg_sleep(0.05)")
    finally:
        await conn.close()
    assert await proc.terminate() == 0
    yield proc
    proc.kill()


def _tickets(count: int, seed: int) -> list:  # type: ignore[type-arg]
    rng = random.Random(seed)
    offices = [("JKT", "lelang"), ("MKS", "piutang-negara"), ("JYP", "informasi-pengaduan")]
    return [
        ticket(rng, portal_id="sim-portal", office_code=o, service_code=s)
        for o, s in (offices[i % 3] for i in range(count))
    ]


async def test_sigkill_after_db_commit_before_offset_commit_decides_once(process: ServiceProcess) -> None:
    settings = TicketingSettings()
    filed = _tickets(20, seed=31)
    await process.start(GLV_TICKETING_CRASH_AFTER_DB_COMMIT="true")
    async with PortalClient(settings.kafka_bootstrap_servers, settings.topic_prefix) as portal:
        await portal.file(filed)
    assert await process.wait_exit() == -9  # it killed itself right after its first commit
    await process.start()  # a normal life: the batch is redelivered
    topics = [settings.topic_prefix + t.name for t in ALL_TOPICS]
    async with EventProbe(settings.kafka_bootstrap_servers, topics) as probe:
        ids = {f.ticket_id for f in filed}
        await probe.wait_for(lambda _: ids <= {s.event.ticket_id for s in probe.of_type("TicketAccepted")})
        # A marker filed after the redelivered batch proves the service got past it.
        [marker] = _tickets(1, seed=32)
        async with PortalClient(settings.kafka_bootstrap_servers, settings.topic_prefix) as portal:
            await portal.file([marker])
        await probe.wait_for(lambda _: marker.ticket_id in {s.event.ticket_id for s in probe.of_type("TicketAccepted")})
        decisions = Counter(s.event.ticket_id for s in probe.of_type("TicketAccepted"))
    assert all(count == 1 for count in decisions.values()), decisions
    codes = [s.event.ticket_code for s in probe.of_type("TicketAccepted")]
    assert len(codes) == len(set(codes)) == len(filed) + 1


async def test_sigterm_mid_stream_loses_nothing_and_repeats_nothing(process: ServiceProcess) -> None:
    settings = TicketingSettings()
    filed = _tickets(600, seed=33)
    topics = [settings.topic_prefix + t.name for t in ALL_TOPICS]
    # Small batches, so that the stream is still flowing when SIGTERM arrives.
    await process.start(GLV_TICKETING_BATCH_MAX_RECORDS="20")
    async with EventProbe(settings.kafka_bootstrap_servers, topics) as probe:
        async with PortalClient(settings.kafka_bootstrap_servers, settings.topic_prefix) as portal:
            await portal.file(filed)
        await probe.wait_for(lambda _: len(probe.of_type("TicketAccepted")) >= 50)
        assert await process.terminate() == 0  # graceful: drains in-flight batches
        await probe.poll()
        print(f"accepted before the restart: {len(probe.of_type('TicketAccepted'))} of {len(filed)}")
        await process.start()
        ids = {f.ticket_id for f in filed}
        await probe.wait_for(lambda _: ids <= {s.event.ticket_id for s in probe.of_type("TicketAccepted")}, 120)
        decisions = Counter(s.event.ticket_id for s in probe.of_type("TicketAccepted"))
    assert set(decisions) == ids
    assert all(count == 1 for count in decisions.values())
