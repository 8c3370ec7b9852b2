"""Rounds on plain values: the optimizer's output keeps every hard rule, is never worse than the
greedy, is fair among equal tickets, and falls back to the greedy when it has no time."""

from __future__ import annotations

import itertools
import random
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glv_scheduler.assignment import GRID, InMemoryBusy, Request, SlotSearch, find_slot
from glv_scheduler.calendar import Closures, Interval, Office, Officer, ServiceType, working_intervals
from glv_scheduler.catalog import read_catalog
from glv_scheduler.rounds import RoundResult, RoundTicket, plan_round, round_reads
from glv_scheduler.worktime import WorkClock
from tests.unit.test_scheduler_assignment import CLOSURES, LELANG, MEETING, ZONES, instants, office, staff

INFO = ServiceType("info", "consultation", timedelta(minutes=30), timedelta(0), timedelta(hours=2), timedelta(days=14))
SHORT = replace(LELANG, horizon=timedelta(days=2))  # fills up: some tickets wait
CATALOG_FILE = Path(__file__).resolve().parents[2] / "deploy" / "catalog" / "catalog.yaml"
MONDAY_9_WITA = datetime(2026, 11, 30, 1, tzinfo=UTC)


def place(zone: str = "Asia/Makassar") -> Office:
    base = office(zone)
    return replace(base, services=base.services | {INFO.code})


def people() -> list[Officer]:
    return [replace(o, skills=o.skills | {INFO.code}) if o.officer_id in ("A", "D") else o for o in staff()]


def ticket(arrival: int, service: ServiceType = LELANG, windows: tuple[Interval, ...] = ()) -> RoundTicket:
    return RoundTicket(uuid.UUID(int=arrival + 1), service.code, arrival, windows)


def plan(
    tickets: Sequence[RoundTicket],
    *,
    service: ServiceType = LELANG,
    at: Office | None = None,
    officers: Sequence[Officer] | None = None,
    booked: dict[str, list[Interval]] | None = None,
    round_at: datetime = MONDAY_9_WITA,
    time_limit_s: float = 10.0,
    in_order: bool = True,
) -> RoundResult:
    search = SlotSearch(people() if officers is None else officers, CLOSURES)
    services = {s.code: s for s in (service, INFO)}
    busy = InMemoryBusy({o: list(held) for o, held in (booked or {}).items()})
    return plan_round(
        search, busy, at or place(), services, tickets, round_at, time_limit_s=time_limit_s,
        room_in_filing_order=in_order,
    )  # fmt: skip


def in_window(windows: Sequence[Interval], start: datetime, duration: timedelta) -> bool:
    return any(ws <= start and start + duration <= we for ws, we in windows)


def check_round(
    result: RoundResult,
    tickets: Sequence[RoundTicket],
    services: dict[str, ServiceType],
    at: Office,
    officers: Sequence[Officer],
    booked: dict[str, list[Interval]],
    round_at: datetime,
    closures: Closures,
) -> None:
    """Every hard rule, the result's own figures, and never worse than the greedy."""
    by_id = {t.ticket_id: t for t in tickets}
    officer_of = {o.officer_id: o for o in officers}
    placed = [p.ticket_id for p in result.placements]
    assert len(placed) + len(result.unplaced) == len(tickets)
    assert set(placed) | set(result.unplaced) == set(by_id)
    for group in (placed, list(result.unplaced)):  # each in filing order
        assert [by_id[t].arrival for t in group] == sorted(by_id[t].arrival for t in group)
    busy = InMemoryBusy({o: list(held) for o, held in booked.items()})
    windows = 0
    lead = 0.0
    clock = WorkClock.covering(at, closures, round_at, round_at + max(s.horizon for s in services.values()))
    for placement in result.placements:
        t, p = by_id[placement.ticket_id], placement.proposal
        service = services[t.service_code]
        assert p.starts_at >= round_at + service.min_notice, "notice"
        assert p.ends_at <= round_at + service.horizon, "horizon"
        assert p.ends_at - p.starts_at == service.duration
        assert (p.starts_at - datetime(2000, 1, 1, tzinfo=UTC)) % GRID == timedelta(0)
        assert len(p.officer_ids) == 1
        officer = officer_of[p.officer_ids[0]]
        assert service.code in officer.skills, "skill"
        local = p.starts_at.astimezone(at.tz).date()
        assert any(s <= p.starts_at and p.ends_at <= e for s, e in working_intervals(at, officer, local, closures)), (
            "hours, breaks, holidays, closures, roster or leave"
        )
        occupied = p.occupied(service)
        assert busy.is_free(officer.officer_id, *occupied), "overlap with a booking or its buffer"
        busy.book(officer.officer_id, occupied)
        assert p.in_preferred_window == in_window(t.windows, p.starts_at, service.duration)
        windows += p.in_preferred_window
        lead += clock.hours(round_at, p.starts_at)
    assert result.windows_honoured == windows
    assert result.lead_hours == pytest.approx(lead)
    greedy = result.greedy
    assert (len(placed), windows) >= (greedy.placed, greedy.windows), "worse than the greedy"
    if (len(placed), windows) == (greedy.placed, greedy.windows):
        assert lead <= greedy.lead_minutes / 60 + 1e-6
    assert result.method == "greedy" or result.fallback_reason is None


