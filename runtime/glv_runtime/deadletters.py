"""Dead letters: recording them exactly once, and the command that lists and replays them.

A dead letter keeps the original key, value and headers, and adds headers that
say where it came from and why it failed. It is published through the outbox in
the same transaction that records its position, so a redelivered poison message
is neither applied nor dead-lettered twice.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from glv_runtime.db import DbConnection
from glv_runtime.outbox import OutboxMessage, write_outbox
from glv_schemas import dead_letter_topic
from glv_schemas.topics import SERVICES

if TYPE_CHECKING:
    from glv_runtime.consumer import Delivery

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
DLQ_HEADERS: tuple[str, ...] = (H_TOPIC, H_PARTITION, H_OFFSET, H_ERROR, H_CODE, H_SERVICE, H_FAILED_AT)
DLQ_HEADERS += (H_ATTEMPTS, H_NO_KEY, H_TRUNCATED, H_ORIGINAL_LENGTH, H_ORIGINAL_SHA256)
# A record with neither key nor value cannot be published; this key stands in.
PLACEHOLDER_KEY = b"glv-dlq:no-key"
# Below the producer's 1 MiB request limit, with room for the headers.
MAX_VALUE_BYTES = 512 * 1024
MAX_HEADERS_BYTES = 64 * 1024


def printable(text: str | None, limit: int = 2000) -> str | None:
    """Text safe for a PostgreSQL text column and a log line: no NUL, no lone surrogates."""
    if text is None:
        return None
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")[:limit]


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
            error=error,
            attempts=attempts,
            event_id=event_id,
        )

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
        # failing) as long as they fit.
        headers: list[tuple[str, bytes]] = []
        budget = MAX_HEADERS_BYTES
        for name, header_value in self.headers:
            if name in extra:
                continue
            budget -= len(name) + len(header_value)
            if budget < 0:
                extra[H_TRUNCATED] = "true"
                break
            # PostgreSQL's jsonb (the outbox) cannot hold a NUL, even in a header name.
            headers.append((printable(name, 256) or "" if "\x00" in name else name, header_value))
        headers += [(n, v.encode()) for n, v in extra.items()]
        return OutboxMessage(
            topic=dead_letter_topic(self.service).name,
            key=key,
            headers=headers,
            payload=value,
        )


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


async def read_dead_letters(
    bootstrap: str, service: str, prefix: str = "", timeout_s: float = 5.0
) -> list[dict[str, Any]]:
    """Every record currently on the service's dead-letter topic, oldest first."""
    from aiokafka import AIOKafkaConsumer

    from glv_runtime.kafka import partitions_of

    topic = prefix + dead_letter_topic(service).name
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
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
                for r in records:
                    headers = {n: v.decode("utf-8", "replace") for n, v in r.headers}
                    letters.append(
                        {
                            "dlq_partition": r.partition,
                            "dlq_offset": r.offset,
                            "key": r.key,
                            "headers": list(r.headers),
                            "value": r.value,
                            "original": f"{headers.get(H_TOPIC)}[{headers.get(H_PARTITION)}]@{headers.get(H_OFFSET)}",
                            "code": headers.get(H_CODE),
                            "error": headers.get(H_ERROR),
                            "type": headers.get("ce_type"),
                            "failed_at": headers.get(H_FAILED_AT),
                        }
                    )
        return letters
    finally:
        await consumer.stop()


async def replay(bootstrap: str, service: str, offsets: set[int] | None, prefix: str = "") -> int:
    """Put dead letters back on their original topics (without the DLQ headers).

    The original topic in the header already carries any topic prefix.
    """
    from aiokafka import AIOKafkaProducer

    letters = await read_dead_letters(bootstrap, service, prefix)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=5)
    await producer.start()
    count = 0
    try:
        for letter in letters:
            if offsets is not None and letter["dlq_offset"] not in offsets:
                continue
            headers = {n: v for n, v in letter["headers"]}
            if H_NO_KEY in headers or H_TRUNCATED in headers:
                # Not the original record: nothing to replay, or only its head.
                continue
            original_topic = headers[H_TOPIC].decode()
            await producer.send_and_wait(
                original_topic,
                value=letter["value"],
                key=letter["key"],
                headers=[(n, v) for n, v in letter["headers"] if n not in DLQ_HEADERS],
            )
            count += 1
    finally:
        await producer.stop()
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="glv-deadletters", description="List or replay a service's dead letters.")
    parser.add_argument("command", choices=["list", "replay"])
    parser.add_argument("--service", required=True, choices=SERVICES)
    parser.add_argument("--bootstrap", default=None, help="default: KAFKA_BOOTSTRAP_SERVERS or the local stack")
    parser.add_argument("--offset", type=int, action="append", help="replay only these DLQ offsets (repeatable)")
    parser.add_argument("--json", action="store_true", help="list as JSON lines")
    parser.add_argument("--prefix", default=None, help="topic prefix (default: GLV_TOPIC_PREFIX, or none)")
    args = parser.parse_args(argv)
    from glv_runtime.settings import ServiceSettings

    defaults = ServiceSettings()
    bootstrap = args.bootstrap or defaults.kafka_bootstrap_servers
    prefix = args.prefix if args.prefix is not None else defaults.topic_prefix
    if args.command == "list":
        letters = asyncio.run(read_dead_letters(bootstrap, args.service, prefix))
        for letter in letters:
            row = {k: letter[k] for k in ("dlq_offset", "original", "type", "code", "error", "failed_at")}
            row["key"] = letter["key"].decode("utf-8", "backslashreplace") if letter["key"] else None
            if args.json:
                print(json.dumps(row))
            else:
                print(
                    f"{row['dlq_offset']:>6}  {row['original']:<32} {row['code'] or '':<16} "
                    f"{row['type'] or '-':<28} {row['error']}"
                )
        print(f"{len(letters)} dead letter(s) on {dead_letter_topic(args.service).name}", file=sys.stderr)
        return 0
    count = asyncio.run(replay(bootstrap, args.service, set(args.offset) if args.offset else None, prefix))
    print(f"replayed {count} dead letter(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
