"""Assigning a round of consultations together, free of I/O: an exact optimizer over the round,
never worse than placing the same tickets first come first served.

At a round every waiting ticket of an office is placed at once. Lexicographically: (1) as many
tickets placed as possible, then as many preferred windows honoured; (2) then the least total
lead time in the office's working hours; (3) then the least load on the busiest officer of each
day. Room is given in filing order: when a service cannot place all its tickets, the last filed
wait (as with first come first served, and so the waiting line keeps its order). Among placed
tickets of a service that could swap places without changing any of that, the earlier filing
gets the earlier start. Existing bookings are fixed: a start that overlaps one is never a candidate.

The model is grouped so that a round of a few hundred tickets stays small: every ticket of a
service asks at the same instant, so they differ only by their windows. A session `z[s, o, τ]`
places some ticket of service s with officer o at τ outside any window; `x[g, o, τ]` places a
ticket of the window group g (the tickets of a service with the same windows) inside them; p_t
says ticket t has a slot and w_g how many of group g's are placed outside their windows. Two
sessions of an officer overlap iff one covers the other's start, so one row per officer and
candidate start bounds what covers it by 1. The criteria are solved as stages with HiGHS (big
weights would drown in the solver's gap tolerance), each keeping the previous one's optimum.

The greedy (`BatchPlanner.place_all` in filing order) is always worked out: it prunes the model
(ungrouped starts only up to a working day after its last start, so its own placements stay in
the model) and is the answer when the solver has none in time or a worse one.
"""

from __future__ import annotations

import bisect
import itertools
import uuid
from collections import defaultdict
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from time import perf_counter
from typing import Any, Literal, TypeVar, cast

import numpy as np
import numpy.typing as npt
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_array

from glv_scheduler.assignment import BatchPlanner, InMemoryBusy, NewSlot, Proposal, Request, SlotSearch, Want
from glv_scheduler.calendar import Interval, Office, ServiceType, local_day
from glv_scheduler.worktime import WorkClock

MINUTE = timedelta(minutes=1)
SLACK_DAYS = 1  # ungrouped starts are searched up to this many working days after the greedy's last
MIN_STAGE_S = 0.05  # a stage given less time than this is not started
RESERVE = 0.05  # the share of the time limit kept for the work after the solver
LEAD_TOLERANCE = 1e-3  # minutes of total lead the load stage may add (solver round-off)

Method = Literal["optimal", "time_limit", "greedy"]
StageStatus = Literal["optimal", "time_limit", "no_solution", "skipped"]
Slot = tuple[datetime, str]  # start, officer
T = TypeVar("T")


@dataclass(frozen=True)
class RoundTicket:
    ticket_id: uuid.UUID
    service_code: str
    arrival: int  # filing order: the lower filed first
    windows: tuple[Interval, ...]


@dataclass(frozen=True)
class RoundPlacement:
    ticket_id: uuid.UUID
    proposal: Proposal


@dataclass(frozen=True)
class RoundScore:
    """What the criteria compare: placed, then windows honoured, then the least lead."""

    placed: int
    windows: int
    lead_minutes: float  # working minutes from the round to each start, summed

    def key(self) -> tuple[int, int, float]:
        return self.placed, self.windows, -round(self.lead_minutes, 6)


@dataclass(frozen=True)
class Stage:
    name: Literal["windows", "lead", "load"]
    status: StageStatus
    seconds: float


@dataclass(frozen=True)
class RoundResult:
    placements: tuple[RoundPlacement, ...]  # in filing order
    unplaced: tuple[uuid.UUID, ...]  # in filing order
    method: Method  # optimal: placed, windows and lead proven optimal (load spread: see stages)
    fallback_reason: str | None  # why the greedy's placements were kept
    windows_honoured: int
    lead_hours: float  # total working hours from the round to the placed starts
    seconds: float
    greedy: RoundScore  # the first-come-first-served placements of the same round
    stages: tuple[Stage, ...] = ()
    variables: int = 0  # columns of the model (0 when it was not built)


# ------------------------------------------------------------------------------- the round


