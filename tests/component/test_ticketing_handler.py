"""The ticketing subscriber end to end through FastStream's broker, with the real database.

The same body runs on FastStream's in-memory TestKafkaBroker (quick) and, with
`with_real=True`, on the real Kafka broker.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator

import asyncpg
import pytest
from faststream.kafka import TestKafkaBroker

from glv_devtools.catalog import office_entries
from glv_devtools.portal import record_for, ticket
from glv_runtime.consumer import BatchProcessor
from glv_runtime.kafka import build_broker, ensure_topics
from glv_runtime.migrate import apply_migrations
from glv_runtime.subscription import subscribe_batches
from glv_runtime.unit_of_work import Database
from glv_schemas.topics import ALL_TOPICS, PORTAL_TICKETS, PORTAL_UPDATES, intake_dead_letter_topic
from glv_ticketing.handlers import TicketingUseCase, decode_for_ticketing
from glv_ticketing.settings import TicketingSettings
from glv_ticketing.store import upsert_office
from tests.infra import Infra

SIM_INTAKE = PORTAL_TICKETS.concrete("sim-portal")


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    db = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    async with db.acquire() as conn:
        await apply_migrations(conn, ["glv_runtime.migrations", "glv_ticketing.migrations"])
        for office in office_entries():
            await upsert_office(conn, office)
    yield db
    await db.close()


@pytest.mark.parametrize("real", [False, pytest.param(True, marks=pytest.mark.real)], ids=["memory", "real"])
async def test_filed_tickets_are_decided_once_and_poison_is_dead_lettered(
    real: bool, pool: asyncpg.Pool, infra: Infra, topic_prefix: str
) -> None:
    settings = TicketingSettings(kafka_bootstrap_servers=infra.bootstrap, topic_prefix=topic_prefix)
    if real:
        await ensure_topics(settings, [*ALL_TOPICS, SIM_INTAKE])
    broker = build_broker(settings)
    processor = BatchProcessor(
        Database(pool, source="/glv/ticketing"),
        TicketingUseCase().router().apply,
        service="ticketing",
        max_attempts=2,
        retry_backoff_s=0.01,
        decoder=decode_for_ticketing,
    )
    topic = topic_prefix + SIM_INTAKE.name
    subscribe_batches(broker, [topic], processor, settings, group_id=f"{topic_prefix}component")
    rng = random.Random(5)
    good = ticket(rng, portal_id="sim-portal", office_code="JKT", service_code="lelang")
    record = record_for(good, source="/portal/sim")
    headers = {name: value.decode() for name, value in record.headers}

    async with TestKafkaBroker(broker, with_real=real) as test_broker:
        await test_broker.publish(record.value, topic, key=record.key, headers=headers)
        await test_broker.publish(record.value, topic, key=record.key, headers=headers)  # redelivered
        await test_broker.publish(b"{broken", topic, key=record.key, headers=headers | {"ce_id": "other"})
        async with pool.acquire() as conn:
            for _ in range(400):  # in memory this is immediate; on the real broker, wait for the consumer
                if await conn.fetchval("SELECT count(*) FROM glv_dead_letter") == 1:
                    break
                await asyncio.sleep(0.05)
            rows = await conn.fetch("SELECT topic, headers FROM glv_outbox ORDER BY id")
            status = await conn.fetchval("SELECT status FROM ticket WHERE ticket_id = $1", good.ticket_id)
    assert status == "accepted"
    types = [dict(json.loads(r["headers"])).get("ce_type") for r in rows]
    topics = [r["topic"] for r in rows]
    assert topics.count("glv.ticketing.events") == 1  # one decision despite the redelivery
    assert topics.count(PORTAL_UPDATES.for_portal("sim-portal")) == 1  # and its copy for the portal
    assert topics.count(intake_dead_letter_topic("ticketing").name) == 1  # a filing's poison: the intake DLQ
    assert len(types) == 3
