"""Office calendars, free of I/O: when an officer of an office can serve.

Times in a catalog are local wall-clock times of the office's IANA zone; every
instant this module returns is UTC. Breaks are the gaps between an office's
working periods (the Friday prayer break is simply a longer gap).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

from glv_schemas.events import SessionKind

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

Period = tuple[time, time]
Interval = tuple[datetime, datetime]
WeeklyHours = Mapping[int, tuple[Period, ...]]  # weekday (0 = Monday) -> periods


def parse_period(text: str) -> Period:
    """'08:00-12:00' -> (08:00, 12:00)."""
    start, _, end = text.partition("-")
    first, last = time.fromisoformat(start.strip()), time.fromisoformat(end.strip())
    if last <= first:
        raise ValueError(f"period {text!r} must end after it starts")
    return first, last


def parse_week(spec: Mapping[str, Iterable[str]]) -> dict[int, tuple[Period, ...]]:
    week: dict[int, tuple[Period, ...]] = {}
    for name, periods in spec.items():
        parsed = tuple(sorted(parse_period(p) for p in periods))
        for (_, end), (start, _) in itertools.pairwise(parsed):
            if start < end:
                raise ValueError(f"{name}: periods overlap")
        week[WEEKDAYS.index(name)] = parsed
    return week


@dataclass(frozen=True)
class ServiceType:
    code: str
    kind: SessionKind
    duration: timedelta
    buffer: timedelta
    min_notice: timedelta
    horizon: timedelta
    officers_required: int = 1
    capacity: int = 1


@dataclass(frozen=True)
class Office:
    code: str
    zone: str
    hours: WeeklyHours
    closures: frozenset[date] = frozenset()
    services: frozenset[str] = frozenset()

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.zone)


@dataclass(frozen=True)
class Officer:
    officer_id: str
    office_code: str
    skills: frozenset[str]
    roster: WeeklyHours | None = None  # None: the office's hours
    leave: tuple[tuple[date, date], ...] = ()  # inclusive local dates
    display_name: str = ""

    def on_leave(self, day: date) -> bool:
        return any(first <= day <= last for first, last in self.leave)


@dataclass(frozen=True)
class Closures:
    """Days no office works: national holidays (the `holidays` package) and cuti bersama."""

    collective_leave: frozenset[date] = field(default_factory=frozenset)

    def closed(self, day: date) -> bool:
        return day in self.collective_leave or day in _national_holidays(day.year)


@lru_cache(maxsize=16)
def _national_holidays(year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays("ID", years=year).keys())


def _intersect(first: tuple[Period, ...], second: tuple[Period, ...]) -> list[Period]:
    out: list[Period] = []
    for a_start, a_end in first:
        for b_start, b_end in second:
            start, end = max(a_start, b_start), min(a_end, b_end)
            if start < end:
                out.append((start, end))
    return sorted(out)


def working_intervals(office: Office, officer: Officer, day: date, closures: Closures) -> list[Interval]:
    """When the officer serves on this local day, as UTC intervals (empty when closed)."""
    if closures.closed(day) or day in office.closures or officer.on_leave(day):
        return []
    weekday = day.weekday()
    office_periods = office.hours.get(weekday, ())
    periods = (
        list(office_periods) if officer.roster is None else _intersect(office_periods, officer.roster.get(weekday, ()))
    )
    tz = office.tz
    return [
        (
            datetime.combine(day, start, tzinfo=tz).astimezone(UTC),
            datetime.combine(day, end, tzinfo=tz).astimezone(UTC),
        )
        for start, end in periods
    ]


def local_day(instant: datetime, office: Office) -> date:
    return instant.astimezone(office.tz).date()
