"""The scheduler's use case on a throwaway PostgreSQL, without Kafka: a database with a
catalog, events handed over as the consumer would, and what the outbox then holds."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg

from glv_runtime.consumer import Delivery, Inbound, decode
from glv_runtime.migrate import apply_migrations
from glv_runtime.unit_of_work import Database
from glv_scheduler import store
from glv_scheduler.catalog import read_catalog
from glv_scheduler.handlers import SOURCE, SchedulerUseCase
from glv_scheduler.meetings import provider_from_settings
from glv_schemas import new_cloud_event, topic_of
from glv_schemas.base import Event


@contextlib.asynccontextmanager
async def scheduler_database(url: str, catalog_file: Path) -> AsyncIterator[Database]:
    """The scheduler's schema on `url`, with the catalog file stored."""
    pool = await asyncpg.create_pool(url, min_size=1, max_size=6)
    try:
        async with pool.acquire() as conn:
            await apply_migrations(conn, ["glv_runtime.migrations", "glv_scheduler.migrations"])
            async with conn.transaction():
                await store.save_catalog(conn, read_catalog(catalog_file))
        yield Database(pool, source=SOURCE)
    finally:
        await pool.close()


def use_case_at(clock: Callable[[], datetime]) -> SchedulerUseCase:
    meetings = provider_from_settings(
        "jitsi", domain="meet.test", app_id="glv", app_secret="test-jitsi-secret-of-at-least-32-bytes!!"
    )
    return SchedulerUseCase(meetings, clock)


_offsets = itertools.count()


def inbound(event: Event) -> Inbound:
    """The event as the consumer would hand it over: headers, key and value, decoded."""
    model = type(event)
    cloud_event = new_cloud_event(model, source="/glv/ticketing", subject=str(event.ticket_id))
    delivery = Delivery(
        topic=topic_of(model).name,
        partition=0,
        offset=next(_offsets),
        key=str(event.ticket_id).encode(),
        headers=tuple(cloud_event.to_headers()),
        value=event.model_dump_json().encode(),
    )
    return decode(delivery)


async def published_since(db: Database, after: int) -> list[tuple[str, dict[str, Any]]]:
    """(event type, data) of what the outbox holds after row id `after`."""
    rows = await db.pool.fetch("SELECT headers, payload FROM glv_outbox WHERE id > $1 ORDER BY id", after)
    found = []
    for row in rows:
        headers = {name: base64.b64decode(value).decode() for name, value in json.loads(row["headers"])}
        found.append((headers["ce_type"].split(".")[1], json.loads(row["payload"])))
    return found


async def apply(db: Database, use_case: SchedulerUseCase, *events: Event) -> list[tuple[str, dict[str, Any]]]:
    """Apply the events as one batch in one unit of work; what it published."""
    last = await db.pool.fetchval("SELECT coalesce(max(id), 0) FROM glv_outbox")
    async with db.unit_of_work() as uow:
        await use_case.router().apply(uow, [inbound(e) for e in events])
    return await published_since(db, last)


async def until_another_transaction_waits(db: Database, timeout_s: float = 10) -> None:
    """Until some backend of this database waits on a lock another transaction holds."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await db.pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    ):
        assert asyncio.get_running_loop().time() < deadline, "no transaction came to wait on the lock"
        await asyncio.sleep(0.01)
