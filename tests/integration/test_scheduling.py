"""Tickets are scheduled end to end; cancellation refills; reschedule; session outcomes."""

from __future__ import annotations

import json
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import jwt

from glv_devtools.portal import PortalClient, ticket
from glv_scheduler.webhooks import sign
from glv_schemas.base import TimeWindow
from glv_schemas.events import RescheduleRequested, TicketFiled
from tests.integration.conftest import Glv

OFFICE_HOURS = {"Asia/Jakarta": (8, 16.5), "Asia/Makassar": (8, 16.5), "Asia/Jayapura": (8, 16.5)}


def _filings(rng: random.Random, now: datetime, specs: list[tuple[str, str]]) -> list[TicketFiled]:
    return [ticket(rng, portal_id="sim-portal", office_code=o, service_code=s, now=now) for o, s in specs]


async def _status(glv: Glv, ticket_id: uuid.UUID) -> dict:  # type: ignore[type-arg]
    async with httpx.AsyncClient(base_url=glv.ticketing.base_url) as client:
        return (await client.get(f"/v1/tickets/{ticket_id}", headers=glv.ticketing.auth())).json()  # type: ignore[no-any-return]


async def _wait_status(glv: Glv, ticket_id: uuid.UUID, status: str) -> None:
    """Ticketing follows the scheduler's events: wait until the status API says so."""
    for _ in range(100):
        if (await _status(glv, ticket_id))["status"] == status:
            return
        await glv.probe.poll()  # waits up to 200 ms for records: paces the loop
    assert (await _status(glv, ticket_id))["status"] == status


async def test_accepted_tickets_get_slots_in_office_hours(glv: Glv) -> None:
    rng = random.Random(51)
    now = datetime.now(UTC)
    filed = _filings(rng, now, [("JKT", "lelang"), ("MKS", "piutang-negara"), ("JYP", "informasi-pengaduan")] * 3)
    async with PortalClient(glv.ticketing.settings.kafka_bootstrap_servers, glv.ticketing.prefix) as portal:
        await portal.file(filed)
    ids = {f.ticket_id for f in filed}
    await glv.probe.wait_for(lambda _: ids <= {s.event.ticket_id for s in glv.probe.of_type("SlotAssigned")})
    for seen in glv.probe.of_type("SlotAssigned"):
        slot = seen.event
        local_start = slot.starts_at.astimezone(ZoneInfo(slot.office_zone))
        assert 8 <= local_start.hour < 17 and local_start.weekday() < 5
        assert slot.starts_at >= now + timedelta(hours=2)
        claims = jwt.decode(
            str(slot.meeting.join_url).split("jwt=")[1],
            "test-jitsi-secret-of-at-least-32-bytes!!",
            audience="jitsi",
            algorithms=["HS256"],
            options={"verify_nbf": False},  # valid only around the slot, days from now
        )
        assert claims["room"] == slot.meeting.room_id and claims["context"]["user"]["moderator"] is False
        assert claims["nbf"] <= slot.starts_at.timestamp() < slot.ends_at.timestamp() <= claims["exp"]
    # Ticketing follows: every ticket is "scheduled" in the status API.
    for filing in filed:
        await _wait_status(glv, filing.ticket_id, "scheduled")


async def test_reschedule_moves_the_ticket_and_releases_the_old_slot(glv: Glv) -> None:
    rng = random.Random(53)
    now = datetime.now(UTC)
    [filed] = _filings(rng, now, [("BDG", "lelang")])
    async with PortalClient(glv.ticketing.settings.kafka_bootstrap_servers, glv.ticketing.prefix) as portal:
        await portal.file([filed])
        await glv.probe.wait_for(lambda _: len(glv.probe.of_type("SlotAssigned")) == 1)
        first = glv.probe.of_type("SlotAssigned")[0].event
        later = first.starts_at + timedelta(days=7)
        window = TimeWindow(start=later - timedelta(hours=3), end=later + timedelta(hours=3))
        await portal.file([RescheduleRequested(ticket_id=filed.ticket_id, portal_id="sim-portal",
                                               preferred_windows=[window], requested_at=now)])  # fmt: skip
    await glv.probe.wait_for(lambda _: len(glv.probe.of_type("SlotAssigned")) == 2)
    moved = glv.probe.of_type("SlotAssigned")[1].event
    assert moved.replaces_slot_id == first.slot_id
    assert window.start <= moved.starts_at and moved.ends_at <= window.end
    await glv.probe.wait_for(lambda _: len(glv.probe.of_type("SlotReleased")) == 1)
    assert glv.probe.of_type("SlotReleased")[0].event.reason == "rescheduled"
    assert glv.scheduler.pool is not None
    live = await glv.scheduler.pool.fetch("SELECT slot_id FROM seat WHERE ticket_id = $1 AND live", filed.ticket_id)
    assert [r["slot_id"] for r in live] == [moved.slot_id]


