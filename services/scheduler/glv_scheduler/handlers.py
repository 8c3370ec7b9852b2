"""The scheduler's use cases for consumed events: assign, cancel, reschedule, refill.

Runs inside the transaction the runtime opened. Each booking attempt runs in a
savepoint: when the exclusion constraint refuses it (another replica booked the
officer first), the search runs again on fresh bookings.
"""

from __future__ import annotations

import dataclasses
import time as clock_time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from prometheus_client import Counter, Histogram

from glv_runtime.consumer import Inbound
from glv_runtime.db import DbConnection
from glv_runtime.logs import get_logger
from glv_runtime.outbox import OutboxMessage, event_message
from glv_runtime.router import Router
from glv_runtime.unit_of_work import Database, UnitOfWork
from glv_scheduler import store
from glv_scheduler.assignment import Request, choose_webinar, eligible_officers, find_slot
from glv_scheduler.meetings import MeetingProvider, Participant
from glv_schemas import events as ev
from glv_schemas.base import Event

log = get_logger(__name__)
SOURCE = "/glv/scheduler"
STAKEHOLDER = "Pemohon"  # a role label, not a name: join links travel in events
MAX_CLASHES = 25
SWEEP_PAGE = 50  # waiting tickets a sweep places per unit of work

ASSIGN_SECONDS = Histogram(
    "glv_scheduler_assignment_seconds",
    "Time to find and book a slot for one ticket",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)
CLASHES = Counter(
    "glv_scheduler_booking_clashes_total", "Bookings the exclusion constraint refused (another replica was first)"
)


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
    world: store.World
    now: datetime


