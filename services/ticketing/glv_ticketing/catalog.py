"""Read the office catalog file and publish it to the compacted catalog topic.

The scheduler owns this reference data and will publish it itself; until then
ops load the file with `glv-ticketing load-catalog FILE`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from aiokafka import AIOKafkaProducer

from glv_runtime.kafka import ensure_topics, producer_config
from glv_runtime.settings import ServiceSettings
from glv_schemas import new_cloud_event
from glv_schemas.events import OfficeCatalogUpdated, ServiceOffering
from glv_schemas.topics import CATALOG


def read_catalog(path: Path, now: datetime | None = None) -> list[OfficeCatalogUpdated]:
    """Offices from the YAML file, each with the full description of its services."""
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    services = {code: ServiceOffering(service_code=code, **spec) for code, spec in data["services"].items()}
    stamp = now or datetime.now(UTC)
    entries = []
    for office in data["offices"]:
        unknown = [s for s in office["services"] if s not in services]
        if unknown:
            raise ValueError(f"office {office['office_code']}: unknown services {unknown}")
        entries.append(
            OfficeCatalogUpdated(
                office_code=office["office_code"],
                name=office["name"],
                city=office["city"],
                zone=office["zone"],
                services=[services[s] for s in office["services"]],
                updated_at=stamp,
            )
        )
    return entries


async def publish_catalog(settings: ServiceSettings, entries: list[OfficeCatalogUpdated]) -> None:
    await ensure_topics(settings, [CATALOG])
    producer = AIOKafkaProducer(**producer_config(settings))
    await producer.start()
    try:
        for entry in entries:
            cloud_event = new_cloud_event(OfficeCatalogUpdated, source="/glv/catalog-loader", subject=entry.office_code)
            await producer.send(
                settings.topic_prefix + CATALOG.name,
                value=entry.model_dump_json().encode(),
                key=entry.office_code.encode(),
                headers=cloud_event.to_headers(),
            )
        await producer.flush()
    finally:
        await producer.stop()