def round_reads(
    search: SlotSearch, office: Office, services: Iterable[ServiceType], round_at: datetime
) -> list[tuple[list[str], datetime, datetime]]:
    """The officer time `plan_round` looks at, (officer ids, from, to) as `BatchBusy.read` takes it:
    every officer with one of the services' skills, whole local days from the round's day to the
    last day of the service's horizon, plus its buffer (the greedy's day loads read whole days)."""
    spans = []
    for service in services:
        officers = [o.officer_id for o in search.staff(office, service)]
        if officers:
            first = datetime.combine(local_day(round_at, office), time.min, tzinfo=office.tz)
            last = local_day(round_at + service.horizon, office) + timedelta(days=1)
            spans.append((officers, first, datetime.combine(last, time.min, tzinfo=office.tz) + service.buffer))
    return spans


def plan_round(
    search: SlotSearch,
    busy: InMemoryBusy,
    office: Office,
    services: Mapping[str, ServiceType],
    tickets: Sequence[RoundTicket],
    round_at: datetime,
    *,
    time_limit_s: float = 8.0,
    room_in_filing_order: bool = True,
) -> RoundResult:
    """Place a round's consultations at one office. `busy` holds every live booking of the office's
    officers over the days `round_reads` names (it is read, never changed); `services` maps each
    ticket's service code to its type. Raises ValueError for a service that is not a one-officer,
    one-seat consultation offered at the office.

    `room_in_filing_order`: when a service cannot place all its tickets, the last filed wait (as
    first come first served has them wait). Off, the tickets that wait are whichever let more
    windows be honoured: more windows in a full round, but a later filing may pass an earlier one."""
    started = perf_counter()
    deadline = started + time_limit_s
    ordered = sorted(tickets, key=lambda t: t.arrival)  # stable: equal arrivals keep their order
    kinds = _services(office, services, ordered)
    clock = WorkClock.covering(
        office, search.closures, round_at, max((round_at + s.horizon for s in kinds.values()), default=round_at)
    )
    greedy = _greedy(search, busy, office, kinds, ordered, round_at)
    greedy_score = _score(greedy, ordered, kinds, clock, round_at)

    def result(
        chosen: Mapping[uuid.UUID, Slot], method: Method, reason: str | None, stages: Sequence[Stage], size: int
    ) -> RoundResult:
        score = greedy_score if chosen is greedy else _score(chosen, ordered, kinds, clock, round_at)
        return RoundResult(
            placements=tuple(
                RoundPlacement(t.ticket_id, _proposal(t, kinds[t.service_code], chosen[t.ticket_id]))
                for t in ordered
                if t.ticket_id in chosen
            ),
            unplaced=tuple(t.ticket_id for t in ordered if t.ticket_id not in chosen),
            method=method,
            fallback_reason=reason,
            windows_honoured=score.windows,
            lead_hours=score.lead_minutes / 60,
            seconds=perf_counter() - started,
            greedy=greedy_score,
            stages=tuple(stages),
            variables=size,
        )

    if not ordered:
        return result(greedy, "optimal", None, (), 0)
    model = _build(search, busy, office, kinds, ordered, round_at, clock, _cutoffs(greedy, ordered, kinds, clock))
    if not model.officer:  # no free start at all: nothing can be placed, as the greedy found
        return result(greedy, "optimal", None, (), 0)
    solver = _Solver(model, busy, deadline - RESERVE * time_limit_s, room_in_filing_order)
    solved, size = solver.run(), solver.width
    if solved.pick is None:
        return result(greedy, "greedy", solved.reason, solved.stages, size)
    chosen = _fair(model, solved.pick)
    if not _no_overlap(chosen, busy, kinds, ordered):  # a guard: the model forbids it
        return result(greedy, "greedy", "the solver's placements overlap", solved.stages, size)
    score = _score(chosen, ordered, kinds, clock, round_at)
    if score.key() < greedy_score.key():
        worse = (
            "places fewer tickets"
            if score.placed < greedy_score.placed
            else "honours fewer windows"
            if score.windows < greedy_score.windows
            else "has a longer lead time"
        )
        return result(greedy, "greedy", f"the solver's best in time {worse} than the greedy", solved.stages, size)
    optimal = all(s.status == "optimal" for s in solved.stages if s.name != "load")
    return result(chosen, "optimal" if optimal else "time_limit", None, solved.stages, size)


