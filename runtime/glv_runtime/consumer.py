"""Batch consumption with exactly-once effects.

A batch is what the partitions have ready, up to a bound. It is applied in one
database transaction: the service's effects, the inbox rows of the events
applied and the outbox rows of the events it publishes. Only after that
transaction commits are the offsets committed, so a crash anywhere redelivers
the batch and the inbox makes the redelivery change nothing.

If the batch transaction fails because of one message, the batch is applied
again one message per transaction, each with bounded attempts; the ones that
keep failing are dead-lettered (through the outbox, in the same transaction
that records their position) and the rest are applied once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from pydantic import BaseModel, ValidationError

from glv_runtime import metrics
from glv_runtime.db import DbConnection
from glv_runtime.deadletters import DeadLetter, write_dead_letters
from glv_runtime.logs import get_logger
from glv_runtime.outbox import OutboxMessage, write_outbox
from glv_schemas import CloudEvent, EnvelopeError, model_for, read_headers

log = get_logger(__name__)

# Errors that say nothing about the message: the database is unreachable, or the
# transaction lost a deadlock or serialization race against another replica.
# Nothing is acknowledged and the batch is tried again after a backoff.
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.TransactionRollbackError,
    OSError,
    ConnectionError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.CannotConnectNowError,
)


class Outage(RuntimeError):
    """The database cannot be reached; the caller must not acknowledge the batch."""


class PermanentFailure(Exception):
    """A message the service can never apply (raised by a service's applier)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Delivery:
    """One Kafka record as received, before any decoding."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    value: bytes | None

    @classmethod
    def from_record(cls, record: Any) -> Delivery:
        return cls(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key if isinstance(record.key, bytes | None) else str(record.key).encode(),
            headers=tuple((name, bytes(value or b"")) for name, value in (record.headers or ())),
            value=record.value,
        )


@dataclass(frozen=True)
class Inbound:
    """A decoded message: its CloudEvents attributes and its typed event."""

    delivery: Delivery
    cloud_event: CloudEvent
    event: BaseModel


Applier = Callable[[DbConnection, Sequence[Inbound]], Awaitable[list[OutboxMessage]]]
"""A service's use case: apply these events in the open transaction, return what to publish."""


def decode(delivery: Delivery) -> Inbound:
    """Read envelope and data; raises PermanentFailure for anything malformed."""
    try:
        cloud_event = read_headers(list(delivery.headers))
        model = model_for(cloud_event.type)
    except EnvelopeError as exc:
        raise PermanentFailure(exc.code, exc.detail) from exc
    if delivery.value is None:
        raise PermanentFailure("empty_value", "the record has no value")
    try:
        event = model.model_validate_json(delivery.value)
    except ValidationError as exc:
        # Field paths and error kinds only: the input values may be personal data.
        where = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['type']}" for e in exc.errors()[:10])
        code = "bad_json" if any(e["type"] == "json_invalid" for e in exc.errors()) else "invalid_event"
        raise PermanentFailure(code, where) from exc
    return Inbound(delivery=delivery, cloud_event=cloud_event, event=event)


