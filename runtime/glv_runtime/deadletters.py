"""Dead letters: recording them exactly once, and the command that lists and replays them.

A dead letter keeps the original key, value and headers, and adds headers that say
where it came from and why it failed. It is published through the outbox in the same
transaction that records its position, so a redelivered poison message is neither
applied nor dead-lettered twice.

Each service has two dead-letter topics: `glv.dlq.<service>` for records of GLV's own
topics, and `glv.dlq.<service>.intake` for records consumed from a portal's intake topic
(`glv.portal.<portal>.tickets`), which hold what a stakeholder filed: personal data,
kept a week by default rather than 90 days.

A replay leaves no new copy behind. The replayed record carries `x-dlq-replayed-from-*`
headers naming the dead letter it came from; when it fails again, its dead letter holds
only a reference to that copy and the new reason: no value, and of the original headers
only the CloudEvents attributes. The copy that expires with its topic's retention stays
the only one.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from glv_runtime.db import DbConnection
from glv_runtime.logs import configure_cli_logging, get_logger, redact_text
from glv_runtime.outbox import OutboxMessage, write_outbox
from glv_runtime.settings import ServiceSettings
from glv_runtime.transport import check_transport
from glv_schemas import Topic, dead_letter_topic
from glv_schemas.topics import (
    DEAD_LETTER_TOPICS,
    PORTAL_TICKETS,
    SERVICES,
    dead_letter_topic_for,
    intake_dead_letter_topic,
)

if TYPE_CHECKING:
    from glv_runtime.consumer import Delivery

log = get_logger(__name__)

H_TOPIC = "x-dlq-original-topic"
H_PARTITION = "x-dlq-original-partition"
H_OFFSET = "x-dlq-original-offset"
H_ERROR = "x-dlq-error"
H_CODE = "x-dlq-error-code"
H_SERVICE = "x-dlq-service"
H_FAILED_AT = "x-dlq-failed-at"
H_ATTEMPTS = "x-dlq-attempts"
# Present when the record had to be changed to be publishable at all.
H_NO_KEY = "x-dlq-no-key"
H_TRUNCATED = "x-dlq-truncated"
H_ORIGINAL_LENGTH = "x-dlq-original-length"
H_ORIGINAL_SHA256 = "x-dlq-original-sha256"
# On a record put back by `glv-deadletters replay`: the dead letter (topic with its
# prefix, partition, offset) whose copy it is. Kept on the dead letter of a replay that
# failed again, where they say where the value is.
H_REPLAYED_FROM_TOPIC = "x-dlq-replayed-from-topic"
H_REPLAYED_FROM_PARTITION = "x-dlq-replayed-from-partition"
H_REPLAYED_FROM_OFFSET = "x-dlq-replayed-from-offset"
# "true" on the dead letter of a replay: no value, only a reference to the copy.
H_REFERENCE_ONLY = "x-dlq-reference-only"
DLQ_HEADERS: tuple[str, ...] = (H_TOPIC, H_PARTITION, H_OFFSET, H_ERROR, H_CODE, H_SERVICE, H_FAILED_AT)
DLQ_HEADERS += (H_ATTEMPTS, H_NO_KEY, H_TRUNCATED, H_ORIGINAL_LENGTH, H_ORIGINAL_SHA256)
DLQ_HEADERS += (H_REPLAYED_FROM_TOPIC, H_REPLAYED_FROM_PARTITION, H_REPLAYED_FROM_OFFSET, H_REFERENCE_ONLY)
# What a reference-only dead letter keeps of the record's own headers: the CloudEvents
# attributes (ids, type, source, time, the ticket id as subject) and the trace, which
# say which event it was; nothing a producer may have added beside them.
REFERENCE_HEADERS = frozenset(
    {"ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "ce_subject", "content-type", "traceparent"}
)
MAX_REFERENCE_HEADER_BYTES = 256
# A record with neither key nor value cannot be published; this key stands in.
PLACEHOLDER_KEY = b"glv-dlq:no-key"
# Below the producer's 1 MiB request limit, with room for the headers.
MAX_VALUE_BYTES = 512 * 1024
MAX_HEADERS_BYTES = 64 * 1024

# A portal's intake topic under any topic prefix (the delivery's topic carries the
# consuming service's prefix; the outbox topic does not, the relay prepends it).
_INTAKE_TOPIC = re.compile(r"(?P<prefix>.*?)" + PORTAL_TICKETS.pattern())
# What `x-dlq-replayed-from-topic` may name: a dead-letter topic under any prefix.
_DEAD_LETTER_TOPIC = re.compile(
    r"[A-Za-z0-9._-]{0,200}?(?:" + "|".join(re.escape(t.name) for t in DEAD_LETTER_TOPICS) + ")"
)
_PARTITION = re.compile(r"[0-9]{1,10}")
_OFFSET = re.compile(r"[0-9]{1,19}")


def printable(text: str | None, limit: int = 2000) -> str | None:
    """Text safe for a PostgreSQL text column and a log line: no NUL, no lone surrogates."""
    if text is None:
        return None
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")[:limit]


@dataclass(frozen=True)
class Position:
    """Where a record is: a topic (with its prefix), a partition, an offset."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