def _services(
    office: Office, services: Mapping[str, ServiceType], tickets: Sequence[RoundTicket]
) -> dict[str, ServiceType]:
    """The round's services, each checked: only one-officer, one-seat consultations offered here."""
    kinds: dict[str, ServiceType] = {}
    seen: set[uuid.UUID] = set()
    for ticket in tickets:
        if ticket.ticket_id in seen:
            raise ValueError(f"ticket {ticket.ticket_id} is twice in the round")
        seen.add(ticket.ticket_id)
        code = ticket.service_code
        if code in kinds:
            continue
        service = services.get(code)
        if service is None or code not in office.services:
            raise ValueError(f"service {code!r} is not offered at {office.code}")
        if service.kind != "consultation" or service.capacity != 1 or service.officers_required != 1:
            raise ValueError(f"service {code!r}: rounds place one-officer consultations only")
        kinds[code] = service
    return kinds


def _run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never waits to its end: the search over an in-memory busy view."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    coroutine.close()
    raise RuntimeError("the search waited for I/O: plan_round needs its bookings read up front")


def _greedy(
    search: SlotSearch,
    busy: InMemoryBusy,
    office: Office,
    kinds: Mapping[str, ServiceType],
    tickets: Sequence[RoundTicket],
    round_at: datetime,
) -> dict[uuid.UUID, Slot]:
    """First come first served, as immediate assignment places a batch, on a copy of the bookings."""
    own = InMemoryBusy({officer_id: list(held) for officer_id, held in busy.booked.items()})
    planner = BatchPlanner(search, own, new_slot_id=lambda: "")
    wants = [Want(office, Request(kinds[t.service_code], t.windows, round_at)) for t in tickets]
    placed = _run_sync(planner.place_all(wants))
    return {
        t.ticket_id: (p.proposal.starts_at, p.proposal.officer_ids[0])
        for t, p in zip(tickets, placed, strict=True)
        if isinstance(p, NewSlot)
    }


def _in_window(windows: Iterable[Interval], start: datetime, duration: timedelta) -> bool:
    return any(ws <= start and start + duration <= we for ws, we in windows)


def _proposal(ticket: RoundTicket, service: ServiceType, slot: Slot) -> Proposal:
    start, officer_id = slot
    return Proposal(start, start + service.duration, (officer_id,), _in_window(ticket.windows, start, service.duration))


def _score(
    chosen: Mapping[uuid.UUID, Slot],
    tickets: Sequence[RoundTicket],
    kinds: Mapping[str, ServiceType],
    clock: WorkClock,
    round_at: datetime,
) -> RoundScore:
    placed = [(t, chosen[t.ticket_id][0]) for t in tickets if t.ticket_id in chosen]
    return RoundScore(
        placed=len(placed),
        windows=sum(_in_window(t.windows, start, kinds[t.service_code].duration) for t, start in placed),
        lead_minutes=sum(clock.between(round_at, start) for _, start in placed),
    )


def _cutoffs(
    greedy: Mapping[uuid.UUID, Slot],
    tickets: Sequence[RoundTicket],
    kinds: Mapping[str, ServiceType],
    clock: WorkClock,
) -> dict[str, datetime | None]:
    """The latest ungrouped start searched per service: SLACK_DAYS working days after the greedy's
    last start (its placements all stay in the model), none for a service the greedy could not
    place entirely (it is full to its horizon)."""
    if not greedy:
        return dict.fromkeys(kinds)
    cutoff = clock.working_day_end(max(start for start, _ in greedy.values()), SLACK_DAYS)
    full = {t.service_code for t in tickets if t.ticket_id not in greedy}
    return {code: None if code in full else cutoff for code in kinds}


