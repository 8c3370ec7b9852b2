"""Write records with arbitrary bytes to a real broker, for tests.

aiokafka's producer takes header names as `str` and encodes them as UTF-8, so it
cannot write a header name that is not valid UTF-8 (which other clients, and the
broker, accept: the protocol only says "bytes"). Here a batch is built with
aiokafka's pure-Python record builder, which writes a header name as
`name.encode("utf-8")`; a `str` whose `encode` returns the raw bytes gets them
into the batch unchanged. The batch is handed to an ordinary producer with
`send_batch`, so it goes through the normal produce path (retries, acks).

All the records of one `produce_raw` call go to the broker as ONE record batch, in
order: a test can put an unreadable record in the middle of a batch, the case
where a reader that parses a batch record by record cannot step over it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy

RawHeader = tuple[bytes, bytes | None]

# Codec ids of the record batch attributes (Kafka protocol).
CODECS = {None: 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}

NOT_UTF8 = b"\xff\xfebad-\xc3"
"""A header name that no UTF-8 decoder accepts (0xFF never occurs in UTF-8)."""


@dataclass(frozen=True)
class RawRecord:
    key: bytes | None = None
    value: bytes | None = None
    headers: Sequence[RawHeader] = ()
    timestamp_ms: int | None = None  # None: now


class _RawName(str):
    """A header name whose UTF-8 encoding is whatever bytes we say."""

    raw: bytes

    def __new__(cls, raw: bytes) -> _RawName:
        obj = super().__new__(cls, raw.decode("latin-1"))
        obj.raw = raw
        return obj

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return self.raw


class _RawBatchBuilder(BatchBuilder):  # type: ignore[misc]
    """aiokafka's BatchBuilder, but on the pure-Python record builder (the C one
    takes the header name's UTF-8 itself, so it would never call our `encode`)."""

    def __init__(self, batch_size: int, codec: int) -> None:
        super().__init__(batch_size, codec)
        self._builder = _DefaultRecordBatchBuilderPy(
            2,  # magic
            codec,
            is_transactional=0,
            producer_id=-1,
            producer_epoch=-1,
            base_sequence=0,
            batch_size=batch_size,
        )


def raw_batch(records: Sequence[RawRecord], *, compression: str | None = None) -> Any:
    """A closed aiokafka BatchBuilder holding `records`, bytes as given."""
    builder = _RawBatchBuilder(batch_size=1 << 30, codec=CODECS[compression])
    for record in records:
        metadata = builder.append(
            timestamp=record.timestamp_ms,
            key=record.key,
            value=record.value,
            headers=[(_RawName(name), value) for name, value in record.headers],
        )
        assert metadata is not None, "the batch is full"
    builder.close()
    return builder


async def produce_raw(
    bootstrap: str,
    topic: str,
    partition: int,
    records: Sequence[RawRecord],
    *,
    compression: str | None = None,
) -> list[int]:
    """Append `records` to topic/partition as one batch; their offsets, in order."""
    if not records:
        return []
    # Not idempotent: an idempotent producer rewrites the batch's producer state,
    # which only the C builder supports (and we need the Python one).
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    try:
        delivered = await producer.send_batch(raw_batch(records, compression=compression), topic, partition=partition)
        metadata = await delivered
    finally:
        await producer.stop()
    return [metadata.offset + i for i in range(len(records))]