def replayed_from(headers: Sequence[tuple[str, bytes]]) -> Position | None:
    """The dead letter a replayed record came from, if its headers name one well-formed."""
    found = {name: value for name, value in headers if name.startswith("x-dlq-replayed-from-")}
    try:
        topic = found[H_REPLAYED_FROM_TOPIC].decode("ascii")
        partition = found[H_REPLAYED_FROM_PARTITION].decode("ascii")
        offset = found[H_REPLAYED_FROM_OFFSET].decode("ascii")
    except (KeyError, UnicodeDecodeError):
        return None
    if not (_DEAD_LETTER_TOPIC.fullmatch(topic) and _PARTITION.fullmatch(partition) and _OFFSET.fullmatch(offset)):
        return None
    return Position(topic, int(partition), int(offset))


def replay_headers(copy: Position) -> list[tuple[str, bytes]]:
    return [
        (H_REPLAYED_FROM_TOPIC, copy.topic.encode()),
        (H_REPLAYED_FROM_PARTITION, str(copy.partition).encode()),
        (H_REPLAYED_FROM_OFFSET, str(copy.offset).encode()),
    ]


def dead_letter_destination(service: str, original_topic: str) -> Topic:
    """The dead-letter topic of `service` for a record consumed from `original_topic`
    (which carries the service's topic prefix, if any)."""
    match = _INTAKE_TOPIC.fullmatch(original_topic)
    return dead_letter_topic_for(service, original_topic, match.group("prefix") if match else "")