def _no_overlap(
    chosen: Mapping[uuid.UUID, Slot],
    busy: InMemoryBusy,
    kinds: Mapping[str, ServiceType],
    tickets: Sequence[RoundTicket],
) -> bool:
    own = InMemoryBusy({officer_id: list(held) for officer_id, held in busy.booked.items()})
    for ticket in tickets:
        if ticket.ticket_id in chosen:
            service, (start, officer_id) = kinds[ticket.service_code], chosen[ticket.ticket_id]
            occupied = (start, start + service.duration + service.buffer)
            if not own.is_free(officer_id, *occupied):
                return False
            own.book(officer_id, occupied)
    return True


# ------------------------------------------------------------------------------- the model


@dataclass
class _Line:
    """The round's tickets of one service, in filing order: those only the ungrouped pool can
    place (no window with a free start), and its window groups."""

    service: ServiceType
    tickets: list[RoundTicket] = field(default_factory=list)
    plain: list[RoundTicket] = field(default_factory=list)
    groups: list[int] = field(default_factory=list)


@dataclass
class _Group:
    line: int
    windows: tuple[Interval, ...]
    members: list[RoundTicket] = field(default_factory=list)  # in filing order


@dataclass
class _Model:
    """The candidate sessions: x (group >= 0) and z (group -1), one per officer and start."""

    lines: list[_Line] = field(default_factory=list)
    groups: list[_Group] = field(default_factory=list)
    officer: list[str] = field(default_factory=list)
    start: list[datetime] = field(default_factory=list)
    line: list[int] = field(default_factory=list)
    group: list[int] = field(default_factory=list)
    clock: list[float] = field(default_factory=list)  # working minutes of the start (the clock's origin)
    occupied: list[float] = field(default_factory=list)  # minutes held: duration and buffer
    day: list[int] = field(default_factory=list)  # index into days
    days: list[datetime] = field(default_factory=list)  # local midnights

    def add(
        self, officer_id: str, start: datetime, line: int, group: int, clock: float, occupied: float, day: int
    ) -> None:
        self.officer.append(officer_id)
        self.start.append(start)
        self.line.append(line)
        self.group.append(group)
        self.clock.append(clock)
        self.occupied.append(occupied)
        self.day.append(day)


def _build(
    search: SlotSearch,
    busy: InMemoryBusy,
    office: Office,
    kinds: Mapping[str, ServiceType],
    tickets: Sequence[RoundTicket],
    round_at: datetime,
    clock: WorkClock,
    cutoffs: Mapping[str, datetime | None],
) -> _Model:
    model = _Model()
    day_index: dict[datetime, int] = {}

    def day_of(start: datetime) -> int:
        midnight = datetime.combine(local_day(start, office), time.min, tzinfo=office.tz)
        if midnight not in day_index:
            day_index[midnight] = len(model.days)
            model.days.append(midnight)
        return day_index[midnight]

    by_service: dict[str, list[RoundTicket]] = defaultdict(list)
    for ticket in tickets:
        by_service[ticket.service_code].append(ticket)
    for code, waiting in by_service.items():
        service = kinds[code]
        held = service.duration + service.buffer
        free = [
            (start, officer.officer_id)
            for start, people in search.starts(
                office, service, round_at + service.min_notice, round_at + service.horizon
            )
            for officer in people
            if busy.is_free(officer.officer_id, start, start + held)
        ]
        line_no = len(model.lines)
        line = _Line(service, tickets=list(waiting))
        model.lines.append(line)
        groups: dict[tuple[Interval, ...], int] = {}  # window group by windows
        in_windows: dict[tuple[Interval, ...], list[Slot]] = {}
        for ticket in waiting:
            key = tuple(sorted(set(ticket.windows)))
            if key not in in_windows:
                in_windows[key] = _inside(free, key, service.duration)
            if not in_windows[key]:
                line.plain.append(ticket)
                continue
            if key not in groups:
                groups[key] = len(model.groups)
                line.groups.append(groups[key])
                model.groups.append(_Group(line_no, key))
            model.groups[groups[key]].members.append(ticket)
        cutoff = cutoffs[code]
        columns = [(s, -1) for s in free if cutoff is None or s[0] <= cutoff]
        columns += [(s, g) for key, g in groups.items() for s in in_windows[key]]
        for (start, officer_id), group in columns:
            model.add(officer_id, start, line_no, group, clock.minutes(start), held / MINUTE, day_of(start))
    return model


