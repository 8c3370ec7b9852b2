"""The notifier's use case: events in; the contact book, the tickets' state and the
messages they call for out, each message a durable job with its delivery key."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from glv_notifier import store
from glv_notifier.plans import Planned, plan
from glv_runtime.consumer import Inbound
from glv_runtime.jobs import JobRequest
from glv_runtime.logs import get_logger
from glv_runtime.router import Router
from glv_runtime.unit_of_work import UnitOfWork
from glv_schemas import events as ev

log = get_logger(__name__)

DELIVER = "deliver"


def delivery_job(notification_id: UUID, key: str, run_at: datetime | None) -> JobRequest:
    """The job that sends one message; its key is the message's delivery key, so a message
    planned twice is one job, and every attempt hands the receiver the same key."""
    return JobRequest(DELIVER, key, {"notification_id": str(notification_id)}, run_at=run_at)


@dataclass
class _Batch:
    now: datetime


class NotifierUseCase:
    def __init__(self, reminder_leads_min: Sequence[int], clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self._leads = list(reminder_leads_min)
        self._clock = clock

    def router(self) -> Router[_Batch]:
        router: Router[_Batch] = Router("notifier", prepare=self.prepare)
        router.handle(ev.TicketFiled, self.remember_contact)
        router.on(
            ev.TicketAccepted,
            ev.TicketRejected,
            ev.TicketCancelled,
            ev.SlotAssigned,
            ev.SlotReleased,
            ev.SchedulingFailed,
            ev.SessionHeld,
            ev.SessionMissed,
            ev.RecordingArchived,
        )(self.tell)
        router.on(ev.OfficeCatalogUpdated, ev.OfficeCatalogUpdatedV2)(self.apply_catalog_entry)
        # Requests are ticketing's to decide (its decisions come here); refusals and approvals
        # reach the portal, not the stakeholder; an archive failure is the office's to resolve.
        router.ignore(
            ev.CancellationRequested,
            ev.RescheduleRequested,
            ev.CancellationRefused,
            ev.RescheduleApproved,
            ev.RescheduleRefused,
            ev.ArchiveFailed,
            ev.ArchiveFailedV2,
            ev.ArchiveErased,
            ev.ErasureRequested,
            ev.ErasureApproved,
            # The stakeholder hears when the slot is decided (the invitation), not before.
            ev.AssignmentPending,
        )
        return router

    async def prepare(self, uow: UnitOfWork, items: Sequence[Inbound]) -> _Batch:
        return _Batch(now=self._clock())

    async def remember_contact(self, uow: UnitOfWork, batch: _Batch, item: Inbound) -> None:
        filed = item.event
        assert isinstance(filed, ev.TicketFiled) and item.portal_id is not None
        if not await store.remember_contact(uow.conn, filed, item.portal_id, batch.now):
            return
        # Messages decided before the filing itself arrived (another topic may be ahead).
        for row in await store.release_waiting(uow.conn, filed.ticket_id):
            uow.enqueue(delivery_job(row["notification_id"], row["delivery_key"], row["not_before"]))

    async def tell(self, uow: UnitOfWork, batch: _Batch, item: Inbound) -> None:
        ticket_id: UUID = item.event.ticket_id  # type: ignore[attr-defined]
        current = await store.load_ticket(uow.conn, ticket_id, batch.now)
        decided = plan(item.event, current, batch.now, self._leads)
        await store.save_ticket(uow.conn, decided.state)
        if decided.messages:
            await self._queue(uow, ticket_id, decided.messages, batch.now)

    async def _queue(self, uow: UnitOfWork, ticket_id: UUID, messages: list[Planned], now: datetime) -> None:
        known = await uow.conn.fetchval("SELECT true FROM contact WHERE ticket_id = $1", ticket_id)
        for planned in messages:
            # Without the contact yet, a message waits for the filing (released by remember_contact).
            if await store.add_notification(uow.conn, ticket_id, planned, "queued" if known else "waiting", now):
                if known:
                    uow.enqueue(delivery_job(planned.notification_id, planned.key, planned.not_before))
                log.info("message planned", purpose=planned.purpose.value, waiting_for_contact=not known)

    async def apply_catalog_entry(self, uow: UnitOfWork, batch: _Batch, item: Inbound) -> None:
        entry = item.event
        assert isinstance(entry, ev.OfficeCatalogUpdated)
        # The wall clock, not the injected one: this guards against clocks that disagree.
        if entry.is_from_the_future(datetime.now(UTC)):
            log.warning("catalog entry from the future ignored", office_code=entry.office_code)
            return
        await store.upsert_office(uow.conn, entry)
