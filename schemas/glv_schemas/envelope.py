"""CloudEvents 1.0 in the Kafka protocol binding, binary content mode.

The attributes travel as `ce_*` headers; the Kafka value is the event's JSON
data and the Kafka key is the ticket id (or office code on the catalog topic).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from glv_schemas.events import EVENTS_BY_TYPE, EventModel

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"
REQUIRED_HEADERS = ("ce_id", "ce_source", "ce_type", "ce_specversion")


class EnvelopeError(ValueError):
    """A message that is not a GLV CloudEvent; `code` is a stable reason code."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class CloudEvent:
    id: str
    source: str
    type: str
    time: datetime
    subject: str | None
    traceparent: str | None = None

    @property
    def trace_id(self) -> str | None:
        # W3C traceparent: version-traceid-parentid-flags
        if self.traceparent and self.traceparent.count("-") == 3:
            return self.traceparent.split("-")[1]
        return None

    def to_headers(self) -> list[tuple[str, bytes]]:
        headers = [
            ("ce_specversion", SPEC_VERSION),
            ("ce_id", self.id),
            ("ce_source", self.source),
            ("ce_type", self.type),
            ("ce_time", self.time.astimezone(UTC).isoformat().replace("+00:00", "Z")),
            ("content-type", CONTENT_TYPE),
        ]
        if self.subject is not None:
            headers.append(("ce_subject", self.subject))
        if self.traceparent is not None:
            headers.append(("traceparent", self.traceparent))
        return [(name, value.encode()) for name, value in headers]


def new_traceparent() -> str:
    return f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"


def new_cloud_event(
    model: EventModel,
    *,
    source: str,
    subject: str | None,
    traceparent: str | None = None,
    event_id: str | None = None,
    time: datetime | None = None,
) -> CloudEvent:
    return CloudEvent(
        id=event_id or str(uuid.uuid4()),
        source=source,
        type=model.event_type(),
        time=time or datetime.now(UTC),
        subject=subject,
        traceparent=traceparent or new_traceparent(),
    )


def read_headers(raw_headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...]) -> CloudEvent:
    """Read CloudEvents attributes from Kafka headers, refusing anything malformed."""
    headers: dict[str, str] = {}
    for name, value in raw_headers:
        try:
            headers[name] = value.decode() if value is not None else ""
        except UnicodeDecodeError as exc:
            raise EnvelopeError("bad_header", f"header {name!r} is not UTF-8") from exc
        if "\x00" in headers[name] and name.startswith("ce_"):
            raise EnvelopeError("bad_header", f"header {name!r} holds a NUL character")
    missing = [h for h in REQUIRED_HEADERS if not headers.get(h)]
    if missing:
        raise EnvelopeError("missing_header", f"missing CloudEvents headers: {', '.join(missing)}")
    if headers["ce_specversion"] != SPEC_VERSION:
        raise EnvelopeError("bad_specversion", f"specversion {headers['ce_specversion']!r} is not {SPEC_VERSION}")
    raw_time = headers.get("ce_time")
    try:
        time = datetime.fromisoformat(raw_time) if raw_time else datetime.now(UTC)
    except ValueError as exc:
        raise EnvelopeError("bad_header", "ce_time is not an RFC 3339 time") from exc
    if time.tzinfo is None:
        raise EnvelopeError("bad_header", "ce_time has no offset")
    return CloudEvent(
        id=headers["ce_id"],
        source=headers["ce_source"],
        type=headers["ce_type"],
        time=time,
        subject=headers.get("ce_subject"),
        traceparent=headers.get("traceparent"),
    )


def model_for(event_type: str) -> EventModel:
    try:
        return EVENTS_BY_TYPE[event_type]
    except KeyError as exc:
        raise EnvelopeError("unknown_type", f"unknown event type {event_type!r}") from exc
