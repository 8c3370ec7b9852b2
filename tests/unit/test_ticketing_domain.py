"""Ticketing's rules with plain values."""

from __future__ import annotations

import random
import string
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from glv_devtools.portal import ticket
from glv_schemas.events import CancellationRequested, RescheduleRequested, TimeWindow
from glv_ticketing.domain import (
    FILED_AT_SKEW,
    MESSAGES,
    Accept,
    Approve,
    Duplicate,
    Office,
    Refuse,
    Reject,
    ServiceRule,
    Status,
    Ticket,
    Transition,
    content_hash,
    decide_cancellation,
    decide_filing,
    decide_reschedule,
    format_ticket_code,
    next_status,
)

NOW = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
LELANG = ServiceRule("lelang", duration_minutes=45, min_notice_hours=24, booking_horizon_days=30)
PALOPO = Office("PLP", "Asia/Makassar", {"lelang": LELANG})


def filed(**changes: object):  # type: ignore[no-untyped-def]
    base = ticket(random.Random(7), portal_id="sim-portal", office_code="PLP", service_code="lelang", now=NOW)
    return base.model_copy(update=changes)


def codes(decision: object) -> list[str]:
    assert isinstance(decision, Reject | Refuse), decision
    return [r.code for r in decision.reasons]


def test_a_sound_filing_is_accepted_on_the_offices_local_day() -> None:
    late = NOW.replace(hour=17)  # 01:00 next day in Palopo (UTC+8)
    decision = decide_filing(filed(filed_at=late), None, PALOPO, late)
    assert decision == Accept(PALOPO, date(2026, 11, 30))


def test_unknown_office_and_service() -> None:
    assert codes(decide_filing(filed(), None, None, NOW)) == ["unknown_office"]
    office = Office("PLP", "Asia/Makassar", {})
    assert codes(decide_filing(filed(), None, office, NOW)) == ["service_not_offered"]
    inactive = Office("PLP", "Asia/Makassar", {"lelang": LELANG}, active=False)
    assert codes(decide_filing(filed(), None, inactive, NOW)) == ["unknown_office"]


def test_at_least_one_contact_channel() -> None:
    base = filed()
    nobody = base.stakeholder.model_copy(update={"email": None, "phone": None})
    assert codes(decide_filing(base.model_copy(update={"stakeholder": nobody}), None, PALOPO, NOW)) == [
        "no_contact_channel"
    ]
    phone_only = base.stakeholder.model_copy(update={"email": None})
    assert isinstance(decide_filing(base.model_copy(update={"stakeholder": phone_only}), None, PALOPO, NOW), Accept)


def test_text_lengths_are_bounded() -> None:
    assert codes(decide_filing(filed(subject="x" * 201), None, PALOPO, NOW)) == ["text_too_long"]
    assert codes(decide_filing(filed(description="x" * 4001), None, PALOPO, NOW)) == ["text_too_long"]


def window(start_in: timedelta, length: timedelta) -> TimeWindow:
    return TimeWindow(start=NOW + start_in, end=NOW + start_in + length)


@pytest.mark.parametrize(
    ("windows", "expected"),
    [
        ([window(timedelta(days=2), timedelta(minutes=30))], ["window_malformed"]),
        ([window(timedelta(hours=-5), timedelta(hours=3))], ["window_in_past"]),
        ([window(timedelta(hours=2), timedelta(hours=3))], ["window_in_past"]),  # inside the 24 h notice
        ([window(timedelta(days=40), timedelta(hours=3))], ["window_beyond_horizon"]),
        ([window(timedelta(days=2), timedelta(hours=1))] * 6, ["too_many_windows"]),
        ([], []),
    ],
)
def test_preferred_windows(windows: list[TimeWindow], expected: list[str]) -> None:
    decision = decide_filing(filed(preferred_windows=windows), None, PALOPO, NOW)
    if expected:
        assert codes(decision) == expected
    else:
        assert isinstance(decision, Accept)


def test_resubmission_same_content_is_a_no_op_and_different_content_a_conflict() -> None:
    first = filed()
    existing = Ticket(str(first.ticket_id), "sim-portal", content_hash(first), Status.ACCEPTED, "PLP", "lelang")
    assert decide_filing(first, existing, PALOPO, NOW) == Duplicate()
    assert codes(decide_filing(first.model_copy(update={"subject": "Lain"}), existing, PALOPO, NOW)) == [
        "duplicate_conflict"
    ]


def test_ticket_code_format() -> None:
    assert format_ticket_code("PLP", date(2026, 11, 29), 42) == "PLP-261129-0042"
    assert format_ticket_code("JKT", date(2026, 1, 2), 12345) == "JKT-260102-12345"


