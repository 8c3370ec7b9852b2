"""Downstream events move tickets along; portals cancel and reschedule; the status API's auth."""

from __future__ import annotations

import random
import uuid
from datetime import timedelta

import httpx

from glv_devtools.portal import PortalClient, slot_for, ticket
from glv_schemas.events import (
    ArchivedItem,
    Artifact,
    CancellationRequested,
    RecordingArchived,
    RescheduleRequested,
    SessionHeld,
    SlotAssigned,
    TicketFiled,
    TimeWindow,
)
from tests.integration.conftest import Ticketing


async def _accepted(t: Ticketing, portal: PortalClient, rng: random.Random, count: int) -> list[TicketFiled]:
    filed = [
        ticket(rng, portal_id="sim-portal", office_code="JYP", service_code="piutang-negara", now=t.clock.now)
        for _ in range(count)
    ]
    await portal.file(filed)
    ids = {f.ticket_id for f in filed}
    await t.probe.wait_for(lambda _: ids <= {s.event.ticket_id for s in t.probe.of_type("TicketAccepted")})
    return filed


def _slot(filed: TicketFiled, t: Ticketing, replaces: uuid.UUID | None = None) -> SlotAssigned:
    return slot_for(filed, "Asia/Jayapura", t.clock.now + timedelta(days=3), replaces)


async def _status(t: Ticketing, ticket_id: uuid.UUID) -> dict:  # type: ignore[type-arg]
    async with httpx.AsyncClient(base_url=t.base_url) as client:
        return (await client.get(f"/v1/tickets/{ticket_id}", headers=t.auth())).json()  # type: ignore[no-any-return]


async def _wait_status(t: Ticketing, ticket_id: uuid.UUID, entries: list[str]) -> dict:  # type: ignore[type-arg]
    async def reached() -> dict | None:  # type: ignore[type-arg]
        answer = await _status(t, ticket_id)
        return answer if [h["entry"] for h in answer["history"]] == entries else None

    for _ in range(600):
        if (answer := await reached()) is not None:
            return answer
        await t.probe.poll()  # waits up to 200 ms for records: paces the loop
    raise AssertionError(f"history never became {entries}: {await _status(t, ticket_id)}")


async def test_downstream_events_are_tracked_with_timestamps(ticketing: Ticketing) -> None:
    rng = random.Random(11)
    async with PortalClient(ticketing.settings.kafka_bootstrap_servers, ticketing.prefix) as portal:
        [filed] = await _accepted(ticketing, portal, rng, 1)
        slot = _slot(filed, ticketing)
        moved = _slot(filed, ticketing, replaces=slot.slot_id)
        now = ticketing.clock.now
        held = SessionHeld(
            ticket_id=filed.ticket_id,
            session_id=uuid.uuid4(),
            slot_id=moved.slot_id,
            office_code="JYP",
            started_at=moved.starts_at,
            ended_at=moved.ends_at,
            attendance=[],
            artifacts=[
                Artifact(
                    kind="video", url="https://files.example.go.id/v.mp4", content_type="video/mp4", size_bytes=1000
                )
            ],
        )
        archived = RecordingArchived(
            ticket_id=filed.ticket_id,
            session_id=held.session_id,
            archive_id=uuid.uuid4(),
            items=[
                ArchivedItem(kind="video", object_key="k", content_type="video/mp4", size_bytes=1000, sha256="a" * 64)
            ],
            retention_until=now + timedelta(days=3650),
            archived_at=now,
        )
        # The scheduler's events keep their order on their topic; the archive's come from another
        # topic, in no order relative to them, and in life only after the session was held.
        await portal.file([slot, moved, held], source="/glv/scheduler")
        await _wait_status(ticketing, filed.ticket_id, ["accepted", "scheduled", "rescheduled", "held"])
        await portal.file([archived], source="/glv/archive")
    answer = await _wait_status(
        ticketing, filed.ticket_id, ["accepted", "scheduled", "rescheduled", "held", "archived"]
    )
    assert answer["status"] == "archived"
    assert all(h["at"] for h in answer["history"])
    assert answer["history"][1]["detail"]["office_zone"] == "Asia/Jayapura"


