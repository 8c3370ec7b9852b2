"""The fast tier: a service's batch processor fed deliveries directly, on a throwaway
PostgreSQL and without Kafka. Everything but the broker is the real thing."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg
from pydantic import BaseModel

from glv_devtools.portal import RawRecord, record_for
from glv_runtime.consumer import BatchProcessor, Delivery
from glv_runtime.migrate import apply_migrations
from glv_runtime.service import ServiceSpec
from glv_runtime.unit_of_work import Database


@dataclass
class Feeder:
    """Hands deliveries to a service's processor as its Kafka subscriber would."""

    db: Database
    processor: BatchProcessor
    _offsets: dict[tuple[str, int], itertools.count[int]] = field(default_factory=dict)

    def delivery(self, record: RawRecord, partition: int = 0, offset: int | None = None) -> Delivery:
        counter = self._offsets.setdefault((record.topic, partition), itertools.count())
        return Delivery(
            topic=record.topic,
            partition=partition,
            offset=next(counter) if offset is None else offset,
            key=record.key,
            headers=tuple(record.headers),
            value=record.value,
        )

    async def feed(self, *records: RawRecord | Delivery) -> None:
        """One batch, as one fetch would deliver it."""
        await self.processor.process([r if isinstance(r, Delivery) else self.delivery(r) for r in records])

    async def file(self, *events: BaseModel, source: str = "/portal/sim") -> None:
        await self.feed(*(record_for(e, source=source) for e in events))

    async def outbox(self, topic: str | None = None) -> list[asyncpg.Record]:
        async with self.db.pool.acquire() as conn:
            return list(
                await conn.fetch(
                    "SELECT topic, msg_key, headers, payload, size_bytes FROM glv_outbox"
                    " WHERE $1::text IS NULL OR topic = $1 ORDER BY id",
                    topic,
                )
            )

    async def dead_letter_codes(self) -> list[str]:
        async with self.db.pool.acquire() as conn:
            rows = await conn.fetch('SELECT error_code FROM glv_dead_letter ORDER BY topic, partition, "offset"')
        return [r["error_code"] for r in rows]


async def feeder_for(spec: ServiceSpec, pool: asyncpg.Pool) -> Feeder:
    async with pool.acquire() as conn:
        await apply_migrations(conn, ["glv_runtime.migrations", *spec.migrations])
    spec.router.check(spec.consumes)
    db = Database(pool, source=spec.source)
    processor = BatchProcessor(
        db, spec.router.apply, service=spec.name, max_attempts=2, retry_backoff_s=0.0, decoder=spec.decoder
    )
    return Feeder(db, processor)


def records(*events: BaseModel, source: str = "/portal/sim") -> Sequence[RawRecord]:
    return [record_for(e, source=source) for e in events]
