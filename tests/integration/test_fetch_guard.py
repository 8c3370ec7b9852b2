"""The fetch guard (glv_runtime.fetch_guard) against the real broker.

A record whose header name is not UTF-8 makes aiokafka 0.14's getmany raise,
drop what it already took from other partitions, and raise again on every call.
The last test here pins that aiokafka behaviour: when it fails, aiokafka has
changed and the guard should be revisited (perhaps removed).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.message import KafkaAckableMessage

from glv_runtime.fetch_guard import UnreadableRecord, _parse, guard_getmany, guarded_builder
from tests.infra import Infra
from tests.rawrecords import NOT_UTF8, RawRecord, produce_raw, raw_batch

PARTITIONS = 3
DEADLINE_S = 60


@pytest.fixture
async def topic(infra: Infra) -> AsyncIterator[str]:
    """A fresh 3-partition topic, deleted afterwards."""
    name = f"t{uuid.uuid4().hex[:10]}.fetch-guard"
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, PARTITIONS, 1)])
        yield name
    finally:
        await admin.delete_topics([name])
        await admin.close()


@dataclass
class Written:
    """What a test wrote: every record by (partition, offset), and where the bad one is."""

    topic: str
    records: dict[tuple[int, int], RawRecord]
    bad: tuple[int, int]

    def end_offsets(self) -> dict[int, int]:
        ends = dict.fromkeys(range(PARTITIONS), 0)
        for partition, offset in self.records:
            ends[partition] = max(ends[partition], offset + 1)
        return ends


def valid(partition: int, n: int) -> RawRecord:
    return RawRecord(
        key=f"p{partition}-{n}".encode(),
        value=f"value {partition}/{n}".encode(),
        headers=[(b"ce_id", f"{partition}-{n}".encode()), (b"empty", None)],
    )


BAD = RawRecord(key=b"bad", value=b"payload of the bad one", headers=[(b"ce_id", b"bad"), (NOT_UTF8, b"x")])


async def write(bootstrap: str, topic: str, batches: dict[int, list[list[RawRecord]]], **kw: Any) -> Written:
    records: dict[tuple[int, int], RawRecord] = {}
    bad: tuple[int, int] | None = None
    for partition, partition_batches in batches.items():
        for batch in partition_batches:
            offsets = await produce_raw(bootstrap, topic, partition, batch, **kw)
            for offset, record in zip(offsets, batch, strict=True):
                records[partition, offset] = record
                if record is BAD:
                    bad = (partition, offset)
    assert bad is not None
    return Written(topic, records, bad)


def three_partitions() -> dict[int, list[list[RawRecord]]]:
    """Valid records everywhere; in partition 1 one bad record, mid-batch, mid-partition."""
    n = iter(range(1000))
    return {
        0: [[valid(0, next(n)) for _ in range(4)] for _ in range(3)],
        1: [
            [valid(1, next(n)) for _ in range(4)],
            [valid(1, next(n)) for _ in range(3)] + [BAD] + [valid(1, next(n)) for _ in range(3)],
            [valid(1, next(n)) for _ in range(4)],
        ],
        2: [[valid(2, next(n)) for _ in range(4)] for _ in range(3)],
    }


def check_record(record: Any, written: RawRecord) -> None:
    """A readable record is handed over exactly as written (whoever parsed it)."""
    assert getattr(record, "unreadable", None) is None
    assert record.key == written.key
    assert record.value == written.value
    assert tuple(record.headers) == tuple((name.decode(), value) for name, value in written.headers)
    assert record.serialized_key_size == len(written.key or b"")
    assert record.timestamp > 0


def check_unreadable(record: Any, topic: str, where: tuple[int, int]) -> None:
    assert isinstance(record, UnreadableRecord)
    assert (record.topic, record.partition, record.offset) == (topic, *where)
    assert record.key is None and record.value is None and record.headers == ()
    assert "header name is not UTF-8" in record.unreadable
    assert record.raw_value == BAD.value and record.raw_headers == tuple(BAD.headers)
    assert record.timestamp > 0


async def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def consume_all(consumer: AIOKafkaConsumer, expected: set[tuple[int, int]]) -> list[Any]:
    """getmany + commit until every expected offset was handed over; everything handed over, in order."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    seen: list[Any] = []
    while not expected <= {(r.partition, r.offset) for r in seen}:
        assert loop.time() < deadline, "not every record was handed over in time"
        batch = await consumer.getmany(timeout_ms=500)
        for records in batch.values():
            seen.extend(records)
        if batch:
            await consumer.commit()
    return seen


async def committed_and_end(consumer: AIOKafkaConsumer, topic: str) -> tuple[dict[int, int | None], dict[int, int]]:
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    committed = {tp.partition: await consumer.committed(tp) for tp in tps}
    ends = {tp.partition: offset for tp, offset in (await consumer.end_offsets(tps)).items()}
    return committed, ends


