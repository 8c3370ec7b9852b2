"""Stop one unreadable record from losing records or blocking its partition (aiokafka 0.14).

The bug. aiokafka parses records while it hands them over, in
`Fetcher.fetched_records`: for each partition with buffered data it parses the
records, moves the partition's position past them, then goes on to the next
partition. Parsing raises for a record aiokafka cannot read: a header name that
is not UTF-8 (UnicodeDecodeError; header names are decoded, keys and values are
not), a CRC or structure error (CorruptRecordException), a key or value
deserializer that raises. The exception leaves `getmany` and the records already
taken from other partitions in the same call go with it, although their
positions have moved: the next commit commits past records nobody received. The
failing partition never moves: every later call raises again. Seeking past the
record does not help either: a fetch returns whole record batches and aiokafka
parses a batch from its first record, so every read of that batch raises and
the records after the unreadable one in it cannot be reached. aiokafka 0.14.0 is
the newest release; the last test of tests/integration/test_fetch_guard.py fails
when aiokafka stops behaving this way.

The guard. `guard_getmany(consumer)` replaces the consumer's `getmany` (the one
method FastStream's batch subscriber calls) with one that behaves the same until
the original raises an error about a record. Then it:

1. Rewinds the partitions whose position moved during the failed call to where
   they were before it (see `_Guard._rewind` for why not the committed offset),
   so nothing is skipped.
2. Reads the assigned partitions one at a time with the original `getmany`; the
   partition that raises holds the unreadable record. Its records from its
   position on are fetched again as bytes and parsed here, leniently:
   readable records are returned as aiokafka's ConsumerRecord, each unreadable
   one as an `UnreadableRecord` (same attributes, no key, value or headers, and
   `unreadable`: why), and the partition is sought past the last one returned.

So the caller gets every record exactly once, in order per partition, and can
dead-letter the unreadable ones by their `unreadable` attribute and commit as
usual. A call that raises nothing costs one snapshot of the positions (a dict
of the assigned partitions, read from aiokafka's subscription state).

With FastStream, guard the consumers as they are built: `guarded_builder`.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka import codec as kafka_codec
from aiokafka import errors as kafka_errors
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.util import calc_crc32c
from aiokafka.structs import ConsumerRecord

from glv_runtime.logs import get_logger

log = get_logger(__name__)

Batch = dict[TopicPartition, list[Any]]
GetMany = Callable[..., Awaitable[Batch]]
ConsumerFactory = Callable[..., AIOKafkaConsumer]

DEFAULT_PROBE_TIMEOUT_MS: Final = 5_000
"""How long recovery waits, in all, for partitions known to hold records to be fetched again."""


@dataclass(frozen=True, kw_only=True, slots=True)
class UnreadableRecord:
    """Stands in for a record that cannot be read, at its place in the partition.

    It has the attributes of aiokafka's ConsumerRecord, with no key, value or
    headers, so that code that only looks at topic/partition/offset (acking,
    committing, seeking back) treats it as any record; `unreadable` says why it
    could not be read. `raw_*` hold whatever bytes could be recovered, for a
    dead letter (empty when even the record boundaries are unknown).
    """

    topic: str
    partition: int
    offset: int
    unreadable: str
    timestamp: int = -1
    timestamp_type: int = 0
    key: None = None
    value: None = None
    checksum: None = None
    serialized_key_size: int = -1
    serialized_value_size: int = -1
    headers: tuple[()] = ()
    raw_key: bytes | None = None
    raw_value: bytes | None = None
    raw_headers: tuple[tuple[bytes, bytes | None], ...] = ()


def guard_getmany(consumer: AIOKafkaConsumer, *, probe_timeout_ms: int = DEFAULT_PROBE_TIMEOUT_MS) -> None:
    """Make `consumer.getmany` survive unreadable records (see the module doc). Idempotent.

    Patches this instance only; call it before the first `getmany` (before or
    after `start()`).
    """
    if isinstance(consumer.getmany, _Guard):
        return
    consumer.getmany = _Guard(consumer, consumer.getmany, probe_timeout_ms)


def guarded_builder(builder: ConsumerFactory) -> ConsumerFactory:
    """A consumer factory whose consumers are guarded.

    FastStream builds a subscriber's consumer in `subscriber.start()` from the
    broker's `config.broker_config.builder` (set by `broker.connect()`) and starts
    the consume loop right away; `subscriber.consumer` only exists after that, so
    patching it then races the loop's first `getmany`. Instead:

        await broker.connect()
        config = broker.config.broker_config
        config.builder = guarded_builder(config.builder)
        await broker.start()  # connect() does nothing the second time
    """

    def build(*args: Any, **kwargs: Any) -> AIOKafkaConsumer:
        consumer = builder(*args, **kwargs)
        guard_getmany(consumer)
        return consumer

    return build


# ------------------------------------------------------------------ the guard

# Positions before a call: the assignment they belong to, and {tp: position or None}.
_Snapshot = tuple[Any, dict[TopicPartition, int | None]]


def _assignment(consumer: AIOKafkaConsumer) -> Any:
    subscription = consumer._subscription.subscription
    return None if subscription is None else subscription.assignment


def _snapshot(consumer: AIOKafkaConsumer) -> _Snapshot | None:
    # Read from aiokafka's subscription state, not `await consumer.position(tp)`:
    # that is a coroutine per partition and, for a partition awaiting an offset
    # reset, waits for the reset (up to request_timeout_ms), which would change
    # how long getmany(timeout_ms=...) takes. This reads private attributes
    # (aiokafka 0.14) to stay cheap: about 0.1 µs a partition, 4 µs for 50.
    assignment = _assignment(consumer)
    if assignment is None:
        return None
    states = assignment._tp_state
    return assignment, {tp: state._position for tp, state in states.items()}


def _is_record_error(exc: BaseException) -> bool:
    """An error from reading records, after which aiokafka may have dropped some.

    Not the others: aiokafka raises a fetch, coordination or authorization error
    only when it has handed nothing over, and they say nothing about a record.
    CorruptRecordException is a KafkaError but comes from parsing.
    """
    if isinstance(exc, kafka_errors.CorruptRecordException):
        return True
    return isinstance(exc, Exception) and not isinstance(
        exc, kafka_errors.KafkaError | kafka_errors.ConsumerStoppedError | kafka_errors.IllegalOperation
    )


def _valid_call(partitions: Sequence[Any], max_records: int | None) -> bool:
    """The checks aiokafka's getmany makes before reading: a failed one is the caller's error."""
    if not all(isinstance(tp, TopicPartition) for tp in partitions):
        return False
    return max_records is None or (isinstance(max_records, int) and max_records >= 1)


class _Guard:
    """The replacement for one consumer's `getmany`."""

    def __init__(self, consumer: AIOKafkaConsumer, original: GetMany, probe_timeout_ms: int) -> None:
        self._consumer = consumer
        self._original = original
        self._probe_timeout_s = probe_timeout_ms / 1000

    async def __call__(self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None) -> Batch:
        before = _snapshot(self._consumer)
        try:
            return await self._original(*partitions, timeout_ms=timeout_ms, max_records=max_records)
        except Exception as exc:
            if not _is_record_error(exc) or not _valid_call(partitions, max_records):
                raise
            log.warning("a record could not be read; recovering", error=repr(exc))
            return await self._recover(before, partitions, max_records, exc)

    async def _recover(
        self, before: _Snapshot | None, partitions: Sequence[TopicPartition], max_records: int | None, exc: Exception
    ) -> Batch:
        consumer = self._consumer
        assignment = _assignment(consumer)
        if assignment is None:  # unassigned meanwhile: nothing of ours was dropped
            raise exc
        await self._rewind(assignment, before)

        budget: int | None = max_records or consumer._max_poll_records
        wanted = set(partitions)
        targets = sorted(tp for tp in assignment.tps if not wanted or tp in wanted)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._probe_timeout_s
        result: Batch = {}
        try:
            for tp in targets:
                if budget is not None and budget <= 0:
                    break
                state = assignment.state_value(tp)
                if state is None or state.paused or _caught_up(state):
                    continue  # nothing to read there now: no need to wait for it
                timeout_ms = max(0, int((deadline - loop.time()) * 1000))
                try:
                    got = await self._original(tp, timeout_ms=timeout_ms, max_records=budget)
                except Exception as probe_exc:
                    if not _is_record_error(probe_exc):
                        raise
                    # Reading one partition, aiokafka hands over nothing when it
                    # raises: the position is still where reading started.
                    items = await self._read_past(tp, state.position, budget, probe_exc)
                    if items:
                        result[tp] = items
                    break
                for got_tp, records in got.items():
                    result.setdefault(got_tp, []).extend(records)
                    if budget is not None:
                        budget -= len(records)
        except BaseException:
            # Whatever stops us (an error, a cancellation) must not lose what was read.
            for tp, records in result.items():
                with contextlib.suppress(kafka_errors.IllegalStateError):  # no longer assigned
                    consumer.seek(tp, records[0].offset)
            raise
        return result

    async def _rewind(self, assignment: Any, before: _Snapshot | None) -> None:
        """Put back the partitions the failed call moved, so that nothing is skipped.

        To the position before the call, not to the committed offset: the failed
        call handed over nothing, so the records it dropped are exactly those
        from there on. The committed offset can be behind it (auto-commit, a
        caller that commits every few batches): rewinding there would hand over
        again records the caller already has and, where more than one batch of
        them lies before the unreadable record, hand over only those, at every
        failure, for ever. (With GLV's subscriber, which commits or seeks back
        each batch before asking for the next, the two are the same.) Partitions
        that did not move keep their buffered data.

        A partition without a position before the call (assigned, or reset,
        during it) started where aiokafka starts one: its committed offset, else
        the reset policy. With `earliest` that is the beginning; with `latest` it
        was the end at the time of the reset, which nothing recorded: if records
        of such a partition were dropped, they stay skipped (logged). Only the
        first fetch of a `latest` partition without a commit can meet this.
        """
        consumer = self._consumer
        snap_assignment, positions = before if before is not None else (None, {})
        for tp in sorted(assignment.tps):
            state = assignment.state_value(tp)
            if state is None or not state.has_valid_position:
                continue  # nothing fetched, so nothing dropped
            was = positions.get(tp) if snap_assignment is assignment else None
            if was is not None:
                if state.position != was:
                    consumer.seek(tp, was)
                continue
            committed = await self._committed(tp)
            if committed is not None:
                if state.position != committed:
                    consumer.seek(tp, committed)
            elif str(consumer._auto_offset_reset).lower() == "earliest":
                await consumer.seek_to_beginning(tp)
            else:
                log.warning(
                    "partition positioned during a failed read; records may have been skipped",
                    topic=tp.topic,
                    partition=tp.partition,
                    position=state.position,
                )

    async def _committed(self, tp: TopicPartition) -> int | None:
        if self._consumer._group_id is None:
            return None
        try:
            async with asyncio.timeout(self._probe_timeout_s):
                committed: int | None = await self._consumer.committed(tp)
                return committed
        except (TimeoutError, kafka_errors.KafkaError):
            return None

    async def _read_past(self, tp: TopicPartition, start: int, budget: int | None, exc: Exception) -> list[Any]:
        """The records of `tp` from `start` on, up to `budget`, read here; the partition moves past them."""
        consumer = self._consumer
        data, aborted = await self._fetch_raw(tp, start)
        if not data:
            return []  # nothing there any more (truncated?): nothing to step over; the next call sees
        items, next_offset = _parse(
            data,
            tp,
            start,
            budget,
            read_committed=consumer._fetcher._isolation_level == _READ_COMMITTED,
            aborted=aborted,
            check_crcs=bool(consumer._check_crcs),
            key_deserializer=consumer._key_deserializer,
            value_deserializer=consumer._value_deserializer,
        )
        if not items and next_offset == start:
            # aiokafka cannot read at `start` and we could not tell where the
            # record is (a record format this parser does not read, or aiokafka
            # failed where this parser does not): report the offset and step over
            # it alone. Stepping one offset at a time is right even where
            # compaction left gaps: the failure says the first record at or after
            # `start` cannot be read, so if `start` itself holds nothing, skipping
            # it loses nothing and the next call fails again one offset further,
            # until the offset that does hold the record. Every offset is
            # stepped over only once it has been reported.
            items = [UnreadableRecord(topic=tp.topic, partition=tp.partition, offset=start, unreadable=_why(exc))]
            next_offset = start + 1
        for item in items:
            if isinstance(item, UnreadableRecord):
                log.warning(
                    "unreadable record handed over as such",
                    topic=tp.topic,
                    partition=tp.partition,
                    offset=item.offset,
                    reason=item.unreadable,
                )
        consumer.seek(tp, next_offset)
        return items

    async def _fetch_raw(self, tp: TopicPartition, offset: int) -> tuple[bytes, list[tuple[int, int]] | None]:
        """One fetch of `tp` from `offset`, as aiokafka's fetcher would make it, without parsing."""
        consumer = self._consumer
        client = consumer._client
        node_id = client.cluster.leader_for_partition(tp)
        if node_id is None or node_id < 0:
            raise kafka_errors.LeaderNotAvailableError(f"no leader known for {tp}")
        request = FetchRequest(
            consumer._fetch_max_wait_ms,
            1,  # min bytes: there is data at `offset`, aiokafka just read it
            consumer._fetch_max_bytes,
            consumer._fetcher._isolation_level,
            [(tp.topic, [(tp.partition, offset, consumer._max_partition_fetch_bytes)])],
        )
        response = await client.send(node_id, request)
        for _topic, partitions in response.topics:
            for _partition, error_code, _highwater, *part_data in partitions:
                error = kafka_errors.for_code(error_code)
                if error is not kafka_errors.NoError:
                    raise error(f"fetching {tp} from offset {offset}")
                # The layout of part_data by version, as in aiokafka's fetcher.
                if response.API_VERSION >= 11:
                    aborted = part_data[2]
                elif response.API_VERSION >= 4:
                    aborted = part_data[-2]
                else:
                    aborted = None
                return bytes(part_data[-1] or b""), aborted
        return b"", None


