"""How sessions went: from the meeting platform's signed webhook or an officer's report.

Each ticket of a slot gets one SessionHeld or SessionMissed, whichever report comes
first; a repeated webhook (same delivery id) or a second report changes nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from glv_runtime.db import DbConnection
from glv_runtime.outbox import OutboxMessage, event_message
from glv_scheduler import store
from glv_scheduler.webhooks import MeetingEnded
from glv_schemas import events as ev
from glv_schemas.base import Event

SOURCE = "/glv/scheduler"
Party = Literal["stakeholder", "officer", "both"]


class UnknownSlot(LookupError):
    pass


@dataclass(frozen=True)
class Outcome:
    held: bool
    missing: Party | None = None


def judge(kind: str, officer_came: bool, stakeholder_came: bool) -> Outcome:
    """A session is held when the officer and (except internal meetings) the stakeholder came."""
    if kind == "internal_meeting":
        return Outcome(held=True) if officer_came else Outcome(held=False, missing="officer")
    if officer_came and stakeholder_came:
        return Outcome(held=True)
    if not officer_came and not stakeholder_came:
        return Outcome(held=False, missing="both")
    return Outcome(held=False, missing="stakeholder" if officer_came else "officer")


def session_id(slot_id: uuid.UUID, ticket_id: uuid.UUID) -> uuid.UUID:
    """Stable per slot and ticket, so that every report names the same session."""
    return uuid.uuid5(slot_id, str(ticket_id))


def _message(event: Event) -> OutboxMessage:
    return event_message(event, source=SOURCE, key=str(event.ticket_id))


async def meeting_ended(conn: DbConnection, report: MeetingEnded, now: datetime) -> list[OutboxMessage] | None:
    """Apply the webhook; None when this delivery was applied before."""
    if not await store.first_delivery(conn, report.delivery_id):
        return None
    slot = await store.slot_by_room(conn, report.room_id)
    if slot is None:
        raise UnknownSlot(report.room_id)
    officer_came = any(a.role == "officer" for a in report.attendance)
    stakeholders = {a.participant_ref for a in report.attendance if a.role == "stakeholder"}
    messages: list[OutboxMessage] = []
    for seat in await store.live_tickets_of(conn, slot.slot_id):
        ticket_id: uuid.UUID = seat["ticket_id"]
        # One-to-one: any stakeholder in the room is ours; a webinar checks each ticket's person.
        came = seat["stakeholder_ref"] in stakeholders if slot.kind == "webinar" else bool(stakeholders)
        outcome = judge(slot.kind, officer_came, came)
        sid = session_id(slot.slot_id, ticket_id)
        recorded = await store.record_outcome(
            conn,
            session_id=sid,
            slot_id=slot.slot_id,
            ticket_id=ticket_id,
            outcome="held" if outcome.held else "missed",
            source="webhook",
            notes="",
            now=now,
        )
        if not recorded:
            continue
        # A webinar ticket's event names only the officers and that ticket's own stakeholder.
        attendance = [
            a
            for a in report.attendance
            if slot.kind != "webinar" or a.role == "officer" or a.participant_ref == seat["stakeholder_ref"]
        ]
        if outcome.held:
            messages.append(
                _message(
                    ev.SessionHeld(
                        ticket_id=ticket_id,
                        session_id=sid,
                        slot_id=slot.slot_id,
                        office_code=slot.office_code,
                        started_at=report.started_at,
                        ended_at=report.ended_at,
                        attendance=attendance,
                        artifacts=list(report.artifacts),
                    )
                )
            )
        else:
            assert outcome.missing is not None
            messages.append(
                _message(
                    ev.SessionMissed(
                        ticket_id=ticket_id,
                        session_id=sid,
                        slot_id=slot.slot_id,
                        office_code=slot.office_code,
                        missing_party=outcome.missing,
                        recorded_at=now,
                    )
                )
            )
    return messages


async def officer_report(
    conn: DbConnection, slot_id: uuid.UUID, *, held: bool, missing: Party | None, notes: str, now: datetime
) -> list[OutboxMessage]:
    """An officer says the session was held (with notes, kept here only) or who did not come."""
    slot = await store.get_slot(conn, slot_id)
    if slot is None:
        raise UnknownSlot(str(slot_id))
    messages: list[OutboxMessage] = []
    for seat in await store.live_tickets_of(conn, slot_id):
        ticket_id: uuid.UUID = seat["ticket_id"]
        sid = session_id(slot_id, ticket_id)
        recorded = await store.record_outcome(
            conn,
            session_id=sid,
            slot_id=slot_id,
            ticket_id=ticket_id,
            outcome="held" if held else "missed",
            source="officer",
            notes=notes,
            now=now,
        )
        if not recorded:
            continue
        if held:
            messages.append(
                _message(
                    ev.SessionHeld(
                        ticket_id=ticket_id,
                        session_id=sid,
                        slot_id=slot_id,
                        office_code=slot.office_code,
                        started_at=slot.starts_at,
                        ended_at=slot.ends_at,
                        attendance=[],
                        artifacts=[],
                    )
                )
            )
        else:
            messages.append(
                _message(
                    ev.SessionMissed(
                        ticket_id=ticket_id,
                        session_id=sid,
                        slot_id=slot_id,
                        office_code=slot.office_code,
                        missing_party=missing or "stakeholder",
                        recorded_at=now,
                    )
                )
            )
    return messages
