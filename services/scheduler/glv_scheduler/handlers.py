"""The scheduler's use cases for consumed events: assign, cancel, reschedule, refill.

Runs inside the transaction the runtime opened. The TicketAccepted of a batch are
placed together (`_flush`): the officer-days they can touch are read once, every
ticket is placed in memory in arrival order with the pure rules (`BatchPlanner`),
and slots, bookings, seats and statuses are written with one statement each. When
the exclusion constraint refuses a booking (another replica booked the officer
first), that ticket and the later ones of its office are placed again on fresh
bookings; other offices keep their placements.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time as clock_time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from prometheus_client import Counter, Histogram

from glv_runtime.consumer import Inbound
from glv_runtime.db import DbConnection
from glv_runtime.jobs_store import write_jobs
from glv_runtime.logs import get_logger
from glv_runtime.outbox import OutboxMessage, event_message
from glv_runtime.router import Router
from glv_runtime.unit_of_work import Database, UnitOfWork
from glv_scheduler import store
from glv_scheduler.assignment import BatchPlanner, NewSlot, Placement, Proposal, Request, SlotSearch, Want
from glv_scheduler.meetings import MeetingProvider, Participant
from glv_scheduler.round_planner import RoundPlanner
from glv_scheduler.round_policy import RoundPolicy, round_job
from glv_schemas import events as ev
from glv_schemas.base import Event

log = get_logger(__name__)
T = TypeVar("T")
SOURCE = "/glv/scheduler"
STAKEHOLDER = "Pemohon"  # a role label, not a name: join links travel in events
MAX_CLASHES = 25
SWEEP_PAGE = 50  # waiting tickets a sweep places per unit of work
REFILL_PAGE = 50  # waiting tickets a refill reads and places together
MAX_CALENDAR_DAYS = 50_000  # office-service-days of calendar kept from batch to batch

ASSIGN_SECONDS = Histogram(
    "glv_scheduler_assignment_seconds",
    "Time to find and book a slot for one ticket (a batch's time shared by its tickets)",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)
# A round's job normally runs within seconds of its time; later than this, the sweep reschedules.
ROUND_GRACE = timedelta(minutes=10)
ROUND_TICKETS = Counter("glv_scheduler_round_tickets_total", "Tickets held for their office's next round")
CLASHES = Counter(
    "glv_scheduler_booking_clashes_total", "Bookings the exclusion constraint refused (another replica was first)"
)


async def _meanwhile(statement: Awaitable[T], work: Callable[[], object]) -> T:
    """Run a statement and, while the database executes it, CPU work that does not touch the connection."""
    running = asyncio.ensure_future(statement)
    await asyncio.sleep(0)  # the statement is sent
    try:
        work()
    finally:
        result = await running  # the connection is free again whatever `work` did
    return result


class _KeepSlot(Exception):
    """Rolls back a reschedule's savepoint when no new slot fits."""

    def __init__(self, failure: Failed) -> None:
        super().__init__(failure.reason)
        self.failure = failure


@dataclass(frozen=True)
class Assigned:
    slot: store.SlotRecord


@dataclass(frozen=True)
class Failed:
    reason: str
    waitlist: bool


@dataclass
class _BatchContext:
    view: store.CatalogView
    now: datetime
    search: SlotSearch
    # TicketAccepted not placed yet: placed together before any other event of the batch
    # is handled, and at the end of the batch.
    pending: list[Inbound] = field(default_factory=list)


