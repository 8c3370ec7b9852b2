"""Ticketing's use cases through its batch processor: real PostgreSQL, no Kafka."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from glv_devtools.catalog import office_entries
from glv_devtools.portal import RawRecord, record_for, slot_for, ticket
from glv_runtime.consumer import MAX_EVENT_BYTES
from glv_runtime.deadletters import H_CODE, H_NO_KEY, H_ORIGINAL_LENGTH, MAX_VALUE_BYTES
from glv_schemas import events as ev
from glv_schemas.topics import SCHEDULER_EVENTS, intake_dead_letter_topic
from glv_ticketing.app import build_spec
from glv_ticketing.settings import TicketingSettings
from tests.component.feed import Feeder, feeder_for

pytestmark = pytest.mark.real  # a real PostgreSQL, though no broker

# What a portal filed and ticketing could not apply: dead-lettered apart, kept a week.
INTAKE_DEAD_LETTERS = intake_dead_letter_topic("ticketing").name


@pytest.fixture
async def feeder(database_url: str) -> AsyncIterator[Feeder]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    feeder = await feeder_for(build_spec(TicketingSettings(database_url=database_url)), pool)
    await feeder.feed(*(record_for(e, source="/glv/scheduler") for e in office_entries()))
    yield feeder
    await pool.close()


def filing(seed: int = 1, **update: object) -> ev.TicketFiled:
    return ticket(random.Random(seed), portal_id="sim-portal", office_code="JKT", service_code="lelang").model_copy(
        update=update
    )


async def statuses(feeder: Feeder) -> dict[str, str]:
    rows = await feeder.db.pool.fetch("SELECT ticket_id, status FROM ticket")
    return {str(r["ticket_id"]): r["status"] for r in rows}


async def test_a_filing_is_decided_once_however_often_it_is_delivered(feeder: Feeder) -> None:
    filed = filing()
    record = record_for(filed, source="/portal/sim")
    await feeder.feed(record, record)
    await feeder.feed(record)
    assert await statuses(feeder) == {str(filed.ticket_id): "accepted"}
    assert len(await feeder.outbox("glv.ticketing.events")) == 1


async def test_the_same_event_id_from_two_sources_is_two_events(feeder: Feeder) -> None:
    first, second = filing(1), filing(2)
    await feeder.feed(
        record_for(first, source="/portal/a", event_id="evt-1"),
        record_for(second, source="/portal/b", event_id="evt-1"),
    )
    assert set((await statuses(feeder)).values()) == {"accepted"} and len(await statuses(feeder)) == 2


def poison_records() -> dict[str, tuple[RawRecord, str]]:
    good = record_for(filing(7), source="/portal/sim")
    headers = dict(good.headers)
    body = json.loads(good.value or b"{}")

    def with_headers(**changes: bytes) -> list[tuple[str, bytes]]:
        return list({**headers, **changes}.items())

    return {
        "no key, no value": (replace(good, key=None, value=None), "empty_value"),
        "no key": (replace(good, key=None), "missing_key"),
        "key is not the ticket id": (replace(good, key=b"another"), "key_mismatch"),
        "NUL in a JSON key": (replace(good, value=json.dumps({**body, "a\u0000b": 1}).encode()), "nul_character"),
        "NUL in a JSON value": (
            replace(good, value=json.dumps({**body, "subject": "x\u0000y"}).encode()),
            "nul_character",
        ),
        "NUL in ce_id": (replace(good, headers=with_headers(ce_id=b"evt\x00")), "bad_header"),
        "ce_id not UTF-8": (replace(good, headers=with_headers(ce_id=b"\xff\xfe")), "bad_header"),
        "value not UTF-8": (replace(good, value=b'{"ticket_id": "\xff"}'), "bad_json"),
        "value not JSON": (replace(good, value=b"\x00\x01\x02"), "bad_json"),
        "deeply nested": (replace(good, value=b'{"a":' * 5000 + b"1" + b"}" * 5000), "bad_json"),
        "huge number": (
            replace(
                good, value=json.dumps({**body, "kind": 0}).encode().replace(b'"kind": 0', b'"kind": 1' + b"0" * 5000)
            ),
            "bad_json",
        ),
        "oversized": (replace(good, value=b" " * (MAX_EVENT_BYTES + 1)), "too_large"),
        "unknown type": (replace(good, headers=with_headers(ce_type=b"glv.Nope.v1")), "unknown_type"),
        "another topic's event (a portal forging a slot)": (
            replace(
                record_for(slot_for(filing(7), "Asia/Jakarta", datetime.now(UTC)), source="/portal/sim"),
                topic=good.topic,
            ),
            "wrong_topic",
        ),
    }


@pytest.mark.parametrize("case", sorted(poison_records()))
async def test_a_bad_record_is_dead_lettered_and_the_next_ticket_is_decided(feeder: Feeder, case: str) -> None:
    bad, code = poison_records()[case]
    after = filing(8)
    await feeder.feed(bad, record_for(after, source="/portal/sim"))
    assert (await statuses(feeder)).get(str(after.ticket_id)) == "accepted"
    assert await feeder.dead_letter_codes() == [code]
    letters = await feeder.outbox(INTAKE_DEAD_LETTERS)
    assert len(letters) == 1
    # Whatever came in, the dead letter can be published: a key or a value, under the size limit.
    assert letters[0]["msg_key"] is not None or letters[0]["payload"] is not None
    assert letters[0]["size_bytes"] < 1024 * 1024


async def test_a_record_without_key_and_value_is_stored_publishable(feeder: Feeder) -> None:
    good = record_for(filing(9), source="/portal/sim")
    await feeder.feed(replace(good, key=None, value=None))
    [letter] = await feeder.outbox(INTAKE_DEAD_LETTERS)
    names = [name for name, _ in json.loads(letter["headers"])]
    assert letter["msg_key"] is not None and H_NO_KEY in names and H_CODE in names


async def test_an_oversized_record_is_kept_truncated_with_its_length(feeder: Feeder) -> None:
    good = record_for(filing(10), source="/portal/sim")
    await feeder.feed(replace(good, value=b"x" * (MAX_VALUE_BYTES * 2)))
    [letter] = await feeder.outbox(INTAKE_DEAD_LETTERS)
    assert len(letter["payload"]) == MAX_VALUE_BYTES
    assert H_ORIGINAL_LENGTH in [name for name, _ in json.loads(letter["headers"])]


async def test_the_portal_sees_when_the_scheduler_cannot_place_a_ticket(feeder: Feeder) -> None:
    waiting, unplaceable, scheduled = filing(11), filing(12), filing(13)
    await feeder.file(waiting, unplaceable, scheduled)
    failed = [
        ev.SchedulingFailed(
            ticket_id=t.ticket_id,
            office_code="JKT",
            service_code="lelang",
            reason=reason,
            waitlisted=waitlisted,
            failed_at=datetime.now(UTC),
        )
        for t, reason, waitlisted in ((waiting, "no_capacity", True), (unplaceable, "no_officer", False))
    ]
    slot = slot_for(scheduled, "Asia/Jakarta", datetime.now(UTC) + timedelta(days=2))
    reschedule_failed = ev.SchedulingFailed(
        ticket_id=scheduled.ticket_id,
        office_code="JKT",
        service_code="lelang",
        reason="no_capacity",
        waitlisted=False,
        failed_at=datetime.now(UTC),
    )
    await feeder.feed(
        *(
            replace(record_for(e, source="/glv/scheduler"), topic=SCHEDULER_EVENTS.name)
            for e in (*failed, slot, reschedule_failed)
        )
    )
    assert await statuses(feeder) == {
        str(waiting.ticket_id): "waitlisted",
        str(unplaceable.ticket_id): "unschedulable",
        str(scheduled.ticket_id): "scheduled",  # a failed reschedule keeps the slot it has
    }
