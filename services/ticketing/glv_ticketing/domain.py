"""Ticketing's rules, free of I/O: what to decide about a filing, a cancellation,
a reschedule request, and how downstream events move a ticket along its life."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from glv_schemas.base import STAKEHOLDER_REF_PATTERN, TimeWindow
from glv_schemas.events import (
    CancellationRequested,
    Reason,
    RescheduleRequested,
    SessionKind,
    TicketAccepted,
    TicketFiled,
)

SUBJECT_MAX = 200
DESCRIPTION_MAX = 4000
NAME_MAX = 200
ORGANISATION_MAX = 200
WINDOWS_MAX = 5
# How far a portal's clock may run ahead of ours before its filed_at is refused.
FILED_AT_SKEW = timedelta(minutes=5)


class Status(StrEnum):
    ACCEPTED = "accepted"
    # The office decides its service in rounds: the ticket waits for the next one.
    AWAITING_ROUND = "awaiting_round"
    WAITLISTED = "waitlisted"
    # The scheduler cannot place it (no officer has the skill, unknown office, ...):
    # not final, so that the portal can still cancel it.
    UNSCHEDULABLE = "unschedulable"
    SCHEDULED = "scheduled"
    HELD = "held"
    MISSED = "missed"
    ARCHIVED = "archived"
    CANCELLED = "cancelled"
    REJECTED = "rejected"


# A ticket in one of these is done: it can be neither cancelled nor rescheduled.
FINAL = frozenset({Status.HELD, Status.MISSED, Status.ARCHIVED, Status.CANCELLED, Status.REJECTED})

# Reason code -> (Bahasa Indonesia, English).
MESSAGES: dict[str, tuple[str, str]] = {
    "invalid_schema": ("Format tiket tidak valid.", "The ticket does not match the TicketFiled schema."),
    "unknown_office": ("Kantor tidak dikenal atau tidak aktif.", "The office is unknown or not active."),
    "service_not_offered": ("Layanan tidak tersedia di kantor ini.", "The office does not offer this service."),
    "kind_mismatch": (
        "Jenis sesi tidak sesuai dengan layanan ini.",
        "The session kind does not match this service.",
    ),
    "filed_in_future": (
        "Waktu pengajuan berada di masa depan.",
        "The filing time is in the future.",
    ),
    "invalid_stakeholder_ref": (
        "ID pemohon tidak valid (1-64 karakter: huruf, angka, . _ : @ -).",
        "The stakeholder id is invalid (1-64 characters: letters, digits, . _ : @ -).",
    ),
    "no_contact_channel": (
        "Sertakan minimal satu kontak: surel atau nomor telepon.",
        "Give at least one contact channel: e-mail or phone number.",
    ),
    "text_too_long": ("Teks terlalu panjang.", "The text is too long."),
    "too_many_windows": ("Terlalu banyak pilihan waktu.", "Too many preferred windows."),
    "window_malformed": (
        "Pilihan waktu tidak valid atau lebih pendek dari durasi layanan.",
        "A preferred window is malformed or shorter than the service takes.",
    ),
    "window_in_past": (
        "Pilihan waktu sudah lewat atau terlalu dekat.",
        "A preferred window is in the past or inside the minimum notice.",
    ),
    "window_beyond_horizon": (
        "Pilihan waktu melewati batas pemesanan.",
        "A preferred window ends beyond the booking horizon.",
    ),
    "duplicate_conflict": (
        "Nomor tiket sudah dipakai dengan isi yang berbeda.",
        "This ticket id was already filed with different content.",
    ),
    "unknown_ticket": ("Tiket tidak ditemukan.", "No such ticket."),
    "already_final": (
        "Tiket sudah selesai, dibatalkan atau ditolak.",
        "The ticket is already done, cancelled or rejected.",
    ),
}


def reason(code: str, field_name: str | None = None) -> Reason:
    message_id, message_en = MESSAGES[code]
    return Reason(code=code, field=field_name, message_id=message_id, message_en=message_en)


@dataclass(frozen=True)
class ServiceRule:
    code: str
    duration_minutes: int
    min_notice_hours: int
    booking_horizon_days: int
    # None: the catalog does not say (ServiceOffering carries no kind yet), so any kind is taken.
    kind: SessionKind | None = None


@dataclass(frozen=True)
class Office:
    code: str
    zone: str
    services: dict[str, ServiceRule]
    active: bool = True


@dataclass
class Ticket:
    """What ticketing keeps of a ticket: ids, routing and status, no personal data."""

    ticket_id: str
    portal_id: str
    content_hash: str
    status: Status
    office_code: str
    service_code: str
    ticket_code: str | None = None


# --------------------------------------------------------------------- filings


@dataclass(frozen=True)
class Accept:
    office: Office
    local_day: date


@dataclass(frozen=True)
class Reject:
    reasons: list[Reason]


@dataclass(frozen=True)
class Duplicate:
    """The same ticket filed again with the same content: no second decision."""


FilingDecision = Accept | Reject | Duplicate


def content_hash(filed: TicketFiled) -> str:
    """Fingerprint of a filing, to tell a harmless resubmission from a conflicting one."""
    return hashlib.sha256(filed.model_dump_json(exclude={"filed_at"}).encode()).hexdigest()


def check_windows(
    windows: list[TimeWindow], rule: ServiceRule, now: datetime, field_name: str = "preferred_windows"
) -> list[Reason]:
    problems: list[Reason] = []
    if len(windows) > WINDOWS_MAX:
        problems.append(reason("too_many_windows", field_name))
    earliest = now + timedelta(hours=rule.min_notice_hours)
    horizon = now + timedelta(days=rule.booking_horizon_days)
    for index, window in enumerate(windows[:WINDOWS_MAX]):
        where = f"{field_name}[{index}]"
        if window.end - window.start < timedelta(minutes=rule.duration_minutes):
            problems.append(reason("window_malformed", where))
        elif window.end - timedelta(minutes=rule.duration_minutes) < earliest:
            problems.append(reason("window_in_past", where))
        elif window.start > horizon or window.end > horizon + timedelta(days=1):
            problems.append(reason("window_beyond_horizon", where))
    return problems


def decide_filing(filed: TicketFiled, existing: Ticket | None, office: Office | None, now: datetime) -> FilingDecision:
    if existing is not None:
        if existing.content_hash == content_hash(filed):
            return Duplicate()
        return Reject([reason("duplicate_conflict", "ticket_id")])

    problems: list[Reason] = []
    if filed.filed_at - now > FILED_AT_SKEW:
        problems.append(reason("filed_in_future", "filed_at"))
    rule: ServiceRule | None = None
    if office is None or not office.active:
        problems.append(reason("unknown_office", "office_code"))
    else:
        rule = office.services.get(filed.service_code)
        if rule is None:
            problems.append(reason("service_not_offered", "service_code"))
        elif rule.kind is not None and filed.kind != rule.kind:
            problems.append(reason("kind_mismatch", "kind"))
    person = filed.stakeholder
    if not STAKEHOLDER_REF_PATTERN.fullmatch(person.stakeholder_ref):
        problems.append(reason("invalid_stakeholder_ref", "stakeholder.stakeholder_ref"))
    if not person.email and not person.phone:
        problems.append(reason("no_contact_channel", "stakeholder"))
    for name, text, limit in (
        ("subject", filed.subject, SUBJECT_MAX),
        ("description", filed.description, DESCRIPTION_MAX),
        ("stakeholder.name", person.name, NAME_MAX),
        ("stakeholder.organisation", person.organisation or "", ORGANISATION_MAX),
    ):
        if len(text) > limit:
            problems.append(reason("text_too_long", name))
    if rule is not None:
        problems.extend(check_windows(filed.preferred_windows, rule, now))
    if problems:
        return Reject(problems)
    assert office is not None
    return Accept(office=office, local_day=now.astimezone(ZoneInfo(office.zone)).date())


def format_ticket_code(office_code: str, local_day: date, number: int) -> str:
    """e.g. PLP-261129-0042: office, the office's local day, the day's running number."""
    return f"{office_code}-{local_day:%y%m%d}-{number:04d}"


# ------------------------------------------------------ cancellation, reschedule


@dataclass(frozen=True)
class Approve:
    """The request is granted."""


@dataclass(frozen=True)
class Refuse:
    reasons: list[Reason]


def decide_cancellation(request: CancellationRequested, ticket: Ticket | None) -> Approve | Refuse:
    # Another portal's ticket reads as unknown: a portal learns nothing of others' tickets.
    if ticket is None or ticket.portal_id != request.portal_id:
        return Refuse([reason("unknown_ticket", "ticket_id")])
    if ticket.status in FINAL:
        return Refuse([reason("already_final", "ticket_id")])
    return Approve()


def decide_reschedule(
    request: RescheduleRequested, ticket: Ticket | None, office: Office | None, now: datetime
) -> Approve | Refuse:
    if ticket is None or ticket.portal_id != request.portal_id:
        return Refuse([reason("unknown_ticket", "ticket_id")])
    if ticket.status in FINAL:
        return Refuse([reason("already_final", "ticket_id")])
    rule = office.services.get(ticket.service_code) if office is not None else None
    if rule is None:
        return Refuse([reason("service_not_offered", "service_code")])
    problems = check_windows(request.preferred_windows, rule, now)
    return Refuse(problems) if problems else Approve()


# ------------------------------------------------------------------- lifecycle


@dataclass(frozen=True)
class Transition:
    """A downstream fact about a ticket: the history entry and the status it leads to."""

    entry: str
    status: Status | None = None  # None: recorded in the history, status unchanged
    detail: dict[str, str] = field(default_factory=dict)


# The only way out of a final state: a held session's recordings get archived.
_FROM_FINAL = frozenset({(Status.HELD, Status.ARCHIVED)})


def next_status(current: Status, transition: Transition) -> Status:
    """Where a ticket goes; a final state is kept (late or stray events are history only)."""
    if transition.status is None:
        return current
    if current in FINAL and (current, transition.status) not in _FROM_FINAL:
        return current
    return transition.status


def acceptance_event(filed: TicketFiled, ticket_code: str, accepted_at: datetime) -> TicketAccepted:
    """What ticketing publishes for an accepted filing: ids, routing and the stakeholder's
    reference and locale, none of the contact details."""
    return TicketAccepted(
        ticket_id=filed.ticket_id,
        ticket_code=ticket_code,
        portal_id=filed.portal_id,
        office_code=filed.office_code,
        service_code=filed.service_code,
        kind=filed.kind,
        stakeholder_ref=filed.stakeholder.stakeholder_ref,
        locale=filed.stakeholder.locale,
        preferred_windows=filed.preferred_windows,
        filed_at=filed.filed_at,
        accepted_at=accepted_at,
    )
