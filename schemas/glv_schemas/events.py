"""Every event GLV exchanges, one Pydantic model each.

Personal data appears only in TicketFiled (the notifier needs the contact; the
ticketing service hashes it for duplicate detection and keeps none of it). Every
other event carries ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Annotated, ClassVar, Literal
from uuid import UUID

from pydantic import EmailStr, Field, HttpUrl

from glv_schemas.base import (
    Event,
    Model,
    OfficeCode,
    Slug,
    TicketCode,
    TimeWindow,
    UtcInstant,
)

SessionKind = Literal["consultation", "internal_meeting", "webinar"]
Locale = Literal["id", "en"]
ArtifactKind = Literal["video", "audio", "chat"]
Channel = Literal["email", "sms", "whatsapp"]

# Hard caps that bound a message's memory; the business limits are tighter and
# live in each service's domain rules so that they can give a reason code.
_TEXT_CAP = 20_000
_WINDOWS_CAP = 50


# --------------------------------------------------------------------- portal ->


class Stakeholder(Model):
    stakeholder_ref: Annotated[str, Field(min_length=1, max_length=128, description="The portal's id of the person")]
    name: Annotated[str, Field(min_length=1, max_length=_TEXT_CAP)]
    organisation: Annotated[str | None, Field(max_length=_TEXT_CAP)] = None
    email: EmailStr | None = None
    phone: Annotated[str | None, Field(pattern=r"^\+?[0-9]{6,16}$", description="E.164 digits")] = None
    national_id: Annotated[str | None, Field(pattern=r"^[0-9]{16}$", description="NIK, 16 digits")] = None
    locale: Locale = "id"


class TicketFiled(Event):
    """A portal files a service request (on its own topic glv.portal.{portal_id}.tickets)."""

    event_name = "TicketFiled"

    portal_id: Slug
    office_code: OfficeCode
    service_code: Slug
    kind: SessionKind = "consultation"
    subject: Annotated[str, Field(min_length=1, max_length=_TEXT_CAP)]
    description: Annotated[str, Field(max_length=_TEXT_CAP)] = ""
    stakeholder: Stakeholder
    # pydantic copies a default per instance, so a shared list is safe here.
    preferred_windows: Annotated[list[TimeWindow], Field(max_length=_WINDOWS_CAP)] = []  # noqa: RUF012
    filed_at: UtcInstant


class CancellationRequested(Event):
    """A portal asks to cancel one of its tickets."""

    event_name = "CancellationRequested"

    portal_id: Slug
    reason: Annotated[str, Field(max_length=_TEXT_CAP)] = ""
    requested_at: UtcInstant


class ErasureRequested(Model):
    """A portal asks GLV to erase what it archived of one of its stakeholders (UU PDP art. 8).

    Not about one ticket, so not an `Event`: keyed by the portal and the stakeholder."""

    event_name: ClassVar[str] = "ErasureRequested"
    version: ClassVar[int] = 1

    request_id: UUID
    portal_id: Slug
    stakeholder_ref: Annotated[str, Field(min_length=1, max_length=128, description="The portal's id of the person")]
    requested_at: UtcInstant

    @classmethod
    def event_type(cls) -> str:
        return f"glv.{cls.event_name}.v{cls.version}"

    def record_key(self) -> str:
        """Its records' key: one stakeholder's requests stay in order on one partition."""
        return f"{self.portal_id}/{self.stakeholder_ref}"


class RescheduleRequested(Event):
    """A portal asks for a new slot inside new preferred windows."""

    event_name = "RescheduleRequested"

    portal_id: Slug
    preferred_windows: Annotated[list[TimeWindow], Field(min_length=1, max_length=_WINDOWS_CAP)]
    requested_at: UtcInstant


# ------------------------------------------------------------------ ticketing ->


class Reason(Model):
    """Why something was refused: a stable code for machines, words for people."""

    code: Slug
    field: str | None = None
    message_id: str
    message_en: str


class TicketAccepted(Event):
    event_name = "TicketAccepted"

    ticket_code: TicketCode
    portal_id: Slug
    office_code: OfficeCode
    service_code: Slug
    kind: SessionKind
    stakeholder_ref: str
    locale: Locale
    preferred_windows: list[TimeWindow]
    filed_at: UtcInstant
    accepted_at: UtcInstant


class TicketRejected(Event):
    event_name = "TicketRejected"

    portal_id: str
    reasons: Annotated[list[Reason], Field(min_length=1)]
    rejected_at: UtcInstant


class TicketCancelled(Event):
    event_name = "TicketCancelled"

    ticket_code: TicketCode
    portal_id: Slug
    office_code: OfficeCode
    cancelled_at: UtcInstant


class CancellationRefused(Event):
    event_name = "CancellationRefused"

    portal_id: Slug
    reasons: Annotated[list[Reason], Field(min_length=1)]
    refused_at: UtcInstant


class RescheduleApproved(Event):
    """Ticketing checked a RescheduleRequested; the scheduler acts on this one."""

    event_name = "RescheduleApproved"

    ticket_code: TicketCode
    office_code: OfficeCode
    service_code: Slug
    preferred_windows: list[TimeWindow]
    approved_at: UtcInstant


class ErasureApproved(ErasureRequested):
    """Ticketing checked an ErasureRequested (its portal is the topic's); the archive acts on it."""

    event_name: ClassVar[str] = "ErasureApproved"

    approved_at: UtcInstant


class RescheduleRefused(Event):
    event_name = "RescheduleRefused"

    portal_id: Slug
    reasons: Annotated[list[Reason], Field(min_length=1)]
    refused_at: UtcInstant


# ------------------------------------------------------------------ scheduler ->


class Meeting(Model):
    provider: Literal["jitsi", "bigbluebutton"]
    room_id: Annotated[str, Field(min_length=22, description="Unguessable: at least 128 random bits")]
    join_url: HttpUrl
    valid_from: UtcInstant
    valid_until: UtcInstant


class SlotAssigned(Event):
    event_name = "SlotAssigned"

    slot_id: UUID
    office_code: OfficeCode
    office_zone: str = Field(description="IANA zone of the office, e.g. Asia/Makassar")
    service_code: Slug
    officer_id: str
    starts_at: UtcInstant
    ends_at: UtcInstant
    meeting: Meeting
    replaces_slot_id: UUID | None = None
    assigned_at: UtcInstant


class AssignmentPending(Event):
    """The office decides this service in rounds: the ticket is assigned at `round_at`, with the
    other tickets of that round (a SlotAssigned, or SchedulingFailed when no slot is left)."""

    event_name = "AssignmentPending"

    office_code: OfficeCode
    service_code: Slug
    round_at: UtcInstant
    pending_at: UtcInstant


class SlotReleased(Event):
    event_name = "SlotReleased"

    slot_id: UUID
    office_code: OfficeCode
    officer_id: str
    reason: Literal["cancelled", "rescheduled", "missed"]
    released_at: UtcInstant


class SchedulingFailed(Event):
    event_name = "SchedulingFailed"

    office_code: OfficeCode
    service_code: Slug
    reason: Slug
    waitlisted: bool
    failed_at: UtcInstant


class Attendance(Model):
    role: Literal["officer", "stakeholder", "guest"]
    participant_ref: str
    joined_at: UtcInstant
    left_at: UtcInstant | None = None


class Artifact(Model):
    kind: ArtifactKind
    url: HttpUrl
    content_type: str
    size_bytes: Annotated[int, Field(ge=0)]
    sha256: Annotated[str | None, Field(pattern=r"^[0-9a-f]{64}$")] = None


class SessionHeld(Event):
    event_name = "SessionHeld"

    session_id: UUID
    slot_id: UUID
    office_code: OfficeCode
    started_at: UtcInstant
    ended_at: UtcInstant
    attendance: list[Attendance]
    artifacts: list[Artifact]


class SessionMissed(Event):
    event_name = "SessionMissed"

    session_id: UUID
    slot_id: UUID
    office_code: OfficeCode
    missing_party: Literal["stakeholder", "officer", "both"]
    recorded_at: UtcInstant


# -------------------------------------------------------------------- archive ->


class ArchivedItem(Model):
    kind: ArtifactKind
    object_key: str
    content_type: str
    size_bytes: Annotated[int, Field(ge=0)]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class RecordingArchived(Event):
    event_name = "RecordingArchived"

    session_id: UUID
    archive_id: UUID
    items: Annotated[list[ArchivedItem], Field(min_length=1)]
    retention_until: UtcInstant
    archived_at: UtcInstant


class ArchiveFailed(Event):
    event_name = "ArchiveFailed"

    session_id: UUID
    reason: Slug
    retryable: bool
    failed_at: UtcInstant


class ArtifactProblem(Model):
    kind: ArtifactKind
    reason: Slug
    detail: Annotated[str, Field(max_length=500, description="Human words; never a URL's query")] = ""


class ArchiveFailedV2(ArchiveFailed):
    """v2 says which artifacts are missing or corrupt and why (a v1 reader would refuse the
    new field: hence a new version)."""

    version: ClassVar[int] = 2

    problems: Annotated[list[ArtifactProblem], Field(min_length=1, max_length=100)]


class ArchiveErased(Event):
    """What the archive erased of one ticket's sessions for an erasure request (or a purge at
    the end of retention): data keys destroyed, blobs deleted."""

    event_name = "ArchiveErased"

    request_id: UUID | None = Field(description="The ErasureRequested's, or null for a retention purge")
    cause: Literal["erasure_request", "retention"]
    sessions: Annotated[int, Field(ge=0)]
    objects: Annotated[int, Field(ge=0)]
    erased_at: UtcInstant


# ------------------------------------------------------------------- notifier ->


class NotificationSent(Event):
    event_name = "NotificationSent"

    notification_id: UUID
    channel: Channel
    purpose: Slug
    sent_at: UtcInstant


class NotificationFailed(Event):
    event_name = "NotificationFailed"

    notification_id: UUID
    channel: Channel
    purpose: Slug
    reason: Slug
    will_retry: bool
    failed_at: UtcInstant


# --------------------------------------------------------------------- catalog ->


class ServiceOffering(Model):
    service_code: Slug
    name_id: str
    name_en: str
    duration_minutes: Annotated[int, Field(gt=0, le=480)]
    min_notice_hours: Annotated[int, Field(ge=0)] = 24
    booking_horizon_days: Annotated[int, Field(gt=0, le=365)] = 30


# How far ahead of a reader's clock a catalog entry's updated_at may be: clocks differ by
# seconds, not minutes. Readers keep an office's newest entry, so one dated further ahead
# would win over every correct entry published until that time comes.
CATALOG_CLOCK_SKEW = timedelta(minutes=5)


class OfficeCatalogUpdated(Model):
    """One office's catalog entry on the compacted topic glv.catalog, keyed by office code.

    Not tied to a ticket, so it is not an `Event` subclass; a tombstone (null value)
    removes the office.
    """

    event_name: ClassVar[str] = "OfficeCatalogUpdated"
    version: ClassVar[int] = 1

    office_code: OfficeCode
    name: str
    city: str
    zone: Literal["Asia/Jakarta", "Asia/Makassar", "Asia/Jayapura"]
    services: Sequence[ServiceOffering]
    updated_at: UtcInstant

    @classmethod
    def event_type(cls) -> str:
        return f"glv.{cls.event_name}.v{cls.version}"

    def is_from_the_future(self, now: datetime) -> bool:
        """Whether `updated_at` is more than CATALOG_CLOCK_SKEW ahead of `now`: the loader
        refuses such an entry, and a reader ignores it (with a warning naming the office)."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        return self.updated_at > now + CATALOG_CLOCK_SKEW


class ServiceOfferingV2(ServiceOffering):
    kind: SessionKind


class OfficeCatalogUpdatedV2(OfficeCatalogUpdated):
    """v2 adds each service's session kind, so that ticketing can refuse a filing whose
    kind contradicts it (a v1 reader would refuse the new field: hence a new version)."""

    version: ClassVar[int] = 2

    services: Sequence[ServiceOfferingV2]


TICKET_EVENTS: tuple[type[Event], ...] = (
    TicketFiled,
    CancellationRequested,
    RescheduleRequested,
    TicketAccepted,
    TicketRejected,
    TicketCancelled,
    CancellationRefused,
    RescheduleApproved,
    RescheduleRefused,
    SlotAssigned,
    AssignmentPending,
    SlotReleased,
    SchedulingFailed,
    SessionHeld,
    SessionMissed,
    RecordingArchived,
    ArchiveFailed,
    ArchiveFailedV2,
    ArchiveErased,
    NotificationSent,
    NotificationFailed,
)

EventModel = type[Event] | type[OfficeCatalogUpdated] | type[ErasureRequested]
ALL_EVENTS: tuple[EventModel, ...] = (
    *TICKET_EVENTS,
    OfficeCatalogUpdated,
    OfficeCatalogUpdatedV2,
    ErasureRequested,
    ErasureApproved,
)
EVENTS_BY_TYPE: dict[str, EventModel] = {model.event_type(): model for model in ALL_EVENTS}
