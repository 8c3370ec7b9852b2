"""The relay never blocks on a row the broker refuses; readiness sees a stuck consumer."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from glv_devtools.catalog import office_entries, publish_office_entries
from glv_devtools.portal import PortalClient, ticket
from glv_runtime.kafka import KafkaSender, ensure_topics
from glv_runtime.migrate import apply_migrations
from glv_runtime.outbox import OutboxMessage, OutboxRelay, write_outbox
from glv_runtime.service import RunningService
from glv_runtime.settings import ServiceSettings
from glv_schemas.topics import ALL_TOPICS
from glv_ticketing.app import build_spec
from tests.infra import Infra
from tests.integration.conftest import settings_from, wait_for_offices


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    created = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    async with created.acquire() as conn:
        await apply_migrations(conn, ["glv_runtime.migrations"])
    yield created
    await created.close()


def message(key: bytes | None, payload: bytes | None) -> OutboxMessage:
    return OutboxMessage(topic="glv.ticketing.events", key=key, headers=[("ce_id", b"x")], payload=payload)


async def test_rows_the_broker_refuses_are_parked_and_the_rest_published(
    pool: asyncpg.Pool, infra: Infra, topic_prefix: str
) -> None:
    settings = ServiceSettings(kafka_bootstrap_servers=infra.bootstrap, topic_prefix=topic_prefix)
    await ensure_topics(settings, ALL_TOPICS)
    async with pool.acquire() as conn:
        await write_outbox(
            conn,
            [
                message(b"k1", b"first"),
                message(None, None),  # aiokafka: "Need at least one: key or value"
                message(b"k3", b"x" * (2 * 1024 * 1024)),  # over the producer's request size
                message(b"k4", b"last"),
            ],
        )
    sender = KafkaSender(settings)
    await sender.start()
    try:
        relay = OutboxRelay(pool, sender, dsn="", poll_interval_s=0.1, batch_size=100)
        handled, _ = await relay.publish_once()
        assert handled == 4
        assert (await relay.publish_once())[0] == 0  # nothing retried ahead of later rows
    finally:
        await sender.stop()
    rows = await pool.fetch(
        "SELECT msg_key, sent_at IS NOT NULL AS sent, parked_at IS NOT NULL AS parked, error"
        " FROM glv_outbox ORDER BY id"
    )
    assert [(r["msg_key"], r["sent"], r["parked"]) for r in rows] == [
        (b"k1", True, False),
        (None, False, True),
        (b"k3", False, True),
        (b"k4", True, False),
    ]
    assert "key or value" in rows[1]["error"] and "MessageSizeTooLarge" in rows[2]["error"]


async def test_the_relay_reads_by_bytes_as_well_as_rows(pool: asyncpg.Pool, infra: Infra, topic_prefix: str) -> None:
    settings = ServiceSettings(kafka_bootstrap_servers=infra.bootstrap, topic_prefix=topic_prefix)
    await ensure_topics(settings, ALL_TOPICS)
    async with pool.acquire() as conn:
        await write_outbox(conn, [message(f"k{n}".encode(), b"v" * 1000) for n in range(5)])
    sender = KafkaSender(settings)
    await sender.start()
    try:
        relay = OutboxRelay(pool, sender, dsn="", poll_interval_s=0.1, batch_size=100, batch_bytes=2500)
        rounds = [await relay.publish_once() for _ in range(4)]
    finally:
        await sender.stop()
    assert [handled for handled, _ in rounds] == [2, 2, 1, 0]  # ~1 KB rows, 2.5 KB per round


async def test_readiness_turns_false_while_a_consumer_with_lag_is_stuck(
    ticketing_env: dict[str, str], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {
        **ticketing_env,
        "GLV_TICKETING_STALL_TIMEOUT_S": "1",
        # No timeouts: the batch waits on the lock below for as long as it is held.
        "GLV_TICKETING_DB_LOCK_TIMEOUT_MS": "0",
        "GLV_TICKETING_DB_STATEMENT_TIMEOUT_MS": "0",
    }
    settings = settings_from(env, monkeypatch)
    service = RunningService(build_spec(settings))
    await service.start()
    base_url = f"http://127.0.0.1:{settings.http_port}"
    try:
        offices = office_entries()
        await publish_office_entries(settings, offices)
        await wait_for_offices(service, len(offices))
        async with httpx.AsyncClient(base_url=base_url) as client:
            await until_ready(client, True)
            holder = await asyncpg.connect(database_url)
            transaction = holder.transaction()
            await transaction.start()
            await holder.execute("LOCK TABLE ticket IN ACCESS EXCLUSIVE MODE")
            try:
                filed = ticket(random.Random(3), portal_id="sim-portal", office_code="JKT", service_code="lelang")
                async with PortalClient(settings.kafka_bootstrap_servers, settings.topic_prefix) as portal:
                    await portal.file([filed])
                answer = await until_ready(client, False)
                assert answer["checks"] == {"database": True, "broker": True, "consuming": False}
            finally:
                await transaction.rollback()
                await holder.close()
            await until_ready(client, True)
        assert await service.pool.fetchval("SELECT status FROM ticket") == "accepted"
    finally:
        await service.stop()


async def until_ready(client: httpx.AsyncClient, ready: bool, timeout_s: float = 30) -> dict[str, object]:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        answer = await client.get("/readyz", timeout=5)
        if (answer.status_code == 200) == ready:
            return dict(answer.json())
        assert asyncio.get_running_loop().time() < deadline, f"/readyz did not become {ready}: {answer.json()}"
        await asyncio.sleep(0.1)
