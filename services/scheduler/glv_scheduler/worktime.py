"""Working time of an office, free of I/O: how many working minutes lie between two instants.

Lead time is measured in the office's own working hours (its weekly hours, national holidays,
cuti bersama and its closures), not in officers' rosters or leave: a ticket filed on Friday
evening and served on Monday at 09:00 waited one working hour, not sixty-three hours.
"""

from __future__ import annotations

import bisect
from datetime import date, datetime, time, timedelta

from glv_scheduler.calendar import Closures, Office, Officer, local_day, working_intervals

MINUTE = timedelta(minutes=1)


class WorkClock:
    """The office's working minutes counted from local midnight of `first` to the end of `last`.

    `minutes(instant)` is the working time elapsed since that origin; the lead between two
    instants is the difference. Instants outside the days covered are refused: the clock
    cannot know the working time it was not built for."""

    def __init__(self, office: Office, closures: Closures, first: date, last: date) -> None:
        if last < first:
            raise ValueError("a work clock covers at least one day")
        anyone = Officer("_office", office.code, frozenset())  # no roster, no leave: the office's hours
        self.origin = datetime.combine(first, time.min, tzinfo=office.tz)
        self.end = datetime.combine(last + timedelta(days=1), time.min, tzinfo=office.tz)
        self._starts: list[datetime] = []
        self._lengths: list[float] = []
        self._before: list[float] = []  # working minutes before each interval
        self._work_days: list[date] = []  # the days with working hours, and when each ends
        self._day_ends: list[datetime] = []
        self._office = office
        total = 0.0
        for n in range((last - first).days + 1):
            day = first + timedelta(days=n)
            for start, end in working_intervals(office, anyone, day, closures):
                self._starts.append(start)
                self._lengths.append((end - start) / MINUTE)
                self._before.append(total)
                total += self._lengths[-1]
                if not self._work_days or self._work_days[-1] != day:
                    self._work_days.append(day)
                    self._day_ends.append(end)
                self._day_ends[-1] = max(self._day_ends[-1], end)
        self.total = total

    @classmethod
    def covering(cls, office: Office, closures: Closures, start: datetime, end: datetime) -> WorkClock:
        """A clock for the local days from the one of `start` to the one of `end`."""
        return cls(office, closures, local_day(start, office), local_day(end, office))

    def minutes(self, instant: datetime) -> float:
        """Working minutes from the origin to `instant`."""
        if not self.origin <= instant <= self.end:
            raise ValueError(f"{instant.isoformat()} is outside the clock's days")
        at = bisect.bisect_right(self._starts, instant) - 1
        if at < 0:
            return 0.0
        inside = (instant - self._starts[at]) / MINUTE
        return self._before[at] + min(max(inside, 0.0), self._lengths[at])

    def working_day_end(self, instant: datetime, after: int = 1) -> datetime:
        """The end of the `after`-th working day after the local day of `instant` (the clock's end
        when its days hold fewer)."""
        at = bisect.bisect_right(self._work_days, local_day(instant, self._office)) + after - 1
        return self._day_ends[at] if at < len(self._day_ends) else self.end

    def between(self, start: datetime, end: datetime) -> float:
        """Working minutes from `start` to `end` (negative when `end` comes first)."""
        return self.minutes(end) - self.minutes(start)

    def hours(self, start: datetime, end: datetime) -> float:
        return self.between(start, end) / 60