def test_cancellation_rules() -> None:
    ticket_id = uuid.uuid4()
    request = CancellationRequested(ticket_id=ticket_id, portal_id="sim-portal", requested_at=NOW)
    live = Ticket(str(ticket_id), "sim-portal", "h", Status.SCHEDULED, "PLP", "lelang", "PLP-261129-0001")
    assert decide_cancellation(request, live) == Approve()
    assert codes(decide_cancellation(request, None)) == ["unknown_ticket"]
    others = Ticket(str(ticket_id), "other-portal", "h", Status.SCHEDULED, "PLP", "lelang", "PLP-261129-0001")
    assert codes(decide_cancellation(request, others)) == ["unknown_ticket"]
    for final in (Status.HELD, Status.CANCELLED, Status.REJECTED, Status.ARCHIVED, Status.MISSED):
        done = Ticket(str(ticket_id), "sim-portal", "h", final, "PLP", "lelang", "PLP-261129-0001")
        assert codes(decide_cancellation(request, done)) == ["already_final"]


def test_reschedule_checks_the_new_windows() -> None:
    ticket_id = uuid.uuid4()
    live = Ticket(str(ticket_id), "sim-portal", "h", Status.SCHEDULED, "PLP", "lelang", "PLP-261129-0001")
    good = RescheduleRequested(
        ticket_id=ticket_id,
        portal_id="sim-portal",
        requested_at=NOW,
        preferred_windows=[window(timedelta(days=3), timedelta(hours=2))],
    )
    assert decide_reschedule(good, live, PALOPO, NOW) == Approve()
    past = good.model_copy(update={"preferred_windows": [window(timedelta(days=-3), timedelta(hours=2))]})
    assert codes(decide_reschedule(past, live, PALOPO, NOW)) == ["window_in_past"]


def test_final_states_hold_except_held_to_archived() -> None:
    assert next_status(Status.HELD, Transition("archived", Status.ARCHIVED)) == Status.ARCHIVED
    assert next_status(Status.CANCELLED, Transition("scheduled", Status.SCHEDULED)) == Status.CANCELLED
    assert next_status(Status.ACCEPTED, Transition("slot_released", None)) == Status.ACCEPTED
    assert next_status(Status.WAITLISTED, Transition("scheduled", Status.SCHEDULED)) == Status.SCHEDULED


@given(
    minutes_from_now=st.integers(min_value=-60 * 24 * 60, max_value=60 * 24 * 60),
    length_minutes=st.integers(min_value=1, max_value=60 * 24 * 3),
    hour=st.integers(min_value=0, max_value=23),
)
def test_an_accepted_windows_fits_notice_duration_and_horizon(
    minutes_from_now: int, length_minutes: int, hour: int
) -> None:
    now = NOW.replace(hour=hour)
    start = now + timedelta(minutes=minutes_from_now)
    windows = [TimeWindow(start=start, end=start + timedelta(minutes=length_minutes))]
    decision = decide_filing(filed(preferred_windows=windows, filed_at=now), None, PALOPO, now)
    if isinstance(decision, Accept):
        w = windows[0]
        assert w.end - w.start >= timedelta(minutes=LELANG.duration_minutes)
        assert w.end - timedelta(minutes=LELANG.duration_minutes) >= now + timedelta(hours=LELANG.min_notice_hours)
        assert w.start <= now + timedelta(days=LELANG.booking_horizon_days)
    else:
        assert codes(decision)  # always a reason code, never an empty rejection


# ------------------------------------------------------- filed_at, kind, stakeholder_ref


def test_filed_at_may_run_ahead_of_our_clock_by_the_skew_and_no_more() -> None:
    assert isinstance(decide_filing(filed(filed_at=NOW + FILED_AT_SKEW), None, PALOPO, NOW), Accept)
    ahead = NOW + FILED_AT_SKEW + timedelta(microseconds=1)
    decision = decide_filing(filed(filed_at=ahead), None, PALOPO, NOW)
    assert codes(decision) == ["filed_in_future"]
    assert isinstance(decision, Reject) and decision.reasons[0].field == "filed_at"
    # A filing from long ago is the portal's business (a queue that drained late), not a reason.
    assert isinstance(decide_filing(filed(filed_at=NOW - timedelta(days=3)), None, PALOPO, NOW), Accept)


