"""Property-based fuzzing of every topic each service consumes, against the running services.

Generated records (byte-level garbage and structured mutations of valid events,
interleaved with valid events) go to every consumed topic; then every record is
accounted for: each valid event applied exactly once, each bad one dead-lettered
with a code, no partition stuck (lag back to 0), nothing left in the outboxes,
and the services still running.

CI runs GLV_FUZZ_RECORDS (default 1,000) records per consumer; the long form is
`make fuzz` (10,000 per consumer) and prints the same table.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from glv_runtime.kafka import partitions_of
from glv_runtime.service import RunningService
from glv_schemas import events as ev
from glv_schemas.topics import (
    CATALOG,
    PORTAL_UPDATES,
    TICKETING_EVENTS,
    dead_letter_topic,
    dead_letter_topic_for,
    intake_dead_letter_topic,
)
from glv_ticketing.handlers import decode_for_ticketing
from tests.fuzz import FUZZ_INTAKE, FUZZ_PORTAL, TOPICS_OF, FuzzRecord, classify, draw_records, forged
from tests.infra import Infra
from tests.integration.archive_world import running_archive
from tests.integration.conftest import Glv
from tests.rawrecords import RawRecord, produce_raw

RECORDS_PER_CONSUMER = int(os.environ.get("GLV_FUZZ_RECORDS", "1000"))
SEED = int(os.environ.get("GLV_FUZZ_SEED", "20261201"))
MAX_BATCH_BYTES = 700 * 1024


async def produce(bootstrap: str, prefix: str, records: Sequence[FuzzRecord]) -> None:
    """Append the records in order, grouped per partition into batches under the size limit."""
    by_partition: dict[tuple[str, int], list[FuzzRecord]] = defaultdict(list)
    for record in records:
        by_partition[(record.topic, record.partition)].append(record)
    for (topic, partition), group in by_partition.items():
        chunk: list[FuzzRecord] = []
        for record in [*group, None]:
            if record is None or (chunk and sum(r.size() for r in chunk) + record.size() > MAX_BATCH_BYTES):
                offsets = await produce_raw(
                    bootstrap,
                    prefix + topic,
                    partition,
                    [RawRecord(key=r.key, value=r.value, headers=r.headers) for r in chunk],
                )
                for sent, offset in zip(chunk, offsets, strict=True):
                    sent.offset = offset
                chunk = []
            if record is not None:
                chunk.append(record)


async def lag(bootstrap: str, group: str, topics: Sequence[str]) -> int:
    partitions = await partitions_of(bootstrap, topics)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        end = await consumer.end_offsets(partitions)
        behind = 0
        for tp in partitions:
            behind += end[tp] - (await consumer.committed(tp) or 0)
        return behind
    finally:
        await consumer.stop()


async def records_on(bootstrap: str, topic: str) -> int:
    partitions = await partitions_of(bootstrap, [topic])
    if not partitions:
        return 0  # no such topic (a service that reads no portal's intake has no intake dead letters)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        end = await consumer.end_offsets(partitions)
        start = await consumer.beginning_offsets(partitions)
        return sum(end[tp] - start[tp] for tp in partitions)
    finally:
        await consumer.stop()


async def pending_outbox(service: RunningService) -> int:
    return int(await service.pool.fetchval("SELECT count(*) FROM glv_outbox WHERE sent_at IS NULL"))


# Codes a decodable event may still be dead-lettered with: the service's own refusals of
# what it says (an event about a ticket it never accepted, a filing that is not one).
DOMAIN_REFUSALS = frozenset({"unknown_ticket", "invalid_event", "invalid_stakeholder_ref"})


async def account(service: RunningService, prefix: str, records: Sequence[FuzzRecord]) -> Counter[str]:
    """Every record either applied once (its identity in the inbox) or dead-lettered at its position."""
    letters = {
        (r["topic"], r["partition"], r["offset"]): r["error_code"]
        for r in await service.pool.fetch('SELECT topic, partition, "offset", error_code FROM glv_dead_letter')
    }
    inbox = {(r["source"], r["event_id"]) for r in await service.pool.fetch("SELECT source, event_id FROM glv_inbox")}
    outcome: Counter[str] = Counter()
    for record in records:
        code = letters.get((prefix + record.topic, record.partition, record.offset))
        if record.expected_code is not None:
            assert code, f"{record.origin} record should be dead-lettered as {record.expected_code}: {record}"
        if record.expected_code == "portal_mismatch":
            # Whatever else is wrong with it, a body naming another portal is refused as that.
            assert code == "portal_mismatch", f"{record.origin} record dead-lettered as {code}: {record}"
        if code:
            assert code.strip(), "a dead letter without a code"
            if record.expected_code is None:
                assert code in DOMAIN_REFUSALS, f"decodable {record.origin} record dead-lettered as {code}"
            outcome[f"dead-lettered {code}"] += 1
        else:
            assert record.identity in inbox, f"valid {record.origin} record neither applied nor dead-lettered"
            outcome["applied"] += 1
    return outcome


async def decisions(service: RunningService, topic: str, keys: set[bytes]) -> Counter[tuple[bytes, str]]:
    """How many events of each type the service published per key."""
    rows = await service.pool.fetch(
        "SELECT msg_key, headers FROM glv_outbox WHERE topic = $1 AND msg_key = ANY($2::bytea[])", topic, list(keys)
    )
    counted: Counter[tuple[bytes, str]] = Counter()
    for row in rows:
        headers = {name: base64.b64decode(value).decode() for name, value in json.loads(row["headers"])}
        counted[(row["msg_key"], headers["ce_type"])] += 1
    return counted


# Generation runs in a thread beside the services' event loop, whose libraries use
# the global random module: hypothesis notices and warns, harmlessly here.
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
async def test_fuzzed_records_never_stall_lose_or_duplicate(glv: Glv, infra: Infra, tmp_path: Path) -> None:
    async with running_archive(glv, infra, tmp_path) as archive:
        assert archive.service is not None
        await fuzz(glv, archive.service)


async def fuzz(glv: Glv, archive: RunningService) -> None:
    bootstrap, prefix = glv.ticketing.settings.kafka_bootstrap_servers, glv.ticketing.prefix
    services = {"ticketing": glv.ticketing.service, "scheduler": glv.scheduler, "archive": archive}
    decoders = {
        "ticketing": decode_for_ticketing,
        "scheduler": glv.scheduler.spec.decoder,
        "archive": archive.spec.decoder,
    }
    rng = random.Random(SEED)
    drawn: dict[str, list[FuzzRecord]] = {}
    for offset, (name, topics) in enumerate(TOPICS_OF.items()):
        # In a thread: the services run on this event loop and must keep heartbeating.
        drawn[name] = await asyncio.to_thread(draw_records, topics, RECORDS_PER_CONSUMER, SEED + offset)
        if FUZZ_INTAKE in topics:  # a portal speaking for another, surely among them
            drawn[name] += forged(max(4, RECORDS_PER_CONSUMER // 100), SEED + offset)
        for record in drawn[name]:
            record.partition = 0 if record.topic == CATALOG.name else rng.randrange(6)
            classify(record, decoders[name])
        assert all(r.expected_code == "portal_mismatch" for r in drawn[name] if r.origin == "forged")
    for name in services:
        await produce(bootstrap, prefix, drawn[name])

    groups = {name: f"{prefix}{name}" for name in services}
    deadline = asyncio.get_running_loop().time() + 600
    while True:
        lags = {n: await lag(bootstrap, groups[n], [prefix + t for t in TOPICS_OF[n]]) for n in services}
        pending = {n: await pending_outbox(s) for n, s in services.items()}
        if not any(lags.values()) and not any(pending.values()):
            break
        assert asyncio.get_running_loop().time() < deadline, f"not drained: lag {lags}, outbox {pending}"
        await asyncio.sleep(0.5)

    report: list[str] = []
    for name, service in services.items():
        assert service.consuming and service.progress is not None and not service.progress.stalled
        outcome = await account(service, prefix, drawn[name])
        parked = await service.pool.fetchval("SELECT count(*) FROM glv_outbox WHERE parked_at IS NOT NULL")
        assert parked == 0, f"{name}: {parked} outbox rows parked"
        # Each dead letter on its topic: the portals' intake records on the intake one, the rest on the service's.
        letters: Counter[str] = Counter()
        for row in await service.pool.fetch("SELECT topic FROM glv_dead_letter"):
            letters[dead_letter_topic_for(name, row["topic"], prefix).name] += 1
        for topic in {dead_letter_topic(name).name, intake_dead_letter_topic(name).name} | set(letters):
            on_topic = await records_on(bootstrap, prefix + topic)
            assert on_topic == letters[topic], f"{name}: {letters[topic]} dead letters recorded, {on_topic} on {topic}"
        origins = Counter(r.origin.split(":")[0] for r in drawn[name])
        report.append(
            f"{name}: {len(drawn[name])} records ({dict(origins)}), lag 0, outbox empty; "
            + ", ".join(f"{k}: {v}" for k, v in sorted(outcome.items()))
        )

    # Each valid filing got exactly one decision; each valid acceptance one outcome of each kind
    # at most (waitlisted, then placed by a refill, is two), and never two slots.
    # Two generated records may share a CloudEvents identity (a mutated ce_id drawn twice):
    # the later one is rightly a duplicate, so only unique identities must be decided.
    identities = Counter(r.identity for name in services for r in drawn[name] if r.identity)
    filed = {
        r.key
        for r in drawn["ticketing"]
        if isinstance(r.event, ev.TicketFiled) and r.key and identities[r.identity] == 1
    }
    decided = await decisions(services["ticketing"], TICKETING_EVENTS.name, filed)
    assert {key for key, _ in decided} == filed and set(decided.values()) == {1}
    assert len(decided) == len(filed)
    # ... and the portal got each decision once too, on its own updates topic (beside what followed it).
    forwarded = await decisions(services["ticketing"], PORTAL_UPDATES.for_portal(FUZZ_PORTAL), filed)
    decision_types = {m.event_type() for m in TICKETING_EVENTS.events}
    assert Counter({k: n for k, n in forwarded.items() if k[1] in decision_types}) == decided
    accepted = {
        r.key
        for r in drawn["scheduler"]
        if isinstance(r.event, ev.TicketAccepted) and r.key and identities[r.identity] == 1
    }
    scheduled = await decisions(services["scheduler"], "glv.scheduler.events", accepted)
    assert {key for key, _ in scheduled} == accepted and set(scheduled.values()) == {1}
    report.append(f"valid filings decided once: {len(filed)}; valid acceptances scheduled once: {len(accepted)}")
    print("\n" + "\n".join(report))