def _caught_up(state: Any) -> bool:
    """The partition has nothing after its position, as of its last fetch."""
    return bool(state.has_valid_position and state.highwater is not None and state.position >= state.highwater)


def _why(exc: BaseException) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"aiokafka cannot parse it: a header name is not UTF-8 ({exc})"
    return f"aiokafka cannot parse it: {type(exc).__name__}: {exc}"


# ------------------------------------------------------- lenient record parsing
#
# The record batch format (magic 2, the only one Kafka 4 writes) from the Kafka
# protocol guide. Unlike aiokafka's parser this one reads every record it can,
# says why about each one it cannot, and carries on with the next.

_READ_COMMITTED: Final = 1
_LOG_OVERHEAD: Final = 12  # baseOffset int64 + batchLength int32
_BATCH_HEADER: Final = struct.Struct(
    ">q"  # baseOffset
    "i"  # batchLength
    "i"  # partitionLeaderEpoch
    "b"  # magic
    "I"  # crc (crc32c of everything from attributes on)
    "h"  # attributes
    "i"  # lastOffsetDelta
    "q"  # baseTimestamp
    "q"  # maxTimestamp
    "q"  # producerId
    "h"  # producerEpoch
    "i"  # baseSequence
    "i"  # records count
)
_CRC_FROM: Final = 21
_MAGIC_AT: Final = 16
_CODEC_MASK: Final = 0x07
_LOG_APPEND_TIME: Final = 0x08
_TRANSACTIONAL: Final = 0x10
_CONTROL: Final = 0x20
_ABORT_MARKER: Final = 0  # control record type in the record key
_DECOMPRESS: Final[dict[int, Callable[[bytes], bytes]]] = {
    1: kafka_codec.gzip_decode,
    2: kafka_codec.snappy_decode,
    3: kafka_codec.lz4_decode,
    4: kafka_codec.zstd_decode,
}