class SchedulerUseCase:
    def __init__(self, meetings: MeetingProvider, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._meetings = meetings
        self._clock = clock
        self._cached: tuple[uuid.UUID, store.CatalogView, SlotSearch] | None = None

    def router(self) -> Router[_BatchContext]:
        router: Router[_BatchContext] = Router("scheduler", prepare=self.prepare, finish=self.finish)
        router.handle(ev.TicketAccepted, self.accept)
        router.handle(ev.TicketCancelled, self.cancel)
        router.handle(ev.RescheduleApproved, self.reschedule)
        # Rejections and refusals concern no slot; erasure is the archive's.
        router.ignore(ev.TicketRejected, ev.CancellationRefused, ev.RescheduleRefused, ev.ErasureApproved)
        return router

    async def prepare(self, uow: UnitOfWork, items: Sequence[Inbound]) -> _BatchContext:
        # The waitlist locks the batch may need, taken up front in one fixed order: two
        # replicas' batches touching the same offices then wait for each other instead of
        # deadlocking (a refill takes its lock again, which changes nothing).
        pairs = [
            (item.event.office_code, item.event.service_code)
            for item in items
            if isinstance(item.event, ev.TicketAccepted | ev.RescheduleApproved)
        ]
        cancelled = [item.event.ticket_id for item in items if isinstance(item.event, ev.TicketCancelled)]
        await store.lock_waitlists(uow.conn, pairs, cancelled)
        view, search = await self._catalog(uow.conn)
        return _BatchContext(view=view, now=self._clock(), search=search)

    async def _catalog(self, conn: DbConnection) -> tuple[store.CatalogView, SlotSearch]:
        """The catalog, read again only when it changed (its version); with the search that
        remembers its calendars from batch to batch."""
        version = await store.catalog_version(conn)
        cached = self._cached
        if cached is None or cached[0] != version or cached[2].size > MAX_CALENDAR_DAYS:
            view = await store.load_catalog_view(conn)
            cached = self._cached = (version, view, SlotSearch(view.officers, view.closures))
        return cached[1], cached[2]

    async def accept(self, uow: UnitOfWork, batch: _BatchContext, item: Inbound) -> None:
        assert isinstance(item.event, ev.TicketAccepted)
        batch.pending.append(item)  # placed with the batch's other acceptances (`_flush`)

    async def cancel(self, uow: UnitOfWork, batch: _BatchContext, item: Inbound) -> None:
        assert isinstance(item.event, ev.TicketCancelled)
        await self._flush(uow, batch)  # a ticket accepted earlier in the batch has its slot first
        uow.publish_messages(await self._cancel(uow.conn, batch, item.event, item.cloud_event.traceparent))

    async def reschedule(self, uow: UnitOfWork, batch: _BatchContext, item: Inbound) -> None:
        assert isinstance(item.event, ev.RescheduleApproved)
        await self._flush(uow, batch)
        uow.publish_messages(await self._reschedule(uow.conn, batch, item.event, item.cloud_event.traceparent))

    async def finish(self, uow: UnitOfWork, batch: _BatchContext) -> None:
        await self._flush(uow, batch)

    # ------------------------------------------------------------- accepting

    async def _flush(self, uow: UnitOfWork, batch: _BatchContext) -> None:
        """Store the pending TicketAccepted (one statement) and place them together, in the order they came."""
        pending, batch.pending = batch.pending, []
        if not pending:
            return
        started = clock_time.perf_counter()
        accepted: dict[uuid.UUID, tuple[store.RequestRecord, datetime, str | None]] = {}
        for item in pending:
            event = item.event
            assert isinstance(event, ev.TicketAccepted)
            if event.ticket_id in accepted:
                continue  # a second acceptance of the ticket changes nothing
            record = store.RequestRecord(
                ticket_id=event.ticket_id,
                ticket_code=event.ticket_code,
                office_code=event.office_code,
                service_code=event.service_code,
                stakeholder_ref=event.stakeholder_ref,
                windows=tuple((w.start, w.end) for w in event.preferred_windows),
                status=store.RequestStatus.WAITLISTED,
            )
            accepted[event.ticket_id] = (record, event.accepted_at, item.cloud_event.traceparent)
        stored = await store.add_requests(uow.conn, [(record, at) for record, at, _ in accepted.values()], batch.now)
        fresh: list[tuple[store.RequestRecord, str | None]] = []
        behind: set[tuple[str, str]] = set()  # lines with tickets waiting before the batch's
        for record, _, trace in accepted.values():
            if record.ticket_id not in stored:
                continue  # already known: a replay of an accepted ticket changes nothing
            status, waits = stored[record.ticket_id]
            if status == store.RequestStatus.CANCELLED:
                # Its TicketCancelled came first (this acceptance was dead-lettered and replayed).
                log.info("accepted ticket was cancelled before: nothing booked", ticket_id=str(record.ticket_id))
                continue
            line = (record.office_code, record.service_code)
            if waits and all(line != (r.office_code, r.service_code) for r, _ in fresh):
                behind.add(line)
            fresh.append((record, trace))
        in_rounds = [(r, t) for r, t in fresh if (r.office_code, r.service_code) in batch.view.rounds]
        if in_rounds:
            uow.publish_messages(await self._hold_for_rounds(uow, batch, in_rounds))
            fresh = [(r, t) for r, t in fresh if (r.office_code, r.service_code) not in batch.view.rounds]
        if fresh:
            uow.publish_messages(await self._place(uow.conn, batch.view, batch.search, fresh, batch.now, behind=behind))
            share = (clock_time.perf_counter() - started) / len(fresh)
            for _ in fresh:
                ASSIGN_SECONDS.observe(share)

    async def _place(
        self,
        conn: DbConnection,
        view: store.CatalogView,
        search: SlotSearch,
        fresh: Sequence[tuple[store.RequestRecord, str | None]],
        now: datetime,
        *,
        behind: set[tuple[str, str]] | None = None,
    ) -> list[OutboxMessage]:
        """Place waiting tickets without a slot (in arrival order), first come first served: in each
        office and service, the tickets waiting since before the first of them are served first, and
        if one of those finds no room, none of these does (they ask for the same office and service
        at the same moment): they keep waiting behind it, without a search of their own.

        `behind`: the (office, service) lines where tickets wait since before the first of these, when
        known already. Placed tickets become assigned (with their seats); refused ones unschedulable."""
        firsts: dict[tuple[str, str], tuple[store.RequestRecord, str | None]] = {}
        for record, trace in fresh:
            firsts.setdefault((record.office_code, record.service_code), (record, trace))
        ahead = (
            behind
            if behind is not None
            else await store.lines_waiting(conn, [(*line, record.ticket_id) for line, (record, _) in firsts.items()])
        )
        served: dict[tuple[str, str], list[OutboxMessage]] = {}
        stuck: dict[tuple[str, str], Failed] = {}
        for line, (record, trace) in firsts.items():
            if line in ahead:
                served[line], blocked = await self._refill(
                    conn, view, search, *line, now, trace, before=record.ticket_id
                )
                if blocked is not None:
                    stuck[line] = blocked
        free = [record for record, _ in fresh if (record.office_code, record.service_code) not in stuck]
        traces = {record.ticket_id: trace for record, trace in fresh}
        described: dict[uuid.UUID, OutboxMessage] = {}

        def describe(record: store.RequestRecord, slot: store.SlotRecord) -> None:
            described[record.ticket_id] = self._slot_assigned(view, record, slot, now, traces[record.ticket_id], None)

        placed = dict(
            zip(
                [r.ticket_id for r in free],
                await self._assign_all(conn, view, search, free, now, describe=describe),
                strict=True,
            )
        )
        refused: list[tuple[uuid.UUID, store.RequestStatus]] = []
        messages: list[OutboxMessage] = []
        for record, trace in fresh:
            line = (record.office_code, record.service_code)
            messages.extend(served.pop(line, ()))  # the waiting tickets served ahead of it
            outcome = placed[record.ticket_id] if record.ticket_id in placed else stuck[line]
            if isinstance(outcome, Failed):
                if not outcome.waitlist:  # those with no room keep waiting
                    refused.append((record.ticket_id, store.RequestStatus.UNSCHEDULABLE))
                messages.append(self._failed(record, outcome, now, trace, waitlisted=outcome.waitlist))
            else:
                messages.append(described[record.ticket_id])
        await store.set_requests(conn, refused, now)
        return messages

    async def _timed_assign(
        self,
        conn: DbConnection,
        view: store.CatalogView,
        search: SlotSearch,
        record: store.RequestRecord,
        now: datetime,
        *,
        leaving: uuid.UUID | None = None,
    ) -> Assigned | Failed:
        started = clock_time.perf_counter()
        try:
            [outcome] = await self._assign_all(conn, view, search, [record], now, leaving=leaving)
            return outcome
        finally:
            ASSIGN_SECONDS.observe(clock_time.perf_counter() - started)

    async def assign(
        self,
        conn: DbConnection,
        view: store.CatalogView,
        record: store.RequestRecord,
        now: datetime,
        *,
        leaving: uuid.UUID | None = None,
    ) -> Assigned | Failed:
        """Book the best slot for one ticket, or say why there is none (`_assign_all` for one).

        `leaving` is the slot a rescheduled ticket moves out of: it is not offered again."""
        search = SlotSearch(view.officers, view.closures)
        [outcome] = await self._assign_all(conn, view, search, [record], now, leaving=leaving)
        return outcome

    @staticmethod
    def _want(
        view: store.CatalogView,
        search: SlotSearch,
        record: store.RequestRecord,
        now: datetime,
        leaving: uuid.UUID | None,
    ) -> Want | Failed:
        """What placing the ticket asks for, or why it is refused (unknown office, service not
        offered there, too few officers with the skill): it would never fit, it does not wait."""
        office = view.offices.get(record.office_code)
        service = view.services.get(record.service_code)
        if office is None:
            return Failed("unknown_office", waitlist=False)
        if service is None or service.code not in office.services:
            return Failed("service_not_offered", waitlist=False)
        if len(search.staff(office, service)) < service.officers_required:
            return Failed("no_officer", waitlist=False)
        return Want(
            office, Request(service=service, windows=record.windows, now=now), str(leaving) if leaving else None
        )

    async def _assign_all(
        self,
        conn: DbConnection,
        view: store.CatalogView,
        search: SlotSearch,
        records: Sequence[store.RequestRecord],
        now: datetime,
        *,
        leaving: uuid.UUID | None = None,
        describe: Callable[[store.RequestRecord, store.SlotRecord], None] | None = None,
    ) -> list[Assigned | Failed]:
        """Book slots for tickets in this order, first come first served within each office and
        service (after one finds no room, the later ones find none either).

        `describe(ticket, slot)` is called for each ticket placed while its slot is being written
        (again if a clash places it again): the events are made while the database works."""
        wants = [self._want(view, search, record, now, leaving) for record in records]
        asked = [(record, want) for record, want in zip(records, wants, strict=True) if isinstance(want, Want)]
        slots = iter(await self._book(conn, view, search, asked, now, leaving, describe) if asked else [])
        outcomes: list[Assigned | Failed] = []
        for want in wants:
            if isinstance(want, Failed):
                outcomes.append(want)
            elif (slot := next(slots)) is not None:
                outcomes.append(Assigned(slot))
            else:
                outcomes.append(Failed("no_capacity", waitlist=True))
        return outcomes

    async def _book(
        self,
        conn: DbConnection,
        view: store.CatalogView,
        search: SlotSearch,
        wants: Sequence[tuple[store.RequestRecord, Want]],
        now: datetime,
        leaving: uuid.UUID | None,
        describe: Callable[[store.RequestRecord, store.SlotRecord], None] | None,
        planned: Mapping[int, Proposal] | None = None,
    ) -> list[store.SlotRecord | None]:
        """Place the tickets in memory and write what they take, set-based; the slot of each, or None.

        The officer-days the tickets will likely search are read in one statement, the open
        webinars they may join in another (locked: their free seats stay free until commit).
        New slots and their bookings are inserted in one statement that leaves out the bookings
        the exclusion constraint refuses: another transaction booked that officer at that time
        first. Then the ticket whose booking was refused and the later tickets of its office are
        placed again on fresh bookings (so that none of them passes an earlier one); the other
        offices' tickets keep what they have. Seats are written once every ticket is placed."""
        busy = store.BatchBusy(conn)
        await busy.read(span for _, want in wants for span in search.reads(want.request, want.office))
        lines = sorted(
            {
                (*want.line, now, now + want.request.service.horizon)
                for _, want in wants
                if want.request.service.kind == "webinar"
            }
        )
        stored = await store.lock_open_webinars(conn, lines, leaving=leaving)
        webinars = {webinar.slot_id: slot for found in stored.values() for webinar, slot in found}
        planner = (
            BatchPlanner(search, busy, {line: [webinar for webinar, _ in found] for line, found in stored.items()})
            if planned is None
            else RoundPlanner(search, busy, planned)  # a round's consultations: no webinar
        )
        placed: list[Placement | None] = [None] * len(wants)
        rows: dict[str, store.NewSlotRow] = {}  # the new slots written, by slot id

        def slot_of(placement: Placement) -> store.SlotRecord:
            new_slot = rows.get(placement.slot_id)
            return new_slot.record() if new_slot is not None else webinars[placement.slot_id]

        def describe_placed(indices: Sequence[int]) -> None:
            if describe is not None:
                for n in indices:
                    if (placement := placed[n]) is not None:
                        describe(wants[n][0], slot_of(placement))

        todo = list(range(len(wants)))
        for _ in range(MAX_CLASHES):
            again = set(todo)
            stuck = {wants[n][1].line for n in range(len(wants)) if n not in again and placed[n] is None}
            new: list[store.NewSlotRow] = []
            for n, placement in zip(
                todo, await planner.place_all([wants[n][1] for n in todo], stuck=stuck), strict=True
            ):
                placed[n] = placement
                if isinstance(placement, NewSlot):
                    rows[placement.slot_id] = self._new_slot(wants[n][1], placement)
                    new.append(rows[placement.slot_id])
            inserted = await _meanwhile(store.insert_slots(conn, new), functools.partial(describe_placed, todo))
            clashed = {
                str(row.slot_id) for row in new if any((row.slot_id, o) not in inserted for o in row.officer_ids)
            }
            if not clashed:
                break
            CLASHES.inc(len(clashed))
            log.info("booking clash, placing again", clashes=len(clashed))
            # From the first refused ticket of each office on, its tickets are placed again.
            first: dict[str, int] = {}
            for n in todo:
                placement = placed[n]
                if isinstance(placement, NewSlot) and placement.slot_id in clashed:
                    first.setdefault(wants[n][1].office.code, n)
            todo = [n for n in todo if wants[n][1].office.code in first and n >= first[wants[n][1].office.code]]
            redo = set(todo)
            await store.drop_slots(
                conn, [rows.pop(p.slot_id).slot_id for n in todo if isinstance(p := placed[n], NewSlot)]
            )
            for office_code in first:
                planner.restart(office_code)
                busy.forget(o.officer_id for o in view.officers if o.office_code == office_code)
            for n, (_, want) in enumerate(wants):  # what the office's earlier tickets hold stays theirs
                if want.office.code in first and n not in redo and (kept := placed[n]) is not None:
                    planner.apply(want, kept)
        else:
            raise RuntimeError("too many booking clashes in a row")  # the batch is retried
        seats = [(record.ticket_id, uuid.UUID(p.slot_id)) for (record, _), p in zip(wants, placed, strict=True) if p]
        await store.add_seats(conn, seats, now)
        return [None if p is None else slot_of(p) for p in placed]

    def _new_slot(self, want: Want, placement: NewSlot) -> store.NewSlotRow:
        proposal = placement.proposal
        return store.NewSlotRow(
            slot_id=uuid.UUID(placement.slot_id),
            office_code=want.office.code,
            service=want.request.service,
            starts_at=proposal.starts_at,
            ends_at=proposal.ends_at,
            plan=self._meetings.plan(proposal.starts_at, proposal.ends_at),
            officer_ids=proposal.officer_ids,
        )

    # ---------------------------------------------------- cancel, reschedule

    async def _cancel(
        self, conn: DbConnection, batch: _BatchContext, cancelled: ev.TicketCancelled, trace: str | None
    ) -> list[OutboxMessage]:
        record = await store.get_request(conn, cancelled.ticket_id)
        if record is None:
            # Its TicketAccepted has not come (yet): it was dead-lettered and may be replayed.
            await store.remember_cancellation(conn, cancelled.ticket_id, cancelled.cancelled_at)
            return []
        if record.status == store.RequestStatus.CANCELLED:
            return []
        await store.set_request(conn, cancelled.ticket_id, store.RequestStatus.CANCELLED, batch.now)
        slot = await store.live_slot_of(conn, cancelled.ticket_id)
        if slot is None:
            return []  # it was waiting: leaving the waitlist frees nothing
        return await self._release(conn, batch, cancelled.ticket_id, slot, "cancelled", trace)

    async def _reschedule(
        self, conn: DbConnection, batch: _BatchContext, approved: ev.RescheduleApproved, trace: str | None
    ) -> list[OutboxMessage]:
        view, now = batch.view, batch.now
        record = await store.get_request(conn, approved.ticket_id)
        if record is None or record.status in (store.RequestStatus.CANCELLED, store.RequestStatus.DONE):
            return []
        windows = tuple((w.start, w.end) for w in approved.preferred_windows)
        moved = dataclasses.replace(record, windows=windows)
        current = await store.live_slot_of(conn, record.ticket_id)
        if current is None:  # still waiting: wait with the new windows, and try them now
            await store.set_request(conn, record.ticket_id, record.status, now, windows=windows)
            if (record.office_code, record.service_code) in view.rounds:
                return []  # ...or at its round, with the others
            return await self._place(conn, view, batch.search, [(moved, trace)], now)
        # The new slot is booked before the old one is let go (inside a savepoint):
        # when nothing fits, the ticket keeps the slot it has.
        try:
            async with conn.transaction():
                await conn.execute(
                    "UPDATE seat SET live = false, released_at = $3 WHERE ticket_id = $1 AND slot_id = $2",
                    record.ticket_id,
                    current.slot_id,
                    now,
                )
                outcome = await self._timed_assign(conn, view, batch.search, moved, now, leaving=current.slot_id)
                if isinstance(outcome, Failed):
                    raise _KeepSlot(outcome)
        except _KeepSlot as keep:
            return [self._failed(record, keep.failure, now, trace, waitlisted=False)]
        assert isinstance(outcome, Assigned)
        await store.set_request(conn, record.ticket_id, store.RequestStatus.ASSIGNED, now, windows=windows)
        return [
            self._slot_assigned(view, moved, outcome.slot, now, trace, current),
            *await self._release(conn, batch, record.ticket_id, current, "rescheduled", trace),
        ]

    async def _release(
        self,
        conn: DbConnection,
        batch: _BatchContext,
        ticket_id: uuid.UUID,
        slot: store.SlotRecord,
        reason: str,
        trace: str | None,
    ) -> list[OutboxMessage]:
        await store.release_seat(conn, ticket_id, slot.slot_id, batch.now)
        messages = [
            self._message(
                ev.SlotReleased(
                    ticket_id=ticket_id,
                    slot_id=slot.slot_id,
                    office_code=slot.office_code,
                    officer_id=slot.officer_ids[0] if slot.officer_ids else "",
                    reason=reason,
                    released_at=batch.now,
                ),
                trace,
            )
        ]
        refilled, _ = await self._refill(
            conn, batch.view, batch.search, slot.office_code, slot.service_code, batch.now, trace
        )
        return messages + refilled

    async def sweep_waitlist(self, db: Database) -> int:
        """Try every waitlisted ticket again, first come first served (new days enter the horizon).

        One unit of work per office and service, and per SWEEP_PAGE tickets placed, so that
        one busy office does not hold a transaction (and its waitlist lock) open over all the
        others, nor for long."""
        async with db.unit_of_work() as uow:
            services = await store.waitlisted_services(uow.conn)
        assigned = 0
        for office_code, service_code in services:
            while True:
                async with db.unit_of_work() as uow:
                    view, search = await self._catalog(uow.conn)
                    messages, blocked = await self._refill(
                        uow.conn, view, search, office_code, service_code, self._clock(), None, most=SWEEP_PAGE
                    )
                    uow.publish_messages(messages)
                assigned += len(messages)
                if blocked is not None or len(messages) < SWEEP_PAGE:
                    break  # the line is stuck or served: the next office and service
        return assigned

    async def sweep_rounds(self, db: Database) -> int:
        """The safety net of rounds: tickets whose round is done or overdue (skipped while another
        transaction held them) get the next round of their line."""
        async with db.unit_of_work() as uow:
            view, _ = await self._catalog(uow.conn)
            now = self._clock()
            lines = await store.overdue_rounds(uow.conn, now, ROUND_GRACE)
            for office_code, service_code in lines:
                policy = view.rounds.get((office_code, service_code))
                office = view.offices.get(office_code)
                if policy is None or office is None:  # no longer in rounds: the next batch or sweep places them
                    await uow.conn.execute(
                        "UPDATE request SET status = 'waitlisted', waitlisted_at = $3, round_at = NULL"
                        " WHERE office_code = $1 AND service_code = $2 AND status = 'awaiting_round'",
                        office_code,
                        service_code,
                        now,
                    )
                    continue
                round_at = await self._open_round(uow.conn, office_code, policy, office.zone, now)
                await uow.conn.execute(
                    "UPDATE request SET round_at = $3 WHERE office_code = $1 AND service_code = $2"
                    " AND status = 'awaiting_round'",
                    office_code,
                    service_code,
                    round_at,
                )
                uow.enqueue(round_job(office_code, round_at))
        return len(lines)

    async def _refill(
        self,
        conn: DbConnection,
        view: store.CatalogView,
        search: SlotSearch,
        office_code: str,
        service_code: str,
        now: datetime,
        trace: str | None,
        *,
        before: uuid.UUID | None = None,
        most: int | None = None,
    ) -> tuple[list[OutboxMessage], Failed | None]:
        """Freed time goes to the waitlist, first come first served (with `before`: only to the
        tickets waiting since before that one; with `most`: to that many at most). Returns the
        SlotAssigned messages and, when a waiting ticket could not be placed, why.

        One transaction at a time serves an office and service's waitlist, whichever replica
        it runs on (an advisory lock held until commit): a second refill reads the waitlist
        only once the first has committed, so no ticket is skipped or served twice. The
        first ticket that finds no room stops the refill: those behind it ask for the same
        office and service at the same moment (their windows only rank the feasible starts),
        so none of them would find room either, and none may pass it. The waiting tickets
        are placed REFILL_PAGE at a time, together (`_assign_all`)."""
        messages: list[OutboxMessage] = []
        if not await store.waiting(conn, office_code, service_code, before=before):
            return messages, None
        policy = view.rounds.get((office_code, service_code))
        if policy is not None:
            # Decided in rounds: the waiting tickets join the next round, in filing order.
            office = view.offices[office_code]
            await write_jobs(
                conn, [round_job(office_code, await self._open_round(conn, office_code, policy, office.zone, now))]
            )
            return messages, None
        await store.lock_waitlist(conn, office_code, service_code)
        described: dict[uuid.UUID, OutboxMessage] = {}

        def describe(record: store.RequestRecord, slot: store.SlotRecord) -> None:
            described[record.ticket_id] = self._slot_assigned(view, record, slot, now, trace, None)

        while True:
            limit = REFILL_PAGE if most is None else min(REFILL_PAGE, most - len(messages))
            line = await store.waitlist(conn, office_code, service_code, limit, before=before)
            if not line:
                return messages, None
            failure: Failed | None = None
            outcomes = await self._assign_all(conn, view, search, line, now, describe=describe)
            for waiting, outcome in zip(line, outcomes, strict=True):
                if isinstance(outcome, Failed):
                    failure = outcome
                    break
                messages.append(described[waiting.ticket_id])
                log.info("waitlisted ticket assigned", ticket_id=str(waiting.ticket_id))
            if failure is not None:
                return messages, failure
            if most is not None and len(messages) >= most:
                return messages, None

    # -------------------------------------------------------------- rounds

    @staticmethod
    async def _open_round(
        conn: DbConnection, office_code: str, policy: RoundPolicy, zone: str, now: datetime
    ) -> datetime:
        """The office's next round still to be decided (one being decided now is waited for)."""
        round_at = policy.next_round(now, zone)
        while not await store.open_round(conn, office_code, round_at):
            round_at = policy.next_round(round_at, zone)
        return round_at

    async def _hold_for_rounds(
        self, uow: UnitOfWork, batch: _BatchContext, fresh: Sequence[tuple[store.RequestRecord, str | None]]
    ) -> list[OutboxMessage]:
        """Tickets of services decided in rounds wait for their office's next round (its job made
        once, whatever the number of tickets and replicas); the portal hears when."""
        view, now = batch.view, batch.now
        rounds: dict[tuple[str, datetime], list[tuple[store.RequestRecord, str | None]]] = {}
        for record, trace in fresh:
            office = view.offices[record.office_code]
            policy = view.rounds[record.office_code, record.service_code]
            round_at = await self._open_round(uow.conn, office.code, policy, office.zone, now)
            rounds.setdefault((office.code, round_at), []).append((record, trace))
        messages: list[OutboxMessage] = []
        for (office_code, round_at), waiting in rounds.items():
            await store.hold_for_round(uow.conn, [record.ticket_id for record, _ in waiting], round_at)
            uow.enqueue(round_job(office_code, round_at))
            for record, trace in waiting:
                event = ev.AssignmentPending(
                    ticket_id=record.ticket_id,
                    office_code=office_code,
                    service_code=record.service_code,
                    round_at=round_at,
                    pending_at=now,
                )
                messages.append(self._message(event, trace))
        ROUND_TICKETS.inc(len(fresh))
        return messages

    async def decide_round(
        self,
        conn: DbConnection,
        office_code: str,
        round_at: datetime,
        planned: Mapping[uuid.UUID, Proposal],
        figures: store.RoundFigures,
        now: datetime,
    ) -> list[OutboxMessage]:
        """Write a round's decision (in the job's unit of work, after the solve): the plan's slots
        where still free, the greedy for what the plan does not cover (a ticket that came while
        it was solved, a booking taken meanwhile), the rest waitlisted for the next round.

        Locks in the order batches take them (waitlists, then the round), so that a batch
        accepting a ticket for this office waits for the round instead of deadlocking with it."""
        view, search = await self._catalog(conn)
        lines = [(o, s) for o, s in view.rounds if o == office_code]
        await store.lock_waitlists(conn, lines, [])
        if await store.lock_round(conn, office_code, round_at) != "pending":
            return []  # decided already (another replica, or this job's earlier attempt)
        records = await store.round_requests(conn, office_code, round_at, [s for _, s in lines], lock=True)
        messages: list[OutboxMessage] = []
        wants: list[tuple[store.RequestRecord, Want]] = []
        by_want: dict[int, Proposal] = {}
        refused: list[tuple[uuid.UUID, store.RequestStatus]] = []
        for record in records:
            want = self._want(view, search, record, now, None)
            if isinstance(want, Failed):
                refused.append((record.ticket_id, store.RequestStatus.UNSCHEDULABLE))
                messages.append(self._failed(record, want, now, None, waitlisted=False))
                continue
            wants.append((record, want))
            if (proposal := planned.get(record.ticket_id)) is not None:
                by_want[id(want)] = proposal
        described: dict[uuid.UUID, OutboxMessage] = {}

        def describe(record: store.RequestRecord, slot: store.SlotRecord) -> None:
            described[record.ticket_id] = self._slot_assigned(view, record, slot, now, None, None)

        slots = await self._book(conn, view, search, wants, now, None, describe, planned=by_want) if wants else []
        for (record, _), slot in zip(wants, slots, strict=True):
            if slot is not None:
                messages.append(described[record.ticket_id])
            elif record.status == store.RequestStatus.AWAITING_ROUND:
                # No room: it waits for the next round (told once; a waitlisted ticket was told).
                refused.append((record.ticket_id, store.RequestStatus.WAITLISTED))
                messages.append(self._failed(record, Failed("no_capacity", waitlist=True), now, None, waitlisted=True))
        await store.set_requests(conn, refused, now)
        placed = sum(slot is not None for slot in slots)
        await store.round_done(conn, office_code, round_at, dataclasses.replace(figures, placed=placed), now)
        if await store.left_behind(conn, office_code, round_at):
            # A ticket another transaction held (being cancelled, say) was skipped: the next round.
            office = view.offices[office_code]
            nexts = [await self._open_round(conn, office_code, view.rounds[line], office.zone, now) for line in lines]
            await write_jobs(conn, [round_job(office_code, min(nexts))])
        log.info(
            "round decided",
            office_code=office_code,
            tickets=len(records),
            placed=placed,
            method=figures.method,
            solve_s=round(figures.solve_seconds, 3),
        )
        return messages

    # -------------------------------------------------------------- helpers

    def _slot_assigned(
        self,
        view: store.CatalogView,
        record: store.RequestRecord,
        slot: store.SlotRecord,
        now: datetime,
        trace: str | None,
        replaces: store.SlotRecord | None,
    ) -> OutboxMessage:
        office = view.offices[slot.office_code]
        stakeholder = Participant(participant_ref=record.stakeholder_ref, display_name=STAKEHOLDER, moderator=False)
        return self._message(
            ev.SlotAssigned(
                ticket_id=record.ticket_id,
                slot_id=slot.slot_id,
                office_code=slot.office_code,
                office_zone=office.zone,
                service_code=slot.service_code,
                officer_id=slot.officer_ids[0],
                starts_at=slot.starts_at,
                ends_at=slot.ends_at,
                meeting=self._meetings.meeting(slot.plan(), stakeholder),
                replaces_slot_id=replaces.slot_id if replaces else None,
                assigned_at=now,
            ),
            trace,
        )

    def _failed(
        self, record: store.RequestRecord, failure: Failed, now: datetime, trace: str | None, *, waitlisted: bool
    ) -> OutboxMessage:
        log.info("no slot", reason=failure.reason, waitlisted=waitlisted)
        return self._message(
            ev.SchedulingFailed(
                ticket_id=record.ticket_id,
                office_code=record.office_code,
                service_code=record.service_code,
                reason=failure.reason,
                waitlisted=waitlisted,
                failed_at=now,
            ),
            trace,
        )

    @staticmethod
    def _message(event: Event, trace: str | None) -> OutboxMessage:
        return event_message(event, source=SOURCE, key=str(event.ticket_id), traceparent=trace)
