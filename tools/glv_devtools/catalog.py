"""The shipped catalog, for tests and the demo that run ticketing without a scheduler.

In production the scheduler publishes the catalog through its outbox
(`glv-scheduler load-catalog FILE`); this publishes the same entries directly.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaProducer

from glv_runtime.kafka import ensure_topics, producer_config
from glv_runtime.settings import ServiceSettings
from glv_scheduler.catalog import read_catalog
from glv_schemas import new_cloud_event
from glv_schemas.events import OfficeCatalogUpdated, OfficeCatalogUpdatedV2
from glv_schemas.topics import CATALOG

CATALOG_FILE = Path(__file__).resolve().parents[2] / "deploy" / "catalog" / "catalog.yaml"


def office_entries(path: Path = CATALOG_FILE, now: datetime | None = None) -> list[OfficeCatalogUpdatedV2]:
    return read_catalog(path).office_entries(now or datetime.now(UTC))


async def publish_office_entries(settings: ServiceSettings, entries: list[OfficeCatalogUpdated]) -> None:
    await ensure_topics(settings, [CATALOG])
    producer = AIOKafkaProducer(**producer_config(settings))
    await producer.start()
    try:
        for entry in entries:
            cloud_event = new_cloud_event(type(entry), source="/glv/devtools", subject=entry.office_code)
            await producer.send(
                settings.topic_prefix + CATALOG.name,
                value=entry.model_dump_json().encode(),
                key=entry.office_code.encode(),
                headers=cloud_event.to_headers(),
            )
        await producer.flush()
    finally:
        await producer.stop()