class _Corrupt(Exception):
    """A record or batch whose structure cannot be followed."""


@dataclass(frozen=True, slots=True)
class _Raw:
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[bytes, bytes | None], ...]


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """A zigzag varint (the record format's only integer encoding) and the position after it."""
    value = shift = 0
    while True:
        try:
            byte = buf[pos]
        except IndexError:
            raise _Corrupt("truncated varint") from None
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (value >> 1) ^ -(value & 1), pos
        shift += 7
        if shift > 63:
            raise _Corrupt("varint longer than 10 bytes")


def _bytes(buf: bytes, pos: int) -> tuple[bytes | None, int]:
    length, pos = _varint(buf, pos)
    if length < 0:
        return None, pos
    if pos + length > len(buf):
        raise _Corrupt("field runs past the end of the record")
    return buf[pos : pos + length], pos + length


def _records(body: bytes, count: int, base_offset: int, base_ts: int, max_ts: int, log_append: bool) -> Iterator[_Raw]:
    """Yield each record of a batch body as `_Raw`; raises _Corrupt, offset of the culprit known or not."""
    pos = 0
    for _ in range(count):
        length, pos = _varint(body, pos)
        end = pos + length
        if length < 1 or end > len(body):
            raise _Corrupt(f"record length {length} does not fit in the batch")
        pos += 1  # attributes, unused
        ts_delta, pos = _varint(body, pos)
        offset_delta, pos = _varint(body, pos)
        key, pos = _bytes(body, pos)
        value, pos = _bytes(body, pos)
        header_count, pos = _varint(body, pos)
        if header_count < 0:
            raise _Corrupt(f"negative header count at offset {base_offset + offset_delta}")
        headers = []
        for _h in range(header_count):
            name, pos = _bytes(body, pos)
            if name is None:
                raise _Corrupt(f"null header name at offset {base_offset + offset_delta}")
            header_value, pos = _bytes(body, pos)
            headers.append((name, header_value))
        if pos != end:
            raise _Corrupt(f"record at offset {base_offset + offset_delta} is not {length} bytes long")
        timestamp = max_ts if log_append else base_ts + ts_delta
        yield _Raw(base_offset + offset_delta, timestamp, key, value, tuple(headers))