def check_fair(result: RoundResult, tickets: Sequence[RoundTicket], services: dict[str, ServiceType]) -> None:
    """In each service the tickets left waiting are the last filed, and no two placed tickets could
    swap, the earlier filing getting the earlier start, without losing a window."""
    slots = {p.ticket_id: p.proposal.starts_at for p in result.placements}
    for early in tickets:
        for late in tickets:
            if early.service_code != late.service_code or early.arrival >= late.arrival or late.ticket_id not in slots:
                continue
            mine, theirs = slots.get(early.ticket_id), slots[late.ticket_id]
            assert mine is not None, f"ticket {early.arrival} waits while {late.arrival} is placed"
            if mine <= theirs:
                continue
            duration = services[early.service_code].duration
            now = in_window(early.windows, mine, duration) + in_window(late.windows, theirs, duration)
            swapped = in_window(early.windows, theirs, duration) + in_window(late.windows, mine, duration)
            assert swapped < now, f"ticket {late.arrival} is served before {early.arrival} for no reason"


# ---------------------------------------------------------------------------- properties

windows_of = st.lists(
    st.tuples(st.integers(min_value=0, max_value=24 * 4), st.integers(min_value=1, max_value=6)), max_size=2
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    zone=st.sampled_from(ZONES),
    round_at=instants,
    lelang=st.sampled_from([LELANG, SHORT]),
    wanted=st.lists(st.tuples(st.booleans(), windows_of), min_size=1, max_size=25),
    arrivals=st.randoms(use_true_random=False),
    booked=st.lists(
        st.tuples(
            st.sampled_from("ABD"),
            st.integers(min_value=0, max_value=4 * 24 * 4),
            st.integers(min_value=1, max_value=12),
        ),
        max_size=12,
    ),
)
def test_a_round_keeps_every_rule_and_beats_the_greedy(
    zone: str,
    round_at: datetime,
    lelang: ServiceType,
    wanted: list[tuple[bool, list[tuple[int, int]]]],
    arrivals: random.Random,
    booked: list[tuple[str, int, int]],
) -> None:
    order = list(range(len(wanted)))
    arrivals.shuffle(order)  # filing order differs from the order given
    tickets = [
        ticket(
            order[n],
            INFO if is_info else lelang,
            tuple((round_at + timedelta(hours=h), round_at + timedelta(hours=h + length)) for h, length in spans),
        )
        for n, (is_info, spans) in enumerate(wanted)
    ]
    existing: dict[str, list[Interval]] = {}
    for officer_id, quarter, length in booked:
        start = round_at + quarter * GRID
        existing.setdefault(officer_id, []).append((start, start + length * GRID))
    at, officers = place(zone), people()
    result = plan(tickets, service=lelang, at=at, officers=officers, booked=existing, round_at=round_at)
    services = {lelang.code: lelang, INFO.code: INFO}
    check_round(result, tickets, services, at, officers, existing, round_at, CLOSURES)
    if result.method != "greedy":
        check_fair(result, tickets, services)


