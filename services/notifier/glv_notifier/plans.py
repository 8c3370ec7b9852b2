"""Which messages an event calls for (pure: no I/O).

Each planned message has a delivery key, (ticket, purpose, and what makes it distinct: the
slot, the session, the archive), so that however often an event is delivered, replayed or
seen by two replicas, the message is planned once. Its facts are what it will state, taken
from GLV's own events; contact details are joined only when it is sent.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from glv_notifier.messages import Purpose
from glv_schemas import events as ev

# Fixed namespace: a delivery key always maps to the same notification id (and Message-ID).
NOTIFICATION_NAMESPACE = uuid.UUID("0b7e3c52-6f0a-4c1e-9d36-3f1f4d8f2a61")

# Final messages: after them, a ticket needs no more (the contact can go after retention).
CLOSING = frozenset({Purpose.REJECTION, Purpose.CANCELLED, Purpose.MISSED, Purpose.ARCHIVED})


def delivery_key(ticket_id: UUID, purpose: Purpose, distinct: str = "") -> str:
    return f"{ticket_id}:{purpose.value}" + (f":{distinct}" if distinct else "")


def notification_id(key: str) -> UUID:
    return uuid.uuid5(NOTIFICATION_NAMESPACE, key)


@dataclass(frozen=True)
class Planned:
    purpose: Purpose
    key: str
    facts: dict[str, Any]
    not_before: datetime | None = None

    @property
    def notification_id(self) -> UUID:
        return notification_id(self.key)


@dataclass
class TicketState:
    """The notifier's view of one ticket (table `ticket`)."""

    ticket_id: UUID
    updated_at: datetime
    decision: str | None = None
    ticket_code: str | None = None
    office_code: str | None = None
    service_code: str | None = None
    locale: str | None = None
    slot_id: UUID | None = None
    slot_active: bool = False
    slot_sequence: int = -1
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    zone: str | None = None
    join_url: str | None = None
    closed_at: datetime | None = None

    def session(self, sequence: int | None = None) -> dict[str, Any] | None:
        if self.slot_id is None or self.starts_at is None or self.ends_at is None:
            return None
        return {
            "slot_id": str(self.slot_id),
            "starts_at": self.starts_at.isoformat(),
            "ends_at": self.ends_at.isoformat(),
            "zone": self.zone,
            "join_url": self.join_url,
            "sequence": self.slot_sequence if sequence is None else sequence,
        }

    def facts(self, **more: Any) -> dict[str, Any]:
        base: dict[str, Any] = {
            "ticket_code": self.ticket_code,
            "office_code": self.office_code,
            "service_code": self.service_code,
        }
        return base | more


@dataclass
class Plan:
    """What an event changes in the ticket's state and which messages it calls for."""

    state: TicketState
    messages: list[Planned] = field(default_factory=list)
    # Planned messages still to come that this event makes pointless (reminders of a slot
    # that is gone): skipped at send time anyway; listed so they can be marked at once.
    obsolete_slot: UUID | None = None


def plan(event: Any, state: TicketState, now: datetime, reminder_leads_min: list[int]) -> Plan:
    """The messages `event` calls for, given what the notifier knew of its ticket."""
    state = replace(state, updated_at=now)
    match event:
        case ev.TicketAccepted():
            state.decision, state.ticket_code = "accepted", event.ticket_code
            state.office_code, state.service_code, state.locale = event.office_code, event.service_code, event.locale
            return Plan(state, [_planned(state, Purpose.ACKNOWLEDGEMENT)])
        case ev.TicketRejected() if state.decision == "accepted":
            return Plan(state)  # a conflicting resubmission was refused: the first filing stands
        case ev.TicketRejected():
            state.decision, state.closed_at = "rejected", now
            reasons = [r.code for r in event.reasons]
            return Plan(state, [_planned(state, Purpose.REJECTION, reasons=reasons)])
        case ev.TicketCancelled():
            state.ticket_code, state.office_code = event.ticket_code, event.office_code
            state.decision, was_active, state.closed_at = "cancelled", state.slot_active, now
            # The calendar entry, if one was sent, is cancelled with a higher SEQUENCE.
            session = state.session(state.slot_sequence + 1) if state.slot_id is not None else None
            state.slot_active = False
            if session is not None:
                state.slot_sequence += 1
            obsolete = state.slot_id if was_active else None
            return Plan(state, [_planned(state, Purpose.CANCELLED, session=session)], obsolete_slot=obsolete)
        case ev.SlotAssigned() if state.decision == "cancelled":
            # Placed before the cancellation reached the scheduler (its release follows): the
            # stakeholder, who cancelled, hears nothing of it.
            return Plan(state)
        case ev.SlotAssigned():
            if state.slot_id == event.slot_id:
                return Plan(state)  # told already
            previous = state.slot_id if state.slot_active else None
            purpose = Purpose.RESCHEDULED if (event.replaces_slot_id or state.slot_id) else Purpose.INVITATION
            state.slot_id, state.slot_active, state.slot_sequence = event.slot_id, True, state.slot_sequence + 1
            state.closed_at = None  # a session ahead: its contact is needed again (after a waitlist)
            state.starts_at, state.ends_at, state.zone = event.starts_at, event.ends_at, event.office_zone
            state.join_url = str(event.meeting.join_url)
            state.office_code, state.service_code = event.office_code, event.service_code
            messages = [_planned(state, purpose, distinct=str(event.slot_id), session=state.session())]
            for lead in sorted(set(reminder_leads_min), reverse=True):
                fire_at = event.starts_at - timedelta(minutes=lead)
                if fire_at > now:
                    messages.append(
                        _planned(
                            state,
                            Purpose.REMINDER,
                            distinct=f"{event.slot_id}:{lead}",
                            session=state.session(),
                            lead_minutes=lead,
                            not_before=fire_at,
                        )
                    )
            return Plan(state, messages, obsolete_slot=previous)
        case ev.SlotReleased():
            # A reschedule's new slot (or the cancellation, or the missed session) says the rest.
            if state.slot_id == event.slot_id:
                state.slot_active = False
                return Plan(state, obsolete_slot=event.slot_id)
            return Plan(state)
        case ev.SchedulingFailed() if event.waitlisted:
            return Plan(
                state, [_planned(state, Purpose.WAITLISTED, distinct=str(state.slot_sequence), reasons=[event.reason])]
            )
        case ev.SchedulingFailed():
            if state.slot_active:
                return Plan(state)  # a reschedule found nothing: the slot the person has stands
            state.closed_at = now
            return Plan(state, [_planned(state, Purpose.UNSCHEDULABLE, reasons=[event.reason])])
        case ev.SessionHeld():
            # The archive's word may follow: the contact stays for the retention after this.
            state.closed_at = now
            return Plan(state, [_planned(state, Purpose.HELD, distinct=str(event.session_id), session=state.session())])
        case ev.SessionMissed():
            state.closed_at = now
            return Plan(
                state,
                [_planned(state, Purpose.MISSED, distinct=str(event.session_id), reasons=[event.missing_party])],
            )
        case ev.RecordingArchived():
            state.closed_at = now
            return Plan(
                state,
                [
                    _planned(
                        state,
                        Purpose.ARCHIVED,
                        distinct=str(event.archive_id),
                        retained_until=event.retention_until.isoformat(),
                    )
                ],
            )
    return Plan(state)


def _planned(
    state: TicketState,
    purpose: Purpose,
    *,
    distinct: str = "",
    not_before: datetime | None = None,
    **facts: Any,
) -> Planned:
    return Planned(purpose, delivery_key(state.ticket_id, purpose, distinct), state.facts(**facts), not_before)