WEBINAR = ServiceRule("sosialisasi-lelang", 90, 24, 45, kind="webinar")
MEETING = ServiceRule("rapat-koordinasi", 60, 24, 30, kind="internal_meeting")
JAKARTA = Office(
    "JKT",
    "Asia/Jakarta",
    {"lelang": ServiceRule("lelang", 45, 24, 30, kind="consultation"), WEBINAR.code: WEBINAR, MEETING.code: MEETING},
)


@pytest.mark.parametrize("service", ["lelang", "sosialisasi-lelang", "rapat-koordinasi"])
@pytest.mark.parametrize("kind", ["consultation", "internal_meeting", "webinar"])
def test_the_filings_kind_must_match_the_services(service: str, kind: str) -> None:
    decision = decide_filing(filed(office_code="JKT", service_code=service, kind=kind), None, JAKARTA, NOW)
    if JAKARTA.services[service].kind == kind:
        assert isinstance(decision, Accept)
    else:
        assert codes(decision) == ["kind_mismatch"]
        assert isinstance(decision, Reject) and decision.reasons[0].field == "kind"


def test_a_service_of_unknown_kind_takes_any_kind() -> None:
    assert LELANG.kind is None  # what a catalog entry without a kind gives
    for kind in ("consultation", "internal_meeting", "webinar"):
        assert isinstance(decide_filing(filed(kind=kind), None, PALOPO, NOW), Accept)


def with_ref(ref: str):  # type: ignore[no-untyped-def]
    base = filed()
    return base.model_copy(update={"stakeholder": base.stakeholder.model_copy(update={"stakeholder_ref": ref})})


@pytest.mark.parametrize("ref", ["a", "x" * 64, "person-00000042", "nik:3171.0101_01@portal-djkn", "ABC-xyz.09:_@"])
def test_safe_stakeholder_refs_up_to_64_characters_are_taken(ref: str) -> None:
    assert isinstance(decide_filing(with_ref(ref), None, PALOPO, NOW), Accept)


@pytest.mark.parametrize(
    "ref",
    [
        "",  # the schema refuses it too; the domain does not rely on that
        "x" * 65,
        "person\x00",
        "person 42",
        "person/42",
        "person?x=1&y=2",
        "person#42",
        "person%2F42",
        "person\n",
        "budi\u00e9",  # a non-ASCII letter
        "\U0001f600",
        "\U0001f600" * 128,
        "١٢٣",  # Arabic-Indic digits: \d would take them, the pattern must not
    ],
)
def test_unsafe_or_overlong_stakeholder_refs_are_rejected(ref: str) -> None:
    decision = decide_filing(with_ref(ref), None, PALOPO, NOW)
    assert codes(decision) == ["invalid_stakeholder_ref"]
    assert isinstance(decision, Reject) and decision.reasons[0].field == "stakeholder.stakeholder_ref"


def test_new_reasons_come_in_a_fixed_order_and_speak_both_languages() -> None:
    base = filed(filed_at=NOW + timedelta(hours=1), office_code="JKT", service_code="sosialisasi-lelang")
    nobody = base.stakeholder.model_copy(update={"stakeholder_ref": "a b", "email": None, "phone": None})
    decision = decide_filing(base.model_copy(update={"stakeholder": nobody}), None, JAKARTA, NOW)
    assert codes(decision) == ["filed_in_future", "kind_mismatch", "invalid_stakeholder_ref", "no_contact_channel"]
    for code in ("filed_in_future", "kind_mismatch", "invalid_stakeholder_ref"):
        message_id, message_en = MESSAGES[code]
        assert message_id and message_en and message_id != message_en


SAFE = string.ascii_letters + string.digits + "._:@-"


@given(st.text(alphabet=SAFE, min_size=1, max_size=64))
def test_any_ref_from_the_safe_alphabet_is_not_rejected_for_it(ref: str) -> None:
    decision = decide_filing(with_ref(ref), None, PALOPO, NOW)
    assert isinstance(decision, Accept)


@given(
    st.text(
        alphabet=st.characters(blacklist_characters=SAFE),
        min_size=1,
        max_size=128,
    )
)
def test_any_ref_of_characters_outside_the_safe_set_is_rejected(ref: str) -> None:
    assert codes(decide_filing(with_ref(ref), None, PALOPO, NOW)) == ["invalid_stakeholder_ref"]


@given(
    safe=st.text(alphabet=SAFE, min_size=0, max_size=40),
    bad=st.characters(blacklist_characters=SAFE),
    tail=st.text(alphabet=SAFE, min_size=0, max_size=40),
)
def test_one_unsafe_character_anywhere_is_enough(safe: str, bad: str, tail: str) -> None:
    assert codes(decide_filing(with_ref(safe + bad + tail), None, PALOPO, NOW)) == ["invalid_stakeholder_ref"]