def _convert(raw: _Raw, tp: TopicPartition, timestamp_type: int, key_deserializer: Any, value_deserializer: Any) -> Any:
    """aiokafka's ConsumerRecord for a readable record, an UnreadableRecord for the others."""
    reason = None
    headers: list[tuple[str, bytes | None]] = []
    for name, header_value in raw.headers:
        try:
            headers.append((name.decode("utf-8"), header_value))
        except UnicodeDecodeError:
            reason = f"a header name is not UTF-8: {name[:64]!r}"
            break
    key: Any = raw.key
    value: Any = raw.value
    if reason is None and key_deserializer is not None:
        try:
            key = key_deserializer(raw.key)
        except Exception as exc:
            reason = f"the key deserializer failed: {exc!r}"
    if reason is None and value_deserializer is not None:
        try:
            value = value_deserializer(raw.value)
        except Exception as exc:
            reason = f"the value deserializer failed: {exc!r}"
    if reason is not None:
        return UnreadableRecord(
            topic=tp.topic,
            partition=tp.partition,
            offset=raw.offset,
            timestamp=raw.timestamp,
            timestamp_type=timestamp_type,
            unreadable=reason,
            raw_key=raw.key,
            raw_value=raw.value,
            raw_headers=raw.headers,
        )
    return ConsumerRecord(
        tp.topic,
        tp.partition,
        raw.offset,
        raw.timestamp,
        timestamp_type,
        key,
        value,
        None,  # checksum: none in this format
        len(raw.key) if raw.key is not None else -1,
        len(raw.value) if raw.value is not None else -1,
        tuple(headers),
    )


