"""The one FastStream subscriber shape every service uses: raw batches, manual acks."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.message import FAKE_CONSUMER, KafkaAckableMessage

from glv_runtime.consumer import BatchProcessor, Delivery
from glv_runtime.logs import get_logger
from glv_runtime.settings import ServiceSettings

log = get_logger(__name__)


class RawBatchParser:
    """Hands the records over untouched.

    FastStream's own parser decodes every header as UTF-8 and its decoder parses
    JSON before our code runs, so one malformed record would fail the whole batch
    outside our control. Decoding is ours (consumer.decode), per record.
    """

    def __init__(self) -> None:
        self.subscriber: Any = None

    async def parse(self, raw: tuple[Any, ...]) -> KafkaAckableMessage:
        consumer = getattr(self.subscriber, "consumer", None) or FAKE_CONSUMER
        # The real consumer hands a flat tuple of records; FastStream's test
        # broker nests them in a list. Either way we keep a flat tuple.
        records = tuple(r for item in raw for r in (item if isinstance(item, list | tuple) else (item,)))
        first = records[0] if records else None
        return KafkaAckableMessage(
            raw_message=records,
            body=b"",
            message_id=f"{first.topic}-{first.partition}-{first.offset}" if first else "",
            consumer=consumer,
        )

    @staticmethod
    async def decode(_: Any) -> None:
        return None


def subscribe_batches(
    broker: KafkaBroker,
    topics: Sequence[str],
    processor: BatchProcessor,
    settings: ServiceSettings,
    *,
    group_id: str,
    pattern: str | None = None,
) -> Any:
    """Subscribe to `topics`, or (topics empty) to every topic `pattern` matches."""
    parser = RawBatchParser()
    subscriber = broker.subscriber(
        *topics,
        pattern=pattern,
        group_id=group_id,
        batch=True,
        max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
        # MANUAL: FastStream never acks for us. The default (ACK_FIRST) commits
        # before processing, and ACK leaves a failed batch uncommitted but lets
        # the next one commit past it (faststream#2618). We ack after the
        # database commit and nack (seek back) on an outage; a cancelled handler
        # (graceful timeout, faststream#2999/#3000) acks nothing and is redelivered.
        ack_policy=AckPolicy.MANUAL,
        auto_offset_reset="earliest",
        parser=parser.parse,
        decoder=parser.decode,
    )
    parser.subscriber = subscriber

    backoff = OutageBackoff(settings.outage_backoff_s, settings.outage_backoff_max_s)

    @subscriber
    async def consume_batch(message: KafkaMessage) -> None:
        records = message.raw_message if isinstance(message.raw_message, tuple) else (message.raw_message,)
        if not records:
            return
        try:
            await processor.process([Delivery.from_record(r) for r in records])
        except Exception as exc:
            # An outage (or a bug): rewind so nothing past this batch is committed,
            # back off, and let the consumer fetch the same records again.
            delay = backoff.next()
            log.warning("batch not applied, will be redelivered", error=repr(exc), size=len(records), retry_in_s=delay)
            await message.nack()
            await asyncio.sleep(delay)
            return
        backoff.reset()
        await message.ack()

    return subscriber


class OutageBackoff:
    """Exponential, capped, with jitter: replicas waiting out one outage do not retry in step."""

    def __init__(self, first_s: float, max_s: float) -> None:
        self._first_s = first_s
        self._max_s = max_s
        self._failures = 0

    def next(self) -> float:
        self._failures += 1
        ceiling = min(self._max_s, self._first_s * 2 ** (self._failures - 1))
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self._failures = 0
