"""Sample facts for every purpose: what `check_templates` renders before a service trusts an
edited templates folder, and what a newcomer can render to see the messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final
from uuid import UUID

from glv_notifier.messages import Locale, MessageFacts, Office, Purpose, Session

# Markup and quotes in the name: a template that lets the name through unescaped
# (`{{ name|safe }}`) is caught by the check, not by a stakeholder.
SAMPLE_NAME_MARKUP: Final = "<b>Aminah</b>"
SAMPLE_NAME: Final = f'Siti {SAMPLE_NAME_MARKUP} & "Rekan"'
SAMPLE_TICKET_ID: Final = UUID("6f1c2b4e-9a0d-4c4e-8b7a-3d2f1e0c9b8a")
SAMPLE_JOIN_URL: Final = "https://meet.glv.example/PLP-261203-0042?jwt=eyJhbGciOi"
# 01:00 UTC: 08.00 WIB, 09.00 WITA, 10.00 WIT.
SAMPLE_START: Final = datetime(2026, 12, 3, 1, 0, tzinfo=UTC)

# An unknown code in every list, so that each section's default wording is rendered too.
_SAMPLE_REASONS: Final[dict[Purpose, tuple[str, ...]]] = {
    Purpose.REJECTION: ("window_in_past", "no_contact_channel", "a_code_not_known_yet"),
    Purpose.WAITLISTED: ("no_capacity",),
    Purpose.UNSCHEDULABLE: ("no_officer", "a_code_not_known_yet"),
    Purpose.MISSED: ("stakeholder",),
}


def sample_facts(purpose: Purpose, locale: Locale, *, zone: str = "Asia/Makassar") -> MessageFacts:
    """Every fact a message of this purpose can state, for an office in `zone`."""
    office = Office(code="PLP", name="KPKNL Palopo", city="Palopo", zone=zone)
    session = Session(
        slot_id=UUID("0b9e7d1c-2f3a-4b5c-8d6e-7f8091a2b3c4"),
        starts_at=SAMPLE_START,
        ends_at=SAMPLE_START + timedelta(minutes=30),
        zone=zone,
        join_url=SAMPLE_JOIN_URL,
        sequence={Purpose.RESCHEDULED: 1, Purpose.CANCELLED: 2}.get(purpose, 0),
    )
    return MessageFacts(
        purpose=purpose,
        ticket_id=SAMPLE_TICKET_ID,
        locale=locale,
        name=SAMPLE_NAME,
        ticket_code="PLP-261129-0042",
        office=office,
        service_name="Konsultasi Lelang" if locale == "id" else "Auction consultation",
        session=session,
        reasons=_SAMPLE_REASONS.get(purpose, ()),
        lead_minutes=24 * 60,
        retained_until=datetime(2031, 12, 3, tzinfo=UTC),
        extra={"portal_url": "https://portal.glv.example/tiket"},
    )
