"""Choosing a slot, free of I/O.

The rule: the earliest feasible start after the minimum notice and inside the
booking horizon; inside one of the stakeholder's preferred windows when any
fits, otherwise the earliest overall; with officers who have the skill and are
on duty, the least loaded first; a booking occupies its duration plus the
service's buffer. Feasibility of the officers' time comes from a `BusyView`,
so the same search runs on plain values (tests, the benchmark's optimum) and on
the database's bookings.

A batch of tickets is placed by `BatchPlanner`: one after another, first come
first served, each ticket's booking kept in memory for the next, exactly as if
each had been searched and booked on its own.
"""

from __future__ import annotations

import bisect
import math
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Protocol

from glv_scheduler.calendar import Closures, Interval, Office, Officer, ServiceType, local_day, working_intervals

GRID = timedelta(minutes=15)
MINUTE = timedelta(minutes=1)
# What a batch reads up front per ticket: the days of its preferred windows (searched
# first), or for a ticket without windows the first days of its range (the search stops
# at the first feasible start). Further days are read as the search reaches them.
PREFETCH_DAYS = 2


class BusyView(Protocol):
    async def prepare(self, officer_ids: Sequence[str], start: datetime, end: datetime) -> None:
        """Make the bookings overlapping [start, end) available to is_free (may read a store)."""

    def is_free(self, officer_id: str, start: datetime, end: datetime) -> bool:
        """No live booking of the officer overlaps [start, end)."""

    def load(self, officer_id: str, start: datetime, end: datetime) -> float:
        """Minutes booked in [start, end), to spread the day's work across officers."""


@dataclass(frozen=True)
class Request:
    service: ServiceType
    windows: tuple[Interval, ...]
    now: datetime


@dataclass(frozen=True)
class Proposal:
    starts_at: datetime
    ends_at: datetime
    officer_ids: tuple[str, ...]
    in_preferred_window: bool

    def occupied(self, service: ServiceType) -> Interval:
        """What the booking holds of each officer's time: the session and its buffer."""
        return self.starts_at, self.ends_at + service.buffer


@dataclass(frozen=True)
class OpenWebinar:
    slot_id: str
    starts_at: datetime
    ends_at: datetime
    seats_left: int


def eligible_officers(office: Office, officers: Sequence[Officer], service: ServiceType) -> list[Officer]:
    return sorted(
        (o for o in officers if o.office_code == office.code and service.code in o.skills),
        key=lambda o: o.officer_id,
    )


def _ceil_to_grid(instant: datetime) -> datetime:
    epoch = datetime(2000, 1, 1, tzinfo=instant.tzinfo)
    steps = math.ceil((instant - epoch) / GRID)
    return epoch + steps * GRID


def _grid(seg_start: datetime, seg_end: datetime, duration: timedelta) -> tuple[datetime, int]:
    """The first start on the grid from which a session of `duration` fits in [seg_start, seg_end],
    and how many there are (one every GRID)."""
    first = _ceil_to_grid(seg_start)
    if first + duration > seg_end:
        return first, 0
    return first, (seg_end - duration - first) // GRID + 1


def _days(first: datetime, last: datetime, office: Office) -> list[date]:
    start, end = local_day(first, office), local_day(last, office)
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


@dataclass(frozen=True)
class _Run:
    """Starts first, first + GRID, ... (count of them) at which the same officers can start."""

    first: datetime
    count: int
    people: tuple[Officer, ...]  # in officer id order


@dataclass(frozen=True)
class _Day:
    """The candidate starts of one service on one local day, before the range searched clips them."""

    start: datetime  # local midnight
    runs: tuple[_Run, ...]  # in time order
    on_duty: list[str]  # every officer with a start that day, sorted


