"""What ticketing makes of AssignmentPending: the ticket awaits its office's round."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from glv_schemas import events as ev
from glv_ticketing.domain import FINAL, Status
from glv_ticketing.handlers import lifecycle_transition

ROUND_AT = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)


def pending() -> ev.AssignmentPending:
    return ev.AssignmentPending(
        ticket_id=uuid.uuid4(),
        office_code="PLP",
        service_code="lelang",
        round_at=ROUND_AT,
        pending_at=datetime(2026, 12, 2, 1, 37, tzinfo=UTC),
    )


def test_an_accepted_ticket_awaits_its_round_with_the_rounds_time() -> None:
    transition = lifecycle_transition(pending(), Status.ACCEPTED)
    assert transition.status == Status.AWAITING_ROUND
    assert transition.entry == "awaiting_round"
    assert transition.detail == {"round_at": ROUND_AT.isoformat()}


def test_a_slot_that_arrived_first_is_not_undone() -> None:
    # Topics are not ordered among themselves: the SlotAssigned may be applied first.
    assert lifecycle_transition(pending(), Status.SCHEDULED).status is None


def test_awaiting_a_round_is_not_final() -> None:
    assert Status.AWAITING_ROUND not in FINAL