class SchedulerUseCase:
    def __init__(self, meetings: MeetingProvider, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._meetings = meetings
        self._clock = clock

    def router(self) -> Router[_BatchContext]:
        router: Router[_BatchContext] = Router("scheduler", prepare=self.prepare)
        router.handle(ev.TicketAccepted, self.accept)
        router.handle(ev.TicketCancelled, self.cancel)
        router.handle(ev.RescheduleApproved, self.reschedule)
        # Rejections and refusals concern no slot.
        router.ignore(ev.TicketRejected, ev.CancellationRefused, ev.RescheduleRefused)
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
        return _BatchContext(world=await store.load_world(uow.conn), now=self._clock())

    async def accept(self, uow: UnitOfWork, batch: _BatchContext, item: Inbound) -> None:
        assert isinstance(item.event, ev.TicketAccepted)
        uow.publish_messages(
            await self._accept(uow.conn, batch.world, item.event, batch.now, item.cloud_event.traceparent)
        )

    async def cancel(self, uow: UnitOfWork, batch: _BatchContext, item: Inbound) -> None:
        assert isinstance(item.event, ev.TicketCancelled)
        uow.publish_messages(
            await self._cancel(uow.conn, batch.world, item.event, batch.now, item.cloud_event.traceparent)
        )

    async def reschedule(self, uow: UnitOfWork, batch: _BatchContext, item: Inbound) -> None:
        assert isinstance(item.event, ev.RescheduleApproved)
        uow.publish_messages(
            await self._reschedule(uow.conn, batch.world, item.event, batch.now, item.cloud_event.traceparent)
        )

    # ------------------------------------------------------------- accepting

    async def _accept(
        self, conn: DbConnection, world: store.World, accepted: ev.TicketAccepted, now: datetime, trace: str | None
    ) -> list[OutboxMessage]:
        record = store.RequestRecord(
            ticket_id=accepted.ticket_id,
            ticket_code=accepted.ticket_code,
            office_code=accepted.office_code,
            service_code=accepted.service_code,
            stakeholder_ref=accepted.stakeholder_ref,
            windows=tuple((w.start, w.end) for w in accepted.preferred_windows),
            status="waitlisted",
        )
        status = await store.add_request(conn, record, accepted.accepted_at)
        if status is None:
            return []  # already known: a replay of an accepted ticket changes nothing
        if status == "cancelled":
            # Its TicketCancelled came first (this acceptance was dead-lettered and replayed).
            log.info("accepted ticket was cancelled before: nothing booked")
            return []
        return await self._place(conn, world, record, now, trace)

    async def _place(
        self, conn: DbConnection, world: store.World, record: store.RequestRecord, now: datetime, trace: str | None
    ) -> list[OutboxMessage]:
        """Place a ticket without a slot, first come first served: tickets of its office and
        service that wait since before it are served first, and if one of them finds no room,
        neither does this one (it joins the waitlist behind them)."""
        messages, blocked = await self._refill(
            conn, world, record.office_code, record.service_code, now, trace, before=record.ticket_id
        )
        outcome = blocked if blocked is not None else await self._timed_assign(conn, world, record, now)
        if isinstance(outcome, Failed):
            await store.set_request(conn, record.ticket_id, "waitlisted" if outcome.waitlist else "unschedulable", now)
            return [*messages, self._failed(record, outcome, now, trace, waitlisted=outcome.waitlist)]
        await store.set_request(conn, record.ticket_id, "assigned", now)
        return [*messages, self._slot_assigned(world, record, outcome.slot, now, trace, None)]

    async def _timed_assign(
        self,
        conn: DbConnection,
        world: store.World,
        record: store.RequestRecord,
        now: datetime,
        *,
        leaving: uuid.UUID | None = None,
    ) -> Assigned | Failed:
        started = clock_time.perf_counter()
        try:
            return await self.assign(conn, world, record, now, leaving=leaving)
        finally:
            ASSIGN_SECONDS.observe(clock_time.perf_counter() - started)

    async def assign(
        self,
        conn: DbConnection,
        world: store.World,
        record: store.RequestRecord,
        now: datetime,
        *,
        leaving: uuid.UUID | None = None,
    ) -> Assigned | Failed:
        """Book the best slot for the ticket, or say why there is none.

        `leaving` is the slot a rescheduled ticket moves out of: it is not offered again."""
        office = world.offices.get(record.office_code)
        service = world.services.get(record.service_code)
        if office is None:
            return Failed("unknown_office", waitlist=False)
        if service is None or service.code not in office.services:
            return Failed("service_not_offered", waitlist=False)
        staff = eligible_officers(office, world.officers, service)
        if len(staff) < service.officers_required:
            return Failed("no_officer", waitlist=False)
        request = Request(service=service, windows=record.windows, now=now)
        if service.kind == "webinar":
            webinar = choose_webinar(
                request,
                await store.open_webinars(conn, office.code, service.code, now, now + service.horizon, leaving=leaving),
            )
            if webinar is not None and await store.take_seat(conn, uuid.UUID(webinar.slot_id), record.ticket_id, now):
                slot = await store.get_slot(conn, uuid.UUID(webinar.slot_id))
                assert slot is not None
                return Assigned(slot)
        for _ in range(MAX_CLASHES):
            busy = store.DbBusy(conn)
            proposal = await find_slot(request, office, world.officers, world.closures, busy)
            if proposal is None:
                return Failed("no_capacity", waitlist=True)
            slot_id = uuid.uuid4()
            plan = self._meetings.plan(proposal.starts_at, proposal.ends_at)
            try:
                async with conn.transaction():  # a savepoint: a clash undoes only this attempt
                    slot = await store.create_slot(
                        conn,
                        slot_id=slot_id,
                        office_code=office.code,
                        service=service,
                        starts_at=proposal.starts_at,
                        ends_at=proposal.ends_at,
                        plan=plan,
                        officer_ids=proposal.officer_ids,
                        ticket_id=record.ticket_id,
                        now=now,
                    )
            except asyncpg.exceptions.ExclusionViolationError:
                CLASHES.inc()
                log.info("booking clash, searching again", officer_ids=list(proposal.officer_ids))
                continue
            return Assigned(slot)
        raise RuntimeError("too many booking clashes in a row")  # the batch is retried

    # ---------------------------------------------------- cancel, reschedule

    async def _cancel(
        self, conn: DbConnection, world: store.World, cancelled: ev.TicketCancelled, now: datetime, trace: str | None
    ) -> list[OutboxMessage]:
        record = await store.get_request(conn, cancelled.ticket_id)
        if record is None:
            # Its TicketAccepted has not come (yet): it was dead-lettered and may be replayed.
            await store.remember_cancellation(conn, cancelled.ticket_id, cancelled.cancelled_at)
            return []
        if record.status == "cancelled":
            return []
        await store.set_request(conn, cancelled.ticket_id, "cancelled", now)
        slot = await store.live_slot_of(conn, cancelled.ticket_id)
        if slot is None:
            return []  # it was waiting: leaving the waitlist frees nothing
        return await self._release(conn, world, cancelled.ticket_id, slot, "cancelled", now, trace)

    async def _reschedule(
        self, conn: DbConnection, world: store.World, approved: ev.RescheduleApproved, now: datetime, trace: str | None
    ) -> list[OutboxMessage]:
        record = await store.get_request(conn, approved.ticket_id)
        if record is None or record.status in ("cancelled", "done"):
            return []
        windows = tuple((w.start, w.end) for w in approved.preferred_windows)
        moved = dataclasses.replace(record, windows=windows)
        current = await store.live_slot_of(conn, record.ticket_id)
        if current is None:  # still waiting: wait with the new windows, and try them now
            await store.set_request(conn, record.ticket_id, record.status, now, windows=windows)
            return await self._place(conn, world, moved, now, trace)
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
                outcome = await self._timed_assign(conn, world, moved, now, leaving=current.slot_id)
                if isinstance(outcome, Failed):
                    raise _KeepSlot(outcome)
        except _KeepSlot as keep:
            return [self._failed(record, keep.failure, now, trace, waitlisted=False)]
        assert isinstance(outcome, Assigned)
        await store.set_request(conn, record.ticket_id, "assigned", now, windows=windows)
        return [
            self._slot_assigned(world, moved, outcome.slot, now, trace, current),
            *await self._release(conn, world, record.ticket_id, current, "rescheduled", now, trace),
        ]

    async def _release(
        self,
        conn: DbConnection,
        world: store.World,
        ticket_id: uuid.UUID,
        slot: store.SlotRecord,
        reason: str,
        now: datetime,
        trace: str | None,
    ) -> list[OutboxMessage]:
        await store.release_seat(conn, ticket_id, slot.slot_id, now)
        messages = [
            self._message(
                ev.SlotReleased(
                    ticket_id=ticket_id,
                    slot_id=slot.slot_id,
                    office_code=slot.office_code,
                    officer_id=slot.officer_ids[0] if slot.officer_ids else "",
                    reason=reason,
                    released_at=now,
                ),
                trace,
            )
        ]
        refilled, _ = await self._refill(conn, world, slot.office_code, slot.service_code, now, trace)
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
                    world = await store.load_world(uow.conn)
                    messages, blocked = await self._refill(
                        uow.conn, world, office_code, service_code, self._clock(), None, most=SWEEP_PAGE
                    )
                    uow.publish_messages(messages)
                assigned += len(messages)
                if blocked is not None or len(messages) < SWEEP_PAGE:
                    break  # the line is stuck or served: the next office and service
        return assigned

    async def _refill(
        self,
        conn: DbConnection,
        world: store.World,
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
        so none of them would find room either, and none may pass it."""
        messages: list[OutboxMessage] = []
        if not await store.waiting(conn, office_code, service_code, before=before):
            return messages, None
        await store.lock_waitlist(conn, office_code, service_code)
        while line := await store.waitlist(conn, office_code, service_code, before=before):
            for waiting in line:
                outcome = await self.assign(conn, world, waiting, now)
                if isinstance(outcome, Failed):
                    return messages, outcome
                await store.set_request(conn, waiting.ticket_id, "assigned", now)
                messages.append(self._slot_assigned(world, waiting, outcome.slot, now, trace, None))
                log.info("waitlisted ticket assigned", ticket_id=str(waiting.ticket_id))
                if most is not None and len(messages) >= most:
                    return messages, None
        return messages, None

    # -------------------------------------------------------------- helpers

    def _slot_assigned(
        self,
        world: store.World,
        record: store.RequestRecord,
        slot: store.SlotRecord,
        now: datetime,
        trace: str | None,
        replaces: store.SlotRecord | None,
    ) -> OutboxMessage:
        office = world.offices[slot.office_code]
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