HOUR_LONG = ServiceType("lelang", "consultation", timedelta(minutes=60), timedelta(0), timedelta(0), timedelta(hours=9))
MONDAY_8_WITA = datetime(2026, 11, 30, 0, tzinfo=UTC)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    wanted=st.lists(
        st.lists(st.tuples(st.integers(min_value=0, max_value=28), st.integers(min_value=4, max_value=12)), max_size=2),
        min_size=3,
        max_size=3,
    ),
    booked=st.lists(
        st.tuples(st.integers(min_value=0, max_value=28), st.integers(min_value=1, max_value=16)), max_size=4
    ),
    in_order=st.booleans(),
)
def test_a_tiny_round_is_the_exact_optimum(
    wanted: list[list[tuple[int, int]]], booked: list[tuple[int, int]], in_order: bool
) -> None:
    # One officer, one Monday (08:00-12:00, 13:00-16:00 WITA), hour-long sessions: every schedule
    # of three tickets is tried, and the round must score as the best of them (giving room in
    # filing order, when asked: when not all fit, the last filed wait).
    tickets = [
        ticket(n, HOUR_LONG, tuple((MONDAY_8_WITA + a * GRID, MONDAY_8_WITA + (a + k) * GRID) for a, k in spans))
        for n, spans in enumerate(wanted)
    ]
    existing = {"A": [(MONDAY_8_WITA + a * GRID, MONDAY_8_WITA + (a + k) * GRID) for a, k in booked]}
    only_a = [o for o in people() if o.officer_id == "A"]
    result = plan(
        tickets, service=HOUR_LONG, officers=only_a, booked=existing, round_at=MONDAY_8_WITA, in_order=in_order
    )
    at = place()
    starts = [
        s
        for s, _ in SlotSearch(only_a, CLOSURES).starts(at, HOUR_LONG, MONDAY_8_WITA, MONDAY_8_WITA + HOUR_LONG.horizon)
    ]
    starts = [s for s in starts if InMemoryBusy(existing).is_free("A", s, s + HOUR_LONG.duration)]
    clock = WorkClock.covering(at, CLOSURES, MONDAY_8_WITA, MONDAY_8_WITA)
    best = (0, 0, 0.0)
    for chosen in itertools.product([None, *starts], repeat=len(tickets)):
        taken = sorted(s for s in chosen if s is not None)
        if any(b < a + HOUR_LONG.duration for a, b in itertools.pairwise(taken)):
            continue
        if in_order and None in chosen[: len(taken)]:
            continue
        windows = sum(
            s is not None and in_window(t.windows, s, HOUR_LONG.duration) for t, s in zip(tickets, chosen, strict=True)
        )
        best = max(best, (len(taken), windows, -sum(clock.between(MONDAY_8_WITA, s) for s in taken)))
    assert result.method == "optimal"
    assert (len(result.placements), result.windows_honoured, -result.lead_hours * 60) == pytest.approx(best)


# ---------------------------------------------------------------------------- cases


def test_the_optimizer_gives_the_narrow_window_its_slot() -> None:
    # One officer; the earlier ticket accepts all of Tuesday, the later one only Tuesday's first
    # session after the notice. First come first served gives the earlier that slot; a round serves both.
    tuesday_9 = datetime(2026, 12, 1, 1, tzinfo=UTC)  # 09:00 WITA, 24 hours after the round
    wide = ticket(0, windows=((tuesday_9 - timedelta(hours=1), tuesday_9 + timedelta(hours=7)),))
    narrow = ticket(1, windows=((tuesday_9, tuesday_9 + timedelta(minutes=45)),))
    only_a = [o for o in people() if o.officer_id == "A"]
    result = plan([wide, narrow], officers=only_a)
    assert result.greedy.windows == 1
    assert result.windows_honoured == 2 and result.method == "optimal"
    slots = {p.ticket_id: p.proposal.starts_at for p in result.placements}
    assert slots[narrow.ticket_id] == tuesday_9
    assert slots[wide.ticket_id] == tuesday_9 + timedelta(hours=1)  # 45 min and the 15 min buffer


