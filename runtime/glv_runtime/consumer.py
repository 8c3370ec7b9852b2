"""Batch consumption with exactly-once effects.

A batch is what the partitions have ready, up to a bound. It is applied in one
unit of work: the service's effects, the inbox rows of the events applied, the
outbox rows of the events it publishes and its dead letters. Only after that
transaction commits are the offsets committed, so a crash anywhere redelivers
the batch and the inbox makes the redelivery change nothing.

If the batch fails because of one message, the batch is applied again one
message per unit of work, each with bounded attempts; the ones that keep failing
are dead-lettered (in the unit of work that records their position) and the rest
are applied once. A failure that says nothing about the messages (the database
is down, a lock or statement timed out, the server is read-only) is an outage:
nothing is acknowledged and the whole batch is retried after a backoff.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from glv_runtime import metrics
from glv_runtime.deadletters import DeadLetter, printable
from glv_runtime.errors import Outage, is_outage
from glv_runtime.logs import get_logger
from glv_runtime.unit_of_work import Database, UnitOfWork
from glv_schemas import CloudEvent, EnvelopeError, model_for, read_headers, topic_of

log = get_logger(__name__)

# An event is far smaller (text fields are capped at 20,000 characters); anything
# bigger is refused before it is parsed, so that it costs no memory to refuse.
MAX_EVENT_BYTES = 512 * 1024
# "\u0000" in JSON text (not preceded by an escaping backslash) decodes to NUL,
# which PostgreSQL refuses in text and jsonb: refused here, with a clear code.
_JSON_NUL = re.compile(rb"(?:^|[^\\])(?:\\\\)*\\u0000")

__all__ = ["Outage", "PermanentFailure"]


class PermanentFailure(Exception):
    """A message the service can never apply (raised by decoding or by a handler)."""

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
    # Set when the client library could not read the record at all (fetch_guard).
    unreadable: str | None = None

    @classmethod
    def from_record(cls, record: Any) -> Delivery:
        unreadable = getattr(record, "unreadable", None)
        if unreadable is not None:
            # What the guard could still recover of it, kept for the dead letter.
            return cls(
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                key=getattr(record, "raw_key", None),
                headers=tuple(
                    (name.decode("utf-8", "backslashreplace"), value or b"")
                    for name, value in getattr(record, "raw_headers", ()) or ()
                ),
                value=getattr(record, "raw_value", None),
                unreadable=str(unreadable),
            )
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
    # The portal whose own topic the record came from (the broker vouches for it), if any.
    portal_id: str | None = None


Applier = Callable[[UnitOfWork, Sequence[Inbound]], Awaitable[None]]
"""A service's use case: apply these events in the open unit of work."""


def record_key(event: BaseModel, field: str) -> str:
    """The key an event's record must have: its topic's key field, or (an event about no one
    ticket, such as an erasure request) what its own `record_key()` says."""
    own = getattr(event, "record_key", None)
    return str(own()) if callable(own) else str(getattr(event, field))


def check_key(delivery: Delivery, expected: str) -> None:
    """A ticket's events are keyed by its id: one keyed otherwise could overtake or be
    overtaken by the ticket's other events on another partition."""
    if delivery.key is None:
        raise PermanentFailure("missing_key", f"the record has no key; expected {expected!r}")
    if delivery.key != expected.encode():
        raise PermanentFailure("key_mismatch", "the record key is not the event's " + expected)


def read_envelope(delivery: Delivery) -> CloudEvent:
    """The CloudEvents attributes, or PermanentFailure for anything that is not one."""
    if delivery.unreadable is not None:
        raise PermanentFailure("unreadable_record", delivery.unreadable)
    try:
        cloud_event = read_headers(list(delivery.headers))
    except EnvelopeError as exc:
        raise PermanentFailure(exc.code, exc.detail) from exc
    if delivery.value is None:
        raise PermanentFailure("empty_value", "the record has no value")
    if len(delivery.value) > MAX_EVENT_BYTES:
        raise PermanentFailure("too_large", f"{len(delivery.value)} bytes, the limit is {MAX_EVENT_BYTES}")
    # The substring test is a fast C scan; the regex (which tells an escaped backslash
    # from a real escape) only runs on the rare value that holds the substring.
    if b"\\u0000" in delivery.value and _JSON_NUL.search(delivery.value):
        raise PermanentFailure("nul_character", "the JSON holds a NUL character (\\u0000)")
    return cloud_event