def _inside(calendar: _Day, first: datetime, last: datetime) -> list[tuple[_Run, int, int]]:
    """The starts of each run of the day inside [first, last]: run.first + n * GRID for lo <= n < hi."""
    ranges = [
        (run, max(0, -((run.first - first) // GRID)), min(run.count, (last - run.first) // GRID + 1))
        for run in calendar.runs
    ]
    return [(run, lo, hi) for run, lo, hi in ranges if lo < hi]


class SlotSearch:
    """The search for one catalog (officers, closures), remembering the calendars it has worked out.

    Office hours, rosters and closures do not change with the catalog: the candidate starts of a
    service on a day are worked out once and reused by every ticket (compactly: runs of starts)."""

    def __init__(self, officers: Sequence[Officer], closures: Closures) -> None:
        self._officers = officers
        self._closures = closures
        self._staff: dict[tuple[str, str], list[Officer]] = {}
        self._calendar: dict[tuple[str, str, date], _Day] = {}
        self._office_hours: dict[tuple[str, date], tuple[Interval, ...]] = {}

    @property
    def size(self) -> int:
        """How many service-days it remembers."""
        return len(self._calendar)

    def staff(self, office: Office, service: ServiceType) -> list[Officer]:
        key = (office.code, service.code)
        found = self._staff.get(key)
        if found is None:
            found = self._staff[key] = eligible_officers(office, self._officers, service)
        return found

    def _hours(self, office: Office, officer: Officer, day: date) -> tuple[Interval, ...]:
        """When the officer serves that day; officers without a roster share the office's hours."""
        if officer.roster is not None or officer.on_leave(day):
            return tuple(working_intervals(office, officer, day, self._closures))
        key = (office.code, day)
        found = self._office_hours.get(key)
        if found is None:
            found = self._office_hours[key] = tuple(working_intervals(office, officer, day, self._closures))
        return found

    def _day(self, office: Office, service: ServiceType, day: date) -> _Day:
        key = (office.code, service.code, day)
        found = self._calendar.get(key)
        if found is not None:
            return found
        alike: dict[tuple[Interval, ...], list[Officer]] = {}  # officers with the same hours share a grid
        for officer in self.staff(office, service):
            alike.setdefault(self._hours(office, officer, day), []).append(officer)
        runs: list[_Run] = []
        if len(alike) == 1:  # the usual day: everyone works the office's hours, one run per period
            [(segments, officers)] = alike.items()
            for seg_start, seg_end in segments:
                first, count = _grid(seg_start, seg_end, service.duration)
                if count:
                    runs.append(_Run(first, count, tuple(officers)))
            runs.sort(key=lambda r: r.first)
        else:
            candidates: dict[datetime, list[Officer]] = {}
            for segments, officers in alike.items():
                for seg_start, seg_end in segments:
                    first, count = _grid(seg_start, seg_end, service.duration)
                    for n in range(count):
                        candidates.setdefault(first + n * GRID, []).extend(officers)
            for start in sorted(candidates):
                people = tuple(sorted(candidates[start], key=lambda o: o.officer_id))
                last = runs[-1] if runs else None
                if last is not None and last.people == people and last.first + last.count * GRID == start:
                    runs[-1] = _Run(last.first, last.count + 1, people)
                else:
                    runs.append(_Run(start, 1, people))
        found = self._calendar[key] = _Day(
            start=datetime.combine(day, datetime.min.time(), tzinfo=office.tz),
            runs=tuple(runs),
            on_duty=sorted({o.officer_id for run in runs for o in run.people}),
        )
        return found

    async def _scan(
        self,
        office: Office,
        service: ServiceType,
        busy: BusyView,
        earliest: datetime,
        latest_end: datetime,
    ) -> tuple[datetime, tuple[str, ...]] | None:
        """The earliest start in [earliest, latest_end - duration] with enough free officers."""
        if latest_end - service.duration < earliest:
            return None
        first, last = _ceil_to_grid(earliest), latest_end - service.duration
        for day in _days(earliest, latest_end, office):
            calendar = self._day(office, service, day)
            ranges = _inside(calendar, first, last)
            if not ranges:
                continue  # nobody can start then that day: nothing to read
            # Day by day, so that a store-backed view reads only the days searched.
            day_end = calendar.start + timedelta(days=1)
            await busy.prepare(calendar.on_duty, calendar.start, day_end + service.buffer)
            needed = service.officers_required
            for run, lo, hi in ranges:
                for n in range(lo, hi):
                    start = run.first + n * GRID
                    occupied_end = start + service.duration + service.buffer
                    free = [o for o in run.people if busy.is_free(o.officer_id, start, occupied_end)]
                    if len(free) >= needed:
                        chosen = sorted(
                            free, key=lambda o: (busy.load(o.officer_id, calendar.start, day_end), o.officer_id)
                        )
                        return start, tuple(o.officer_id for o in chosen[:needed])
        return None

    def starts(
        self, office: Office, service: ServiceType, earliest: datetime, latest_end: datetime
    ) -> Iterator[tuple[datetime, tuple[Officer, ...]]]:
        """Every grid start in [earliest, latest_end - duration], in time order, with the officers who
        have the skill and are on duty for the whole session then (office hours, breaks, closures,
        rosters, leave): the candidates `find` checks against the bookings, for an exact optimizer."""
        if latest_end - service.duration < earliest:
            return
        first, last = _ceil_to_grid(earliest), latest_end - service.duration
        for day in _days(earliest, latest_end, office):
            for run, lo, hi in _inside(self._day(office, service, day), first, last):
                for n in range(lo, hi):
                    yield run.first + n * GRID, run.people

    @property
    def closures(self) -> Closures:
        return self._closures

    async def find(self, request: Request, office: Office, busy: BusyView) -> Proposal | None:
        """The best slot for the request, or None when nothing fits inside the horizon."""
        service = request.service
        if len(self.staff(office, service)) < service.officers_required:
            return None
        earliest = _ceil_to_grid(request.now + service.min_notice)
        latest_end = request.now + service.horizon
        best: tuple[datetime, tuple[str, ...]] | None = None
        for window_start, window_end in sorted(request.windows):
            start = max(earliest, window_start)
            if best is not None and _ceil_to_grid(start) >= best[0]:
                continue  # nothing in this window can start before the best found so far
            found = await self._scan(office, service, busy, start, min(latest_end, window_end))
            if found is not None and (best is None or found[0] < best[0]):
                best = found
        if best is not None:
            return Proposal(best[0], best[0] + service.duration, best[1], in_preferred_window=True)
        found = await self._scan(office, service, busy, earliest, latest_end)
        if found is None:
            return None
        return Proposal(found[0], found[0] + service.duration, found[1], in_preferred_window=False)

    def reads(self, request: Request, office: Office) -> list[tuple[list[str], datetime, datetime]]:
        """The officer-days the search of this request will most likely read, (officer ids, from, to):
        the days of its preferred windows, or without windows its first PREFETCH_DAYS days."""
        service = request.service
        earliest = _ceil_to_grid(request.now + service.min_notice)
        latest_end = request.now + service.horizon
        if latest_end - service.duration < earliest or len(self.staff(office, service)) < service.officers_required:
            return []
        days: set[date] = set()
        for window_start, window_end in request.windows:
            start, end = max(earliest, window_start), min(latest_end, window_end)
            if start < end:
                days.update(_days(start, end, office))
        spans = self._spans(office, service, sorted(days))
        if not spans:  # no windows, or nobody works in them (a holiday): the range from its start
            spans = self._spans(office, service, _days(earliest, latest_end, office)[:PREFETCH_DAYS])
        return spans

    def _spans(
        self, office: Office, service: ServiceType, days: Iterable[date]
    ) -> list[tuple[list[str], datetime, datetime]]:
        spans = []
        for day in days:
            on_duty = self._day(office, service, day).on_duty
            if on_duty:
                start = datetime.combine(day, datetime.min.time(), tzinfo=office.tz)
                spans.append((on_duty, start, start + timedelta(days=1) + service.buffer))
        return spans


async def find_slot(
    request: Request,
    office: Office,
    officers: Sequence[Officer],
    closures: Closures,
    busy: BusyView,
) -> Proposal | None:
    """The best slot for the request, or None when nothing fits inside the horizon."""
    return await SlotSearch(officers, closures).find(request, office, busy)


def choose_webinar(request: Request, open_webinars: Sequence[OpenWebinar]) -> OpenWebinar | None:
    """A webinar already planned with a free seat: inside a preferred window if one is, else the earliest."""
    service = request.service
    earliest = request.now + service.min_notice
    latest_end = request.now + service.horizon
    usable = sorted(
        (w for w in open_webinars if w.seats_left > 0 and w.starts_at >= earliest and w.ends_at <= latest_end),
        key=lambda w: w.starts_at,
    )
    for webinar in usable:
        if any(start <= webinar.starts_at and webinar.ends_at <= end for start, end in request.windows):
            return webinar
    return usable[0] if usable else None


@dataclass
class InMemoryBusy:
    """A BusyView over plain intervals: for tests, the benchmark, and a batch's own bookings.

    Each officer's intervals are kept sorted by start, with the running maximum of their ends,
    so that a check or a day's load looks only at the intervals around the time asked about."""

    booked: dict[str, list[Interval]]
    _starts: dict[str, list[datetime]] = field(default_factory=dict, init=False, repr=False)
    _reach: dict[str, list[datetime]] = field(default_factory=dict, init=False, repr=False)
    _longest: dict[str, timedelta] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        given, self.booked = self.booked, {}
        for officer_id, intervals in given.items():
            for interval in intervals:
                self.book(officer_id, interval)

    async def prepare(self, officer_ids: Sequence[str], start: datetime, end: datetime) -> None:
        return None

    def is_free(self, officer_id: str, start: datetime, end: datetime) -> bool:
        starts = self._starts.get(officer_id)
        if not starts:
            return True
        before = bisect.bisect_left(starts, end)  # the intervals starting before `end`
        return before == 0 or self._reach[officer_id][before - 1] <= start

    def load(self, officer_id: str, start: datetime, end: datetime) -> float:
        starts = self._starts.get(officer_id)
        if not starts:
            return 0.0
        intervals = self.booked[officer_id]
        first = bisect.bisect_left(starts, start - self._longest[officer_id])
        last = bisect.bisect_left(starts, end)
        total = timedelta(0)
        for s, e in intervals[first:last]:
            overlap = min(e, end) - max(s, start)
            if overlap > timedelta(0):
                total += overlap
        return total / MINUTE

    def book(self, officer_id: str, interval: Interval) -> None:
        intervals = self.booked.setdefault(officer_id, [])
        starts = self._starts.setdefault(officer_id, [])
        reach = self._reach.setdefault(officer_id, [])
        at = bisect.bisect_right(starts, interval[0])
        intervals.insert(at, interval)
        starts.insert(at, interval[0])
        reach.insert(at, interval[1])
        for k in range(at, len(reach)):  # the running maximum of the ends, from the new interval on
            reach[k] = max(reach[k], reach[k - 1]) if k else intervals[0][1]
        self._longest[officer_id] = max(self._longest.get(officer_id, timedelta(0)), interval[1] - interval[0])

    def forget(self, officer_ids: Iterable[str]) -> None:
        """Drop what is known of these officers' time."""
        for officer_id in officer_ids:
            for held in (self.booked, self._starts, self._reach, self._longest):
                held.pop(officer_id, None)


# ----------------------------------------------------------------- batches


@dataclass(frozen=True)
class Want:
    """A ticket to place: its office, its request; `leaving` is the webinar a rescheduled ticket leaves."""

    office: Office
    request: Request
    leaving: str | None = None

    @property
    def line(self) -> tuple[str, str]:
        """The waiting line it joins when nothing fits: its office and service."""
        return self.office.code, self.request.service.code


@dataclass(frozen=True)
class NewSlot:
    """A new session: the slot id it will have, when and with whom."""

    slot_id: str
    proposal: Proposal


@dataclass(frozen=True)
class Seat:
    """A seat in a webinar planned before (stored, or new earlier in the batch)."""

    slot_id: str


Placement = NewSlot | Seat


def _new_slot_id() -> str:
    return str(uuid.uuid4())


class BatchPlanner:
    """Places a batch's tickets in memory, one after another, with the same rules as one at a time.

    A webinar ticket first takes a free seat of an open webinar (`choose_webinar`), else it opens
    a new webinar with `capacity` seats; every other ticket gets `SlotSearch.find`. Each placement
    is applied before the next ticket is searched: its officers' time is booked in `busy`, a new
    webinar is open to the tickets after it, a seat taken is gone. The result is what placing the
    tickets one at a time on the same bookings gives, ticket by ticket.

    First come first served: tickets of one office and service that arrive after one that found
    no room find none either (they ask for the same thing at the same `now`) and are not searched.
    """

    def __init__(
        self,
        search: SlotSearch,
        busy: InMemoryBusy,
        webinars: Mapping[tuple[str, str], Sequence[OpenWebinar]] | None = None,
        new_slot_id: Callable[[], str] = _new_slot_id,
    ) -> None:
        self.search = search
        self.busy = busy
        self._new_slot_id = new_slot_id
        self._stored = {line: list(found) for line, found in (webinars or {}).items()}
        self._open = {line: list(found) for line, found in self._stored.items()}

    async def place(self, want: Want) -> Placement | None:
        """Place one ticket and keep its placement for the tickets after it."""
        request, service = want.request, want.request.service
        placement: Placement | None = None
        if service.kind == "webinar":
            open_now = [w for w in self._open.get(want.line, ()) if w.slot_id != want.leaving]
            webinar = choose_webinar(request, open_now)
            if webinar is not None:
                placement = Seat(webinar.slot_id)
        if placement is None:
            proposal = await self.search.find(request, want.office, self.busy)
            if proposal is None:
                return None
            placement = NewSlot(self._new_slot_id(), proposal)
        self.apply(want, placement)
        return placement

    def apply(self, want: Want, placement: Placement) -> None:
        """What a placement takes: its officers' time, or a webinar seat; a new webinar opens."""
        service = want.request.service
        if isinstance(placement, Seat):
            line = self._open[want.line]
            at = next(n for n, w in enumerate(line) if w.slot_id == placement.slot_id)
            line[at] = OpenWebinar(line[at].slot_id, line[at].starts_at, line[at].ends_at, line[at].seats_left - 1)
            return
        proposal = placement.proposal
        for officer_id in proposal.officer_ids:
            self.busy.book(officer_id, proposal.occupied(service))
        if service.kind == "webinar" and service.capacity > 1:
            self._open.setdefault(want.line, []).append(
                OpenWebinar(placement.slot_id, proposal.starts_at, proposal.ends_at, service.capacity - 1)
            )

    async def place_all(
        self, wants: Sequence[Want], *, stuck: Iterable[tuple[str, str]] = ()
    ) -> list[Placement | None]:
        """Place the tickets in order; None for those that find no room. Lines in `stuck`
        (office, service) already had a ticket that found none."""
        blocked = set(stuck)
        placed: list[Placement | None] = []
        for want in wants:
            placement = None if want.line in blocked else await self.place(want)
            if placement is None:
                blocked.add(want.line)
            placed.append(placement)
        return placed

    def restart(self, office_code: str) -> None:
        """Forget the webinar seats and new webinars planned for an office (its officers' time
        is the busy view's to forget): its tickets are placed again, from the stored webinars."""
        for line, stored in self._stored.items():
            if line[0] == office_code:
                self._open[line] = list(stored)
        for line in [line for line in self._open if line[0] == office_code and line not in self._stored]:
            del self._open[line]
