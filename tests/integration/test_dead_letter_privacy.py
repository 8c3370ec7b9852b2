"""Dead letters of what portals file: their own short-lived topic, a listing that never
shows personal data, and replays that leave no new copies behind.

On the real broker and a real database: records are consumed from a portal's intake
topic, dead-lettered through a unit of work and the outbox relay, and listed and
replayed with `glv-deadletters` itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import ConsumerRecord

from glv_runtime.consumer import Delivery
from glv_runtime.deadletters import (
    DLQ_HEADERS,
    H_CODE,
    H_OFFSET,
    H_REFERENCE_ONLY,
    H_REPLAYED_FROM_OFFSET,
    H_REPLAYED_FROM_PARTITION,
    H_REPLAYED_FROM_TOPIC,
    H_TOPIC,
    REFERENCE_HEADERS,
    DeadLetter,
    listing,
    read_dead_letters,
    replay,
)
from glv_runtime.migrate import apply_migrations
from glv_runtime.service import flush_outbox
from glv_runtime.settings import ServiceSettings
from glv_runtime.unit_of_work import Database, create_pool
from glv_schemas import new_cloud_event
from glv_schemas.base import TimeWindow
from glv_schemas.events import Stakeholder, TicketFiled
from glv_schemas.topics import PORTAL_TICKETS, dead_letter_topic, intake_dead_letter_topic
from tests.infra import Infra

PORTAL = "sim-portal"
SERVICE = "ticketing"
# What the stakeholder filed, and every form in which a piece of it could leak.
NAME = "Siti Rahayu Wulandari"
EMAIL = "siti.rahayu.w@example.co.id"
PHONE = "+6281234567890"
NIK = "7371234567890123"
ORGANISATION = "PT Maju Jaya Abadi"
PERSONAL = (NAME, "Siti", "Rahayu", "Wulandari", EMAIL, "siti.rahayu", PHONE, "81234567890", NIK, "Maju Jaya")
PERSONAL += ("0812-3456-7890", "3456-7890")


@dataclass
class Rig:
    settings: ServiceSettings
    db: Database
    prefix: str

    @property
    def bootstrap(self) -> str:
        return self.settings.kafka_bootstrap_servers

    @property
    def intake(self) -> str:
        return self.prefix + PORTAL_TICKETS.for_portal(PORTAL)

    @property
    def intake_dlq(self) -> str:
        return self.prefix + intake_dead_letter_topic(SERVICE).name

    @property
    def dlq(self) -> str:
        return self.prefix + dead_letter_topic(SERVICE).name


@pytest.fixture
async def rig(
    infra: Infra, topic_prefix: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Rig]:
    for name, value in {
        "KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap,
        "GLV_SERVICE_NAME": SERVICE,
        "GLV_DATABASE_URL": database_url,
        "GLV_TOPIC_PREFIX": topic_prefix,
        "GLV_ENVIRONMENT": "development",
    }.items():
        monkeypatch.setenv(name, value)
    settings = ServiceSettings()
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.bootstrap)
    await admin.start()
    try:
        # The portal's intake topic (onboarding creates it) and one of GLV's own topics.
        await admin.create_topics(
            [
                NewTopic(topic_prefix + PORTAL_TICKETS.for_portal(PORTAL), 1, 1),
                NewTopic(topic_prefix + "glv.scheduler.events", 1, 1),
            ]
        )
    finally:
        await admin.close()
    pool = await create_pool(settings, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            await apply_migrations(conn, ["glv_runtime.migrations"])
        db = Database(pool, source=f"/glv/{SERVICE}")
        await flush_outbox(settings, db)  # creates the service's topics, dead-letter ones included
        yield Rig(settings, db, topic_prefix)
    finally:
        await pool.close()


def filing() -> TicketFiled:
    now = datetime.now(UTC).replace(microsecond=0)
    start = now + timedelta(days=2)
    return TicketFiled(
        ticket_id=uuid.uuid4(),
        portal_id=PORTAL,
        office_code="PLP",
        service_code="lelang",
        subject="Konsultasi lelang",
        description=f"Mohon hubungi saya di 0812-3456-7890 atau {EMAIL}",
        stakeholder=Stakeholder(
            stakeholder_ref="person-00000042",
            name=NAME,
            organisation=ORGANISATION,
            email=EMAIL,
            phone=PHONE,
            national_id=NIK,
        ),
        preferred_windows=[TimeWindow(start=start, end=start + timedelta(hours=3))],
        filed_at=now,
    )


async def send(bootstrap: str, topic: str, event: TicketFiled) -> None:
    """What the portal publishes, with a header of its own that holds personal data too."""
    cloud_event = new_cloud_event(TicketFiled, source=f"/portal/{PORTAL}", subject=str(event.ticket_id))
    headers = [*cloud_event.to_headers(), ("x-portal-contact", EMAIL.encode())]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            topic, value=event.model_dump_json().encode(), key=str(event.ticket_id).encode(), headers=headers
        )
    finally:
        await producer.stop()


async def records(bootstrap: str, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record on a one-partition topic, oldest first."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        found: list[ConsumerRecord[bytes, bytes]] = []
        deadline = asyncio.get_running_loop().time() + 20
        while await consumer.position(tp) < end:
            assert asyncio.get_running_loop().time() < deadline, f"{topic} not read in time"
            found += (await consumer.getmany(tp, timeout_ms=500)).get(tp, [])
        return found
    finally:
        await consumer.stop()


async def dead_letter(rig: Rig, record: ConsumerRecord[bytes, bytes], code: str, error: str) -> None:
    """What a service does with a record it gives up on: a unit of work, then the relay."""
    delivery = Delivery.from_record(record)
    async with rig.db.unit_of_work() as uow:
        uow.dead_letter(DeadLetter.of(delivery, SERVICE, code, error, attempts=3))
    await flush_outbox(rig.settings, rig.db)


async def cli(rig: Rig, *args: str) -> str:
    """`glv-deadletters ...` as an operator runs it; stdout and stderr together."""
    script = Path(sys.executable).with_name("glv-deadletters")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "glv_runtime.deadletters"]
    process = await asyncio.create_subprocess_exec(
        *command,
        *args,
        "--service",
        SERVICE,
        "--prefix",
        rig.prefix,
        "--bootstrap",
        rig.bootstrap,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "GLV_ENVIRONMENT": "development"},
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    return out.decode() + err.decode()


def assert_no_personal_data(text: str) -> None:
    leaked = [value for value in PERSONAL if value in text]
    assert not leaked, f"{leaked} in:\n{text}"


def header(record: ConsumerRecord[bytes, bytes], name: str) -> str | None:
    return next((v.decode() for n, v in record.headers if n == name), None)


async def test_a_portal_filing_is_dead_lettered_to_the_intake_topic_and_listed_without_personal_data(
    rig: Rig,
) -> None:
    filed = filing()
    await send(rig.bootstrap, rig.intake, filed)
    [record] = await records(rig.bootstrap, rig.intake)
    await dead_letter(rig, record, "invalid_event", f"stakeholder.phone: string_pattern_mismatch ({PHONE})")

    # The copy is on the intake dead-letter topic, byte for byte; nothing on the 90-day one.
    [copy] = await records(rig.bootstrap, rig.intake_dlq)
    assert await records(rig.bootstrap, rig.dlq) == []
    assert copy.value == record.value
    assert copy.key == str(filed.ticket_id).encode()
    assert header(copy, H_TOPIC) == rig.intake
    assert header(copy, "x-portal-contact") == EMAIL
    # The reason is kept; what it quoted of the input is not.
    assert header(copy, "x-dlq-error") == "stakeholder.phone: string_pattern_mismatch ([redacted])"

    plain = await cli(rig, "list", "--intake")
    as_json = await cli(rig, "list", "--intake", "--json")
    with_shape = await cli(rig, "list", "--intake", "--json", "--shape")
    shape_text = await cli(rig, "list", "--intake", "--shape")
    for output in (plain, as_json, with_shape, shape_text):
        assert_no_personal_data(output)
        assert str(filed.ticket_id) in output
        assert "glv.TicketFiled.v1" in output
        assert "invalid_event" in output
        assert f"1 dead letter(s) on {rig.intake_dlq}" in output
    [row] = [json.loads(line) for line in as_json.splitlines() if line.startswith("{")]
    assert row["original"] == f"{rig.intake}[0]@0"
    assert row["key"] == str(filed.ticket_id)
    assert row["size"] == len(record.value or b"")
    assert row["reference_only"] is False
    assert row["error"] == "stakeholder.phone: string_pattern_mismatch ([redacted])"
    [shaped] = [json.loads(line) for line in with_shape.splitlines() if line.startswith("{")]
    assert shaped["shape"]["stakeholder"]["email"] == "string"
    assert shaped["shape"]["stakeholder"]["national_id"] == "string"
    assert shaped["shape"]["preferred_windows"] == [{"start": "string", "end": "string"}]
    # The main dead-letter topic is empty, and says so.
    assert "0 dead letter(s) on " + rig.dlq in await cli(rig, "list")

    # The function behind the listing holds the value (replay needs it); its rows do not.
    [letter] = await read_dead_letters(rig.settings, SERVICE, rig.prefix, intake=True)
    assert letter["value"] == record.value
    assert_no_personal_data(json.dumps(listing(letter, with_shape=True)))


async def test_a_replay_that_fails_again_leaves_only_a_reference_to_the_first_copy(rig: Rig) -> None:
    filed = filing()
    await send(rig.bootstrap, rig.intake, filed)
    [original] = await records(rig.bootstrap, rig.intake)
    await dead_letter(rig, original, "unknown_office", "office PLP is not in the catalog")

    # Replayed: back on the portal's topic, naming the copy it came from.
    assert "replayed 1 dead letter(s)" in await cli(rig, "replay", "--intake")
    [_, replayed] = await records(rig.bootstrap, rig.intake)
    assert replayed.value == original.value
    assert replayed.key == original.key
    assert header(replayed, H_REPLAYED_FROM_TOPIC) == rig.intake_dlq
    assert header(replayed, H_REPLAYED_FROM_PARTITION) == "0"
    assert header(replayed, H_REPLAYED_FROM_OFFSET) == "0"
    assert not [n for n, _ in replayed.headers if n in DLQ_HEADERS and not n.startswith("x-dlq-replayed-from-")]

    # It fails again: the dead letter holds the new reason and where the copy is; no value,
    # none of the portal's own headers.
    await dead_letter(rig, replayed, "handler_error", f"OfficeClosed: no officer; write to {EMAIL}")
    copy, reference = await records(rig.bootstrap, rig.intake_dlq)
    assert copy.value == original.value
    assert reference.value is None
    assert reference.key == original.key
    assert header(reference, H_REFERENCE_ONLY) == "true"
    assert header(reference, H_CODE) == "handler_error"
    assert header(reference, H_TOPIC) == rig.intake
    assert header(reference, H_OFFSET) == "1"
    assert (header(reference, H_REPLAYED_FROM_TOPIC), header(reference, H_REPLAYED_FROM_OFFSET)) == (
        rig.intake_dlq,
        "0",
    )
    names = {n for n, _ in reference.headers}
    assert names <= REFERENCE_HEADERS | set(DLQ_HEADERS), names
    assert header(reference, "ce_subject") == str(filed.ticket_id)
    assert_no_personal_data(repr(reference.headers))

    listed = [json.loads(line) for line in (await cli(rig, "list", "--intake", "--json")).splitlines() if "{" in line]
    assert [(r["dlq_offset"], r["reference_only"], r["copy"]) for r in listed] == [
        (0, False, None),
        (1, True, f"{rig.intake_dlq}[0]@0"),
    ]
    assert listed[1]["size"] == 0
    assert listed[1]["code"] == "handler_error"
    assert listed[1]["error"] == "OfficeClosed: no officer; write to [redacted]"

    # A replay of everything replays the copy once, though two dead letters lead to it;
    # a reference alone replays its copy too. Every failure adds a reference, never a copy.
    assert await replay(rig.settings, SERVICE, None, rig.prefix, intake=True) == 1
    third = (await records(rig.bootstrap, rig.intake))[2]
    assert header(third, H_REPLAYED_FROM_OFFSET) == "0"
    await dead_letter(rig, third, "handler_error", "still closed")
    assert await replay(rig.settings, SERVICE, {2}, rig.prefix, intake=True) == 1
    fourth = (await records(rig.bootstrap, rig.intake))[3]
    assert (header(fourth, H_REPLAYED_FROM_TOPIC), header(fourth, H_REPLAYED_FROM_OFFSET)) == (rig.intake_dlq, "0")
    await dead_letter(rig, fourth, "handler_error", "closed for good")

    letters = await records(rig.bootstrap, rig.intake_dlq)
    assert len(letters) == 4
    assert [r.value is not None for r in letters] == [True, False, False, False]
    holding = [r.offset for r in letters if EMAIL.encode() in (r.value or b"") + repr(r.headers).encode()]
    assert holding == [0], "the personal data is in the first copy and nowhere else"
    assert await records(rig.bootstrap, rig.dlq) == []
    # The service's table records each failed position once, with reasons free of personal data.
    rows = await rig.db.pool.fetch('SELECT topic, "offset", error_code, error FROM glv_dead_letter ORDER BY "offset"')
    assert [(r["topic"], r["offset"], r["error_code"]) for r in rows] == [
        (rig.intake, 0, "unknown_office"),
        (rig.intake, 1, "handler_error"),
        (rig.intake, 2, "handler_error"),
        (rig.intake, 3, "handler_error"),
    ]


async def test_a_reference_whose_copy_is_gone_is_not_replayed(rig: Rig) -> None:
    filed = filing()
    await send(rig.bootstrap, rig.intake, filed)
    [original] = await records(rig.bootstrap, rig.intake)
    # A record that says it is a replay of a dead letter that does not exist (expired, or
    # never there): its dead letter is a reference, and replaying it sends nothing.
    forged = Delivery.from_record(original)
    missing = rig.intake_dlq.encode()
    delivery = Delivery(
        topic=forged.topic,
        partition=forged.partition,
        offset=forged.offset,
        key=forged.key,
        headers=(
            *forged.headers,
            (H_REPLAYED_FROM_TOPIC, missing),
            (H_REPLAYED_FROM_PARTITION, b"0"),
            (H_REPLAYED_FROM_OFFSET, b"99"),
        ),
        value=forged.value,
    )
    async with rig.db.unit_of_work() as uow:
        uow.dead_letter(DeadLetter.of(delivery, SERVICE, "handler_error", "boom", attempts=1))
    await flush_outbox(rig.settings, rig.db)
    [reference] = await records(rig.bootstrap, rig.intake_dlq)
    assert reference.value is None
    assert await replay(rig.settings, SERVICE, None, rig.prefix, intake=True) == 0
    assert len(await records(rig.bootstrap, rig.intake)) == 1


async def test_records_of_service_topics_go_to_the_main_dead_letter_topic(rig: Rig) -> None:
    topic = rig.prefix + "glv.scheduler.events"
    producer = AIOKafkaProducer(bootstrap_servers=rig.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value=b"{not json", key=b"k-1", headers=[("ce_type", b"x")])
    finally:
        await producer.stop()
    [record] = await records(rig.bootstrap, topic)
    await dead_letter(rig, record, "bad_json", "JSONDecodeError")
    [letter] = await records(rig.bootstrap, rig.dlq)
    assert letter.value == b"{not json"
    assert header(letter, H_TOPIC) == topic
    assert await records(rig.bootstrap, rig.intake_dlq) == []
    output = await cli(rig, "list")
    assert "bad_json" in output
    assert f"1 dead letter(s) on {rig.dlq}" in output


# ------------------------------------------------- choosing the topic, without a broker


def letter_from(topic: str, headers: tuple[tuple[str, bytes], ...] = (), value: bytes | None = b"{}") -> DeadLetter:
    delivery = Delivery(topic=topic, partition=0, offset=7, key=b"k", headers=headers, value=value)
    return DeadLetter.of(delivery, SERVICE, "bad_json", "x", attempts=1)


@pytest.mark.parametrize(
    ("topic", "destination"),
    [
        ("glv.portal.sim-portal.tickets", "glv.dlq.ticketing.intake"),
        ("t0a1b2c3d4e.glv.portal.sim-portal.tickets", "glv.dlq.ticketing.intake"),
        ("staging-glv.portal.p1.tickets", "glv.dlq.ticketing.intake"),
        ("t0a1b2c3d4e.glv.portal.sim-portal.updates", "glv.dlq.ticketing"),
        ("t0a1b2c3d4e.glv.scheduler.events", "glv.dlq.ticketing"),
        ("glv.catalog", "glv.dlq.ticketing"),
    ],
)
def test_the_destination_follows_the_original_topic(topic: str, destination: str) -> None:
    # The outbox topic is without prefix: the relay prepends the service's own.
    assert letter_from(topic).to_message().topic == destination


def test_a_malformed_or_foreign_replay_reference_is_an_ordinary_record() -> None:
    intake = "glv.portal.sim-portal.tickets"
    for headers in (
        ((H_REPLAYED_FROM_TOPIC, b"glv.dlq.ticketing.intake"), (H_REPLAYED_FROM_PARTITION, b"0")),
        (
            (H_REPLAYED_FROM_TOPIC, b"siti@example.com"),
            (H_REPLAYED_FROM_PARTITION, b"0"),
            (H_REPLAYED_FROM_OFFSET, b"1"),
        ),
        (
            (H_REPLAYED_FROM_TOPIC, b"glv.dlq.ticketing"),
            (H_REPLAYED_FROM_PARTITION, b"x"),
            (H_REPLAYED_FROM_OFFSET, b"1"),
        ),
    ):
        message = letter_from(intake, headers).to_message()
        assert message.payload == b"{}"
        names = [n for n, _ in message.headers]
        assert H_REFERENCE_ONLY not in names
        # Reserved names are the dead letter's own: a producer's copies are dropped.
        assert H_REPLAYED_FROM_TOPIC not in names


def test_a_producer_cannot_pass_its_record_off_as_a_reference() -> None:
    message = letter_from("glv.portal.p.tickets", ((H_REFERENCE_ONLY, b"true"), ("x-other", b"1"))).to_message()
    assert message.payload == b"{}"
    assert (H_REFERENCE_ONLY, b"true") not in message.headers
    assert ("x-other", b"1") in message.headers


def letter_row(**changes: Any) -> dict[str, Any]:
    letter: dict[str, Any] = {
        "dlq_topic": "glv.dlq.ticketing.intake",
        "dlq_partition": 0,
        "dlq_offset": 3,
        "key": f"{EMAIL}".encode(),
        "headers": [],
        "value": json.dumps({"stakeholder": {"name": NAME, EMAIL: 1}}).encode(),
        "original_topic": "glv.portal.p.tickets",
        "original": "glv.portal.p.tickets[0]@1",
        "code": "bad_header",
        "error": f"ce_source {PHONE} is not a URI reference",
        "type": f"glv.{NIK}",
        "event_id": EMAIL,
        "failed_at": "2026-11-29T11:28:52+00:00",
        "attempts": 1,
        "size": 80,
        "reference_only": False,
        "copy": None,
        "no_key": False,
        "truncated": False,
    }
    return {**letter, **changes}


def test_the_listing_redacts_whatever_a_producer_put_in_headers_and_keys() -> None:
    row = listing(letter_row(), with_shape=True)
    assert_no_personal_data(json.dumps(row))
    assert row["shape"] == {"stakeholder": {"name": "string", "[redacted]": "number"}}
    assert row["dlq_offset"] == 3