@pytest.mark.parametrize("in_order", [True, False])
def test_when_one_slot_is_left_room_goes_in_filing_order_unless_told(in_order: bool) -> None:
    # Only 10:00-11:00 is free; the earlier ticket has no window, the later wants exactly that hour.
    ten = MONDAY_8_WITA + timedelta(hours=2)
    booked: dict[str, list[Interval]] = {
        "A": [(MONDAY_8_WITA, ten), (ten + timedelta(hours=1), ten + timedelta(hours=7))]
    }
    tickets = [ticket(0, HOUR_LONG), ticket(1, HOUR_LONG, ((ten, ten + timedelta(hours=1)),))]
    only_a = [o for o in people() if o.officer_id == "A"]
    result = plan(tickets, service=HOUR_LONG, officers=only_a, booked=booked, round_at=MONDAY_8_WITA, in_order=in_order)
    [placement] = result.placements
    assert placement.proposal.starts_at == ten
    if in_order:  # as first come first served: the earlier filing has the hour, the later waits
        assert placement.ticket_id == tickets[0].ticket_id and result.windows_honoured == 0
    else:  # the hour goes where it honours a window
        assert placement.ticket_id == tickets[1].ticket_id and result.windows_honoured == 1
    assert result.method == "optimal"


@pytest.mark.parametrize("given_order", [(0, 1), (1, 0)])
def test_of_two_identical_tickets_the_earlier_filing_starts_first(given_order: tuple[int, int]) -> None:
    tickets = [ticket(n) for n in given_order]
    result = plan(tickets, officers=[o for o in people() if o.officer_id == "A"])
    assert [p.ticket_id for p in result.placements] == [ticket(0).ticket_id, ticket(1).ticket_id]
    first, second = (p.proposal.starts_at for p in result.placements)
    assert first < second


def test_of_two_tickets_with_the_same_window_the_earlier_filing_starts_first() -> None:
    tuesday_9 = datetime(2026, 12, 1, 1, tzinfo=UTC)  # 09:00 WITA: three sessions until noon
    window = ((tuesday_9, tuesday_9 + timedelta(hours=3)),)
    tickets = [ticket(n, windows=window) for n in (3, 1, 2)]
    result = plan(tickets, officers=[o for o in people() if o.officer_id == "A"])
    assert [p.ticket_id for p in result.placements] == [ticket(n).ticket_id for n in (1, 2, 3)]
    starts = [p.proposal.starts_at for p in result.placements]
    assert starts == sorted(starts) and all(p.proposal.in_preferred_window for p in result.placements)


def test_when_the_line_is_full_the_latest_filings_wait() -> None:
    tiny = replace(LELANG, min_notice=timedelta(0), horizon=timedelta(hours=8))  # Monday only: 09:00-16:00
    tickets = [ticket(n, tiny) for n in reversed(range(12))]
    result = plan(tickets, service=tiny, officers=[o for o in people() if o.officer_id == "A"])
    placed = [p.ticket_id for p in result.placements]
    assert 0 < len(placed) < 12
    assert placed == [ticket(n).ticket_id for n in range(len(placed))]
    assert list(result.unplaced) == [ticket(n).ticket_id for n in range(len(placed), 12)]


def test_existing_bookings_are_never_overlapped() -> None:
    # The lelang officers are booked all Tuesday and Wednesday morning.
    booked: dict[str, list[Interval]] = {
        officer_id: [
            (datetime(2026, 12, 1, 0, tzinfo=UTC), datetime(2026, 12, 1, 8, tzinfo=UTC)),
            (datetime(2026, 12, 2, 0, tzinfo=UTC), datetime(2026, 12, 2, 4, tzinfo=UTC)),
        ]
        for officer_id in ("A", "B", "D")
    }
    tickets = [ticket(n) for n in range(10)]
    result = plan(tickets, booked=booked)
    at, officers = place(), people()
    check_round(result, tickets, {LELANG.code: LELANG, INFO.code: INFO}, at, officers, booked, MONDAY_9_WITA, CLOSURES)
    assert all(p.proposal.starts_at >= datetime(2026, 12, 2, 4, tzinfo=UTC) for p in result.placements)


def test_without_time_for_the_solver_the_greedy_answers() -> None:
    tuesday_8 = datetime(2026, 12, 1, 0, tzinfo=UTC)
    tickets = [ticket(0, windows=((tuesday_8, tuesday_8 + timedelta(hours=8)),)), ticket(1)]
    result = plan(tickets, time_limit_s=1e-6)
    assert result.method == "greedy"
    assert result.fallback_reason == "no time left for the solver"
    assert len(result.placements) == result.greedy.placed == 2
    assert result.windows_honoured == result.greedy.windows == 1