# ------------------------------------------------------------------ the guard


@pytest.mark.parametrize("compression", [None, "gzip"])
@pytest.mark.parametrize("max_poll_records", [3, 500])
async def test_every_record_once_and_the_unreadable_one_in_its_place(
    infra: Infra, topic: str, compression: str | None, max_poll_records: int
) -> None:
    written = await write(infra.bootstrap, topic, three_partitions(), compression=compression)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=infra.bootstrap,
        group_id=f"{topic}.group",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=max_poll_records,
    )
    guard_getmany(consumer)
    await consumer.start()
    try:
        seen = await consume_all(consumer, set(written.records))

        counts = Counter((r.partition, r.offset) for r in seen)
        assert {where: n for where, n in counts.items() if n != 1} == {}, "handed over more than once"
        assert set(counts) == set(written.records), "handed over something never written"
        for partition in range(PARTITIONS):
            offsets = [r.offset for r in seen if r.partition == partition]
            assert offsets == sorted(offsets), f"partition {partition} out of order"
        for record in seen:
            if (record.partition, record.offset) == written.bad:
                check_unreadable(record, topic, written.bad)
            else:
                check_record(record, written.records[record.partition, record.offset])

        committed, ends = await committed_and_end(consumer, topic)
        assert committed == ends == written.end_offsets()
    finally:
        await consumer.stop()


async def ordered_failure(consumer: AIOKafkaConsumer, tp0: TopicPartition, tp1: TopicPartition) -> None:
    """Arrange for aiokafka to have tp0's records buffered BEFORE tp1's, whose batch is unreadable.

    aiokafka drains buffered partitions in the order their data arrived, so the
    next getmany() takes tp0's records, moves tp0's position, then fails on tp1.
    (Reads aiokafka's fetch buffer to wait for each arrival.)
    """
    records = consumer._fetcher._records
    consumer.assign([tp0, tp1])
    consumer.pause(tp1)
    await wait_until(lambda: tp0 in records, "tp0 to be fetched")
    consumer.resume(tp1)
    await wait_until(lambda: tp1 in records, "tp1 to be fetched")
    assert list(records) == [tp0, tp1]


async def write_ordered(bootstrap: str, topic: str) -> Written:
    return await write(
        bootstrap,
        topic,
        {0: [[valid(0, n) for n in range(3)]], 1: [[valid(1, 0), BAD, valid(1, 2)]]},
    )


async def test_records_a_failed_call_took_are_not_lost(infra: Infra, topic: str) -> None:
    written = await write_ordered(infra.bootstrap, topic)
    tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=infra.bootstrap,
        group_id=f"{topic}.group",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    guard_getmany(consumer)
    await consumer.start()
    try:
        await ordered_failure(consumer, tp0, tp1)

        first = await consumer.getmany()

        # aiokafka failed on tp1 after taking tp0's records; the guard rewound tp0
        # and read both partitions again, tp1 past its unreadable record.
        assert [r.offset for r in first[tp0]] == [0, 1, 2]
        assert [r.offset for r in first[tp1]] == [0, 1, 2]
        check_unreadable(first[tp1][1], topic, (1, 1))
        for record in [*first[tp0], first[tp1][0], first[tp1][2]]:
            check_record(record, written.records[record.partition, record.offset])
        await consumer.commit()
        assert await consumer.committed(tp0) == 3
        assert await consumer.committed(tp1) == 3
        assert await consumer.getmany(timeout_ms=200) == {}
    finally:
        await consumer.stop()


async def test_faststream_batch_subscriber_gets_the_unreadable_record(infra: Infra, topic: str) -> None:
    """The FastStream way in: guard the consumers the broker builds (GLV's subscriber shape)."""
    written = await write(infra.bootstrap, topic, three_partitions())
    expected = set(written.records)
    received: list[Any] = []
    everything = asyncio.Event()

    async def parse(raw: tuple[Any, ...]) -> KafkaAckableMessage:
        # FastStream's own batch parser decodes header values; hand records over as they are.
        return KafkaAckableMessage(raw_message=raw, body=b"", consumer=subscriber.consumer)

    async def decode(_: Any) -> None:
        return None

    broker = KafkaBroker(infra.bootstrap, logger=None)
    subscriber = broker.subscriber(
        topic,
        group_id=f"{topic}.group",
        batch=True,
        max_records=4,
        batch_timeout_ms=100,
        ack_policy=AckPolicy.MANUAL,
        auto_offset_reset="earliest",
        parser=parse,
        decoder=decode,
    )

    @subscriber
    async def consume(message: KafkaMessage) -> None:
        received.extend(message.raw_message)
        await message.ack()
        if expected <= {(r.partition, r.offset) for r in received}:
            everything.set()

    await broker.connect()
    config = broker.config.broker_config
    config.builder = guarded_builder(config.builder)
    await broker.start()
    try:
        await asyncio.wait_for(everything.wait(), DEADLINE_S)
        counts = Counter((r.partition, r.offset) for r in received)
        assert set(counts) == expected and set(counts.values()) == {1}
        [unreadable] = [r for r in received if getattr(r, "unreadable", None)]
        check_unreadable(unreadable, topic, written.bad)
        committed, ends = await committed_and_end(subscriber.consumer, topic)
        assert committed == ends == written.end_offsets()
    finally:
        await broker.stop()


