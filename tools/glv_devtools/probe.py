"""Read what GLV published: every record of some topics, decoded, until a condition holds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer

from glv_runtime.kafka import partitions_of
from glv_schemas import EVENTS_BY_TYPE


@dataclass(frozen=True)
class Seen:
    topic: str
    partition: int
    offset: int
    key: str | None
    headers: dict[str, str]
    type: str | None
    event: Any  # the decoded model, or None when the value was not a known event


class EventProbe:
    """Collects every record of the given topics from the beginning."""

    def __init__(self, bootstrap: str, topics: Sequence[str]) -> None:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self._topics = list(topics)
        self._bootstrap = bootstrap
        self.seen: list[Seen] = []

    async def __aenter__(self) -> EventProbe:
        await self._consumer.start()
        partitions = await partitions_of(self._bootstrap, self._topics)
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def catch_up(self) -> int:
        """Read everything already on the topics; return how many records that was."""
        partitions = list(self._consumer.assignment())
        end = await self._consumer.end_offsets(partitions)
        while True:
            positions = [await self._consumer.position(tp) for tp in partitions]
            if all(pos >= end[tp] for pos, tp in zip(positions, partitions, strict=True)):
                return len(self.seen)
            await self.poll()

    async def poll(self) -> None:
        batch = await self._consumer.getmany(timeout_ms=200)
        for records in batch.values():
            for r in records:
                headers = {n: v.decode("utf-8", "replace") for n, v in r.headers}
                event_type = headers.get("ce_type")
                model = EVENTS_BY_TYPE.get(event_type or "")
                event = None
                if model is not None and r.value is not None:
                    try:
                        event = model.model_validate_json(r.value)
                    except ValueError:
                        event = None
                self.seen.append(
                    Seen(r.topic, r.partition, r.offset, r.key.decode() if r.key else None, headers, event_type, event)
                )

    async def wait_for(self, condition: Callable[[list[Seen]], bool], timeout_s: float = 60.0) -> list[Seen]:
        """Poll until `condition(seen)` holds; fail with what was seen if it never does."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not condition(self.seen):
            if asyncio.get_running_loop().time() > deadline:
                types: dict[str | None, int] = {}
                for s in self.seen:
                    types[s.type] = types.get(s.type, 0) + 1
                raise TimeoutError(f"condition not met in {timeout_s}s; seen so far: {types}")
            await self.poll()
        return self.seen

    def of_type(self, name: str) -> list[Seen]:
        return [s for s in self.seen if s.type and s.type.split(".")[1] == name]
