"""Every acceptance and rejection rule, duplicates and conflicts, on the real broker and database."""

from __future__ import annotations

import json
import random
from datetime import timedelta

import httpx

from glv_devtools.portal import PortalClient, RawRecord, record_for, ticket
from glv_schemas.events import TicketFiled, TimeWindow
from glv_schemas.topics import intake_dead_letter_topic
from tests.integration.conftest import Ticketing


def _filed(t: Ticketing, rng: random.Random, **changes: object) -> TicketFiled:
    base = ticket(rng, portal_id="sim-portal", office_code="PLP", service_code="lelang", now=t.clock.now)
    return base.model_copy(update=changes)


async def test_valid_ticket_is_accepted_with_a_code(ticketing: Ticketing) -> None:
    rng = random.Random(1)
    filed = _filed(ticketing, rng)
    record = record_for(filed, source="/portal/sim")
    async with PortalClient(ticketing.settings.kafka_bootstrap_servers, ticketing.prefix) as portal:
        await portal.send([record])
    await ticketing.probe.wait_for(lambda _: len(ticketing.probe.of_type("TicketAccepted")) == 1)
    accepted = ticketing.probe.of_type("TicketAccepted")[0]
    local_day = (ticketing.clock.now + timedelta(hours=8)).strftime("%y%m%d")
    assert accepted.event.ticket_code == f"PLP-{local_day}-0001"
    assert accepted.key == str(filed.ticket_id)
    assert accepted.headers["ce_source"] == "/glv/ticketing"
    # The decision continues the portal's trace.
    assert accepted.headers["traceparent"] == dict((n, v.decode()) for n, v in record.headers)["traceparent"]
    # No personal data leaves ticketing.
    payload = accepted.event.model_dump_json()
    assert filed.stakeholder.name not in payload and str(filed.stakeholder.email) not in payload
    async with httpx.AsyncClient(base_url=ticketing.base_url) as client:
        answer = await client.get(f"/v1/tickets/{filed.ticket_id}", headers=ticketing.auth("sim-portal"))
    assert answer.status_code == 200
    assert answer.json()["status"] == "accepted"
    assert answer.json()["ticket_code"] == accepted.event.ticket_code


