"""Read topics to their end before consuming anything else (the catalog before tickets).

As a stream processor restores a global table before it processes: on every
start, ticketing applies `glv.catalog` from its beginning up to the end offsets
it finds, so that no ticket is judged against a catalog it has not read yet.
Applying goes through the same batch processor (inbox, dead letters), so entries
applied before change nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer

from glv_runtime.consumer import BatchProcessor, Delivery
from glv_runtime.errors import Outage
from glv_runtime.fetch_guard import guard_getmany
from glv_runtime.kafka import partitions_of
from glv_runtime.logs import get_logger
from glv_runtime.settings import ServiceSettings
from glv_runtime.subscription import OutageBackoff
from glv_runtime.transport import kafka_client_options

log = get_logger(__name__)


async def restore_topics(settings: ServiceSettings, topics: Sequence[str], processor: BatchProcessor) -> int:
    """Apply every record now on these topics; return how many were read."""
    partitions = await partitions_of(settings, topics)
    if not partitions:
        return 0
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id=f"glv-{settings.service_name}-restore",
        enable_auto_commit=False,
        group_id=None,
        **kafka_client_options(settings),
    )
    await consumer.start()
    guard_getmany(consumer)
    read = 0
    backoff = OutageBackoff(settings.outage_backoff_s, settings.outage_backoff_max_s)
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        while any([await consumer.position(tp) < end[tp] for tp in partitions]):
            batch = await consumer.getmany(timeout_ms=500, max_records=settings.batch_max_records)
            deliveries = [Delivery.from_record(r) for records in batch.values() for r in records]
            while deliveries:
                try:
                    await processor.process(deliveries)
                    break
                except Outage as exc:
                    delay = backoff.next()
                    log.warning("restore waits for the database", error=str(exc), retry_in_s=delay)
                    await asyncio.sleep(delay)
            read += len(deliveries)
    finally:
        await consumer.stop()
    log.info("topics restored", topics=list(topics), records=read)
    return read
