"""Batched assignment on plain values: a batch placed in memory gives, ticket by ticket, what
placing the tickets one at a time gives; no officer is booked twice; first come first served.

The one-at-a-time reference below is the search as it was before batches (a plain list of
bookings per officer, scanned in full; candidate starts built per search), kept here as the
oracle of the faster `SlotSearch` and `InMemoryBusy`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta

import jwt
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from glv_scheduler.assignment import (
    GRID,
    BatchPlanner,
    InMemoryBusy,
    NewSlot,
    OpenWebinar,
    Placement,
    Proposal,
    Request,
    Seat,
    SlotSearch,
    Want,
    choose_webinar,
    eligible_officers,
)
from glv_scheduler.calendar import Closures, Interval, Office, Officer, ServiceType, parse_week, working_intervals
from glv_scheduler.meetings import hs256_token

HOURS = parse_week(
    {d: ["08:00-12:00", "13:00-16:00"] for d in ("mon", "tue", "wed", "thu")} | {"fri": ["08:00-11:30", "13:30-16:30"]}
)
ZONES = ("Asia/Jakarta", "Asia/Makassar", "Asia/Jayapura")
LELANG = ServiceType("lelang", "consultation", timedelta(minutes=45), timedelta(minutes=15),
                     timedelta(hours=24), timedelta(days=30))  # fmt: skip
MEETING = ServiceType("rapat", "internal_meeting", timedelta(minutes=60), timedelta(0),
                      timedelta(hours=24), timedelta(days=30), officers_required=2)  # fmt: skip
WEBINAR = ServiceType("sosialisasi", "webinar", timedelta(minutes=90), timedelta(minutes=30),
                      timedelta(hours=24), timedelta(days=20), capacity=3)  # fmt: skip
# Short notice and a short horizon: a few tickets fill it, the rest wait (first come first served).
QUICK = ServiceType("informasi", "consultation", timedelta(minutes=60), timedelta(minutes=15),
                    timedelta(hours=2), timedelta(hours=30))  # fmt: skip
SERVICES = (LELANG, MEETING, WEBINAR, QUICK)
CLOSURES = Closures(collective_leave=frozenset({date(2026, 12, 24)}))


def office(zone: str) -> Office:
    return Office("TST", zone, HOURS, closures=frozenset({date(2026, 12, 31)}),
                  services=frozenset(s.code for s in SERVICES))  # fmt: skip


def staff() -> list[Officer]:
    every = frozenset(s.code for s in SERVICES)
    most = every - {QUICK.code}  # QUICK: only D and E, on their rosters
    return [
        Officer("A", "TST", most),
        Officer("B", "TST", most, leave=((date(2026, 12, 7), date(2026, 12, 11)),)),
        Officer("C", "TST", frozenset({"rapat", "sosialisasi"})),
        Officer("D", "TST", frozenset({"lelang", "informasi"}),
                roster=parse_week({"tue": ["09:00-15:00"], "thu": ["08:00-12:00"]})),
        Officer("E", "TST", every, roster=parse_week({d: ["10:00-16:00"] for d in ("mon", "wed", "fri")})),
        Officer("X", "OTHER", every),  # another office's: never booked here
    ]  # fmt: skip


# ------------------------------------------------------------ the reference


def _ceil(instant: datetime) -> datetime:
    epoch = datetime(2000, 1, 1, tzinfo=instant.tzinfo)
    return epoch + math.ceil((instant - epoch) / GRID) * GRID


def _free(booked: dict[str, list[Interval]], officer_id: str, start: datetime, end: datetime) -> bool:
    return all(e <= start or end <= s for s, e in booked.get(officer_id, ()))


def _load(booked: dict[str, list[Interval]], officer_id: str, start: datetime, end: datetime) -> float:
    return sum(max(0.0, (min(e, end) - max(s, start)).total_seconds()) for s, e in booked.get(officer_id, ())) / 60


def _scan(place: Office, people: Sequence[Officer], service: ServiceType, booked: dict[str, list[Interval]],
          earliest: datetime, latest_end: datetime) -> tuple[datetime, tuple[str, ...]] | None:  # fmt: skip
    if latest_end - service.duration < earliest:
        return None
    first, last = earliest.astimezone(place.tz).date(), latest_end.astimezone(place.tz).date()
    for day in (first + timedelta(days=n) for n in range((last - first).days + 1)):
        candidates: dict[datetime, list[Officer]] = {}
        for officer in people:
            for seg_start, seg_end in working_intervals(place, officer, day, CLOSURES):
                start = _ceil(max(seg_start, earliest))
                while start + service.duration <= min(seg_end, latest_end):
                    candidates.setdefault(start, []).append(officer)
                    start += GRID
        day_start = datetime.combine(day, datetime.min.time(), tzinfo=place.tz)
        for start in sorted(candidates):
            end = start + service.duration + service.buffer
            free = [o for o in candidates[start] if _free(booked, o.officer_id, start, end)]
            if len(free) >= service.officers_required:
                day_end = day_start + timedelta(days=1)
                chosen = sorted(free, key=lambda o: (_load(booked, o.officer_id, day_start, day_end), o.officer_id))
                return start, tuple(o.officer_id for o in chosen[: service.officers_required])
    return None


def reference_find_slot(request: Request, place: Office, officers: Sequence[Officer],
                        booked: dict[str, list[Interval]]) -> Proposal | None:  # fmt: skip
    """find_slot as it was, one ticket at a time."""
    service = request.service
    people = eligible_officers(place, officers, service)
    if len(people) < service.officers_required:
        return None
    earliest = _ceil(request.now + service.min_notice)
    latest_end = request.now + service.horizon
    best = None
    for window_start, window_end in sorted(request.windows):
        found = _scan(place, people, service, booked, max(earliest, window_start), min(latest_end, window_end))
        if found is not None and (best is None or found[0] < best[0]):
            best = found
    if best is not None:
        return Proposal(best[0], best[0] + service.duration, best[1], in_preferred_window=True)
    found = _scan(place, people, service, booked, earliest, latest_end)
    return None if found is None else Proposal(found[0], found[0] + service.duration, found[1], False)


def one_at_a_time(wants: Sequence[Want], officers: Sequence[Officer], booked: dict[str, list[Interval]],
                  webinars: dict[tuple[str, str], list[OpenWebinar]],
                  new_id: Callable[[], str]) -> list[Placement | None]:  # fmt: skip
    """Each ticket placed on its own, on the bookings and webinars its predecessors left, as the
    scheduler did before batches; a ticket behind one of its line that found no room is searched
    anyway, and must find none either."""
    placed: list[Placement | None] = []
    stuck: set[tuple[str, str]] = set()
    for want in wants:
        service = want.request.service
        placement: Placement | None = None
        if service.kind == "webinar":
            line = webinars.setdefault(want.line, [])
            webinar = choose_webinar(want.request, [w for w in line if w.slot_id != want.leaving])
            if webinar is not None:
                placement = Seat(webinar.slot_id)
                at = line.index(webinar)
                line[at] = OpenWebinar(webinar.slot_id, webinar.starts_at, webinar.ends_at, webinar.seats_left - 1)
        if placement is None:
            proposal = reference_find_slot(want.request, want.office, officers, booked)
            if proposal is not None:
                placement = NewSlot(new_id(), proposal)
                for officer_id in proposal.officer_ids:
                    booked.setdefault(officer_id, []).append(proposal.occupied(service))
                if service.kind == "webinar" and service.capacity > 1:
                    webinars[want.line].append(
                        OpenWebinar(placement.slot_id, proposal.starts_at, proposal.ends_at, service.capacity - 1)
                    )
        if want.line in stuck:
            assert placement is None, "a ticket behind one that found no room would have found room"
        elif placement is None:
            stuck.add(want.line)
        placed.append(placement)
    return placed


def ids(prefix: str) -> Callable[[], str]:
    counter = itertools.count()
    return lambda: f"{prefix}-{next(counter)}"


# ------------------------------------------------------------ strategies

instants = st.datetimes(min_value=datetime(2026, 11, 1), max_value=datetime(2027, 2, 1), timezones=st.just(UTC)).map(
    lambda d: d.replace(second=0, microsecond=0)
)
windows = st.lists(
    st.tuples(st.integers(min_value=0, max_value=24 * 25), st.integers(min_value=1, max_value=48)), max_size=2
)
tickets = st.lists(st.tuples(st.sampled_from((*SERVICES, QUICK)), windows), min_size=1, max_size=30)
# Earlier bookings: (officer, quarter hours from now, quarter hours long); overlapping ones are dropped.
bookings = st.lists(
    st.tuples(st.sampled_from("ABCDE"), st.integers(min_value=0, max_value=4 * 24 * 12),
              st.integers(min_value=1, max_value=8)),
    max_size=40,
)  # fmt: skip
open_webinars = st.lists(
    st.tuples(st.integers(min_value=0, max_value=24 * 18), st.integers(min_value=0, max_value=3)), max_size=3
)


def existing(now: datetime, drawn: list[tuple[str, int, int]]) -> dict[str, list[Interval]]:
    booked: dict[str, list[Interval]] = {}
    for officer_id, offset, length in drawn:
        start = _ceil(now) + offset * GRID
        interval = (start, start + length * GRID)
        if _free(booked, officer_id, *interval):
            booked.setdefault(officer_id, []).append(interval)
    return booked


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(zone=st.sampled_from(ZONES), now=instants, drawn=tickets, earlier=bookings, webinars_drawn=open_webinars)
async def test_a_batch_in_memory_equals_one_ticket_at_a_time(
    zone: str,
    now: datetime,
    drawn: list[tuple[ServiceType, list[tuple[int, int]]]],
    earlier: list[tuple[str, int, int]],
    webinars_drawn: list[tuple[int, int]],
) -> None:
    place, people = office(zone), staff()
    wants = [
        Want(
            place, Request(service, tuple((now + timedelta(hours=o), now + timedelta(hours=o + n)) for o, n in w), now)
        )
        for service, w in drawn
    ]
    booked = existing(now, earlier)
    stored = [
        OpenWebinar(f"w{n}", start, start + WEBINAR.duration, seats)
        for n, (offset, seats) in enumerate(webinars_drawn)
        for start in [_ceil(now) + timedelta(hours=offset)]
    ]
    line = (place.code, WEBINAR.code)

    planner = BatchPlanner(SlotSearch(people, CLOSURES), InMemoryBusy({o: list(v) for o, v in booked.items()}),
                           {line: list(stored)}, new_slot_id=ids("new"))  # fmt: skip
    batch = await planner.place_all(wants)
    alone = one_at_a_time(wants, people, {o: list(v) for o, v in booked.items()}, {line: list(stored)}, ids("new"))
    assert batch == alone  # ticket by ticket: the same slot, officers, webinar seat
    for placement in batch:
        event("seat" if isinstance(placement, Seat) else "new slot" if placement else "no room")

    # No officer is booked twice, buffers included; only the office's officers with the skill,
    # in their working time.
    held = {o: list(v) for o, v in booked.items()}
    for want, placement in zip(wants, batch, strict=True):
        if isinstance(placement, NewSlot):
            service, proposal = want.request.service, placement.proposal
            assert len(set(proposal.officer_ids)) == service.officers_required
            for officer_id in proposal.officer_ids:
                officer = next(o for o in people if o.officer_id == officer_id)
                assert officer.office_code == place.code and service.code in officer.skills
                day = proposal.starts_at.astimezone(place.tz).date()
                assert any(s <= proposal.starts_at and proposal.ends_at <= e
                           for s, e in working_intervals(place, officer, day, CLOSURES))  # fmt: skip
                assert _free(held, officer_id, *proposal.occupied(service)), "double booking"
                held.setdefault(officer_id, []).append(proposal.occupied(service))
    # A webinar never gets more seats than it has.
    taken: dict[str, int] = {}
    for placement in batch:
        if isinstance(placement, Seat):
            taken[placement.slot_id] = taken.get(placement.slot_id, 0) + 1
    room = {w.slot_id: w.seats_left for w in stored} | {
        p.slot_id: WEBINAR.capacity - 1
        for p in batch
        if isinstance(p, NewSlot)  # its opener holds one
    }
    assert all(taken[s] <= room[s] for s in taken)
    # First come first served: in a line, once a ticket found no room, no later one got any.
    for service in SERVICES:
        outcomes = [p is not None for w, p in zip(wants, batch, strict=True) if w.request.service == service]
        assert outcomes == sorted(outcomes, reverse=True)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(zone=st.sampled_from(ZONES), now=instants, drawn=tickets, earlier=bookings)
async def test_placing_an_office_again_after_a_clash_gives_what_one_at_a_time_gives(
    zone: str,
    now: datetime,
    drawn: list[tuple[ServiceType, list[tuple[int, int]]]],
    earlier: list[tuple[str, int, int]],
) -> None:
    """After a clash the planner forgets the office's officers and webinars, replays the tickets
    kept and places the rest again: the same as placing the rest after the kept ones."""
    place, people = office(zone), staff()
    wants = [
        Want(
            place, Request(service, tuple((now + timedelta(hours=o), now + timedelta(hours=o + n)) for o, n in w), now)
        )
        for service, w in drawn
    ]
    booked = existing(now, earlier)
    busy = InMemoryBusy({o: list(v) for o, v in booked.items()})
    planner = BatchPlanner(SlotSearch(people, CLOSURES), busy, {}, new_slot_id=ids("new"))
    first = await planner.place_all(wants)
    keep = len(wants) // 2
    planner.restart(place.code)
    busy.forget(o.officer_id for o in people)
    for officer_id, intervals in booked.items():
        for interval in intervals:
            busy.book(officer_id, interval)
    for want, placement in zip(wants[:keep], first[:keep], strict=True):
        if placement is not None:
            planner.apply(want, placement)
    stuck = {w.line for w, p in zip(wants[:keep], first[:keep], strict=True) if p is None}
    again = await planner.place_all(wants[keep:], stuck=stuck)

    def when(placements: Sequence[Placement | None]) -> list[object]:
        return [p.proposal if isinstance(p, NewSlot) else p and type(p) for p in placements]

    # Slot ids differ (new ones), the rest is the same.
    assert when(again) == when(first[keep:])


# ------------------------------------------------------------ the busy view


@settings(max_examples=200, deadline=None)
@given(
    intervals=st.lists(st.tuples(st.sampled_from("AB"), st.integers(0, 200), st.integers(0, 30)), max_size=30),
    asked=st.lists(st.tuples(st.sampled_from("ABC"), st.integers(-40, 240), st.integers(0, 60)), max_size=30),
)
def test_the_sorted_busy_view_answers_as_a_plain_scan(
    intervals: list[tuple[str, int, int]], asked: list[tuple[str, int, int]]
) -> None:
    """Overlapping and empty intervals too: is_free and load are the plain definitions."""
    base = datetime(2026, 11, 2, tzinfo=UTC)
    plain: dict[str, list[Interval]] = {}
    busy = InMemoryBusy({})
    for officer_id, start, length in intervals:
        interval = (base + timedelta(minutes=start), base + timedelta(minutes=start + length))
        plain.setdefault(officer_id, []).append(interval)
        busy.book(officer_id, interval)
    for officer_id, start, length in asked:
        s, e = base + timedelta(minutes=start), base + timedelta(minutes=start + length)
        assert busy.is_free(officer_id, s, e) == _free(plain, officer_id, s, e)
        assert busy.load(officer_id, s, e) == _load(plain, officer_id, s, e)
    by_start = {o: sorted(v, key=lambda i: i[0]) for o, v in plain.items()}
    assert InMemoryBusy({o: list(v) for o, v in plain.items()}).booked == by_start


def test_the_jitsi_token_is_what_pyjwt_signs() -> None:
    user = {"id": "ref-1", "name": "Pemohon é", "moderator": False, "affiliation": "member"}
    claims = {"iss": "glv", "aud": "jitsi", "sub": "meet.test", "room": "abc", "iat": 1, "nbf": 2, "exp": 3,
              "context": {"user": user}, "moderator": False}  # fmt: skip
    secret = "test-jitsi-secret-of-at-least-32-bytes!!"
    assert hs256_token(claims, secret.encode()) == jwt.encode(claims, secret, algorithm="HS256")