async def test_every_rejection_rule(ticketing: Ticketing) -> None:
    rng = random.Random(2)
    now = ticketing.clock.now

    def windows(start: timedelta, length: timedelta) -> list[TimeWindow]:
        return [TimeWindow(start=now + start, end=now + start + length)]

    base = _filed(ticketing, rng)
    cases: dict[str, TicketFiled] = {
        "unknown_office": _filed(ticketing, rng, office_code="XYZ"),
        "service_not_offered": _filed(ticketing, rng, service_code="penilaian"),  # Palopo has no penilaian
        "no_contact_channel": _filed(
            ticketing, rng, stakeholder=base.stakeholder.model_copy(update={"email": None, "phone": None})
        ),
        "text_too_long": _filed(ticketing, rng, subject="x" * 500),
        "window_malformed": _filed(ticketing, rng, preferred_windows=windows(timedelta(days=2), timedelta(minutes=10))),
        "window_in_past": _filed(ticketing, rng, preferred_windows=windows(timedelta(days=-2), timedelta(hours=2))),
        "window_beyond_horizon": _filed(
            ticketing, rng, preferred_windows=windows(timedelta(days=90), timedelta(hours=2))
        ),
        "too_many_windows": _filed(
            ticketing, rng, preferred_windows=windows(timedelta(days=2), timedelta(hours=2)) * 6
        ),
    }
    # Schema violations: an unknown field and a missing one, with a usable ticket id.
    unknown_field = json.loads(base.model_dump_json())
    unknown_field["ticket_id"] = "6c1f6a8e-3f6e-4c1a-9a57-0f0f0f0f0f01"
    unknown_field["favourite_colour"] = "blue"
    missing_field = json.loads(base.model_dump_json())
    missing_field["ticket_id"] = "6c1f6a8e-3f6e-4c1a-9a57-0f0f0f0f0f02"
    del missing_field["office_code"]
    raw = [
        RawRecord(r.topic, payload["ticket_id"].encode(), json.dumps(payload).encode(), r.headers)
        for payload, r in (
            (unknown_field, record_for(base, source="/portal/sim")),
            (missing_field, record_for(base, source="/portal/sim")),
        )
    ]
    async with PortalClient(ticketing.settings.kafka_bootstrap_servers, ticketing.prefix) as portal:
        await portal.file(list(cases.values()))
        await portal.send(raw)
    expected = len(cases) + 2
    await ticketing.probe.wait_for(lambda _: len(ticketing.probe.of_type("TicketRejected")) == expected)
    rejected = {
        str(s.event.ticket_id): [r.code for r in s.event.reasons] for s in ticketing.probe.of_type("TicketRejected")
    }
    for code, filed in cases.items():
        assert rejected[str(filed.ticket_id)] == [code], code
    assert rejected["6c1f6a8e-3f6e-4c1a-9a57-0f0f0f0f0f01"] == ["invalid_schema"]
    assert rejected["6c1f6a8e-3f6e-4c1a-9a57-0f0f0f0f0f02"] == ["invalid_schema"]
    # Reasons come in both languages; the schema rejections say which field.
    some = ticketing.probe.of_type("TicketRejected")[0].event.reasons[0]
    assert some.message_id and some.message_en
    assert not ticketing.probe.of_type("TicketAccepted")
    # The schema violations are also on the dead-letter topic, with the reason.
    dlq = ticketing.prefix + intake_dead_letter_topic("ticketing").name  # they came from a portal's intake
    await ticketing.probe.wait_for(lambda seen: sum(s.topic == dlq for s in seen) == 2)
    letters = [s for s in ticketing.probe.seen if s.topic == dlq]
    assert {s.headers["x-dlq-error-code"] for s in letters} == {"invalid_event"}
    assert any("favourite_colour" in s.headers["x-dlq-error"] for s in letters)


async def test_duplicates_are_no_ops_and_conflicts_are_rejected(ticketing: Ticketing) -> None:
    rng = random.Random(3)
    filed = _filed(ticketing, rng)
    conflicting = filed.model_copy(update={"subject": "Something else entirely"})
    async with PortalClient(ticketing.settings.kafka_bootstrap_servers, ticketing.prefix) as portal:
        await portal.file([filed])
        await portal.file([filed])  # same content, new event id: a resubmission
        await portal.send([record_for(filed, source="/portal/sim", event_id="fixed-id")] * 2)  # a redelivery
        await portal.file([conflicting])
    await ticketing.probe.wait_for(lambda _: len(ticketing.probe.of_type("TicketRejected")) == 1)
    # Give the duplicates every chance to produce a second decision: wait for a
    # marker ticket filed after them to be accepted (same partition: same key order).
    marker = _filed(ticketing, rng)
    async with PortalClient(ticketing.settings.kafka_bootstrap_servers, ticketing.prefix) as portal:
        await portal.file([marker])
    await ticketing.probe.wait_for(
        lambda _: any(s.event.ticket_id == marker.ticket_id for s in ticketing.probe.of_type("TicketAccepted"))
    )
    accepted = [s for s in ticketing.probe.of_type("TicketAccepted") if s.event.ticket_id == filed.ticket_id]
    assert len(accepted) == 1
    [rejection] = ticketing.probe.of_type("TicketRejected")
    assert [r.code for r in rejection.event.reasons] == ["duplicate_conflict"]
    # A ticket's events leave in the order they were decided, even within one batch.
    assert (accepted[0].partition, accepted[0].offset) < (rejection.partition, rejection.offset)
    async with httpx.AsyncClient(base_url=ticketing.base_url) as client:
        answer = (await client.get(f"/v1/tickets/{filed.ticket_id}", headers=ticketing.auth("sim-portal"))).json()
    assert answer["status"] == "accepted"  # the first filing stands
    assert [h["entry"] for h in answer["history"]] == ["accepted", "resubmission_refused"]
