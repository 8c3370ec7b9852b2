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
from typing import Protocol

import asyncpg
from pydantic import BaseModel

from glv_runtime import metrics
from glv_runtime.db import DbConnection
from glv_runtime.errors import is_outage
from glv_runtime.logs import get_logger
from glv_runtime.notifications import DsnOrConnect, listen
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

    def size(self) -> int:
        return len(self.key or b"") + len(self.payload or b"") + sum(len(n) + len(v) for n, v in self.headers)


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
    """Insert messages in one statement, inside the caller's transaction (the unit of work's)."""
    if not messages:
        return
    encoded_headers = [
        # base64 keeps header bytes exact, even ones that are not UTF-8 (dead letters).
        json.dumps([[name, base64.b64encode(value).decode()] for name, value in m.headers])
        for m in messages
    ]
    await conn.execute(
        "INSERT INTO glv_outbox (topic, msg_key, headers, payload, size_bytes)"
        " SELECT * FROM unnest($1::text[], $2::bytea[], $3::jsonb[], $4::bytea[], $5::int[])",
        [m.topic for m in messages],
        [m.key for m in messages],
        encoded_headers,
        [m.payload for m in messages],
        [m.size() for m in messages],
    )


class RecordSender(Protocol):
    async def send_all(self, records: Sequence[OutboxMessage]) -> dict[int, str]:
        """Publish in order and return once every accepted record is acknowledged (acks=all).

        Returns the records the broker can never take (index -> error): too large,
        neither key nor value. Raises when the broker is unreachable (retry later).
        """


class OutboxRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        sender: RecordSender,
        *,
        dsn: DsnOrConnect,
        poll_interval_s: float,
        batch_size: int,
        batch_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self._pool = pool
        self._sender = sender
        self._dsn = dsn
        self._poll_interval_s = poll_interval_s
        self._batch_size = batch_size
        self._batch_bytes = batch_bytes
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listen_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")
        self._listen_task = asyncio.create_task(
            listen(self._dsn, "glv_outbox", self._wake, self._stopping, self._poll_interval_s), name="outbox-listen"
        )

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        """Finish the batch in hand, publish what is ready, then stop."""
        self._stopping.set()
        self._wake.set()
        if self._listen_task is not None:
            self._listen_task.cancel()
        for task in (self._task, self._listen_task):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _run(self) -> None:
        while True:
            try:
                published, full = await self.publish_once()
            except Exception as exc:  # the database or the broker is unreachable
                log.warning("outbox relay round failed, will retry", error=repr(exc), outage=is_outage(exc))
                published, full = 0, False
                await asyncio.sleep(self._poll_interval_s)
            if self._stopping.is_set() and published == 0:
                return
            if full:
                continue  # more is waiting
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_interval_s)

    async def publish_once(self) -> tuple[int, bool]:
        """Publish one batch of pending rows; return how many were handled and whether the batch was full."""
        async with self._pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _RELAY_LOCK):
                return 0, False
            # Sizes first, so that the batch is bounded by bytes as well as rows.
            sized = await conn.fetch(
                "SELECT id, size_bytes FROM glv_outbox WHERE sent_at IS NULL AND parked_at IS NULL"
                " ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
                self._batch_size,
            )
            # Counted only when the batch is full: otherwise every pending row is in hand
            # (the common case at low rates, where a round trip is latency).
            backlog = len(sized)
            if backlog == self._batch_size:
                backlog = await conn.fetchval(
                    "SELECT count(*) FROM glv_outbox WHERE sent_at IS NULL AND parked_at IS NULL"
                )
            metrics.OUTBOX_BACKLOG.set(backlog)
            ids = _within_budget([(r["id"], r["size_bytes"]) for r in sized], self._batch_bytes)
            if not ids:
                return 0, False
            rows = await conn.fetch(
                "SELECT id, topic, msg_key, headers, payload FROM glv_outbox WHERE id = ANY($1::bigint[]) ORDER BY id",
                ids,
            )
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
            refused = await self._sender.send_all(records)
            sent_ids = [r["id"] for i, r in enumerate(rows) if i not in refused]
            await conn.execute("UPDATE glv_outbox SET sent_at = now() WHERE id = ANY($1::bigint[])", sent_ids)
            for index, error in refused.items():
                # Parked, not retried: it can never be published, and retrying it
                # would hold back every row behind it.
                await conn.execute(
                    "UPDATE glv_outbox SET parked_at = now(), error = $2 WHERE id = $1", rows[index]["id"], error[:2000]
                )
                metrics.OUTBOX_PARKED.labels(topic=records[index].topic).inc()
                log.error("outbox row parked", outbox_id=rows[index]["id"], topic=records[index].topic, error=error)
        for index, record in enumerate(records):
            if index not in refused:
                metrics.PUBLISHED.labels(topic=record.topic).inc()
        return len(rows), len(sized) == self._batch_size or len(ids) < len(sized)


def _within_budget(sizes: Sequence[tuple[int, int]], budget: int) -> list[int]:
    """The leading ids whose sizes fit the budget; always at least one, so a big row still moves."""
    chosen: list[int] = []
    total = 0
    for row_id, size in sizes:
        if chosen and total + size > budget:
            break
        chosen.append(row_id)
        total += size
    return chosen


async def purge_sent(conn: DbConnection, retention_s: float, inbox_retention_days: int) -> None:
    """Housekeeping: sent rows (a dead letter's copy of personal data among them) go after
    the retention; inbox ids go once no redelivery can be that old."""
    await conn.execute("DELETE FROM glv_outbox WHERE sent_at < now() - make_interval(secs => $1)", float(retention_s))
    await conn.execute(
        "DELETE FROM glv_inbox WHERE applied_at < now() - make_interval(days => $1)", inbox_retention_days
    )
