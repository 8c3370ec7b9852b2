"""The archive's use case: events in; sessions, their expected artifacts and the jobs that
fetch them out; the facts a session record needs; erasure requests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from glv_archive import store
from glv_archive.retention import erase_stakeholder
from glv_archive.sessions import advance, fetch_job
from glv_runtime.consumer import Inbound
from glv_runtime.logs import get_logger
from glv_runtime.router import Router
from glv_runtime.unit_of_work import UnitOfWork
from glv_schemas import events as ev

log = get_logger(__name__)


@dataclass
class _Batch:
    now: datetime


class ArchiveUseCase:
    def __init__(
        self,
        *,
        retention: timedelta,
        late_give_up: timedelta,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._retention = retention
        self._late_give_up = late_give_up
        self._clock = clock

    def router(self) -> Router[_Batch]:
        router: Router[_Batch] = Router("archive", prepare=self.prepare)
        router.handle(ev.SessionHeld, self.session_held)
        router.handle(ev.SlotAssigned, self.slot_assigned)
        router.handle(ev.TicketAccepted, self.ticket_accepted)
        router.handle(ev.ErasureApproved, self.erasure_approved)
        router.on(ev.OfficeCatalogUpdated, ev.OfficeCatalogUpdatedV2)(self.catalog_entry)
        # Nothing to archive in the rest of what the scheduler and ticketing say.
        router.ignore(
            ev.AssignmentPending,
            ev.SlotReleased,
            ev.SchedulingFailed,
            ev.SessionMissed,
            ev.TicketRejected,
            ev.TicketCancelled,
            ev.CancellationRefused,
            ev.RescheduleApproved,
            ev.RescheduleRefused,
        )
        return router

    async def prepare(self, uow: UnitOfWork, items: Sequence[Inbound]) -> _Batch:
        return _Batch(now=self._clock())

    async def session_held(self, uow: UnitOfWork, batch: _Batch, item: Inbound) -> None:
        held = item.event
        assert isinstance(held, ev.SessionHeld)
        artifact_ids = await store.add_session(
            uow.conn,
            held,
            retain_until=held.ended_at + self._retention,
            give_up_at=max(held.ended_at, batch.now) + self._late_give_up,
            now=batch.now,
        )
        if artifact_ids is None:
            return  # a redelivery: the session is in hand
        uow.enqueue(*(fetch_job(aid, 0) for aid in artifact_ids))
        if not artifact_ids:  # an officer's report: no recording, only the session record
            await advance(uow, held.session_id)

    async def slot_assigned(self, uow: UnitOfWork, batch: _Batch, item: Inbound) -> None:
        assert isinstance(item.event, ev.SlotAssigned)
        await store.remember_slot(uow.conn, item.event)

    async def ticket_accepted(self, uow: UnitOfWork, batch: _Batch, item: Inbound) -> None:
        assert isinstance(item.event, ev.TicketAccepted)
        await store.remember_ticket(uow.conn, item.event)

    async def catalog_entry(self, uow: UnitOfWork, batch: _Batch, item: Inbound) -> None:
        entry = item.event
        assert isinstance(entry, ev.OfficeCatalogUpdated)
        # The wall clock, not the injected one: this guards against clocks that disagree.
        if entry.is_from_the_future(datetime.now(UTC)):
            log.warning("catalog entry dated in the future ignored", office_code=entry.office_code)
            return
        await store.remember_office(uow.conn, entry)

    async def erasure_approved(self, uow: UnitOfWork, batch: _Batch, item: Inbound) -> None:
        request = item.event
        assert isinstance(request, ev.ErasureApproved)
        report = await erase_stakeholder(
            uow,
            request.portal_id,
            request.stakeholder_ref,
            request.request_id,
            "event",
            request.requested_at,
            batch.now,
        )
        log.info("erasure request done", request_id=str(request.request_id), **report.counts())
