"""Which messages an event calls for (the notifier's pure rules)."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

from glv_devtools.portal import accepted_for, slot_for, ticket
from glv_notifier.messages import Purpose
from glv_notifier.plans import TicketState, delivery_key, plan
from glv_schemas import events as ev

NOW = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
LEADS = [24 * 60, 60]


def filing(seed: int = 1) -> ev.TicketFiled:
    return ticket(random.Random(seed), portal_id="p", office_code="JKT", service_code="lelang", now=NOW)


def fresh(filed: ev.TicketFiled) -> TicketState:
    return TicketState(ticket_id=filed.ticket_id, updated_at=NOW)


def test_a_slot_is_an_invitation_with_reminders_then_a_new_one_is_a_reschedule_with_a_higher_sequence() -> None:
    filed = filing()
    state = plan(accepted_for(filed, "JKT-261201-0001"), fresh(filed), NOW, LEADS).state
    first = slot_for(filed, "Asia/Jakarta", NOW + timedelta(days=3))
    told = plan(first, state, NOW, LEADS)
    assert [m.purpose for m in told.messages] == [Purpose.INVITATION, Purpose.REMINDER, Purpose.REMINDER]
    assert [m.not_before for m in told.messages[1:]] == [
        first.starts_at - timedelta(hours=24),
        first.starts_at - timedelta(hours=1),
    ]
    assert told.messages[0].facts["session"]["sequence"] == 0
    assert plan(first, told.state, NOW, LEADS).messages == []  # the same slot again: told already

    second = slot_for(filed, "Asia/Jakarta", NOW + timedelta(days=4), replaces=first.slot_id)
    moved = plan(second, told.state, NOW, LEADS)
    assert moved.messages[0].purpose is Purpose.RESCHEDULED and moved.messages[0].facts["session"]["sequence"] == 1
    assert moved.obsolete_slot == first.slot_id

    cancelled = ev.TicketCancelled(
        ticket_id=filed.ticket_id, ticket_code="JKT-261201-0001", portal_id="p", office_code="JKT", cancelled_at=NOW
    )
    withdrawn = plan(cancelled, moved.state, NOW, LEADS)
    [message] = withdrawn.messages
    assert message.purpose is Purpose.CANCELLED and message.facts["session"]["sequence"] == 2
    assert message.key == delivery_key(filed.ticket_id, Purpose.CANCELLED)


def test_no_reminder_for_a_lead_time_already_past() -> None:
    filed = filing()
    soon = slot_for(filed, "Asia/Jakarta", NOW + timedelta(hours=3))
    assert [m.purpose for m in plan(soon, fresh(filed), NOW, LEADS).messages] == [Purpose.INVITATION, Purpose.REMINDER]


def test_a_slot_placed_before_the_cancellation_arrived_is_not_told() -> None:
    filed = filing()
    cancelled = ev.TicketCancelled(
        ticket_id=filed.ticket_id, ticket_code="JKT-261201-0002", portal_id="p", office_code="JKT", cancelled_at=NOW
    )
    state = plan(cancelled, fresh(filed), NOW, LEADS)
    assert [m.facts.get("session") for m in state.messages] == [None]  # nothing to withdraw from a calendar
    assert plan(slot_for(filed, "Asia/Jakarta", NOW + timedelta(days=2)), state.state, NOW, LEADS).messages == []


def test_a_refused_resubmission_does_not_tell_an_accepted_stakeholder_they_were_rejected() -> None:
    filed = filing()
    state = plan(accepted_for(filed, "JKT-261201-0003"), fresh(filed), NOW, LEADS).state
    refused = ev.TicketRejected(
        ticket_id=filed.ticket_id,
        portal_id="p",
        reasons=[ev.Reason(code="duplicate_conflict", field="ticket_id", message_id="x", message_en="x")],
        rejected_at=NOW,
    )
    assert plan(refused, state, NOW, LEADS).messages == []


def test_delivery_keys_are_distinct_per_slot_session_and_archive() -> None:
    ticket_id = uuid.uuid4()
    keys = {
        delivery_key(ticket_id, Purpose.INVITATION, str(uuid.uuid4())),
        delivery_key(ticket_id, Purpose.INVITATION, str(uuid.uuid4())),
        delivery_key(ticket_id, Purpose.ACKNOWLEDGEMENT),
    }
    assert len(keys) == 3
