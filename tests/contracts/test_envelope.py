"""CloudEvents headers in and out, and the topic registry."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

import pytest

from glv_schemas.envelope import (
    CONTENT_TYPE,
    REQUIRED_HEADERS,
    SPEC_VERSION,
    CloudEvent,
    EnvelopeError,
    model_for,
    new_cloud_event,
    read_headers,
)
from glv_schemas.events import ALL_EVENTS, EventModel, TicketFiled
from glv_schemas.topics import (
    ALL_TOPICS,
    CATALOG,
    DEAD_LETTER_TOPICS,
    EVENT_TOPICS,
    PORTAL_TICKETS,
    PORTAL_UPDATES,
    SERVICES,
    consumed_by,
    dead_letter_topic,
    intake_dead_letter_topic,
    topic_of,
)

TICKET_ID = "5b0c6a2e-8f0d-4b7e-9a51-3c2d7e4f1a90"
WITA = timezone(timedelta(hours=8))


def _event() -> CloudEvent:
    return new_cloud_event(
        TicketFiled,
        source="/portals/portal-lelang",
        subject=TICKET_ID,
        time=datetime(2026, 11, 29, 10, 15, 0, 123456, tzinfo=WITA),
    )


def _headers(**overrides: bytes | None) -> list[tuple[str, bytes]]:
    headers = dict(_event().to_headers())
    for raw_name, value in overrides.items():
        name = raw_name.replace("__", "-")
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    return list(headers.items())


def _code(raw: list[tuple[str, bytes]]) -> str:
    with pytest.raises(EnvelopeError) as caught:
        read_headers(raw)
    return caught.value.code


# ------------------------------------------------------------------- headers


def test_headers_round_trip() -> None:
    event = _event()
    assert read_headers(event.to_headers()) == event
    assert read_headers(tuple(event.to_headers())) == event  # aiokafka hands over a tuple


def test_headers_are_binary_mode_cloudevents() -> None:
    headers = dict(_event().to_headers())
    assert headers["ce_specversion"] == SPEC_VERSION.encode() == b"1.0"
    assert headers["ce_type"] == b"glv.TicketFiled.v1"
    assert headers["ce_source"] == b"/portals/portal-lelang"
    assert headers["ce_subject"] == TICKET_ID.encode()
    assert headers["content-type"] == CONTENT_TYPE.encode()
    assert headers["ce_time"] == b"2026-11-29T02:15:00.123456Z"  # 10:15 WITA, sent as a UTC instant
    uuid.UUID(headers["ce_id"].decode())
    assert _event().trace_id is not None and len(_event().trace_id or "") == 32


def test_optional_headers_may_be_absent() -> None:
    event = read_headers(_headers(ce_subject=None, traceparent=None, ce_time=None, content__type=None))
    assert event.subject is None and event.traceparent is None and event.trace_id is None
    assert event.time.tzinfo is not None


def test_a_header_in_another_offset_is_the_same_instant() -> None:
    event = read_headers(_headers(ce_time=b"2026-11-29T11:15:00+09:00"))  # 11:15 WIT in Jayapura
    assert event.time == datetime(2026, 11, 29, 2, 15, tzinfo=UTC)


@pytest.mark.parametrize("name", REQUIRED_HEADERS)
def test_missing_header_is_refused(name: str) -> None:
    assert _code(_headers(**{name: None})) == "missing_header"


@pytest.mark.parametrize("name", REQUIRED_HEADERS)
def test_empty_header_is_refused(name: str) -> None:
    assert _code(_headers(**{name: b""})) == "missing_header"


def test_bad_specversion_is_refused() -> None:
    assert _code(_headers(ce_specversion=b"0.3")) == "bad_specversion"


def test_non_utf8_header_is_refused() -> None:
    assert _code(_headers(ce_source=b"/portals/\xff\xfe")) == "bad_header"


@pytest.mark.parametrize("value", [b"yesterday", b"2026-11-29T02:15:00"])
def test_bad_or_naive_time_is_refused(value: bytes) -> None:
    assert _code(_headers(ce_time=value)) == "bad_header"


def test_envelope_error_is_a_value_error_with_a_stable_code() -> None:
    error = EnvelopeError("unknown_type", "unknown event type 'x'")
    assert isinstance(error, ValueError)
    assert (error.code, error.detail) == ("unknown_type", "unknown event type 'x'")


def test_unknown_type_is_refused() -> None:
    with pytest.raises(EnvelopeError) as caught:
        model_for("glv.TicketFiled.v99")
    assert caught.value.code == "unknown_type"


@pytest.mark.parametrize("model", ALL_EVENTS, ids=[m.event_type() for m in ALL_EVENTS])
def test_every_event_type_is_dispatchable(model: EventModel) -> None:
    assert model_for(model.event_type()) is model


# ------------------------------------------------------------------ registry


def test_every_event_type_is_on_exactly_one_topic() -> None:
    # Where it is first published; a portal's updates topic carries copies (forwarded by ticketing).
    counts = Counter(model for topic in EVENT_TOPICS if topic is not PORTAL_UPDATES for model in topic.events)
    assert {model.event_type(): counts[model] for model in ALL_EVENTS} == {m.event_type(): 1 for m in ALL_EVENTS}
    for model in ALL_EVENTS:
        assert model in topic_of(model).events
    # Everything a portal may hear of its tickets, and nothing it filed itself or the catalog.
    assert set(PORTAL_UPDATES.events) == {
        m for t in EVENT_TOPICS if t not in (PORTAL_TICKETS, CATALOG, PORTAL_UPDATES) for m in t.events
    }


def test_every_topic_name_is_unique() -> None:
    names = [topic.name for topic in ALL_TOPICS]
    assert len(names) == len(set(names))


def test_event_types_are_unique_and_versioned() -> None:
    types = [model.event_type() for model in ALL_EVENTS]
    assert len(types) == len(set(types))
    for model in ALL_EVENTS:
        assert model.event_type() == f"glv.{model.event_name}.v{model.version}" and model.event_name


def test_every_topic_key_is_a_field_of_its_events_or_the_event_says_its_own() -> None:
    for topic in EVENT_TOPICS:
        for model in topic.events:
            # An erasure request is about a stakeholder, not a ticket: keyed "<portal>/<ref>".
            own_key = callable(getattr(model, "record_key", None))
            has_key = own_key or topic.key in model.model_fields
            assert has_key, f"{model.event_type()} on {topic.name} has no {topic.key}"


def test_one_dead_letter_topic_per_service_and_one_for_intake_per_intake_reader() -> None:
    intake_readers = [s for s in SERVICES if s in PORTAL_TICKETS.consumers]
    assert [t.name for t in DEAD_LETTER_TOPICS] == [f"glv.dlq.{s}" for s in SERVICES] + [
        f"glv.dlq.{s}.intake" for s in intake_readers
    ]
    for service in SERVICES:
        topic = dead_letter_topic(service)
        assert topic in ALL_TOPICS
        assert topic.events == () and topic.producers == (service,)
    for service in intake_readers:
        assert intake_dead_letter_topic(service) in ALL_TOPICS
    names = {t.name for t in ALL_TOPICS}
    assert not any(t.name.startswith("glv.dlq.") for t in EVENT_TOPICS)
    assert len([n for n in names if n.startswith("glv.dlq.")]) == len(SERVICES) + len(intake_readers)


def test_every_service_consumes_something_and_every_consumer_is_known() -> None:
    for service in SERVICES:
        assert consumed_by(service), f"{service} consumes nothing"
    for topic in EVENT_TOPICS:
        assert set(topic.consumers) <= {*SERVICES, "portals"}, topic.name
        assert topic.partitions >= 1
