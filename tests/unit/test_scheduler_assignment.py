"""Slot assignment on plain values: property tests of the rules that must never break."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glv_scheduler.assignment import GRID, InMemoryBusy, OpenWebinar, Request, choose_webinar, find_slot
from glv_scheduler.calendar import Closures, Office, Officer, ServiceType, parse_week, working_intervals

HOURS = parse_week(
    {d: ["08:00-12:00", "13:00-16:00"] for d in ("mon", "tue", "wed", "thu")} | {"fri": ["08:00-11:30", "13:30-16:30"]}
)
ZONES = ("Asia/Jakarta", "Asia/Makassar", "Asia/Jayapura")
LELANG = ServiceType("lelang", "consultation", timedelta(minutes=45), timedelta(minutes=15),
                     timedelta(hours=24), timedelta(days=30))  # fmt: skip
MEETING = ServiceType("rapat", "internal_meeting", timedelta(minutes=60), timedelta(0),
                      timedelta(hours=24), timedelta(days=30), officers_required=2)  # fmt: skip
CLOSURES = Closures(collective_leave=frozenset({date(2026, 12, 24)}))


def office(zone: str) -> Office:
    return Office("TST", zone, HOURS, closures=frozenset({date(2026, 12, 31)}), services=frozenset({"lelang", "rapat"}))


def staff() -> list[Officer]:
    return [
        Officer("A", "TST", frozenset({"lelang", "rapat"})),
        Officer("B", "TST", frozenset({"lelang", "rapat"}), leave=((date(2026, 12, 7), date(2026, 12, 11)),)),
        Officer("C", "TST", frozenset({"rapat"})),  # no lelang skill
        Officer("D", "TST", frozenset({"lelang"}), roster=parse_week({"tue": ["09:00-15:00"], "thu": ["08:00-12:00"]})),
    ]


def inside_working_time(place: Office, officer: Officer, start: datetime, end: datetime) -> bool:
    local = start.astimezone(place.tz).date()
    return any(s <= start and end <= e for s, e in working_intervals(place, officer, local, CLOSURES))


instants = st.datetimes(min_value=datetime(2026, 11, 1), max_value=datetime(2027, 2, 1), timezones=st.just(UTC)).map(
    lambda d: d.replace(second=0, microsecond=0)
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    zone=st.sampled_from(ZONES),
    now=instants,
    tickets=st.integers(min_value=1, max_value=40),
    window_offset_h=st.integers(min_value=0, max_value=24 * 20),
    window_len_h=st.integers(min_value=1, max_value=48),
    service=st.sampled_from([LELANG, MEETING]),
)
async def test_assignments_respect_every_rule(
    zone: str, now: datetime, tickets: int, window_offset_h: int, window_len_h: int, service: ServiceType
) -> None:
    place, people = office(zone), staff()
    by_id = {o.officer_id: o for o in people}
    busy = InMemoryBusy({})
    window_start = now + timedelta(hours=window_offset_h)
    windows = ((window_start, window_start + timedelta(hours=window_len_h)),)
    for _ in range(tickets):
        proposal = await find_slot(Request(service, windows, now), place, people, CLOSURES, busy)
        if proposal is None:
            break
        assert proposal.starts_at >= now + service.min_notice
        assert proposal.ends_at <= now + service.horizon
        assert proposal.ends_at - proposal.starts_at == service.duration
        assert (proposal.starts_at - datetime(2000, 1, 1, tzinfo=UTC)) % GRID == timedelta(0)
        assert len(set(proposal.officer_ids)) == service.officers_required
        if proposal.in_preferred_window:
            assert windows[0][0] <= proposal.starts_at and proposal.ends_at <= windows[0][1]
        for officer_id in proposal.officer_ids:
            officer = by_id[officer_id]
            assert service.code in officer.skills
            # Inside working time: never in a break, on a holiday, a closure or leave.
            assert inside_working_time(place, officer, proposal.starts_at, proposal.ends_at)
            occupied = proposal.occupied(service)
            assert busy.is_free(officer_id, *occupied), "overlap with an earlier booking or its buffer"
            busy.book(officer_id, occupied)


async def test_the_preferred_window_wins_over_the_earliest_slot() -> None:
    now = datetime(2026, 11, 30, 1, tzinfo=UTC)  # Monday 09:00 WITA
    late = (datetime(2026, 12, 10, 5, tzinfo=UTC), datetime(2026, 12, 10, 8, tzinfo=UTC))
    proposal = await find_slot(Request(LELANG, (late,), now), office("Asia/Makassar"), staff(), CLOSURES,
                               InMemoryBusy({}))  # fmt: skip
    assert proposal is not None and proposal.in_preferred_window
    assert proposal.starts_at == late[0]
    earliest = await find_slot(Request(LELANG, (), now), office("Asia/Makassar"), staff(), CLOSURES, InMemoryBusy({}))
    assert earliest is not None and not earliest.in_preferred_window
    assert earliest.starts_at == datetime(2026, 12, 1, 1, tzinfo=UTC)  # 24 h notice: Tuesday 09:00 WITA


async def test_a_window_that_cannot_fit_falls_back_to_the_earliest() -> None:
    now = datetime(2026, 11, 30, 1, tzinfo=UTC)
    saturday = (datetime(2026, 12, 5, 0, tzinfo=UTC), datetime(2026, 12, 5, 8, tzinfo=UTC))
    proposal = await find_slot(Request(LELANG, (saturday,), now), office("Asia/Makassar"), staff(), CLOSURES,
                               InMemoryBusy({}))  # fmt: skip
    assert proposal is not None and not proposal.in_preferred_window


@pytest.mark.parametrize("filed_local_hour", [23, 0])
async def test_filed_near_midnight_in_one_zone_for_an_office_in_another(filed_local_hour: int) -> None:
    # 23:xx or 00:xx in Jakarta (UTC+7) is already 01:xx / 02:xx the next day in Jayapura (UTC+9).
    jakarta_now = datetime(2026, 11, 30 if filed_local_hour == 23 else 1, filed_local_hour, 50)
    now = (jakarta_now - timedelta(hours=7)).replace(tzinfo=UTC)
    place = office("Asia/Jayapura")
    quick = ServiceType("lelang", "consultation", timedelta(minutes=45), timedelta(0), timedelta(hours=2),
                        timedelta(days=5))  # fmt: skip
    proposal = await find_slot(Request(quick, (), now), place, staff(), CLOSURES, InMemoryBusy({}))
    assert proposal is not None
    local = proposal.starts_at.astimezone(place.tz)
    assert local.hour >= 8 and (proposal.ends_at.astimezone(place.tz).hour, 0) <= (16, 0)
    assert proposal.starts_at >= now + quick.min_notice
    assert (proposal.starts_at - datetime(2000, 1, 1, tzinfo=UTC)) % GRID == timedelta(0)


async def test_load_is_spread_across_officers() -> None:
    now = datetime(2026, 11, 30, 1, tzinfo=UTC)
    place, people, busy = office("Asia/Jakarta"), staff(), InMemoryBusy({})
    chosen = []
    for _ in range(6):
        proposal = await find_slot(Request(LELANG, (), now), place, people, CLOSURES, busy)
        assert proposal is not None
        busy.book(proposal.officer_ids[0], proposal.occupied(LELANG))
        chosen.append(proposal.officer_ids[0])
    assert {"A", "B"} <= set(chosen)  # both lelang officers on duty that morning get work


async def test_nothing_inside_the_horizon_means_none() -> None:
    now = datetime(2026, 11, 30, 1, tzinfo=UTC)
    tiny = ServiceType("lelang", "consultation", timedelta(minutes=45), timedelta(0), timedelta(hours=24),
                       timedelta(hours=30))  # fmt: skip
    place, people = office("Asia/Jakarta"), [Officer("A", "TST", frozenset({"lelang"}))]
    busy = InMemoryBusy({})
    booked = 0
    while (proposal := await find_slot(Request(tiny, (), now), place, people, CLOSURES, busy)) is not None:
        busy.book("A", proposal.occupied(tiny))
        booked += 1
    assert 0 < booked < 10


def test_webinar_seats_prefer_the_window_then_the_earliest() -> None:
    now = datetime(2026, 11, 30, 1, tzinfo=UTC)
    webinar = ServiceType("sosialisasi", "webinar", timedelta(minutes=90), timedelta(0), timedelta(hours=24),
                          timedelta(days=30), capacity=100)  # fmt: skip
    early = OpenWebinar("w1", now + timedelta(days=2), now + timedelta(days=2, hours=1, minutes=30), 5)
    later = OpenWebinar("w2", now + timedelta(days=5), now + timedelta(days=5, hours=1, minutes=30), 5)
    full = OpenWebinar("w0", now + timedelta(days=1, hours=2), now + timedelta(days=1, hours=4), 0)
    window = ((now + timedelta(days=4), now + timedelta(days=6)),)
    assert choose_webinar(Request(webinar, window, now), [full, early, later]) == later
    assert choose_webinar(Request(webinar, (), now), [full, early, later]) == early