def decode(delivery: Delivery) -> Inbound:
    """Read envelope and data; raises PermanentFailure for anything malformed, whatever its bytes."""
    cloud_event = read_envelope(delivery)
    try:
        model = model_for(cloud_event.type)
    except EnvelopeError as exc:
        raise PermanentFailure(exc.code, exc.detail) from exc
    assert delivery.value is not None
    try:
        event = model.model_validate_json(delivery.value)
    except ValidationError as exc:
        # Field paths and error kinds only: the input values may be personal data.
        where = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['type']}" for e in exc.errors()[:10])
        code = "bad_json" if any(e["type"] == "json_invalid" for e in exc.errors()) else "invalid_event"
        raise PermanentFailure(code, printable(where) or "") from exc
    except (ValueError, RecursionError, MemoryError) as exc:  # whatever a parser may still raise
        raise PermanentFailure("bad_json", type(exc).__name__) from exc
    topic = topic_of(model)
    if not topic.names(delivery.topic):
        # Each type has one producer and one topic: a SlotAssigned on a portal's topic is forged.
        raise PermanentFailure("wrong_topic", f"{cloud_event.type} belongs on {topic.name}")
    check_key(delivery, record_key(event, topic.key))
    portal_id = topic.portal_in(delivery.topic)
    if portal_id is not None:
        check_portal(portal_id, getattr(event, "portal_id", None))
    return Inbound(delivery=delivery, cloud_event=cloud_event, event=event, portal_id=portal_id)


def check_portal(topic_portal: str, body_portal: object) -> None:
    """A portal speaks only for itself: the broker let only `topic_portal` write its topic,
    so a body naming another portal is refused, whatever it asks."""
    if body_portal != topic_portal:
        raise PermanentFailure(
            "portal_mismatch", f"portal_id {str(body_portal)[:64]!r} in a record on portal {topic_portal!r}'s own topic"
        )


class BatchProcessor:
    def __init__(
        self,
        db: Database,
        apply: Applier,
        *,
        service: str,
        max_attempts: int,
        retry_backoff_s: float,
        crash_after_db_commit: bool = False,
        decoder: Callable[[Delivery], Inbound] = decode,
    ) -> None:
        self._db = db
        self._apply = apply
        self._service = service
        self._max_attempts = max_attempts
        self._retry_backoff_s = retry_backoff_s
        self._crash_after_db_commit = crash_after_db_commit
        self._decode = decoder
        # When a batch last committed (monotonic seconds): readiness watches it.
        self.last_progress = time.monotonic()

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
        except Exception as exc:
            if is_outage(exc):
                raise Outage(repr(exc)) from exc
            log.warning("batch failed, applying its messages one by one", error=repr(exc), size=len(deliveries))
            try:
                await self._commit(lambda uow: self._dead_letter(uow, undecodable))
                for item in decoded:
                    await self._apply_alone(item)
            except Exception as again:
                if is_outage(again):
                    raise Outage(repr(again)) from again
                raise
        self.last_progress = time.monotonic()
        metrics.BATCH_SIZE.observe(len(deliveries))
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)

    async def _commit(self, work: Callable[[UnitOfWork], Awaitable[None]]) -> None:
        async with self._db.unit_of_work() as uow:
            await work(uow)
        if self._crash_after_db_commit:
            # Fault injection: die between the database commit and the offset commit.
            os.kill(os.getpid(), signal.SIGKILL)

    async def _apply_together(self, items: Sequence[Inbound], undecodable: Sequence[DeadLetter]) -> None:
        async def work(uow: UnitOfWork) -> None:
            await self._dead_letter(uow, undecodable)
            fresh = await self._claim(uow, items)
            if fresh:
                await self._apply(uow, fresh)

        await self._commit(work)

    async def _apply_alone(self, item: Inbound) -> None:
        for attempt in range(1, self._max_attempts + 1):
            try:
                await self._apply_together([item], [])
                return
            except PermanentFailure as exc:
                code, detail = exc.code, exc.detail
                break
            except Exception as exc:
                if is_outage(exc):
                    raise
                metrics.FAILED.labels(topic=item.delivery.topic).inc()
                # A data error of this one message (e.g. a value PostgreSQL refuses).
                code, detail = "handler_error", printable(f"{type(exc).__name__}: {exc}") or ""
                log.warning("message failed", attempt=attempt, error=detail, event_id=item.cloud_event.id)
                if attempt < self._max_attempts:
                    await asyncio.sleep(self._retry_backoff_s * attempt)
        letter = DeadLetter.of(
            item.delivery, self._service, code, detail, attempts=attempt, event_id=item.cloud_event.id
        )
        await self._commit(lambda uow: self._dead_letter(uow, [letter]))

    async def _claim(self, uow: UnitOfWork, items: Sequence[Inbound]) -> list[Inbound]:
        """Record the events in the inbox; return those not applied before, first copy only.

        An event is identified by (ce_source, ce_id), as CloudEvents defines it: two
        portals may both send id "evt-1".
        """
        if not items:
            return []
        conn = uow.conn
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
            "INSERT INTO glv_inbox (source, event_id) SELECT * FROM unnest($1::text[], $2::text[])"
            " ON CONFLICT DO NOTHING RETURNING source, event_id",
            [i.cloud_event.source for i in candidates],
            [i.cloud_event.id for i in candidates],
        )
        new_ids = {(r["source"], r["event_id"]) for r in rows}
        fresh: list[Inbound] = []
        for item in candidates:
            identity = (item.cloud_event.source, item.cloud_event.id)
            if identity in new_ids:
                new_ids.discard(identity)  # a second copy in the same batch is a duplicate
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

    @staticmethod
    async def _dead_letter(uow: UnitOfWork, letters: Sequence[DeadLetter]) -> None:
        uow.dead_letter(*letters)
