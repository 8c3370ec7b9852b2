"""Database trouble is an outage: the batch is retried, never dead-lettered.

Each condition is brought about for real on the test's PostgreSQL: a lock held by
another session (lock timeout), a statement that runs too long (statement
timeout), a server that turned read-only, a database that refuses connections,
a backend terminated by an operator.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from glv_devtools.catalog import office_entries
from glv_devtools.portal import record_for, ticket
from glv_runtime.errors import Outage, is_outage
from glv_runtime.unit_of_work import create_pool
from glv_ticketing.app import build_spec
from glv_ticketing.settings import TicketingSettings
from tests.component.feed import Feeder, feeder_for
from tests.infra import Infra

pytestmark = pytest.mark.real


@contextlib.asynccontextmanager
async def ticketing_feeder(database_url: str, lock_timeout_ms: int, statement_timeout_ms: int) -> AsyncIterator[Feeder]:
    settings = TicketingSettings(
        database_url=database_url, db_lock_timeout_ms=lock_timeout_ms, db_statement_timeout_ms=statement_timeout_ms
    )
    pool = await create_pool(settings, min_size=0, max_size=2)
    try:
        feeder = await feeder_for(build_spec(settings), pool)
        await feeder.feed(*(record_for(e, source="/glv/scheduler") for e in office_entries()))
        yield feeder
    finally:
        await pool.close()


@pytest.fixture
async def feeder(database_url: str) -> AsyncIterator[Feeder]:
    async with ticketing_feeder(database_url, lock_timeout_ms=300, statement_timeout_ms=1500) as feeder:
        yield feeder


async def expect_outage_then_success(feeder: Feeder, seed: int, clear: Callable[[], Awaitable[None]]) -> None:
    record = record_for(
        ticket(random.Random(seed), portal_id="p", office_code="JKT", service_code="lelang"), source="/p"
    )
    delivery = feeder.delivery(record)
    with pytest.raises(Outage):
        await feeder.feed(delivery)
    await clear()
    assert await feeder.dead_letter_codes() == []
    await feeder.feed(delivery)  # the redelivery, once the trouble is over
    assert await feeder.db.fetchval("SELECT count(*) FROM ticket WHERE status = 'accepted'") == 1
    assert await feeder.dead_letter_codes() == []


async def test_a_lock_timeout_is_an_outage(feeder: Feeder, database_url: str) -> None:
    holder = await asyncpg.connect(database_url)
    transaction = holder.transaction()
    await transaction.start()
    await holder.execute("LOCK TABLE ticket IN ACCESS EXCLUSIVE MODE")
    try:
        await expect_outage_then_success(feeder, 1, transaction.rollback)
    finally:
        await holder.close()


async def test_a_statement_timeout_is_an_outage(database_url: str) -> None:
    # Without a lock timeout the wait runs into the statement timeout instead.
    async with ticketing_feeder(database_url, lock_timeout_ms=0, statement_timeout_ms=500) as feeder:
        holder = await asyncpg.connect(database_url)
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute("LOCK TABLE ticket IN ACCESS EXCLUSIVE MODE")
        try:
            await expect_outage_then_success(feeder, 2, transaction.rollback)
        finally:
            await holder.close()


@pytest.mark.parametrize(
    ("refuse", "allow"),
    [
        ("SET default_transaction_read_only = on", "RESET default_transaction_read_only"),  # after a failover
        ("CONNECTION LIMIT 0", "CONNECTION LIMIT -1"),  # too many connections (53300)
    ],
    ids=["read-only server", "too many connections"],
)
async def test_a_database_that_refuses_work_is_an_outage(
    feeder: Feeder, database_url: str, infra: Infra, refuse: str, allow: str
) -> None:
    name = quote(database_url)
    admin = await asyncpg.connect(infra.admin_dsn)
    try:
        await admin.execute(f"ALTER DATABASE {name} {refuse}")
        await feeder.db.pool.expire_connections()

        async def allow_again() -> None:
            await admin.execute(f"ALTER DATABASE {name} {allow}")
            await feeder.db.pool.expire_connections()

        await expect_outage_then_success(feeder, 3, allow_again)
    finally:
        await admin.close()


async def test_a_terminated_backend_is_an_outage(database_url: str, infra: Infra) -> None:
    async with ticketing_feeder(database_url, lock_timeout_ms=0, statement_timeout_ms=0) as feeder:
        await terminated_backend(feeder, database_url, infra)


async def terminated_backend(feeder: Feeder, database_url: str, infra: Infra) -> None:
    holder = await asyncpg.connect(database_url)
    transaction = holder.transaction()
    await transaction.start()
    await holder.execute("LOCK TABLE ticket IN ACCESS EXCLUSIVE MODE")
    admin = await asyncpg.connect(infra.admin_dsn)
    record = record_for(ticket(random.Random(5), portal_id="p", office_code="JKT", service_code="lelang"), source="/p")
    delivery = feeder.delivery(record)

    async def terminate_the_waiting_backend() -> None:
        while not await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = $1",
            database_url.rsplit("/", 1)[1],
        ):
            await asyncio.sleep(0.01)
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = $1",
            database_url.rsplit("/", 1)[1],
        )

    try:
        killer = asyncio.create_task(terminate_the_waiting_backend())
        with pytest.raises(Outage):
            await feeder.feed(delivery)
        await killer
        await transaction.rollback()
        await feeder.feed(delivery)
        assert await feeder.db.fetchval("SELECT count(*) FROM ticket WHERE status = 'accepted'") == 1
        assert await feeder.dead_letter_codes() == []
    finally:
        await admin.close()
        await holder.close()


def test_the_classification_covers_each_outage_class() -> None:
    for state in ("08006", "53300", "53100", "53200", "57P01", "57014", "55P03", "25006", "40001", "40P01", "58030"):
        error = asyncpg.PostgresError.new({"C": state, "M": "injected"})
        assert is_outage(error), state
    for state in ("22021", "23505", "22P02", "42P01"):  # data and programming errors belong to a message
        assert not is_outage(asyncpg.PostgresError.new({"C": state, "M": "injected"})), state


def quote(database_url: str) -> str:
    return '"' + database_url.rsplit("/", 1)[1] + '"'