@dataclass(frozen=True)
class DeadLetter:
    service: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    value: bytes | None
    code: str
    error: str
    attempts: int
    event_id: str | None = None

    @classmethod
    def of(
        cls, delivery: Delivery, service: str, code: str, error: str, *, attempts: int, event_id: str | None = None
    ) -> DeadLetter:
        return cls(
            service=service,
            topic=delivery.topic,
            partition=delivery.partition,
            offset=delivery.offset,
            key=delivery.key,
            headers=delivery.headers,
            value=delivery.value,
            code=code,
            # Kept for 90 days in a header and in the service's table: an error message
            # may quote what it failed on (a database error quotes the value).
            error=redact_text(error),
            attempts=attempts,
            event_id=event_id,
        )

    @property
    def destination(self) -> Topic:
        """The dead-letter topic (without prefix): the intake one for a portal's records."""
        return dead_letter_destination(self.service, self.topic)

    @property
    def replayed_from(self) -> Position | None:
        return replayed_from(self.headers)

    def to_message(self) -> OutboxMessage:
        extra = {
            H_TOPIC: self.topic,
            H_PARTITION: str(self.partition),
            H_OFFSET: str(self.offset),
            H_ERROR: printable(self.error, 1000) or "",
            H_CODE: self.code,
            H_SERVICE: self.service,
            H_FAILED_AT: datetime.now(UTC).isoformat(),
            H_ATTEMPTS: str(self.attempts),
        }
        copy = self.replayed_from
        if copy is not None:
            return self._reference_to(copy, extra)
        key, value = self.key, self.value
        if key is None and value is None:
            key = PLACEHOLDER_KEY
            extra[H_NO_KEY] = "true"
        if value is not None and len(value) > MAX_VALUE_BYTES:
            # Kept so that it can be published: the head of the value, and what
            # identifies the whole (the original stays on its topic until retention).
            extra[H_TRUNCATED] = "true"
            extra[H_ORIGINAL_LENGTH] = str(len(value))
            extra[H_ORIGINAL_SHA256] = hashlib.sha256(value).hexdigest()
            value = value[:MAX_VALUE_BYTES]
        if key is not None and len(key) > 1024:
            key = key[:1024]
            extra[H_TRUNCATED] = "true"
        # Original headers are kept byte for byte (they may be the very reason for
        # failing) as long as they fit; only names of the dead-letter headers are
        # reserved, so that a producer cannot make its record pass for a reference.
        headers: list[tuple[str, bytes]] = []
        budget = MAX_HEADERS_BYTES
        for name, header_value in self.headers:
            if name in DLQ_HEADERS:
                continue
            budget -= len(name) + len(header_value)
            if budget < 0:
                extra[H_TRUNCATED] = "true"
                break
            # PostgreSQL's jsonb (the outbox) cannot hold a NUL, even in a header name.
            headers.append((printable(name, 256) or "" if "\x00" in name else name, header_value))
        headers += [(n, v.encode()) for n, v in extra.items()]
        return OutboxMessage(topic=self.destination.name, key=key, headers=headers, payload=value)

    def _reference_to(self, copy: Position, extra: dict[str, str]) -> OutboxMessage:
        """The dead letter of a replay that failed again: where the copy is, and why it failed."""
        extra[H_REFERENCE_ONLY] = "true"
        extra[H_REPLAYED_FROM_TOPIC] = copy.topic
        extra[H_REPLAYED_FROM_PARTITION] = str(copy.partition)
        extra[H_REPLAYED_FROM_OFFSET] = str(copy.offset)
        key = self.key
        if key is None:
            key = PLACEHOLDER_KEY
            extra[H_NO_KEY] = "true"
        elif len(key) > 1024:
            key = key[:1024]
            extra[H_TRUNCATED] = "true"
        headers = [
            (name, value)
            for name, value in self.headers
            if name in REFERENCE_HEADERS and len(value) <= MAX_REFERENCE_HEADER_BYTES
        ]
        headers += [(n, v.encode()) for n, v in extra.items()]
        return OutboxMessage(topic=self.destination.name, key=key, headers=headers, payload=None)


async def write_dead_letters(conn: DbConnection, letters: Sequence[DeadLetter]) -> list[DeadLetter]:
    """Record positions not dead-lettered before and queue their DLQ records; return those."""
    if not letters:
        return []
    rows = await conn.fetch(
        'INSERT INTO glv_dead_letter (topic, partition, "offset", event_id, error_code, error, attempts)'
        " SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::int[])"
        ' ON CONFLICT DO NOTHING RETURNING topic, partition, "offset"',
        [d.topic for d in letters],
        [d.partition for d in letters],
        [d.offset for d in letters],
        [printable(d.event_id, 400) for d in letters],
        [d.code for d in letters],
        [printable(d.error) for d in letters],
        [d.attempts for d in letters],
    )
    new = {(r["topic"], r["partition"], r["offset"]) for r in rows}
    fresh = [d for d in letters if (d.topic, d.partition, d.offset) in new]
    await write_outbox(conn, [d.to_message() for d in fresh])
    return fresh


# ------------------------------------------------------------------ the command


