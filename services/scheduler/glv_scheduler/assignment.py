"""Choosing a slot, free of I/O.

The rule: the earliest feasible start after the minimum notice and inside the
booking horizon; inside one of the stakeholder's preferred windows when any
fits, otherwise the earliest overall; with officers who have the skill and are
on duty, the least loaded first; a booking occupies its duration plus the
service's buffer. Feasibility of the officers' time comes from a `BusyView`,
so the same search runs on plain values (tests, the benchmark's optimum) and on
the database's bookings.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Protocol

from glv_scheduler.calendar import Closures, Interval, Office, Officer, ServiceType, local_day, working_intervals

GRID = timedelta(minutes=15)


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


def _days(first: datetime, last: datetime, office: Office) -> list[date]:
    start, end = local_day(first, office), local_day(last, office)
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


async def _scan(
    office: Office,
    officers: Sequence[Officer],
    service: ServiceType,
    closures: Closures,
    busy: BusyView,
    earliest: datetime,
    latest_end: datetime,
) -> tuple[datetime, tuple[str, ...]] | None:
    """The earliest start in [earliest, latest_end - duration] with enough free officers."""
    if latest_end - service.duration < earliest:
        return None
    for day in _days(earliest, latest_end, office):
        candidates: dict[datetime, list[Officer]] = {}
        for officer in officers:
            for seg_start, seg_end in working_intervals(office, officer, day, closures):
                start = _ceil_to_grid(max(seg_start, earliest))
                while start + service.duration <= min(seg_end, latest_end):
                    candidates.setdefault(start, []).append(officer)
                    start += GRID
        if not candidates:
            continue  # nobody works that day: nothing to read
        # Day by day, so that a store-backed view reads only the days searched.
        day_start = datetime.combine(day, datetime.min.time(), tzinfo=office.tz)
        day_end = day_start + timedelta(days=1)
        on_duty = sorted({o.officer_id for people in candidates.values() for o in people})
        await busy.prepare(on_duty, day_start, day_end + service.buffer)
        for start in sorted(candidates):
            occupied_end = start + service.duration + service.buffer
            free = [o for o in candidates[start] if busy.is_free(o.officer_id, start, occupied_end)]
            if len(free) >= service.officers_required:
                chosen = sorted(free, key=lambda o: (busy.load(o.officer_id, day_start, day_end), o.officer_id))
                return start, tuple(o.officer_id for o in chosen[: service.officers_required])
    return None


async def find_slot(
    request: Request,
    office: Office,
    officers: Sequence[Officer],
    closures: Closures,
    busy: BusyView,
) -> Proposal | None:
    """The best slot for the request, or None when nothing fits inside the horizon."""
    service = request.service
    staff = eligible_officers(office, officers, service)
    if len(staff) < service.officers_required:
        return None
    earliest = _ceil_to_grid(request.now + service.min_notice)
    latest_end = request.now + service.horizon
    best: tuple[datetime, tuple[str, ...]] | None = None
    for window_start, window_end in sorted(request.windows):
        found = await _scan(
            office, staff, service, closures, busy, max(earliest, window_start), min(latest_end, window_end)
        )
        if found is not None and (best is None or found[0] < best[0]):
            best = found
    if best is not None:
        return Proposal(best[0], best[0] + service.duration, best[1], in_preferred_window=True)
    found = await _scan(office, staff, service, closures, busy, earliest, latest_end)
    if found is None:
        return None
    return Proposal(found[0], found[0] + service.duration, found[1], in_preferred_window=False)


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


def _minutes_within(intervals: Iterable[Interval], start: datetime, end: datetime) -> float:
    return sum(max(0.0, (min(e, end) - max(s, start)).total_seconds()) for s, e in intervals) / 60


@dataclass
class InMemoryBusy:
    """A BusyView over plain intervals: for tests, the benchmark, and a batch's own bookings."""

    booked: dict[str, list[Interval]]

    async def prepare(self, officer_ids: Sequence[str], start: datetime, end: datetime) -> None:
        return None

    def is_free(self, officer_id: str, start: datetime, end: datetime) -> bool:
        return all(e <= start or end <= s for s, e in self.booked.get(officer_id, ()))

    def load(self, officer_id: str, start: datetime, end: datetime) -> float:
        return _minutes_within(self.booked.get(officer_id, ()), start, end)

    def book(self, officer_id: str, interval: Interval) -> None:
        self.booked.setdefault(officer_id, []).append(interval)