async def test_the_greedy_is_what_immediate_assignment_would_do() -> None:
    tuesday_8 = datetime(2026, 12, 1, 0, tzinfo=UTC)
    tickets = [ticket(n, windows=((tuesday_8, tuesday_8 + timedelta(hours=2)),) if n % 2 else ()) for n in range(6)]
    result = plan(tickets, time_limit_s=1e-6)
    busy, search = InMemoryBusy({}), SlotSearch(people(), CLOSURES)
    for t, placement in zip(tickets, result.placements, strict=True):
        proposal = await search.find(Request(LELANG, t.windows, MONDAY_9_WITA), place(), busy)
        assert proposal == placement.proposal
        busy.book(proposal.officer_ids[0], proposal.occupied(LELANG))


def test_an_empty_round_and_a_round_nobody_can_serve() -> None:
    assert plan([]).placements == ()
    nobody = plan([ticket(0, INFO)], officers=[o for o in people() if o.officer_id == "B"])
    assert nobody.unplaced == (ticket(0).ticket_id,) and nobody.method == "optimal"


@pytest.mark.parametrize(
    "service",
    [MEETING, replace(LELANG, capacity=5), replace(LELANG, kind="webinar"), replace(LELANG, code="unknown")],
)
def test_only_one_officer_consultations_offered_here_are_planned(service: ServiceType) -> None:
    at = replace(
        place(), services=place().services | {"unknown"} - ({"unknown"} if service.code == "unknown" else set())
    )
    with pytest.raises(ValueError):
        plan_round(
            SlotSearch(people(), CLOSURES), InMemoryBusy({}), at, {service.code: service}, [ticket(0, service)],
            MONDAY_9_WITA,
        )  # fmt: skip


def test_duplicate_tickets_are_refused() -> None:
    with pytest.raises(ValueError):
        plan([ticket(0), ticket(0)])


def test_round_reads_cover_every_candidate() -> None:
    at, search = place(), SlotSearch(people(), CLOSURES)
    spans = round_reads(search, at, [LELANG, INFO], MONDAY_9_WITA)
    assert {tuple(officers) for officers, _, _ in spans} == {("A", "B", "D"), ("A", "D")}
    for service in (LELANG, INFO):
        [(_, first, last)] = [s for s in spans if s[0] == [o.officer_id for o in search.staff(at, service)]]
        for start, _ in search.starts(at, service, MONDAY_9_WITA, MONDAY_9_WITA + service.horizon):
            assert first <= start and start + service.duration + service.buffer <= last


async def test_starts_are_the_candidates_find_checks() -> None:
    at, search = place(), SlotSearch(people(), CLOSURES)
    earliest = MONDAY_9_WITA + LELANG.min_notice
    [(first, officers), *_] = search.starts(at, LELANG, earliest, MONDAY_9_WITA + LELANG.horizon)
    found = await find_slot(Request(LELANG, (), MONDAY_9_WITA), at, people(), CLOSURES, InMemoryBusy({}))
    assert found is not None and found.starts_at == first and found.officer_ids[0] in {o.officer_id for o in officers}


# ---------------------------------------------------------------------------- the work clock


def test_the_work_clock_counts_office_hours_only() -> None:
    at = place("Asia/Jakarta")
    friday_16 = datetime(2026, 12, 4, 9, tzinfo=UTC)  # 16:00 WIB, half an hour before closing
    monday_9 = datetime(2026, 12, 7, 2, tzinfo=UTC)
    clock = WorkClock.covering(at, CLOSURES, friday_16, monday_9)
    assert clock.between(friday_16, monday_9) == 30 + 60
    assert clock.hours(monday_9, friday_16) == -1.5
    christmas_eve = WorkClock.covering(at, CLOSURES, datetime(2026, 12, 23, 9), datetime(2026, 12, 28, 2))
    # Wednesday 16:00 -> Monday 09:00: 24th cuti bersama, 25th Christmas, then the weekend.
    assert christmas_eve.between(datetime(2026, 12, 23, 9, tzinfo=UTC), datetime(2026, 12, 28, 2, tzinfo=UTC)) == 60
    with pytest.raises(ValueError):
        clock.minutes(datetime(2026, 12, 9, tzinfo=UTC))