def dead_letter_topic_of(service: str, *, intake: bool = False) -> Topic:
    """`glv.dlq.<service>`, or with `intake` `glv.dlq.<service>.intake`."""
    return intake_dead_letter_topic(service) if intake else dead_letter_topic(service)


def _client_options(kafka: str | ServiceSettings) -> dict[str, Any]:
    """A bootstrap address, or settings (whose transport, SASL and TLS included, is used)."""
    if isinstance(kafka, str):
        return {"bootstrap_servers": kafka}
    from glv_runtime.transport import kafka_client_options

    return {"bootstrap_servers": kafka.kafka_bootstrap_servers, **kafka_client_options(kafka)}


def _letter(record: Any) -> dict[str, Any]:
    """A dead-letter record as the command reads it: raw key, value and headers, and
    what its headers say."""
    headers = {n: v.decode("utf-8", "replace") for n, v in record.headers}
    copy = replayed_from(record.headers) if headers.get(H_REFERENCE_ONLY) == "true" else None
    original_topic = headers.get(H_TOPIC)
    size = len(record.value) if record.value is not None else 0
    if headers.get(H_ORIGINAL_LENGTH, "").isdigit():
        size = int(headers[H_ORIGINAL_LENGTH])
    return {
        "dlq_topic": record.topic,
        "dlq_partition": record.partition,
        "dlq_offset": record.offset,
        "key": record.key,
        "headers": list(record.headers),
        "value": record.value,
        "original_topic": original_topic,
        "original": f"{original_topic}[{headers.get(H_PARTITION)}]@{headers.get(H_OFFSET)}",
        "code": headers.get(H_CODE),
        "error": headers.get(H_ERROR),
        "type": headers.get("ce_type"),
        "event_id": headers.get("ce_id"),
        "failed_at": headers.get(H_FAILED_AT),
        "attempts": int(headers[H_ATTEMPTS]) if headers.get(H_ATTEMPTS, "").isdigit() else None,
        "size": size,
        "reference_only": headers.get(H_REFERENCE_ONLY) == "true",
        "copy": copy,
        "no_key": H_NO_KEY in headers,
        "truncated": H_TRUNCATED in headers,
    }


async def read_dead_letters(
    bootstrap: str | ServiceSettings, service: str, prefix: str = "", timeout_s: float = 5.0, *, intake: bool = False
) -> list[dict[str, Any]]:
    """Every record currently on one of the service's dead-letter topics, oldest first."""
    from aiokafka import AIOKafkaConsumer

    from glv_runtime.kafka import partitions_of

    topic = prefix + dead_letter_topic_of(service, intake=intake).name
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **_client_options(bootstrap))
    await consumer.start()
    try:
        partitions = await partitions_of(bootstrap, [topic])
        if not partitions:
            return []
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        letters: list[dict[str, Any]] = []
        deadline = asyncio.get_running_loop().time() + timeout_s

        async def behind() -> bool:
            return any([await consumer.position(tp) < end[tp] for tp in partitions])

        while await behind():
            if asyncio.get_running_loop().time() > deadline:
                break
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                letters += [_letter(r) for r in records]
        return letters
    finally:
        await consumer.stop()


