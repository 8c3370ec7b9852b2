"""A stored notification, the ticket's contact and the office's names, made into the facts
a message states (pure)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast
from uuid import UUID

from glv_notifier.messages import Locale, MessageFacts, Office, Purpose, Session
from glv_notifier.plans import TicketState


def session_of(stored: dict[str, Any] | None) -> Session | None:
    if not stored:
        return None
    return Session(
        slot_id=UUID(stored["slot_id"]),
        starts_at=datetime.fromisoformat(stored["starts_at"]),
        ends_at=datetime.fromisoformat(stored["ends_at"]),
        zone=stored["zone"],
        join_url=stored["join_url"],
        sequence=int(stored["sequence"]),
    )


def service_name(office: dict[str, Any] | None, service_code: str | None, locale: Locale) -> str | None:
    """The service's name in the stakeholder's language, from the catalog."""
    if office is None or service_code is None:
        return None
    for service in office["services"]:
        if service["service_code"] == service_code:
            return cast(str, service["name_id" if locale == "id" else "name_en"])
    return None


def with_ticket(stored: dict[str, Any], ticket: TicketState) -> dict[str, Any]:
    """The stored facts, completed from what is known of the ticket now: the events of two
    topics arrive in any order, so a slot may be told before its acceptance (and its code)."""
    known = {"ticket_code": ticket.ticket_code, "office_code": ticket.office_code, "service_code": ticket.service_code}
    return stored | {name: value for name, value in known.items() if not stored.get(name) and value}


def message_facts(notification: dict[str, Any], contact: dict[str, Any], office: dict[str, Any] | None) -> MessageFacts:
    stored: dict[str, Any] = notification["facts"]
    locale = cast(Locale, contact["locale"] if contact["locale"] in ("id", "en") else "id")
    retained = stored.get("retained_until")
    return MessageFacts(
        purpose=Purpose(notification["purpose"]),
        ticket_id=notification["ticket_id"],
        locale=locale,
        name=contact["name"],
        ticket_code=stored.get("ticket_code"),
        office=Office(office["office_code"], office["name"], office["city"], office["zone"]) if office else None,
        service_name=service_name(office, stored.get("service_code"), locale),
        session=session_of(stored.get("session")),
        reasons=tuple(stored.get("reasons") or ()),
        lead_minutes=stored.get("lead_minutes"),
        retained_until=datetime.fromisoformat(retained) if retained else None,
    )
