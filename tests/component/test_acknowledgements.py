"""Offsets are committed only after the database commit, on the real broker.

Guards against FastStream pitfalls: a handler cancelled at graceful_timeout must
not be acked (faststream#2999/#3000), and a failed batch must not be skipped by a
later successful one committing past it (faststream#2618).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from glv_devtools.portal import PortalClient, ticket
from glv_runtime.consumer import BatchProcessor, Inbound
from glv_runtime.kafka import build_broker, ensure_topics
from glv_runtime.migrate import apply_migrations
from glv_runtime.settings import ServiceSettings
from glv_runtime.subscription import subscribe_batches
from glv_runtime.unit_of_work import Database, UnitOfWork
from glv_schemas.topics import ALL_TOPICS, PORTAL_TICKETS
from tests.infra import Infra

SIM_INTAKE = PORTAL_TICKETS.concrete("sim-portal")

pytestmark = pytest.mark.real


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    db = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    async with db.acquire() as conn:
        await apply_migrations(conn, ["glv_runtime.migrations"])
    yield db
    await db.close()


async def _committed(bootstrap: str, group: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        total = 0
        for partition in range(6):
            total += await consumer.committed(TopicPartition(topic, partition)) or 0
        return total
    finally:
        await consumer.stop()


async def _run(settings: ServiceSettings, pool: asyncpg.Pool, apply, group: str):  # type: ignore[no-untyped-def]
    broker = build_broker(settings)
    processor = BatchProcessor(
        Database(pool, source="/glv/test"), apply, service="ticketing", max_attempts=2, retry_backoff_s=0.01
    )
    subscribe_batches(broker, [settings.topic_prefix + SIM_INTAKE.name], processor, settings, group_id=group)
    await broker.start()
    return broker


async def test_a_handler_cancelled_at_graceful_timeout_is_redelivered(
    pool: asyncpg.Pool, infra: Infra, topic_prefix: str
) -> None:
    settings = ServiceSettings(
        kafka_bootstrap_servers=infra.bootstrap, topic_prefix=topic_prefix, graceful_timeout_s=0.5
    )
    await ensure_topics(settings, [*ALL_TOPICS, SIM_INTAKE])
    topic, group = topic_prefix + SIM_INTAKE.name, f"{topic_prefix}acks"
    started = asyncio.Event()

    async def slow(uow: UnitOfWork, items: Sequence[Inbound]) -> None:
        started.set()
        await asyncio.sleep(30)  # outlives the graceful timeout: the framework cancels it

    broker = await _run(settings, pool, slow, group)
    async with PortalClient(infra.bootstrap, topic_prefix) as portal:
        await portal.file([ticket(random.Random(1), portal_id="sim-portal", office_code="JKT", service_code="lelang")])
    await asyncio.wait_for(started.wait(), 30)
    await broker.stop()
    assert await _committed(infra.bootstrap, group, topic) == 0  # nothing acked
    assert await pool.fetchval("SELECT count(*) FROM glv_inbox") == 0

    applied: list[str] = []

    async def quick(uow: UnitOfWork, items: Sequence[Inbound]) -> None:
        applied.extend(i.cloud_event.id for i in items)

    broker = await _run(settings, pool, quick, group)
    try:
        for _ in range(300):
            if applied:
                break
            await asyncio.sleep(0.05)
    finally:
        await broker.stop()
    assert len(applied) == 1
    assert await _committed(infra.bootstrap, group, topic) == 1


async def test_a_batch_failing_on_an_outage_is_not_skipped_by_the_next(
    pool: asyncpg.Pool, infra: Infra, topic_prefix: str
) -> None:
    settings = ServiceSettings(
        kafka_bootstrap_servers=infra.bootstrap, topic_prefix=topic_prefix, outage_backoff_s=0.1, batch_max_records=1
    )
    await ensure_topics(settings, [*ALL_TOPICS, SIM_INTAKE])
    topic, group = topic_prefix + SIM_INTAKE.name, f"{topic_prefix}outage"
    rng = random.Random(2)
    first = ticket(rng, portal_id="sim-portal", office_code="JKT", service_code="lelang")
    second = first.model_copy(update={"subject": "second"})  # same key: same partition, after the first
    calls: list[str] = []

    async def flaky(uow: UnitOfWork, items: Sequence[Inbound]) -> None:
        calls.extend(getattr(i.event, "subject", "") for i in items)
        if len(calls) == 1:
            raise ConnectionResetError("database went away")  # an outage, not a bad message

    broker = await _run(settings, pool, flaky, group)
    try:
        async with PortalClient(infra.bootstrap, topic_prefix) as portal:
            await portal.file([first])
            await portal.file([second])
        for _ in range(400):
            if await pool.fetchval("SELECT count(*) FROM glv_inbox") == 2:
                break
            await asyncio.sleep(0.05)
    finally:
        await broker.stop()
    assert calls[0] == first.subject and calls.count(first.subject) == 2  # failed, then redelivered
    assert await pool.fetchval("SELECT count(*) FROM glv_inbox") == 2
    assert await pool.fetchval("SELECT count(*) FROM glv_dead_letter") == 0
    assert await _committed(infra.bootstrap, group, topic) == 2