async def test_cancellation_and_reschedule_are_decided(ticketing: Ticketing) -> None:
    rng = random.Random(12)
    now = ticketing.clock.now
    async with PortalClient(ticketing.settings.kafka_bootstrap_servers, ticketing.prefix) as portal:
        first, second = await _accepted(ticketing, portal, rng, 2)
        good_windows = [TimeWindow(start=now + timedelta(days=5), end=now + timedelta(days=5, hours=3))]
        await portal.file(
            [
                RescheduleRequested(
                    ticket_id=first.ticket_id, portal_id="sim-portal", preferred_windows=good_windows, requested_at=now
                ),
                CancellationRequested(ticket_id=first.ticket_id, portal_id="sim-portal", requested_at=now),
                CancellationRequested(ticket_id=first.ticket_id, portal_id="sim-portal", requested_at=now),  # again
                CancellationRequested(ticket_id=second.ticket_id, portal_id="other-portal", requested_at=now),
                RescheduleRequested(
                    ticket_id=first.ticket_id, portal_id="sim-portal", preferred_windows=good_windows, requested_at=now
                ),  # after cancellation
            ]
        )
    await ticketing.probe.wait_for(
        lambda _: (
            len(ticketing.probe.of_type("CancellationRefused")) == 2
            and len(ticketing.probe.of_type("RescheduleRefused")) == 1
        )
    )
    assert len(ticketing.probe.of_type("RescheduleApproved")) == 1
    [cancelled] = ticketing.probe.of_type("TicketCancelled")
    assert cancelled.event.ticket_id == first.ticket_id
    refusals = {
        (str(s.event.ticket_id), s.event.reasons[0].code) for s in ticketing.probe.of_type("CancellationRefused")
    }
    assert refusals == {(str(first.ticket_id), "already_final"), (str(second.ticket_id), "unknown_ticket")}
    answer = await _wait_status(
        ticketing,
        first.ticket_id,
        ["accepted", "reschedule_approved", "cancelled", "cancellation_refused", "reschedule_refused"],
    )
    assert answer["status"] == "cancelled"
    assert (await _status(ticketing, second.ticket_id))["status"] == "accepted"


async def test_status_api_authenticates_each_portal(ticketing: Ticketing) -> None:
    rng = random.Random(13)
    async with PortalClient(ticketing.settings.kafka_bootstrap_servers, ticketing.prefix) as portal:
        [filed] = await _accepted(ticketing, portal, rng, 1)
    code = next(s.event.ticket_code for s in ticketing.probe.of_type("TicketAccepted"))
    async with httpx.AsyncClient(base_url=ticketing.base_url) as client:
        url = f"/v1/tickets/{filed.ticket_id}"
        assert (await client.get(url)).status_code == 401
        assert (await client.get(url, headers={"Authorization": "Bearer nope"})).status_code == 401
        assert (await client.get(url, headers={"Authorization": ticketing.tokens["sim-portal"]})).status_code == 401
        assert (await client.get(url, headers=ticketing.auth("other-portal"))).status_code == 404
        assert (await client.get(url, headers=ticketing.auth())).status_code == 200
        by_code = await client.get(f"/v1/tickets/by-code/{code}", headers=ticketing.auth())
        assert by_code.status_code == 200 and by_code.json()["ticket_id"] == str(filed.ticket_id)
        assert (
            await client.get(f"/v1/tickets/by-code/{code}", headers=ticketing.auth("other-portal"))
        ).status_code == 404
        assert (await client.get(f"/v1/tickets/{uuid.uuid4()}", headers=ticketing.auth())).status_code == 404
        assert (await client.get("/v1/tickets/not-a-uuid", headers=ticketing.auth())).status_code == 400
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"] == {
            "database": True,
            "broker": True,
            "consuming": True,
        }
        metrics = (await client.get("/metrics")).text
        assert "glv_messages_consumed_total" in metrics and "glv_outbox_backlog" in metrics


async def test_a_cancellation_filed_right_behind_its_ticket_is_honoured(ticketing: Ticketing) -> None:
    rng = random.Random(14)
    filed = ticket(rng, portal_id="sim-portal", office_code="AMB", service_code="lelang", now=ticketing.clock.now)
    cancel = CancellationRequested(ticket_id=filed.ticket_id, portal_id="sim-portal", requested_at=ticketing.clock.now)
    async with PortalClient(ticketing.settings.kafka_bootstrap_servers, ticketing.prefix) as portal:
        await portal.file([filed, cancel])  # most likely one batch: the code is issued before the cancellation
    await ticketing.probe.wait_for(lambda _: len(ticketing.probe.of_type("TicketCancelled")) == 1)
    [accepted] = ticketing.probe.of_type("TicketAccepted")
    [cancelled] = ticketing.probe.of_type("TicketCancelled")
    assert cancelled.event.ticket_code == accepted.event.ticket_code
    assert accepted.offset < cancelled.offset