async def test_meeting_webhook_is_signed_and_idempotent(glv: Glv) -> None:
    rng = random.Random(54)
    now = datetime.now(UTC)
    [filed] = _filings(rng, now, [("DPS", "lelang")])
    async with PortalClient(glv.ticketing.settings.kafka_bootstrap_servers, glv.ticketing.prefix) as portal:
        await portal.file([filed])
    await glv.probe.wait_for(lambda _: len(glv.probe.of_type("SlotAssigned")) == 1)
    slot = glv.probe.of_type("SlotAssigned")[0].event
    report = {
        "delivery_id": "jitsi-delivery-0001",
        "room_id": slot.meeting.room_id,
        "started_at": slot.starts_at.isoformat(),
        "ended_at": slot.ends_at.isoformat(),
        "attendance": [
            {"role": "officer", "participant_ref": slot.officer_id, "joined_at": slot.starts_at.isoformat()},
            {"role": "stakeholder", "participant_ref": filed.stakeholder.stakeholder_ref,
             "joined_at": slot.starts_at.isoformat()},
        ],
        "artifacts": [
            {"kind": "video", "url": "https://files.example.go.id/rec.mp4", "content_type": "video/mp4",
             "size_bytes": 123456, "sha256": "a" * 64},
            {"kind": "chat", "url": "https://files.example.go.id/chat.txt", "content_type": "text/plain",
             "size_bytes": 321},
        ],
    }  # fmt: skip
    body = json.dumps(report).encode()
    stamp = int(time.time())

    def headers(secret: bytes, timestamp: int = stamp) -> dict[str, str]:
        return {"X-GLV-Timestamp": str(timestamp), "X-GLV-Signature": sign(secret, timestamp, body),
                "Content-Type": "application/json"}  # fmt: skip

    async with httpx.AsyncClient() as client:
        bad = await client.post(glv.webhook_url, content=body, headers=headers(b"wrong-secret"))
        assert bad.status_code == 401
        stale = await client.post(
            glv.webhook_url, content=body, headers=headers(b"test-webhook-secret-1", stamp - 3600)
        )
        assert stale.status_code == 401
        good = await client.post(glv.webhook_url, content=body, headers=headers(b"test-webhook-secret-1"))
        assert good.status_code == 200 and good.json() == {"status": "recorded", "events": 1}
        again = await client.post(glv.webhook_url, content=body, headers=headers(b"test-webhook-secret-1"))
        assert again.json() == {"status": "duplicate"}
        other = json.dumps({**report, "delivery_id": "jitsi-delivery-0002"}).encode()
        stamp2 = int(time.time())
        signature = sign(b"test-webhook-secret-1", stamp2, other)
        second = await client.post(
            glv.webhook_url, content=other, headers={"X-GLV-Timestamp": str(stamp2), "X-GLV-Signature": signature}
        )
        assert second.json() == {"status": "recorded", "events": 0}  # the session was already recorded
    await glv.probe.wait_for(lambda _: len(glv.probe.of_type("SessionHeld")) == 1)
    held = glv.probe.of_type("SessionHeld")[0].event
    assert held.ticket_id == filed.ticket_id and {a.kind for a in held.artifacts} == {"video", "chat"}
    await glv.probe.wait_for(lambda _: True)
    await _wait_status(glv, filed.ticket_id, "held")
    assert len(glv.probe.of_type("SessionHeld")) == 1 and not glv.probe.of_type("SessionMissed")


async def test_an_officer_reports_a_no_show(glv: Glv) -> None:
    from glv_scheduler.__main__ import report_session

    rng = random.Random(55)
    [filed] = _filings(rng, datetime.now(UTC), [("PLP", "lelang")])
    async with PortalClient(glv.ticketing.settings.kafka_bootstrap_servers, glv.ticketing.prefix) as portal:
        await portal.file([filed])
    await glv.probe.wait_for(lambda _: len(glv.probe.of_type("SlotAssigned")) == 1)
    slot = glv.probe.of_type("SlotAssigned")[0].event
    said = await report_session(
        glv.scheduler_settings, slot.slot_id, held=False, party="stakeholder", notes="tidak hadir"
    )
    assert said == "1 session outcome(s) recorded"
    again = await report_session(glv.scheduler_settings, slot.slot_id, held=True, party="stakeholder", notes="")
    assert again.startswith("nothing recorded")
    await glv.probe.wait_for(lambda _: len(glv.probe.of_type("SessionMissed")) == 1)
    assert glv.probe.of_type("SessionMissed")[0].event.missing_party == "stakeholder"
    assert not glv.probe.of_type("SessionHeld")


async def test_webinars_share_one_session_and_internal_meetings_book_several_officers(glv: Glv) -> None:
    rng = random.Random(56)
    now = datetime.now(UTC)
    webinar = [
        f.model_copy(update={"kind": "webinar", "preferred_windows": []})
        for f in _filings(rng, now, [("JKT", "sosialisasi-lelang")] * 5)
    ]
    [meeting] = [
        f.model_copy(update={"kind": "internal_meeting", "preferred_windows": []})
        for f in _filings(rng, now, [("JKT", "rapat-koordinasi")])
    ]
    async with PortalClient(glv.ticketing.settings.kafka_bootstrap_servers, glv.ticketing.prefix) as portal:
        await portal.file([*webinar, meeting])
    await glv.probe.wait_for(lambda _: len(glv.probe.of_type("SlotAssigned")) == 6)
    slots = {s.event.ticket_id: s.event for s in glv.probe.of_type("SlotAssigned")}
    assert len({slots[f.ticket_id].slot_id for f in webinar}) == 1  # one session, many stakeholders
    assert len({str(slots[f.ticket_id].meeting.join_url) for f in webinar}) == 5  # a link per participant
    assert glv.scheduler.pool is not None
    officers = await glv.scheduler.pool.fetch(
        "SELECT officer_id FROM booking WHERE slot_id = $1 AND live", slots[meeting.ticket_id].slot_id
    )
    assert len(officers) == 3
    seats = await glv.scheduler.pool.fetchval(
        "SELECT seats_taken FROM slot WHERE slot_id = $1", slots[webinar[0].ticket_id].slot_id
    )
    assert seats == 5
