"""Transactional outbox: events are written with the state change, a relay publishes them.

The relay publishes unsent rows in id order, so the events of one key leave in
the order they were written. Only one relay per database works at a time (a
transaction-level advisory lock), because two relays publishing disjoint
`SKIP LOCKED` slices could reorder one key's events between them; the others
stand by and take over within one poll interval if it dies.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import asyncpg
from pydantic import BaseModel

from glv_runtime import metrics
from glv_runtime.db import DbConnection
from glv_runtime.logs import get_logger
from glv_schemas import CloudEvent, new_cloud_event, topic_of

log = get_logger(__name__)

_RELAY_LOCK = 7_266_412


@dataclass(frozen=True)
class OutboxMessage:
    """One Kafka record to publish once the transaction that wrote it commits."""

    topic: str
    key: bytes | None
    headers: list[tuple[str, bytes]]
    payload: bytes | None


def event_message(
    event: BaseModel,
    *,
    source: str,
    key: str,
    traceparent: str | None = None,
    time: datetime | None = None,
) -> OutboxMessage:
    """Wrap an event model in its CloudEvents headers, bound for its registry topic."""
    model = type(event)
    ce: CloudEvent = new_cloud_event(
        model,  # type: ignore[arg-type]
        source=source,
        subject=key,
        traceparent=traceparent,
        time=time,
    )
    return OutboxMessage(
        topic=topic_of(model).name,  # type: ignore[arg-type]
        key=key.encode(),
        headers=ce.to_headers(),
        payload=event.model_dump_json().encode(),
    )


async def write_outbox(conn: DbConnection, messages: Sequence[OutboxMessage]) -> None:
    """Insert messages in one statement, inside the caller's transaction."""
    if not messages:
        return
    await conn.execute(
        "INSERT INTO glv_outbox (topic, msg_key, headers, payload)"
        " SELECT * FROM unnest($1::text[], $2::bytea[], $3::jsonb[], $4::bytea[])",
        [m.topic for m in messages],
        [m.key for m in messages],
        # base64 keeps header bytes exact, even ones that are not UTF-8 (dead letters).
        [json.dumps([[name, base64.b64encode(value).decode()] for name, value in m.headers]) for m in messages],
        [m.payload for m in messages],
    )


class RecordSender(Protocol):
    async def send_all(self, records: Sequence[OutboxMessage]) -> None:
        """Publish in order and return once every record is acknowledged (acks=all)."""


class OutboxRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        sender: RecordSender,
        *,
        dsn: str,
        poll_interval_s: float,
        batch_size: int,
        retention_s: int,
        inbox_retention_days: int = 30,
    ) -> None:
        self._pool = pool
        self._sender = sender
        self._dsn = dsn
        self._poll_interval_s = poll_interval_s
        self._batch_size = batch_size
        self._retention_s = retention_s
        self._inbox_retention_days = inbox_retention_days
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listen_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")
        self._listen_task = asyncio.create_task(self._listen(), name="outbox-listen")

    async def stop(self) -> None:
        """Finish the batch in hand, publish what is ready, then stop."""
        self._stopping.set()
        self._wake.set()
        for task in (self._task, self._listen_task):
            if task is not None:
                if task is self._listen_task:
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _listen(self) -> None:
        # A dedicated connection for LISTEN; when PostgreSQL restarts it is
        # re-opened, and polling covers the gap.
        while not self._stopping.is_set():
            conn: asyncpg.Connection[Any] | None = None
            try:
                conn = await asyncpg.connect(self._dsn)
                await conn.add_listener("glv_outbox", lambda *_: self._wake.set())
                while not conn.is_closed() and not self._stopping.is_set():
                    await asyncio.sleep(self._poll_interval_s)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await asyncio.sleep(self._poll_interval_s)
            finally:
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.close()

    async def _run(self) -> None:
        last_purge = 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                published = await self.publish_once()
                if loop.time() - last_purge > 60:
                    await self._purge_sent()
                    last_purge = loop.time()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError) as exc:
                log.warning("outbox relay cannot reach the database", error=type(exc).__name__)
                published = 0
                await asyncio.sleep(self._poll_interval_s)
            except Exception as exc:  # the broker is unreachable, or a send failed
                log.warning("outbox relay publish failed, will retry", error=repr(exc))
                published = 0
                await asyncio.sleep(self._poll_interval_s)
            if self._stopping.is_set() and published == 0:
                return
            if published == self._batch_size:
                continue  # more is waiting
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_interval_s)

    async def publish_once(self) -> int:
        """Publish one batch of unsent rows; return how many were published."""
        async with self._pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _RELAY_LOCK):
                return 0
            rows = await conn.fetch(
                "SELECT id, topic, msg_key, headers, payload FROM glv_outbox"
                " WHERE sent_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
                self._batch_size,
            )
            backlog = await conn.fetchval("SELECT count(*) FROM glv_outbox WHERE sent_at IS NULL")
            metrics.OUTBOX_BACKLOG.set(backlog)
            if not rows:
                return 0
            records = [
                OutboxMessage(
                    topic=r["topic"],
                    key=r["msg_key"],
                    headers=[(name, base64.b64decode(value)) for name, value in json.loads(r["headers"])],
                    payload=r["payload"],
                )
                for r in rows
            ]
            # If we die after sending and before this commit, the rows are sent
            # again: consumers' inboxes make the duplicate harmless.
            await self._sender.send_all(records)
            await conn.execute(
                "UPDATE glv_outbox SET sent_at = now() WHERE id = ANY($1::bigint[])", [r["id"] for r in rows]
            )
        for record in records:
            metrics.PUBLISHED.labels(topic=record.topic).inc()
        metrics.OUTBOX_BACKLOG.set(max(0, backlog - len(rows)))
        return len(rows)

    async def _purge_sent(self) -> None:
        # Sent rows (a dead letter's copy of personal data among them) go after the
        # retention; inbox ids go once no redelivery can be that old.
        async with self._pool.acquire() as conn:
            await conn.execute(
                "DELETE FROM glv_outbox WHERE sent_at < now() - make_interval(secs => $1)", float(self._retention_s)
            )
            await conn.execute(
                "DELETE FROM glv_inbox WHERE applied_at < now() - make_interval(days => $1)", self._inbox_retention_days
            )