def _is_abort_marker(body: bytes, header: tuple[Any, ...]) -> bool:
    base_offset, count = header[0], header[12]
    for raw in _records(body, min(count, 1), base_offset, header[7], header[8], log_append=False):
        return raw.key is not None and len(raw.key) >= 4 and struct.unpack(">hh", raw.key[:4])[1] == _ABORT_MARKER
    return False


def _parse(
    data: bytes,
    tp: TopicPartition,
    start: int,
    budget: int | None,
    *,
    read_committed: bool,
    aborted: list[tuple[int, int]] | None,
    check_crcs: bool,
    key_deserializer: Any,
    value_deserializer: Any,
) -> tuple[list[Any], int]:
    """The records from offset `start` on in a fetch response's record set, up to `budget`.

    Returns them and the offset to read from next. Offsets come from the
    records themselves, so gaps left by compaction need no care (the next
    offset after a batch is its last offset + 1, as aiokafka does, even where
    compaction removed its last records). Skips what aiokafka skips:
    records before `start` (a fetch starts at a batch boundary), control batches
    and, when reading committed, aborted transactions. Stops at a batch in
    another format and at the first record whose structure cannot be followed;
    that one is reported as unreadable at the first offset it may hold.
    """
    items: list[Any] = []
    next_offset = start
    pending_aborts = sorted(aborted or [], key=lambda a: a[1])  # (producer id, first offset)
    aborted_producers: set[int] = set()
    pos = 0
    while pos + _LOG_OVERHEAD <= len(data):
        if budget is not None and len(items) >= budget:
            return items, next_offset
        base_offset, length = struct.unpack_from(">qi", data, pos)
        end = pos + _LOG_OVERHEAD + length
        if end > len(data):
            break  # the response ends inside this batch (it is cut at max bytes)
        batch = data[pos:end]
        pos = end
        if len(batch) <= _MAGIC_AT or batch[_MAGIC_AT] != 2:
            break  # an old format: nothing here reads it; aiokafka's error decides
        try:
            header = _BATCH_HEADER.unpack_from(batch)
        except struct.error:
            return _corrupt_at(items, tp, max(next_offset, base_offset), "record batch header is truncated")
        attributes, last_delta, base_ts, max_ts, producer_id, count = (
            header[5],
            header[6],
            header[7],
            header[8],
            header[9],
            header[12],
        )
        batch_next = base_offset + last_delta + 1
        if batch_next <= next_offset:
            continue  # all before `start`
        if check_crcs and calc_crc32c(memoryview(batch)[_CRC_FROM:]) != header[4]:
            return _corrupt_at(items, tp, max(next_offset, base_offset), f"record batch at {base_offset} fails its CRC")
        body = batch[_BATCH_HEADER.size :]
        codec = attributes & _CODEC_MASK
        try:
            if codec:
                body = _DECOMPRESS[codec](body)
            if read_committed and producer_id != -1:
                while pending_aborts and pending_aborts[0][1] <= base_offset:
                    aborted_producers.add(pending_aborts.pop(0)[0])
                if attributes & _CONTROL and _is_abort_marker(body, header):
                    aborted_producers.discard(producer_id)
                if attributes & _TRANSACTIONAL and producer_id in aborted_producers:
                    next_offset = batch_next
                    continue
            if attributes & _CONTROL:
                next_offset = batch_next
                continue
            timestamp_type = 1 if attributes & _LOG_APPEND_TIME else 0
            records = _records(body, count, base_offset, base_ts, max_ts, bool(attributes & _LOG_APPEND_TIME))
            for raw in records:
                if raw.offset < next_offset:
                    continue
                items.append(_convert(raw, tp, timestamp_type, key_deserializer, value_deserializer))
                next_offset = raw.offset + 1
                if budget is not None and len(items) >= budget:
                    return items, next_offset
        except _Corrupt as exc:
            return _corrupt_at(items, tp, max(next_offset, base_offset), f"record batch at {base_offset}: {exc}")
        except Exception as exc:  # a codec that fails on garbage
            return _corrupt_at(items, tp, max(next_offset, base_offset), f"record batch at {base_offset}: {exc!r}")
        # Past the batch's last offset even if compaction removed its last records.
        next_offset = max(next_offset, batch_next)
    return items, next_offset


def _corrupt_at(items: list[Any], tp: TopicPartition, offset: int, why: str) -> tuple[list[Any], int]:
    # Where the structure is lost we cannot tell which offsets hold records, so
    # only the first offset that may hold this one is reported and stepped over
    # (see _Guard._read_past on stepping one offset at a time).
    items.append(UnreadableRecord(topic=tp.topic, partition=tp.partition, offset=offset, unreadable=why))
    return items, offset + 1
