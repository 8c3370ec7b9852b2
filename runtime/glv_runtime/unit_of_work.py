"""The unit of work: every state change a service makes goes through one.

A unit of work is one database transaction. What a handler changes, the events
it publishes (outbox), the messages it dead-letters and the side-effect jobs it
enqueues commit together or not at all. After the commit the relay and the job
runner are woken in this process (other replicas hear NOTIFY). No service writes
the outbox, the dead letters or the jobs table itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel

from glv_runtime import metrics
from glv_runtime.db import DbConnection
from glv_runtime.deadletters import DeadLetter, write_dead_letters
from glv_runtime.jobs_store import JobRequest, write_jobs
from glv_runtime.logs import get_logger
from glv_runtime.notifications import Connect
from glv_runtime.outbox import OutboxMessage, event_message, write_outbox
from glv_runtime.settings import ServiceSettings
from glv_runtime.transport import database_connect_options

log = get_logger(__name__)


class UnitOfWork:
    """What one transaction will commit, beside the state changes made on `conn`."""

    def __init__(self, conn: DbConnection, source: str) -> None:
        self.conn = conn
        self._source = source
        self._messages: list[OutboxMessage] = []
        self._letters: list[DeadLetter] = []
        self._jobs: list[JobRequest] = []
        # What the commit will have written, for the after-commit wake-ups.
        self.wrote_outbox = False
        self.wrote_jobs = False

    def publish(
        self, event: BaseModel, *, key: str, traceparent: str | None = None, time: datetime | None = None
    ) -> None:
        """Publish an event on its registry topic once the transaction commits."""
        self._messages.append(event_message(event, source=self._source, key=key, traceparent=traceparent, time=time))

    def publish_messages(self, messages: Sequence[OutboxMessage]) -> None:
        self._messages.extend(messages)

    def dead_letter(self, *letters: DeadLetter) -> None:
        self._letters.extend(letters)

    def enqueue(self, *jobs: JobRequest) -> None:
        """A side effect to perform after the commit (a mail, an upload, an HTTP call)."""
        self._jobs.extend(jobs)

    async def flush(self) -> None:
        """Write what was collected, inside the open transaction (called by `Database`)."""
        for letter in await write_dead_letters(self.conn, self._letters):
            metrics.DEAD_LETTERED.labels(topic=letter.topic, code=letter.code).inc()
            log.warning(
                "dead-lettered",
                code=letter.code,
                error=letter.error,
                topic=letter.topic,
                partition=letter.partition,
                offset=letter.offset,
                event_id=letter.event_id,
            )
        self.wrote_outbox = bool(self._messages or self._letters)
        self.wrote_jobs = bool(self._jobs)
        await write_outbox(self.conn, self._messages)
        await write_jobs(self.conn, self._jobs)
        self._letters.clear()
        self._messages.clear()
        self._jobs.clear()


def connection_settings(settings: ServiceSettings) -> dict[str, str]:
    # A statement or lock wait that runs away holds a batch (and its partition)
    # hostage; with these set it fails fast as an outage and is retried.
    return {
        "statement_timeout": str(settings.db_statement_timeout_ms),
        "lock_timeout": str(settings.db_lock_timeout_ms),
        "application_name": f"glv-{settings.service_name}",
    }


async def create_pool(
    settings: ServiceSettings, *, min_size: int | None = None, max_size: int | None = None
) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        settings.dsn(),
        min_size=settings.db_pool_min if min_size is None else min_size,
        max_size=settings.db_pool_max if max_size is None else max_size,
        server_settings=connection_settings(settings),
        timeout=settings.db_connect_timeout_s,
        **database_connect_options(settings),
    )


def connector(settings: ServiceSettings) -> Connect:
    """Opens a single connection (LISTEN) the way the pool opens its own: TLS included."""

    async def connect() -> asyncpg.Connection[Any]:
        conn: asyncpg.Connection[Any] = await asyncpg.connect(
            settings.dsn(), timeout=settings.db_connect_timeout_s, **database_connect_options(settings)
        )
        return conn

    return connect


class Database:
    """A service's database: the pool, and units of work on it."""

    def __init__(self, pool: asyncpg.Pool, *, source: str) -> None:
        self.pool = pool
        self.source = source
        self._after_commit: list[Callable[[UnitOfWork], None]] = []

    def after_commit(self, callback: Callable[[UnitOfWork], None]) -> None:
        """Called after every commit in this process (wakes the relay and the job runner)."""
        self._after_commit.append(callback)

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[UnitOfWork]:
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                uow = UnitOfWork(conn, self.source)
                yield uow
                await uow.flush()
            for callback in self._after_commit:
                callback(uow)

    async def fetchval(self, query: str, *args: Any) -> Any:
        """A read outside any unit of work (status API, readiness)."""
        async with self.pool.acquire() as conn:
            return await conn.fetchval(query, *args)