async def read_dead_letter(
    bootstrap: str | ServiceSettings, position: Position, timeout_s: float = 5.0
) -> dict[str, Any] | None:
    """The one dead letter at `position`, or None when it is not there (any more)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from glv_runtime.kafka import partitions_of

    tp = TopicPartition(position.topic, position.partition)
    if tp not in await partitions_of(bootstrap, [position.topic]):
        return None
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **_client_options(bootstrap))
    await consumer.start()
    try:
        consumer.assign([tp])
        first = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        if not first <= position.offset < end:
            return None  # expired with the topic's retention
        consumer.seek(tp, position.offset)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < deadline:
            for record in (await consumer.getmany(tp, timeout_ms=500)).get(tp, []):
                return _letter(record) if record.offset == position.offset else None
        return None
    finally:
        await consumer.stop()


def replayable(letter: dict[str, Any]) -> bool:
    """Whether the letter holds the original record (not a stand-in key, not a cut value)."""
    return not (letter["no_key"] or letter["truncated"] or letter["reference_only"])


async def replay(
    bootstrap: str | ServiceSettings,
    service: str,
    offsets: set[int] | None,
    prefix: str = "",
    *,
    intake: bool = False,
) -> int:
    """Put dead letters back on their original topics (without the DLQ headers); return how many.

    The original topic in the header already carries any topic prefix. Each replayed
    record names the dead letter it is a copy of (`x-dlq-replayed-from-*`). A
    reference-only dead letter replays the copy it refers to; a copy is replayed once
    per run however many of the selected dead letters refer to it.
    """
    from aiokafka import AIOKafkaProducer

    letters = await read_dead_letters(bootstrap, service, prefix, intake=intake)
    here = {Position(x["dlq_topic"], x["dlq_partition"], x["dlq_offset"]): x for x in letters}
    producer = AIOKafkaProducer(enable_idempotence=True, acks="all", linger_ms=5, **_client_options(bootstrap))
    await producer.start()
    sent: set[Position] = set()
    try:
        for letter in letters:
            if offsets is not None and letter["dlq_offset"] not in offsets:
                continue
            copy = letter
            if letter["reference_only"]:
                found = await _copy_for(bootstrap, letter, here)
                if found is None:
                    log.warning(
                        "dead letter not replayed: the copy it refers to is gone or is not its record",
                        dlq_offset=letter["dlq_offset"],
                        copy=str(letter["copy"]),
                    )
                    continue
                copy = found
            if not replayable(copy):
                # Not the original record: nothing to replay, or only its head.
                log.warning("dead letter not replayed: not the original record", dlq_offset=copy["dlq_offset"])
                continue
            position = Position(copy["dlq_topic"], copy["dlq_partition"], copy["dlq_offset"])
            if position in sent:
                continue
            await producer.send_and_wait(
                copy["original_topic"],
                value=copy["value"],
                key=copy["key"],
                headers=[(n, v) for n, v in copy["headers"] if n not in DLQ_HEADERS] + replay_headers(position),
            )
            sent.add(position)
    finally:
        await producer.stop()
    return len(sent)


async def _copy_for(
    bootstrap: str | ServiceSettings, reference: dict[str, Any], here: dict[Position, dict[str, Any]]
) -> dict[str, Any] | None:
    """The full dead letter a reference-only one refers to, if it is still there."""
    position: Position | None = reference["copy"]
    if position is None:
        return None
    copy = here.get(position) or await read_dead_letter(bootstrap, position)
    # A replay goes back to the copy's original topic, and only from there can it fail
    # again: a reference that says otherwise was not written by a replay.
    if copy is None or copy["reference_only"] or copy["original_topic"] != reference["original_topic"]:
        return None
    return copy


# ------------------------------------------------------------------ listing

MAX_SHAPE_DEPTH = 6


def shape(value: bytes | None) -> Any:
    """The structure of a JSON value: field names (redacted where they are personal data
    themselves) and the types of their values, never the values."""
    if value is None:
        return None
    try:
        document = json.loads(value)
    except (ValueError, RecursionError):
        return f"<not JSON, {len(value)} bytes>"
    return _shape(document, 0)


def _shape(value: Any, depth: int) -> Any:
    if isinstance(value, dict):
        if depth >= MAX_SHAPE_DEPTH:
            return "object"
        return {redact_text(str(k)): _shape(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        if depth >= MAX_SHAPE_DEPTH or not value:
            return f"array[{len(value)}]"
        first = _shape(value[0], depth + 1)
        return [first] if len(value) == 1 else [first, f"... {len(value)} items"]
    if value is None:
        return "null"
    return {bool: "boolean", int: "number", float: "number", str: "string"}.get(type(value), "value")


def listing(letter: dict[str, Any], *, with_shape: bool = False) -> dict[str, Any]:
    """What `glv-deadletters list` prints of a dead letter: where it is, where it came
    from, why it failed, what it was (event type and id, ticket id key, size); never a
    value. Every text passes the log redactor, as a header or key may be anything."""
    key = letter["key"].decode("utf-8", "backslashreplace") if letter["key"] is not None else None
    row: dict[str, Any] = {
        "dlq_topic": letter["dlq_topic"],
        "dlq_partition": letter["dlq_partition"],
        "dlq_offset": letter["dlq_offset"],
        "original": letter["original"],
        "type": letter["type"],
        "event_id": letter["event_id"],
        "key": None if letter["no_key"] else key,
        "code": letter["code"],
        "error": letter["error"],
        "attempts": letter["attempts"],
        "failed_at": letter["failed_at"],
        "size": letter["size"],
        "reference_only": letter["reference_only"],
        "copy": str(letter["copy"]) if letter["copy"] is not None else None,
        "replayable": replayable(letter) or letter["reference_only"],
    }
    row = {k: (redact_text(printable(v, 1000) or "") if isinstance(v, str) else v) for k, v in row.items()}
    if with_shape:
        row["shape"] = shape(letter["value"])
    return row


def _line(row: dict[str, Any]) -> str:
    what = f"ref {row['copy']}" if row["reference_only"] else f"{row['size']} B"
    return (
        f"{row['dlq_offset']:>6}  {row['original']:<40} {row['code'] or '':<16} {row['type'] or '-':<28} "
        f"key={row['key'] or '-'}  {what}  {row['error'] or ''}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="glv-deadletters",
        description=(
            "List or replay a service's dead letters: glv.dlq.<service>, or with --intake "
            "glv.dlq.<service>.intake (records from portals' intake topics). The listing shows "
            "metadata only, never a record's value."
        ),
    )
    parser.add_argument("command", choices=["list", "replay"])
    parser.add_argument("--service", required=True, choices=SERVICES)
    parser.add_argument(
        "--intake",
        action="store_true",
        help="the service's intake dead-letter topic glv.dlq.<service>.intake instead of glv.dlq.<service>",
    )
    parser.add_argument("--bootstrap", default=None, help="default: KAFKA_BOOTSTRAP_SERVERS or the local stack")
    parser.add_argument("--offset", type=int, action="append", help="replay only these DLQ offsets (repeatable)")
    parser.add_argument("--json", action="store_true", help="list as JSON lines")
    parser.add_argument(
        "--shape", action="store_true", help="list each value's field names and value types (never the values)"
    )
    parser.add_argument("--prefix", default=None, help="topic prefix (default: GLV_TOPIC_PREFIX, or none)")
    args = parser.parse_args(argv)
    if args.intake and args.service not in PORTAL_TICKETS.consumers:
        parser.error(f"{args.service} reads no portal intake topic: it has no intake dead-letter topic")
    settings = ServiceSettings()
    configure_cli_logging("glv-deadletters", "WARNING")
    if args.bootstrap:
        settings = settings.model_copy(update={"kafka_bootstrap_servers": args.bootstrap})
    check_transport(settings)
    prefix = args.prefix if args.prefix is not None else settings.topic_prefix
    topic = prefix + dead_letter_topic_of(args.service, intake=args.intake).name
    if args.command == "list":
        letters = asyncio.run(read_dead_letters(settings, args.service, prefix, intake=args.intake))
        for letter in letters:
            row = listing(letter, with_shape=args.shape)
            print(json.dumps(row) if args.json else _line(row))
            if args.shape and not args.json:
                print(f"        shape: {json.dumps(row['shape'])}")
        print(f"{len(letters)} dead letter(s) on {topic}", file=sys.stderr)
        return 0
    offsets = set(args.offset) if args.offset else None
    count = asyncio.run(replay(settings, args.service, offsets, prefix, intake=args.intake))
    print(f"replayed {count} dead letter(s) from {topic}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