def _start_of(slot: Slot) -> datetime:
    return slot[0]


def _inside(free: Sequence[Slot], windows: tuple[Interval, ...], duration: timedelta) -> list[Slot]:
    """The free starts (in time order) inside any of the windows, each once."""
    found: set[Slot] = set()
    for window_start, window_end in windows:
        first = bisect.bisect_left(free, window_start, key=_start_of)
        last = bisect.bisect_right(free, window_end - duration, key=_start_of)
        found.update(free[first:last])
    return sorted(found)


@dataclass(frozen=True)
class _Pick:
    """A solution: the sessions (their columns) and the tickets given a slot."""

    sessions: list[int]
    placed: frozenset[uuid.UUID]


@dataclass
class _Solved:
    pick: _Pick | None  # None when no stage found a solution
    stages: list[Stage]
    reason: str | None = None


class _Sparse:
    """A constraint matrix built entry by entry."""

    def __init__(self) -> None:
        self.rows: list[int] = []
        self.cols: list[int] = []
        self.vals: list[float] = []
        self.count = 0

    def row(self, entries: Iterable[tuple[int, float]]) -> None:
        for col, val in entries:
            self.rows.append(self.count)
            self.cols.append(col)
            self.vals.append(val)
        self.count += 1

    def constraint(self, width: int, lower: Any, upper: Any) -> LinearConstraint:
        matrix = coo_array((self.vals, (self.rows, self.cols)), shape=(self.count, width)).tocsr()
        return LinearConstraint(matrix, lower, upper)


