"""An officer's agenda (JSON) and calendar feed (iCalendar), from the slots they hold: no I/O.

One entry per slot: a webinar's hundred tickets are one meeting for its officer. A slot's
times never change (a reschedule books a new slot and releases the old one), so a calendar
event keeps its UID and SEQUENCE 0 for life; a slot that is released leaves the feed, and a
subscribed calendar drops it at its next refresh.

Both carry the officer's moderator links, which are bearer credentials for the meeting: the
answers must not be cached by anything but the officer's own client.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event

from glv_scheduler.meetings import MeetingPlan, MeetingProvider, Participant

# The role label a moderator link carries: join links name roles, not people.
OFFICER = "Petugas"
# What the agenda shows: sessions not yet ended, and with `recent_days` those that ended
# that many days ago at most; ahead, as far as any booking horizon may reach.
MAX_RECENT_DAYS = 7
AHEAD = timedelta(days=366)
MAX_AGENDA_SESSIONS = 500
# What the feed holds: a month back (a calendar app keeps history the feed dropped anyway).
FEED_PAST = timedelta(days=30)
MAX_FEED_EVENTS = 1000
# How often calendar apps are asked to refresh the feed (REFRESH-INTERVAL, X-PUBLISHED-TTL).
FEED_REFRESH = timedelta(minutes=30)
_FEED_NAMESPACE = uuid.UUID("6f1d2f4e-3c1b-5b8e-9d0a-4b7f0c2e9a11")

CACHE_CONTROL = "private, no-store"


@dataclass(frozen=True)
class OfficerSlot:
    """A live slot an officer holds, with what the agenda shows of it."""

    slot_id: uuid.UUID
    office_code: str
    office_name: str
    zone: str
    service_code: str
    service_name: str
    kind: str
    starts_at: datetime
    ends_at: datetime
    ticket_codes: tuple[str, ...]
    plan: MeetingPlan


def moderator_link(provider: MeetingProvider, plan: MeetingPlan, officer_id: str) -> str:
    """The officer's (moderator) join link for a slot's meeting."""
    return provider.join_url(plan, Participant(officer_id, OFFICER, moderator=True))


def agenda_window(now: datetime, recent_days: int) -> tuple[datetime, datetime]:
    """The sessions the agenda shows end after the first instant and start before the second."""
    if not 0 <= recent_days <= MAX_RECENT_DAYS:
        raise ValueError(f"recent_days must be from 0 to {MAX_RECENT_DAYS}")
    return now - timedelta(days=recent_days), now + AHEAD


def feed_window(now: datetime) -> tuple[datetime, datetime]:
    return now - FEED_PAST, now + AHEAD


def _instant(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def agenda_json(
    officer_id: str, slots: Sequence[OfficerSlot], link: Callable[[OfficerSlot], str], now: datetime
) -> dict[str, Any]:
    """The agenda's body: times in UTC and in the office's zone (what the officer's day is)."""
    sessions = []
    for slot in slots:
        zone = ZoneInfo(slot.zone)
        sessions.append(
            {
                "slot_id": str(slot.slot_id),
                "ticket_codes": list(slot.ticket_codes),
                "office": {"code": slot.office_code, "name": slot.office_name, "zone": slot.zone},
                "service": {"code": slot.service_code, "name": slot.service_name, "kind": slot.kind},
                "starts_at": _instant(slot.starts_at),
                "ends_at": _instant(slot.ends_at),
                "local": {
                    "zone": slot.zone,
                    "starts_at": slot.starts_at.astimezone(zone).isoformat(),
                    "ends_at": slot.ends_at.astimezone(zone).isoformat(),
                },
                "moderator_link": link(slot),
            }
        )
    return {"officer_id": officer_id, "generated_at": _instant(now), "sessions": sessions}


def event_uid(slot_id: uuid.UUID) -> str:
    """Stable per slot, so that a refresh updates the event instead of adding another."""
    return f"{slot_id}@scheduler.glv"


def summary(slot: OfficerSlot) -> str:
    if len(slot.ticket_codes) == 1:
        return f"{slot.service_name} — {slot.ticket_codes[0]}"
    return f"{slot.service_name} — {len(slot.ticket_codes)} tiket"


def _description(slot: OfficerSlot, url: str) -> str:
    zone = ZoneInfo(slot.zone)
    local = f"{slot.starts_at.astimezone(zone):%Y-%m-%d %H:%M}–{slot.ends_at.astimezone(zone):%H:%M} ({slot.zone})"
    return "\n".join(
        [
            f"{slot.office_name} ({slot.office_code})",
            f"Waktu setempat / local time: {local}",
            f"Tiket: {', '.join(slot.ticket_codes) or '-'}",
            f"Tautan moderator / moderator link: {url}",
        ]
    )


def feed_calendar(
    officer_id: str, slots: Sequence[OfficerSlot], link: Callable[[OfficerSlot], str], now: datetime
) -> bytes:
    """The VCALENDAR: one VEVENT per slot, DTSTART/DTEND in UTC, the moderator link as
    LOCATION and URL (where calendar apps make it clickable)."""
    calendar = Calendar.new(
        prodid="-//GLV//scheduler officer feed//ID",
        name=f"GLV — {officer_id}",
        uid=uuid.uuid5(_FEED_NAMESPACE, officer_id),
        refresh_interval=FEED_REFRESH,
        method="PUBLISH",
    )
    calendar.add("X-PUBLISHED-TTL", FEED_REFRESH)
    for slot in slots:
        url = link(slot)
        calendar.add_component(
            Event.new(
                uid=event_uid(slot.slot_id),
                start=slot.starts_at.astimezone(UTC),
                end=slot.ends_at.astimezone(UTC),
                stamp=now.astimezone(UTC),
                sequence=0,
                summary=summary(slot),
                location=url,
                url=url,
                description=_description(slot, url),
            )
        )
    ical: bytes = calendar.to_ical()
    return ical