def test_the_work_clock_finds_the_next_working_day() -> None:
    at = place("Asia/Jakarta")
    clock = WorkClock(at, CLOSURES, date(2026, 12, 21), date(2026, 12, 31))
    tuesday = datetime(2026, 12, 22, 3, tzinfo=UTC)
    assert clock.working_day_end(tuesday) == datetime(2026, 12, 23, 9, tzinfo=UTC)  # Wednesday 16:00 WIB
    assert clock.working_day_end(tuesday, 2) == datetime(2026, 12, 28, 9, tzinfo=UTC)  # Monday, after the closures
    assert clock.working_day_end(tuesday, 9) == clock.end


# ---------------------------------------------------------------------------- the shipped catalog


def catalog_round(count: int, seed: int) -> tuple[list[RoundTicket], datetime]:
    """A backlog at KPKNL Jakarta I: every consultation service, most tickets with one or two
    windows (a morning, an afternoon or two hours, on the next working days)."""
    catalog = read_catalog(CATALOG_FILE)
    at = catalog.offices["JKT"].office
    services = {c: i.service for c, i in catalog.services.items() if c in at.services}
    codes = sorted(c for c, s in services.items() if s.kind == "consultation")
    rng = random.Random(seed)
    round_at = datetime(2026, 11, 2, 2, tzinfo=UTC)  # Monday 09:00 WIB
    tickets = []
    for n in range(count):
        service = services[rng.choice(codes)]
        windows: list[Interval] = []
        for _ in range(rng.choices((0, 1, 2), weights=(0.15, 0.5, 0.35))[0]):
            day = round_at.astimezone(at.tz).date() + timedelta(days=rng.randint(1, 9))
            friday = day.weekday() == 4
            shape = rng.choice(("morning", "afternoon", "two_hours"))
            if day.weekday() >= 5:
                continue
            if shape == "morning":
                first, last = (8, 0), (11, 30) if friday else (12, 0)
            elif shape == "afternoon":
                first, last = ((13, 30), (16, 30)) if friday else ((13, 0), (16, 0))
            else:
                hour = rng.randint(8, 14)
                first, last = (hour, 0), (hour + 2, 0)
            window = (
                datetime(day.year, day.month, day.day, *first, tzinfo=at.tz).astimezone(UTC),
                datetime(day.year, day.month, day.day, *last, tzinfo=at.tz).astimezone(UTC),
            )
            if window[1] - service.duration >= round_at + service.min_notice:
                windows.append(window)
        tickets.append(RoundTicket(uuid.UUID(int=n + 1), service.code, n, tuple(sorted(set(windows)))))
    return tickets, round_at


def test_a_round_of_300_at_one_office_of_the_catalog(capsys: pytest.CaptureFixture[str]) -> None:
    catalog = read_catalog(CATALOG_FILE)
    at = catalog.offices["JKT"].office
    services = {c: i.service for c, i in catalog.services.items()}
    closures = Closures(frozenset(catalog.collective_leave))
    tickets, round_at = catalog_round(300, seed=11)
    search = SlotSearch(catalog.officers, closures)
    result = plan_round(search, InMemoryBusy({}), at, services, tickets, round_at, time_limit_s=8.0)
    officers = [o for o in catalog.officers if o.office_code == "JKT"]
    check_round(result, tickets, services, at, officers, {}, round_at, closures)
    with capsys.disabled():
        stages = ", ".join(f"{s.name} {s.status} {s.seconds:.2f} s" for s in result.stages)
        windowed = sum(1 for t in tickets if t.windows)
        print(
            f"\n  round of 300 at JKT: {result.method} in {result.seconds:.2f} s ({stages}); "
            f"{result.variables} columns; windows {result.windows_honoured}/{windowed} (greedy "
            f"{result.greedy.windows}); placed {len(result.placements)} (greedy {result.greedy.placed}); "
            f"mean lead {result.lead_hours / max(len(result.placements), 1):.1f} working h (greedy "
            f"{result.greedy.lead_minutes / 60 / max(result.greedy.placed, 1):.1f})"
        )
