"""An officer's agenda and calendar feed from plain values."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from icalendar import Calendar

from glv_scheduler.agenda import (
    MAX_RECENT_DAYS,
    OfficerSlot,
    agenda_json,
    agenda_window,
    event_uid,
    feed_calendar,
    moderator_link,
)
from glv_scheduler.meetings import MeetingPlan, provider_from_settings

NOW = datetime(2026, 12, 1, 0, 30, tzinfo=UTC)
ROOM = "ulxaum3rwj1swfoauj6ef6noamwicbhh"
PROVIDER = provider_from_settings(
    "jitsi", domain="meet.test", app_id="glv", app_secret="test-jitsi-secret-of-at-least-32-bytes!!"
)


def slot(
    starts_at: datetime, *, zone: str = "Asia/Jayapura", codes: tuple[str, ...] = ("JPR-261201-0001",)
) -> OfficerSlot:
    ends_at = starts_at + timedelta(minutes=45)
    return OfficerSlot(
        slot_id=uuid.uuid5(uuid.NAMESPACE_URL, starts_at.isoformat()),
        office_code="JPR",
        office_name="KPKNL Jayapura",
        zone=zone,
        service_code="lelang",
        service_name="Lelang",
        kind="consultation" if len(codes) == 1 else "webinar",
        starts_at=starts_at,
        ends_at=ends_at,
        ticket_codes=codes,
        plan=MeetingPlan("jitsi", ROOM, starts_at - timedelta(minutes=15), ends_at + timedelta(minutes=30)),
    )


def link(s: OfficerSlot) -> str:
    return moderator_link(PROVIDER, s.plan, "JPR-01")


def test_the_agenda_gives_utc_and_the_offices_local_time() -> None:
    body = agenda_json("JPR-01", [slot(datetime(2026, 12, 2, 0, 0, tzinfo=UTC))], link, NOW)
    [session] = body["sessions"]
    assert body["officer_id"] == "JPR-01"
    assert session["starts_at"] == "2026-12-02T00:00:00Z"
    assert session["ends_at"] == "2026-12-02T00:45:00Z"
    # WIT is UTC+9: nine in the morning in Jayapura.
    assert session["local"] == {
        "zone": "Asia/Jayapura",
        "starts_at": "2026-12-02T09:00:00+09:00",
        "ends_at": "2026-12-02T09:45:00+09:00",
    }
    assert session["ticket_codes"] == ["JPR-261201-0001"]
    assert session["office"] == {"code": "JPR", "name": "KPKNL Jayapura", "zone": "Asia/Jayapura"}
    assert session["moderator_link"].startswith(f"https://meet.test/{ROOM}?jwt=")


def test_the_moderator_link_grants_moderator_to_the_officer_under_a_role_label() -> None:
    import jwt

    token = link(slot(datetime(2026, 12, 2, tzinfo=UTC))).split("jwt=")[1]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["moderator"] is True
    assert claims["context"]["user"] == {"id": "JPR-01", "name": "Petugas", "moderator": True, "affiliation": "owner"}


def test_the_feed_parses_back_with_one_event_per_slot_at_the_right_times() -> None:
    slots = [
        slot(datetime(2026, 12, 2, 0, 0, tzinfo=UTC)),
        slot(datetime(2026, 12, 3, 5, 0, tzinfo=UTC), codes=("JPR-261201-0002", "JPR-261201-0003")),
    ]
    calendar = Calendar.from_ical(feed_calendar("JPR-01", slots, link, NOW))
    events = calendar.walk("VEVENT")
    assert [str(e["UID"]) for e in events] == [event_uid(s.slot_id) for s in slots]
    for event, s in zip(events, slots, strict=True):
        assert event.decoded("DTSTART") == s.starts_at
        assert event.decoded("DTSTART").utcoffset() == timedelta(0)
        assert event.decoded("DTEND") == s.ends_at
        assert int(event["SEQUENCE"]) == 0
        assert str(event["URL"]) == str(event["LOCATION"]) == link(s)
        assert "Lelang" in str(event["SUMMARY"])
    assert str(events[0]["SUMMARY"]) == "Lelang — JPR-261201-0001"
    assert str(events[1]["SUMMARY"]) == "Lelang — 2 tiket"
    assert "JPR-261201-0003" in str(events[1]["DESCRIPTION"])
    assert "2026-12-03 14:00–14:45 (Asia/Jayapura)" in str(events[1]["DESCRIPTION"])
    # DTSTART is written in UTC (the Z form), not as a floating or zoned local time.
    assert b"DTSTART:20261202T000000Z" in feed_calendar("JPR-01", slots, link, NOW)


def test_the_uids_are_stable_from_one_fetch_to_the_next() -> None:
    slots = [slot(datetime(2026, 12, 2, tzinfo=UTC))]
    first = Calendar.from_ical(feed_calendar("JPR-01", slots, link, NOW))
    later = Calendar.from_ical(feed_calendar("JPR-01", slots, link, NOW + timedelta(hours=1)))
    assert [e["UID"] for e in first.walk("VEVENT")] == [e["UID"] for e in later.walk("VEVENT")]
    assert first["UID"] == later["UID"]


def test_an_empty_feed_is_a_valid_calendar() -> None:
    calendar = Calendar.from_ical(feed_calendar("JPR-01", [], link, NOW))
    assert calendar.walk("VEVENT") == []
    assert str(calendar["VERSION"]) == "2.0"


def test_the_agenda_window() -> None:
    assert agenda_window(NOW, 0)[0] == NOW
    assert agenda_window(NOW, 1)[0] == NOW - timedelta(days=1)
    with pytest.raises(ValueError):
        agenda_window(NOW, MAX_RECENT_DAYS + 1)
