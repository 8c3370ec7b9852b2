"""Shared fixtures: real Kafka and PostgreSQL, a throwaway database and topic
namespace per test, and a ticketing service running in-process."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime

import asyncpg
import pytest
import structlog
from aiokafka.admin import AIOKafkaAdminClient

from glv_ticketing.settings import TicketingSettings
from tests.infra import Infra, provide_infra
from tests.portals import onboard_portals

# The tests run services the way the local stack does: development mode (ephemeral
# secrets where a test sets none, plaintext to the plain broker). Production's refusals
# are tested explicitly.
os.environ.setdefault("GLV_ENVIRONMENT", "development")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests under integration/ need the real broker and database.
    for item in items:
        if "/integration/" in str(item.path):
            item.add_marker(pytest.mark.real)


@pytest.fixture(autouse=True)
def logging_restored() -> Iterator[None]:
    """Logging as it was before the test. A command's main() (run by a test) configures
    logging on the stream it finds, capsys's during that test, which is closed after it:
    a later test's log line would fail on it."""
    config = structlog.get_config()
    context = structlog.contextvars.get_contextvars()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.configure(**config)
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(**context)
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    with provide_infra() as provided:
        yield provided


@pytest.fixture
async def topic_prefix(infra: Infra) -> AsyncIterator[str]:
    """Each test gets its own topics: nothing it sees was left by another test.

    They are deleted afterwards, so that the broker does not accumulate partitions
    (a broker with thousands of them starts slowly).
    """
    prefix = f"t{uuid.uuid4().hex[:10]}."
    yield prefix
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.bootstrap)
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


async def create_database(infra: Infra) -> str:
    """A throwaway database owned by the test role; its URL."""
    name = f"glv_t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(infra.admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = f"{infra.admin_dsn.rsplit('/', 1)[0]}/{name}"
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
    except asyncpg.PostgresError:
        pass  # where the role may not create it, the local stack has it in template1
    finally:
        await conn.close()
    return url


async def drop_database(infra: Infra, url: str) -> None:
    admin = await asyncpg.connect(infra.admin_dsn)
    try:
        for attempt in range(50):
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
                return
            except asyncpg.InsufficientPrivilegeError:
                # An autovacuum worker (the superuser's) is in it, which FORCE may not end for
                # the test role: it finishes within moments.
                if attempt == 49:
                    raise
                await asyncio.sleep(0.1)
    finally:
        await admin.close()


@pytest.fixture
async def database_url(infra: Infra) -> AsyncIterator[str]:
    url = await create_database(infra)
    yield url
    await drop_database(infra, url)


@pytest.fixture
async def scheduler_database_url(infra: Infra) -> AsyncIterator[str]:
    url = await create_database(infra)
    yield url
    await drop_database(infra, url)


@pytest.fixture
def scheduler_env(infra: Infra, scheduler_database_url: str, topic_prefix: str) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap,
        "GLV_SCHEDULER_DATABASE_URL": scheduler_database_url,
        "GLV_SCHEDULER_TOPIC_PREFIX": topic_prefix,
        "GLV_SCHEDULER_CONSUMER_GROUP": f"{topic_prefix}scheduler",
        "GLV_SCHEDULER_HTTP_PORT": str(free_port()),
        "GLV_SCHEDULER_WEBHOOK_SECRETS": '["test-webhook-secret-1"]',
        "GLV_SCHEDULER_JITSI_APP_SECRET": "test-jitsi-secret-of-at-least-32-bytes!!",
        "GLV_SCHEDULER_RETRY_BACKOFF_S": "0.05",
        "GLV_SCHEDULER_OUTAGE_BACKOFF_S": "0.3",
        "GLV_SCHEDULER_RELAY_POLL_INTERVAL_S": "0.2",
        "GLV_SCHEDULER_LOG_LEVEL": "WARNING",
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Clock:
    """A settable clock for the service under test."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def portal_tokens(infra: Infra, database_url: str, topic_prefix: str) -> dict[str, str]:
    """The test portals, onboarded in ticketing's database and on the broker (their topics)."""
    settings = TicketingSettings(
        kafka_bootstrap_servers=infra.bootstrap, database_url=database_url, topic_prefix=topic_prefix
    )
    return await onboard_portals(settings)


@pytest.fixture
def ticketing_env(infra: Infra, database_url: str, topic_prefix: str, portal_tokens: dict[str, str]) -> dict[str, str]:
    """Environment for a ticketing process (subprocess tests) or settings (in-process)."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap,
        "GLV_TICKETING_DATABASE_URL": database_url,
        "GLV_TICKETING_TOPIC_PREFIX": topic_prefix,
        "GLV_TICKETING_CONSUMER_GROUP": f"{topic_prefix}ticketing",
        "GLV_TICKETING_HTTP_PORT": str(free_port()),
        "GLV_TICKETING_RETRY_BACKOFF_S": "0.05",
        "GLV_TICKETING_OUTAGE_BACKOFF_S": "0.5",
        "GLV_TICKETING_RELAY_POLL_INTERVAL_S": "0.2",
        "GLV_TICKETING_LOG_LEVEL": "WARNING",
    }


ClockFactory = Callable[[], Clock]