class _Solver:
    """The lexicographic stages over one model, within a deadline (a perf_counter instant).

    Columns: the sessions (binary), then p_t (binary: ticket t has a slot), then w_g (members of
    group g placed by the pool), then M_d (the load of day d's busiest officer)."""

    def __init__(self, model: _Model, busy: InMemoryBusy, deadline: float, in_filing_order: bool) -> None:
        self.model = m = model
        self.deadline = deadline
        self.in_filing_order = in_filing_order
        self.nv = nv = len(m.officer)
        self.tickets = [t for line in m.lines for t in line.tickets]
        self.column = {t.ticket_id: nv + n for n, t in enumerate(self.tickets)}
        self.w0 = nv + len(self.tickets)
        self.m0 = self.w0 + len(m.groups)
        self.width = self.m0 + len(m.days)
        self.is_x = np.asarray([g >= 0 for g in m.group], dtype=float)
        self.clock = np.asarray(m.clock, dtype=float)
        self.placed = np.concatenate([np.zeros(nv), np.ones(len(self.tickets))])
        binary = nv + len(self.tickets)
        self.integrality = np.concatenate([np.ones(binary), np.zeros(self.width - binary)])
        upper = np.concatenate([np.ones(binary), [len(g.members) for g in m.groups], np.full(len(m.days), np.inf)])
        self.bounds = Bounds(np.zeros(self.width), upper)
        self.base = [self._counts(), self._no_overlap()]
        self.load_rows = self._loads(busy)

    def _pad(self, values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Coefficients of the first columns, the others' zero."""
        return np.concatenate([values, np.zeros(self.width - len(values))])

    def _row(self, values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return self._pad(values)[None, :]

    def _counts(self) -> LinearConstraint:
        """Group g: its x + w_g = its members placed. Service s: its z = its groups' w + its plain
        tickets placed. With room in filing order, in each service the tickets placed are the
        first filed: p_t >= p_t' for t filed before t'."""
        m = self.model
        sessions: dict[tuple[int, int], list[int]] = defaultdict(list)
        for var, (g, s) in enumerate(zip(m.group, m.line, strict=True)):
            sessions[(g, s if g < 0 else -1)].append(var)
        matrix = _Sparse()
        for g, group in enumerate(m.groups):
            matrix.row(
                [(v, 1.0) for v in sessions[(g, -1)]]
                + [(self.w0 + g, 1.0)]
                + [(self.column[t.ticket_id], -1.0) for t in group.members]
            )
        for s, line in enumerate(m.lines):
            matrix.row(
                [(v, 1.0) for v in sessions[(-1, s)]]
                + [(self.w0 + g, -1.0) for g in line.groups]
                + [(self.column[t.ticket_id], -1.0) for t in line.plain]
            )
        balances = matrix.count
        for line in m.lines if self.in_filing_order else ():
            for first, then in itertools.pairwise(line.tickets):
                matrix.row([(self.column[first.ticket_id], 1.0), (self.column[then.ticket_id], -1.0)])
        lower = np.zeros(matrix.count)
        upper = np.concatenate([np.zeros(balances), np.full(matrix.count - balances, np.inf)])
        return matrix.constraint(self.width, lower, upper)

    def _no_overlap(self) -> LinearConstraint:
        """Per officer and candidate start: the sessions (with buffers) covering it, at most 1."""
        m = self.model
        starts: dict[str, list[datetime]] = defaultdict(list)
        for officer_id, start in zip(m.officer, m.start, strict=True):
            starts[officer_id].append(start)
        instants = {o: sorted(set(s)) for o, s in starts.items()}
        covering: dict[tuple[str, datetime], list[int]] = defaultdict(list)
        for var, (officer_id, start, held) in enumerate(zip(m.officer, m.start, m.occupied, strict=True)):
            line = instants[officer_id]
            end = start + held * MINUTE
            for k in range(bisect.bisect_left(line, start), bisect.bisect_left(line, end)):
                covering[(officer_id, line[k])].append(var)
        matrix = _Sparse()
        for found in covering.values():
            if len(found) > 1:
                matrix.row((v, 1.0) for v in found)
        return matrix.constraint(self.width, -np.inf, 1)

    def _loads(self, busy: InMemoryBusy) -> LinearConstraint:
        """Per officer and day: what it held already + what the round gives it <= M_d."""
        m = self.model
        by_key: dict[tuple[str, int], list[int]] = defaultdict(list)
        for var, key in enumerate(zip(m.officer, m.day, strict=True)):
            by_key[key].append(var)
        matrix = _Sparse()
        for (_, day), found in by_key.items():
            matrix.row([(v, m.occupied[v]) for v in found] + [(self.m0 + day, -1.0)])
        held_before = [busy.load(o, m.days[d], m.days[d] + timedelta(days=1)) for o, d in by_key]
        return matrix.constraint(self.width, -np.inf, -np.asarray(held_before, dtype=float))

    def _solve(
        self,
        cost: npt.NDArray[np.float64],
        extra: Sequence[LinearConstraint],
        share: float,
        gap: float,
        upper: npt.NDArray[np.float64] | None = None,
    ) -> tuple[StageStatus, _Pick | None, float]:
        left = self.deadline - perf_counter()
        if left * share < MIN_STAGE_S:
            return "skipped", None, 0.0
        started = perf_counter()
        found = milp(
            self._pad(cost),
            constraints=[*self.base, *extra],
            integrality=self.integrality,
            bounds=self.bounds if upper is None else Bounds(self.bounds.lb, upper),
            options={"disp": False, "time_limit": left * share, "mip_rel_gap": gap},
        )
        seconds = perf_counter() - started
        if found.x is None:
            return "no_solution", None, seconds
        picked = [int(v) for v in np.flatnonzero(found.x[: self.w0] > 0.5)]
        pick = _Pick(
            [v for v in picked if v < self.nv],
            frozenset(self.tickets[v - self.nv].ticket_id for v in picked if v >= self.nv),
        )
        return ("optimal" if found.status == 0 else "time_limit"), pick, seconds

    def run(self) -> _Solved:
        stages: list[Stage] = []
        # A: placed first, windows next; the weight makes one more placement worth every window.
        weight = sum(len(g.members) for g in self.model.groups) + 1
        status, pick, seconds = self._solve(-(weight * self._pad(self.placed) + self._pad(self.is_x)), [], 0.5, 1e-9)
        stages.append(Stage("windows", status, seconds))
        if pick is None:
            why = "no time left for the solver" if status == "skipped" else "the solver found no solution in time"
            return _Solved(None, stages, why)
        placed, windows = len(pick.sessions), int(self.is_x[pick.sessions].sum())
        keep = [
            LinearConstraint(self._row(self.placed), placed, placed),
            LinearConstraint(self._row(self.is_x), windows, np.inf),
        ]
        # B: the least total lead: the starts' working-time clock, the round's instant being shared.
        status, better, seconds = self._solve(self.clock, keep, 0.8, 1e-7)
        stages.append(Stage("lead", status, seconds))
        if better is None:
            return _Solved(pick, [*stages, Stage("load", "skipped", 0.0)])
        pick = better
        lead = float(self.clock[pick.sessions].sum())
        # C: the least load of each day's busiest officer, summed over the days, choosing again only
        # who serves each session B placed (the same windows and starts, so the same lead): over all
        # the lead-optimal schedules it took seconds and found the same spread in the cases measured.
        m = self.model
        sessions = {(m.group[v], m.line[v], m.start[v]) for v in pick.sessions}
        upper = self.bounds.ub.copy()
        upper[[v for v in range(self.nv) if (m.group[v], m.line[v], m.start[v]) not in sessions]] = 0
        spread = np.concatenate([np.zeros(self.m0), np.ones(len(m.days))])
        keep.append(LinearConstraint(self._row(self.clock), -np.inf, lead + LEAD_TOLERANCE))
        status, better, seconds = self._solve(spread, [*keep, self.load_rows], 1.0, 1e-4, upper)
        stages.append(Stage("load", status, seconds))
        if better is not None and float(self.clock[better.sessions].sum()) <= lead + LEAD_TOLERANCE:
            pick = better
        return _Solved(pick, stages)


# ------------------------------------------------------------------------------- fairness


def _fair(model: _Model, pick: _Pick) -> dict[uuid.UUID, Slot]:
    """Hand the chosen sessions to the tickets given a slot: in each window group the earlier
    filing gets the earlier start inside the windows, then in the service's ungrouped pool
    likewise; then two tickets of a service swap when the later filing starts first (or the
    earlier has no slot) and the swap honours no fewer of their windows. Starts and officers, so
    lead and loads, stay the same."""
    by_group: dict[int, list[Slot]] = defaultdict(list)
    by_line: dict[int, list[Slot]] = defaultdict(list)
    for var in pick.sessions:
        slot = (model.start[var], model.officer[var])
        (by_group[model.group[var]] if model.group[var] >= 0 else by_line[model.line[var]]).append(slot)
    out: dict[uuid.UUID, Slot] = {}
    for n, line in enumerate(model.lines):
        claimants = [t for t in line.plain if t.ticket_id in pick.placed]
        for g in line.groups:
            members = [t for t in model.groups[g].members if t.ticket_id in pick.placed]
            slots = sorted(by_group[g])
            out.update((t.ticket_id, s) for t, s in zip(members, slots, strict=False))
            claimants += members[len(slots) :]
        claimants.sort(key=lambda t: t.arrival)
        out.update((t.ticket_id, s) for t, s in zip(claimants, sorted(by_line[n]), strict=False))
        _swap(line.tickets, out, line.service.duration)
    return out


def _swap(tickets: Sequence[RoundTicket], out: dict[uuid.UUID, Slot], duration: timedelta) -> None:
    """Earlier filings first wherever a swap loses no window. Each swap removes an inversion of the
    starts in filing order (no slot counting as the latest), so this ends."""

    def honoured(ticket: RoundTicket, slot: Slot | None) -> int:
        return int(slot is not None and _in_window(ticket.windows, slot[0], duration))

    swapped = True
    while swapped:
        swapped = False
        for i, early in enumerate(tickets):
            for late in tickets[i + 1 :]:
                mine, theirs = out.get(early.ticket_id), out.get(late.ticket_id)
                if theirs is None or (mine is not None and mine[0] <= theirs[0]) or early.arrival == late.arrival:
                    continue
                if honoured(early, theirs) + honoured(late, mine) >= honoured(early, mine) + honoured(late, theirs):
                    out[early.ticket_id] = theirs
                    if mine is None:
                        del out[late.ticket_id]
                    else:
                        out[late.ticket_id] = mine
                    swapped = True
