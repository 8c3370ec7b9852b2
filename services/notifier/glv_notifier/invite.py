"""Calendar invites (RFC 5545, with the iTIP methods of RFC 5546) for a ticket's session.

One event per ticket: its UID never changes, so that a calendar that imported the first
invitation updates that event when a reschedule (REQUEST, higher SEQUENCE) or a cancellation
(CANCEL, higher SEQUENCE still) arrives, instead of adding a second one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final, Literal
from uuid import UUID

from icalendar import Alarm, Calendar, Event, vCalAddress

from glv_notifier.messages import MessageFacts
from glv_notifier.render import clean, invite_text

PRODID: Final = "-//GLV Gerai Layanan Virtual//glv-notifier//EN"
# The alarm a REQUEST carries; a calendar app may let the person change it.
ALARM_BEFORE: Final = timedelta(minutes=30)


def event_uid(ticket_id: UUID) -> str:
    """The event's UID: one per ticket, the same across every reschedule and the cancel."""
    return f"ticket-{ticket_id}@glv.notifier"


def _address(email: str, common_name: str | None) -> vCalAddress:
    address = vCalAddress(f"mailto:{email}")
    if common_name:
        # A double quote cannot stand in a parameter value; icalendar would write RFC 6868's
        # ^' for it, which several calendar apps show literally.
        address.params["CN"] = clean(common_name, newlines=False).replace('"', "'")
    return address


def invite(
    facts: MessageFacts,
    *,
    organizer_email: str,
    attendee_email: str | None,
    method: Literal["REQUEST", "CANCEL"],
    now: datetime,
    templates_dir: Path | None = None,
) -> bytes:
    """The .ics for the session in `facts`: REQUEST for a new or moved slot, CANCEL when it
    is called off. SEQUENCE is `facts.session.sequence`, which the caller raises for each new
    slot and for the cancellation (a CANCEL must carry a higher SEQUENCE than the last REQUEST,
    or calendars ignore it). Send it as `text/calendar; method=<method>`.

    iTIP wants the recipient as ATTENDEE; without `attendee_email` the invite still imports,
    as an event the person organises for themselves."""
    session = facts.session
    if session is None:
        raise ValueError("a calendar invite needs the session")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if method == "CANCEL" and session.sequence < 1:
        raise ValueError("a CANCEL needs a SEQUENCE above the REQUEST it cancels")
    summary, description = invite_text(facts, templates_dir=templates_dir)

    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", method)

    event = Event()
    event.add("uid", event_uid(facts.ticket_id))
    event.add("sequence", session.sequence)
    event.add("dtstamp", now.astimezone(UTC))
    # UTC instants: every calendar app shows them in its owner's zone, while the message
    # text names the office's zone (WIB/WITA/WIT).
    event.add("dtstart", session.starts_at.astimezone(UTC))
    event.add("dtend", session.ends_at.astimezone(UTC))
    event.add("summary", summary)
    event.add("description", description)
    event.add("location", session.join_url)
    event.add("url", session.join_url)
    event.add("organizer", _address(organizer_email, facts.office.name if facts.office else None))
    if attendee_email is not None:
        attendee = _address(attendee_email, facts.name)
        attendee.params["ROLE"] = "REQ-PARTICIPANT"
        attendee.params["PARTSTAT"] = "NEEDS-ACTION"
        # No reply wanted: the session is booked by the office; changes go through the portal.
        attendee.params["RSVP"] = "FALSE"
        event.add("attendee", attendee)
    event.add("status", "CONFIRMED" if method == "REQUEST" else "CANCELLED")
    event.add("transp", "OPAQUE")
    if method == "REQUEST":
        alarm = Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("description", summary)
        alarm.add("trigger", -ALARM_BEFORE)
        event.add_component(alarm)
    calendar.add_component(event)
    ics: bytes = calendar.to_ical()  # typed as Any by icalendar
    return ics