class BatchProcessor:
    def __init__(
        self,
        pool: asyncpg.Pool,
        apply: Applier,
        *,
        service: str,
        max_attempts: int,
        retry_backoff_s: float,
        crash_after_db_commit: bool = False,
        decoder: Callable[[Delivery], Inbound] = decode,
    ) -> None:
        self._pool = pool
        self._apply = apply
        self._service = service
        self._max_attempts = max_attempts
        self._retry_backoff_s = retry_backoff_s
        self._crash_after_db_commit = crash_after_db_commit
        self._decode = decoder

    async def process(self, deliveries: Sequence[Delivery]) -> None:
        """Apply a batch; returns once its effects are committed. Raises Outage."""
        started = time.perf_counter()
        decoded: list[Inbound] = []
        undecodable: list[DeadLetter] = []
        for delivery in deliveries:
            try:
                decoded.append(self._decode(delivery))
            except PermanentFailure as exc:
                undecodable.append(DeadLetter.of(delivery, self._service, exc.code, exc.detail, attempts=1))
        try:
            await self._apply_together(decoded, undecodable)
        except OUTAGE_ERRORS as exc:
            raise Outage(repr(exc)) from exc
        except Exception as exc:
            log.warning("batch failed, applying its messages one by one", error=repr(exc), size=len(deliveries))
            try:
                await self._commit(lambda conn: self._dead_letter(conn, undecodable))
                for item in decoded:
                    await self._apply_alone(item)
            except OUTAGE_ERRORS as outage:
                raise Outage(repr(outage)) from outage
        metrics.BATCH_SIZE.observe(len(deliveries))
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)

    async def _commit(self, work: Callable[[DbConnection], Awaitable[None]]) -> None:
        async with self._pool.acquire() as conn:
            async with conn.transaction():
                await work(conn)
            if self._crash_after_db_commit:
                # Fault injection: die between the database commit and the offset commit.
                os.kill(os.getpid(), signal.SIGKILL)

    async def _apply_together(self, items: Sequence[Inbound], undecodable: Sequence[DeadLetter]) -> None:
        async def work(conn: DbConnection) -> None:
            await self._dead_letter(conn, undecodable)
            fresh = await self._claim(conn, items)
            await write_outbox(conn, await self._apply(conn, fresh) if fresh else [])

        await self._commit(work)

    async def _apply_alone(self, item: Inbound) -> None:
        for attempt in range(1, self._max_attempts + 1):
            try:
                await self._apply_together([item], [])
                return
            except OUTAGE_ERRORS:
                raise
            except PermanentFailure as exc:
                code, detail = exc.code, exc.detail
                break
            except Exception as exc:
                metrics.FAILED.labels(topic=item.delivery.topic).inc()
                code, detail = "handler_error", f"{type(exc).__name__}: {exc}"[:2000]
                log.warning(
                    "message failed",
                    attempt=attempt,
                    error=detail,
                    event_id=item.cloud_event.id,
                    ticket_id=item.cloud_event.subject,
                )
                if attempt < self._max_attempts:
                    await asyncio.sleep(self._retry_backoff_s * attempt)
        letter = DeadLetter.of(
            item.delivery, self._service, code, detail, attempts=attempt, event_id=item.cloud_event.id
        )
        await self._commit(lambda conn: self._dead_letter(conn, [letter]))

    async def _claim(self, conn: DbConnection, items: Sequence[Inbound]) -> list[Inbound]:
        """Record the events in the inbox; return those not applied before, first copy only."""
        if not items:
            return []
        positions = await conn.fetch(
            'SELECT d.topic, d.partition, d."offset" FROM glv_dead_letter d'
            " JOIN unnest($1::text[], $2::int[], $3::bigint[]) AS p(topic, partition, off)"
            ' ON d.topic = p.topic AND d.partition = p.partition AND d."offset" = p.off',
            [i.delivery.topic for i in items],
            [i.delivery.partition for i in items],
            [i.delivery.offset for i in items],
        )
        already_dead = {(r["topic"], r["partition"], r["offset"]) for r in positions}
        candidates = [
            i for i in items if (i.delivery.topic, i.delivery.partition, i.delivery.offset) not in already_dead
        ]
        rows = await conn.fetch(
            "INSERT INTO glv_inbox (event_id) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING RETURNING event_id",
            [i.cloud_event.id for i in candidates],
        )
        new_ids = {r["event_id"] for r in rows}
        fresh: list[Inbound] = []
        for item in candidates:
            if item.cloud_event.id in new_ids:
                new_ids.discard(item.cloud_event.id)  # a second copy in the same batch is a duplicate
                fresh.append(item)
                metrics.CONSUMED.labels(topic=item.delivery.topic, type=item.cloud_event.type).inc()
            else:
                metrics.DUPLICATES.labels(topic=item.delivery.topic).inc()
                log.info(
                    "duplicate ignored",
                    event_id=item.cloud_event.id,
                    ticket_id=item.cloud_event.subject,
                    trace_id=item.cloud_event.trace_id,
                )
        return fresh

    async def _dead_letter(self, conn: DbConnection, letters: Sequence[DeadLetter]) -> None:
        for letter in await write_dead_letters(conn, letters):
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
