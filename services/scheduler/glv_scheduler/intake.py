"""What the scheduler refuses on receipt, before any rule runs.

Ticketing already refuses these at intake; the scheduler checks again because an
accepted ticket's stakeholder_ref goes into join URLs (a URL over 2,083 characters
fails the SlotAssigned event) and into its own database.
"""

from __future__ import annotations

from glv_runtime.consumer import Delivery, Inbound, PermanentFailure, decode
from glv_schemas import events as ev
from glv_schemas.base import STAKEHOLDER_REF_PATTERN


def decode_for_scheduler(delivery: Delivery) -> Inbound:
    inbound = decode(delivery)
    event = inbound.event
    if isinstance(event, ev.TicketAccepted) and not STAKEHOLDER_REF_PATTERN.fullmatch(event.stakeholder_ref):
        raise PermanentFailure("invalid_stakeholder_ref", "stakeholder_ref is outside the safe character set")
    return inbound
