"""A portal simulator: builds and publishes what upstream portals file."""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer
from pydantic import BaseModel

from glv_schemas import new_cloud_event
from glv_schemas.base import Event, TimeWindow
from glv_schemas.events import Meeting, SlotAssigned, Stakeholder, TicketAccepted, TicketFiled
from glv_schemas.topics import topic_name_of
from glv_ticketing.domain import acceptance_event

FIRST_NAMES = ("Andi", "Siti", "Made", "Yohanes", "Nurul", "Daeng", "Ketut", "Marthen", "Rina", "Agus")
LAST_NAMES = ("Pratama", "Rahayu", "Wijaya", "Mandacan", "Sulistyo", "Hasanuddin", "Suwirya", "Wenda")


def stakeholder(rng: random.Random, *, email: bool = True, phone: bool = True) -> Stakeholder:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    return Stakeholder(
        stakeholder_ref=f"person-{rng.randrange(10**8):08d}",
        name=f"{first} {last}",
        email=f"{first}.{last}{rng.randrange(100)}@example.co.id".lower() if email else None,
        phone=f"+62812{rng.randrange(10**7):07d}" if phone else None,
        national_id=f"{rng.randrange(10**15, 10**16)}",
        locale=rng.choice(("id", "id", "en")),
    )


def ticket(
    rng: random.Random,
    *,
    portal_id: str,
    office_code: str,
    service_code: str,
    now: datetime | None = None,
    window_days: int = 3,
    email: bool = True,
    phone: bool = True,
) -> TicketFiled:
    now = now or datetime.now(UTC)
    day = (now + timedelta(days=window_days)).replace(minute=0, second=0, microsecond=0)
    return TicketFiled(
        ticket_id=uuid.UUID(int=rng.getrandbits(128), version=4),
        portal_id=portal_id,
        office_code=office_code,
        service_code=service_code,
        subject="Konsultasi " + service_code.replace("-", " "),
        description="Mohon dijadwalkan konsultasi daring.",
        stakeholder=stakeholder(rng, email=email, phone=phone),
        preferred_windows=[TimeWindow(start=day, end=day + timedelta(hours=3))],
        filed_at=now,
    )


@dataclass(frozen=True)
class RawRecord:
    """A record as a portal might send it, possibly broken on purpose."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def record_for(event: BaseModel, *, source: str, event_id: str | None = None) -> RawRecord:
    model = type(event)
    own_key = getattr(event, "record_key", None)
    key = own_key() if callable(own_key) else str(getattr(event, "ticket_id", getattr(event, "office_code", "")))
    cloud_event = new_cloud_event(model, source=source, subject=key, event_id=event_id)  # type: ignore[arg-type]
    return RawRecord(
        topic=topic_name_of(event),
        key=key.encode(),
        value=event.model_dump_json().encode(),
        headers=cloud_event.to_headers(),
    )


class PortalClient:
    """Publishes records the way a portal does: keyed by ticket id, CloudEvents headers."""

    def __init__(self, bootstrap: str, prefix: str = "", **client_options: Any) -> None:
        """`client_options`: aiokafka's security arguments, for a portal on a secured broker."""
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=5, **client_options
        )
        self._prefix = prefix

    async def __aenter__(self) -> PortalClient:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    async def send(self, records: Sequence[RawRecord]) -> None:
        futures = [
            await self._producer.send(self._prefix + r.topic, value=r.value, key=r.key, headers=r.headers)
            for r in records
        ]
        for future in futures:
            await future

    async def file(self, events: Sequence[Event], source: str = "/portal/sim") -> None:
        await self.send([record_for(e, source=source) for e in events])


def slot_for(filed: TicketFiled, zone: str, starts: datetime, replaces: uuid.UUID | None = None) -> SlotAssigned:
    """What a scheduler would publish for this ticket (for tests and simulations)."""
    ends = starts + timedelta(hours=1)
    return SlotAssigned(
        ticket_id=filed.ticket_id,
        slot_id=uuid.uuid4(),
        office_code=filed.office_code,
        office_zone=zone,
        service_code=filed.service_code,
        officer_id="officer-17",
        starts_at=starts,
        ends_at=ends,
        meeting=Meeting(
            provider="jitsi",
            room_id=uuid.uuid4().hex,
            join_url="https://meet.example.go.id/room",
            valid_from=starts - timedelta(minutes=15),
            valid_until=ends + timedelta(minutes=30),
        ),
        replaces_slot_id=replaces,
        assigned_at=datetime.now(UTC),
    )


def accepted_for(filed: TicketFiled, ticket_code: str) -> TicketAccepted:
    """What ticketing would decide for a sound filing (to drive a scheduler alone)."""
    return acceptance_event(filed, ticket_code, datetime.now(UTC))