async def test_a_record_the_value_deserializer_refuses_is_unreadable_too(infra: Infra, topic: str) -> None:
    await produce_raw(infra.bootstrap, topic, 0, [valid(0, 0), RawRecord(value=b"boom"), valid(0, 2)])

    def deserialize(value: bytes | None) -> bytes | None:
        if value == b"boom":
            raise ValueError("boom")
        return value

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=infra.bootstrap,
        group_id=f"{topic}.group",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        value_deserializer=deserialize,
    )
    guard_getmany(consumer)
    await consumer.start()
    try:
        seen = await consume_all(consumer, {(0, 0), (0, 1), (0, 2)})
        assert [r.offset for r in seen] == [0, 1, 2]
        assert isinstance(seen[1], UnreadableRecord) and seen[1].raw_value == b"boom"
        assert "value deserializer failed: ValueError('boom')" in seen[1].unreadable
        assert [r.value for r in (seen[0], seen[2])] == [valid(0, 0).value, valid(0, 2).value]
    finally:
        await consumer.stop()


def batch_bytes(records: list[RawRecord], base_offset: int) -> bytearray:
    data: bytearray = raw_batch(records)._build()
    data[:8] = base_offset.to_bytes(8, "big")  # the broker assigns it; the CRC does not cover it
    return data


def test_parse_reads_from_the_start_offset_and_past_unreadable_records() -> None:
    tp = TopicPartition("t", 0)
    data = bytes(batch_bytes([valid(0, 0), BAD, valid(0, 2), BAD, valid(0, 4)], base_offset=10))
    items, next_offset = _parse(data, tp, 11, None, **PARSE_DEFAULTS)
    assert [(r.offset, isinstance(r, UnreadableRecord)) for r in items] == [
        (11, True),
        (12, False),
        (13, True),
        (14, False),
    ]
    assert next_offset == 15
    items, next_offset = _parse(data, tp, 11, 2, **PARSE_DEFAULTS)
    assert [r.offset for r in items] == [11, 12] and next_offset == 13


def test_parse_reports_a_batch_that_fails_its_crc_one_offset_at_a_time() -> None:
    tp = TopicPartition("t", 0)
    data = batch_bytes([valid(0, 0), valid(0, 1)], base_offset=5)
    data[-1] ^= 0xFF
    items, next_offset = _parse(bytes(data), tp, 6, None, **PARSE_DEFAULTS)
    assert [(r.offset, r.unreadable) for r in items] == [(6, "record batch at 5 fails its CRC")]
    assert next_offset == 7


PARSE_DEFAULTS: dict[str, Any] = {
    "read_committed": False,
    "aborted": None,
    "check_crcs": True,
    "key_deserializer": None,
    "value_deserializer": None,
}


# ------------------------------------------------------- the aiokafka bug itself


async def test_aiokafka_bug_unreadable_header_name_loses_records_and_blocks_the_partition(
    infra: Infra, topic: str
) -> None:
    """KNOWN AIOKAFKA BUG (0.14.0), WITHOUT the guard: the reason fetch_guard exists.

    If this test fails, aiokafka no longer behaves this way: check what it does
    now with an unreadable record and whether glv_runtime.fetch_guard is still
    needed.
    """
    await write_ordered(infra.bootstrap, topic)
    tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=infra.bootstrap,
        group_id=f"{topic}.group",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        await ordered_failure(consumer, tp0, tp1)

        with pytest.raises(UnicodeDecodeError):
            await consumer.getmany()

        # tp0's three records were taken and dropped with the exception, yet its
        # position moved past them: a commit now skips records nobody received.
        assert await consumer.position(tp0) == 3
        await consumer.commit()
        assert await consumer.committed(tp0) == 3
        # tp1 stays stuck: its readable first record never comes out, every call raises.
        for _ in range(3):
            with pytest.raises(UnicodeDecodeError):
                await consumer.getmany(tp1, timeout_ms=5_000)
        assert await consumer.position(tp1) == 0
        # Seeking past the bad record does not help: the batch is parsed from its start.
        consumer.seek(tp1, 2)
        with pytest.raises(UnicodeDecodeError):
            await consumer.getmany(tp1, timeout_ms=5_000)
    finally:
        await consumer.stop()
