"""Kafka clients built once from settings: the producer, the FastStream broker, topics."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    InvalidTopicError,
    MessageSizeTooLargeError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
)
from faststream.kafka import KafkaBroker

from glv_runtime.logs import get_logger
from glv_runtime.outbox import OutboxMessage
from glv_runtime.settings import ServiceSettings
from glv_runtime.transport import faststream_security, kafka_client_options
from glv_schemas import Topic
from glv_schemas.topics import DAY_MS, intake_dead_letter_topic

log = get_logger(__name__)


# Errors the producer raises before sending: retrying the same record cannot help.
# (A topic the service may not write is refused by the broker, which is alive to say so.)
PERMANENT_SEND_ERRORS: tuple[type[BaseException], ...] = (
    MessageSizeTooLargeError,
    InvalidTopicError,
    TopicAuthorizationFailedError,
    ValueError,
    TypeError,
    AssertionError,
)


class ProducerConfigError(RuntimeError):
    pass


def producer_config(settings: ServiceSettings) -> dict[str, Any]:
    """The only producer configuration GLV uses: idempotent, acks=all, explicit linger."""
    return {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "client_id": f"glv-{settings.service_name}",
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": settings.producer_linger_ms,
        "max_batch_size": settings.producer_max_batch_bytes,
        "request_timeout_ms": 30_000,
        **kafka_client_options(settings),
    }


def check_producer(producer: AIOKafkaProducer) -> None:
    """Refuse to start with a producer that could lose, duplicate or reorder records."""
    # aiokafka keeps these on its private sender; read them rather than trust our own dict.
    problems: list[str] = []
    if getattr(producer, "_txn_manager", None) is None:
        problems.append("idempotence is off")
    acks = getattr(getattr(producer, "_sender", None), "_acks", None)
    if acks != -1:
        problems.append(f"acks={acks!r}, need all (-1)")
    if problems:
        raise ProducerConfigError("; ".join(problems))


class KafkaSender:
    """Publishes outbox records in order with the idempotent producer."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.producer = AIOKafkaProducer(**producer_config(settings))
        check_producer(self.producer)
        self._prefix = settings.topic_prefix

    async def start(self) -> None:
        await self.producer.start()

    async def stop(self) -> None:
        await self.producer.stop()

    async def send_all(self, records: Sequence[OutboxMessage]) -> dict[int, str]:
        # Queue every record first (so they batch and keep their order per
        # partition), then wait for all acknowledgements. The producer checks a
        # record before queueing it: one it refuses (too large, neither key nor
        # value) can never be published, and is reported instead of raised so
        # that it does not hold back the records behind it.
        futures = []
        refused: dict[int, str] = {}
        for index, r in enumerate(records):
            try:
                futures.append(
                    await self.producer.send(self._prefix + r.topic, value=r.payload, key=r.key, headers=r.headers)
                )
            except PERMANENT_SEND_ERRORS as exc:
                refused[index] = f"{type(exc).__name__}: {exc}"
        await asyncio.gather(*futures)
        return refused


def build_broker(settings: ServiceSettings) -> KafkaBroker:
    """The FastStream broker that carries this service's subscribers."""
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id=f"glv-{settings.service_name}",
        enable_idempotence=True,
        acks="all",
        linger_ms=settings.producer_linger_ms,
        graceful_timeout=settings.graceful_timeout_s,
        # Topics come from the registry (ensure_topics), never from a typo.
        allow_auto_create_topics=False,
        # A pattern subscription sees a newly onboarded portal's topic on the next refresh.
        metadata_max_age_ms=settings.kafka_metadata_max_age_ms,
        security=faststream_security(settings),
        logger=None,
    )


def admin_client(settings: ServiceSettings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id=f"glv-{settings.service_name}-admin",
        **kafka_client_options(settings),
    )


def topic_config(settings: ServiceSettings, topic: Topic) -> dict[str, str]:
    """The registry's configuration, with the retention of intake dead letters from settings."""
    config = topic.topic_config()
    if topic.name == intake_dead_letter_topic(settings.service_name).name:
        config["retention.ms"] = str(settings.intake_dead_letter_retention_days * DAY_MS)
    return config


async def ensure_topics(settings: ServiceSettings, topics: Sequence[Topic]) -> None:
    """Create missing topics from the registry; existing ones are left as they are."""
    admin = admin_client(settings)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        prefix = settings.topic_prefix
        missing = [
            NewTopic(
                name=prefix + t.name,
                num_partitions=t.partitions if t.partitions == 1 else settings.topic_partitions,
                replication_factor=settings.topic_replication,
                topic_configs=topic_config(settings, t),
            )
            for t in topics
            if prefix + t.name not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another replica won the race
                await admin.create_topics(missing)
            log.info("topics created", topics=[t.name for t in missing])

        # Creation returns before every partition has a leader; wait until metadata shows them.
        for _ in range(100):
            described = await admin.describe_topics([prefix + t.name for t in topics])
            if all(
                d.get("error_code", 0) == 0 and d.get("partitions") and all(p["leader"] >= 0 for p in d["partitions"])
                for d in described
            ):
                break
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def partitions_of(bootstrap: str | ServiceSettings, topics: Sequence[str]) -> list[TopicPartition]:
    """Every partition of these topics (missing topics have none)."""
    admin = (
        AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="glv-admin")
        if isinstance(bootstrap, str)
        else admin_client(bootstrap)
    )
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    return [
        TopicPartition(d["topic"], p["partition"])
        for d in described
        if d.get("error_code", 0) == 0
        for p in d.get("partitions", [])
    ]
