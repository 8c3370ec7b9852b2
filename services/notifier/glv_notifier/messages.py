"""What the notifier tells a stakeholder: the purposes, the facts a message states, and the
rendered message. Pure data: no I/O, no contact details beyond the name a message greets."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal
from uuid import UUID

Locale = Literal["id", "en"]
Channel = Literal["email", "sms", "whatsapp"]


class Purpose(StrEnum):
    """Why a message is sent; each has a template per language (templates/<locale>/<purpose>.*)."""

    ACKNOWLEDGEMENT = "acknowledgement"  # TicketAccepted: the ticket code and what happens next
    REJECTION = "rejection"  # TicketRejected: why, in plain words, and what to do
    INVITATION = "invitation"  # the first SlotAssigned: local day and time, join link, .ics
    RESCHEDULED = "rescheduled"  # a new slot replacing one: updated .ics (same UID, higher SEQUENCE)
    CANCELLED = "cancelled"  # the ticket was cancelled: .ics METHOD:CANCEL when it had a slot
    WAITLISTED = "waitlisted"  # no slot yet, on the waitlist
    UNSCHEDULABLE = "unschedulable"  # no slot can be found
    REMINDER = "reminder"  # a configured lead time before the session
    HELD = "held"  # thanks; where the documentation will be
    MISSED = "missed"  # how to file again
    ARCHIVED = "archived"  # the documentation is ready, how to obtain it


# Purposes whose e-mail carries a calendar invite.
WITH_INVITE = frozenset({Purpose.INVITATION, Purpose.RESCHEDULED, Purpose.CANCELLED})


@dataclass(frozen=True)
class Session:
    """The slot as the stakeholder is told of it."""

    slot_id: UUID
    starts_at: datetime  # UTC
    ends_at: datetime  # UTC
    zone: str  # the office's IANA zone: Asia/Jakarta, Asia/Makassar or Asia/Jayapura
    join_url: str
    # The calendar SEQUENCE: 0 for the first slot, one more for each new slot or cancellation.
    sequence: int


@dataclass(frozen=True)
class Office:
    code: str
    name: str
    city: str
    zone: str


@dataclass(frozen=True)
class MessageFacts:
    """Everything a message states. `name` is the stakeholder's (user input: escaped in HTML);
    the rest comes from GLV's own events and catalog."""

    purpose: Purpose
    ticket_id: UUID
    locale: Locale
    name: str
    ticket_code: str | None = None
    office: Office | None = None
    service_name: str | None = None
    session: Session | None = None
    # Reason codes (ticketing's, e.g. "outside_booking_horizon") for a rejection; the
    # scheduler's reason for waitlisted/unschedulable; the missing party for a missed session.
    reasons: tuple[str, ...] = ()
    # For a reminder: how long before the session it is sent.
    lead_minutes: int | None = None
    # For an archived session: until when the documentation is kept.
    retained_until: datetime | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Rendered:
    """One message in one language, ready for any channel."""

    subject: str
    text: str  # plain-text e-mail body
    html: str  # HTML e-mail body (autoescaped)
    short: str  # SMS / WhatsApp text, a few hundred characters at most
    # The WhatsApp Cloud API template's body parameters, in order (the template itself is
    # approved at Meta under the purpose's name and the locale).
    template_parameters: tuple[str, ...] = ()
