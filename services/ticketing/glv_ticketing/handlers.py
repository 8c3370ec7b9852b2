"""Ticketing's use case: one batch of decoded events in, state changes and events out.

Runs inside the transaction the runtime opened; everything it writes commits
together with the inbox and outbox rows, or not at all.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, ValidationError

from glv_runtime.consumer import Delivery, Inbound, PermanentFailure, check_key, check_portal, decode, read_envelope
from glv_runtime.db import DbConnection
from glv_runtime.deadletters import DeadLetter
from glv_runtime.logs import get_logger
from glv_runtime.outbox import OutboxMessage, event_message
from glv_runtime.router import Router
from glv_runtime.unit_of_work import UnitOfWork
from glv_schemas import events as ev
from glv_schemas.base import Event
from glv_schemas.topics import PORTAL_TICKETS, PORTAL_UPDATES
from glv_ticketing import store
from glv_ticketing.domain import (
    Accept,
    Approve,
    Duplicate,
    Office,
    Refuse,
    Reject,
    Status,
    Ticket,
    Transition,
    acceptance_event,
    content_hash,
    decide_cancellation,
    decide_filing,
    decide_reschedule,
    format_ticket_code,
    next_status,
    reason,
)

log = get_logger(__name__)
SOURCE = "/glv/ticketing"


class InvalidFiling(BaseModel):
    """A TicketFiled whose JSON parsed but did not match the schema (not a contract)."""

    model_config = ConfigDict(frozen=True)

    ticket_id: UUID
    portal_id: str
    fingerprint: str
    problems: list[tuple[str, str]]


def decode_for_ticketing(delivery: Delivery) -> Inbound:
    """Like the runtime's decode, but a schema-invalid filing with a usable ticket id
    becomes an InvalidFiling so that the portal gets a TicketRejected, not silence."""
    try:
        return decode(delivery)
    except PermanentFailure as failure:
        if failure.code != "invalid_event" or delivery.value is None:
            raise
        cloud_event = read_envelope(delivery)
        if cloud_event.type != ev.TicketFiled.event_type():
            raise
        try:
            raw = json.loads(delivery.value)
            ticket_id = UUID(str(raw["ticket_id"]))
        except Exception:
            raise failure from None
        check_key(delivery, str(ticket_id))
        problems: list[tuple[str, str]] = []
        try:
            ev.TicketFiled.model_validate(raw)
        except ValidationError as exc:
            problems = [(".".join(map(str, e["loc"])) or "<root>", str(e["type"])) for e in exc.errors()[:20]]
        # The portal is the topic's, which the broker vouches for; a body may not name another.
        topic_portal = PORTAL_TICKETS.portal_in(delivery.topic)
        if topic_portal is None:
            raise failure from None
        if "portal_id" in raw:
            check_portal(topic_portal, raw["portal_id"])
        invalid = InvalidFiling(
            ticket_id=ticket_id,
            portal_id=topic_portal,
            fingerprint=hashlib.sha256(delivery.value).hexdigest(),
            problems=problems,
        )
        return Inbound(delivery=delivery, cloud_event=cloud_event, event=invalid, portal_id=topic_portal)


@dataclass
class _Acceptance:
    """An acceptance keeps its place among the batch's history entries and events; its
    ticket code is issued later (per office and day, in one statement), and the entry
    and event are written from it once the code is there."""

    item: Inbound
    ticket: Ticket
    decision: Accept

    def history_entry(self, now: datetime) -> store.HistoryEntry:
        assert self.ticket.ticket_code is not None
        return store.HistoryEntry(
            self.ticket.ticket_id,
            "accepted",
            Status.ACCEPTED,
            self.item.cloud_event.id,
            now,
            {"ticket_code": self.ticket.ticket_code},
        )

    def message(self, now: datetime) -> OutboxMessage:
        filed = self.item.event
        assert isinstance(filed, ev.TicketFiled) and self.ticket.ticket_code is not None
        accepted = acceptance_event(filed, self.ticket.ticket_code, now)
        return event_message(
            accepted, source=SOURCE, key=str(filed.ticket_id), traceparent=self.item.cloud_event.traceparent
        )

    def messages(self, now: datetime) -> list[OutboxMessage]:
        message = self.message(now)
        return [message, to_portal(message, self.ticket.portal_id)]


@dataclass
class _BatchState:
    """What one batch has read and changed, so that later events in the batch see it."""

    offices: dict[str, Office]
    tickets: dict[str, Ticket]
    now: datetime
    changed: dict[str, Ticket] = field(default_factory=dict)
    history: list[store.HistoryEntry | _Acceptance] = field(default_factory=list)
    outbox: list[OutboxMessage | _Acceptance] = field(default_factory=list)
    # Acceptances waiting for their ticket codes, reserved per office and day in one go.
    uncoded: list[_Acceptance] = field(default_factory=list)

    def save(self, ticket: Ticket) -> None:
        self.tickets[ticket.ticket_id] = ticket
        self.changed[ticket.ticket_id] = ticket


class TicketingUseCase:
    """Ticketing's handlers. A batch's tickets and offices are loaded once (`prepare`),
    each message changes them in memory, and `finish` writes them in a few statements."""

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._clock = clock

    def router(self) -> Router[_BatchState]:
        router: Router[_BatchState] = Router("ticketing", prepare=self.prepare, finish=self.finish)
        router.handle(ev.TicketFiled, self.file)
        router.handle(InvalidFiling, self.refuse_invalid)
        router.handle(ev.CancellationRequested, self.cancel)
        router.handle(ev.RescheduleRequested, self.reschedule)
        router.handle(ev.ErasureRequested, self.approve_erasure)
        router.on(ev.OfficeCatalogUpdated, ev.OfficeCatalogUpdatedV2)(self.apply_catalog_entry)
        router.on(
            ev.SlotAssigned,
            ev.AssignmentPending,
            ev.SlotReleased,
            ev.SchedulingFailed,
            ev.SessionHeld,
            ev.SessionMissed,
            ev.RecordingArchived,
            ev.ArchiveFailed,
            ev.ArchiveFailedV2,
            ev.ArchiveErased,
            ev.NotificationSent,
            ev.NotificationFailed,
        )(self.track)
        return router

    async def prepare(self, uow: UnitOfWork, items: Sequence[Inbound]) -> _BatchState:
        ticket_ids = [item.event.ticket_id for item in items if hasattr(item.event, "ticket_id")]
        return _BatchState(
            offices=await store.load_offices(uow.conn),
            tickets=await store.load_tickets(uow.conn, ticket_ids),
            now=self._clock(),
        )

    async def finish(self, uow: UnitOfWork, state: _BatchState) -> None:
        await self._issue_codes(uow.conn, state)
        await store.save_tickets(uow.conn, list(state.changed.values()), state.now)
        now = state.now
        await store.add_history(
            uow.conn, [h.history_entry(now) if isinstance(h, _Acceptance) else h for h in state.history]
        )
        uow.publish_messages([m for entry in state.outbox for m in _messages(entry, now)])

    async def apply_catalog_entry(self, uow: UnitOfWork, state: _BatchState, item: Inbound) -> None:
        entry = item.event
        assert isinstance(entry, ev.OfficeCatalogUpdated)
        if entry.is_from_the_future(state.now):
            # Applied, it could never be replaced by a correct entry (the latest updated_at wins).
            log.warning("catalog entry from the future ignored", office_code=entry.office_code)
            return
        state.offices[entry.office_code] = await store.upsert_office(uow.conn, entry)
        log.info("catalog entry applied", office_code=entry.office_code)

    # ------------------------------------------------------------------ filings

    async def file(self, uow: UnitOfWork, state: _BatchState, item: Inbound) -> None:
        filed, now = item.event, state.now
        assert isinstance(filed, ev.TicketFiled)
        key = str(filed.ticket_id)
        existing = state.tickets.get(key)
        decision = decide_filing(filed, existing, state.offices.get(filed.office_code), now)
        match decision:
            case Duplicate():
                log.info("identical resubmission ignored")
            case Accept():
                ticket = Ticket(
                    ticket_id=key,
                    portal_id=filed.portal_id,
                    content_hash=content_hash(filed),
                    status=Status.ACCEPTED,
                    office_code=filed.office_code,
                    service_code=filed.service_code,
                )
                state.save(ticket)
                acceptance = _Acceptance(item, ticket, decision)
                state.uncoded.append(acceptance)
                state.history.append(acceptance)
                state.outbox.append(acceptance)
            case Reject(reasons=reasons):
                if existing is None:
                    state.save(
                        Ticket(
                            ticket_id=key,
                            portal_id=filed.portal_id,
                            content_hash=content_hash(filed),
                            status=Status.REJECTED,
                            office_code=filed.office_code,
                            service_code=filed.service_code,
                        )
                    )
                    self._history(state, item, key, "rejected", Status.REJECTED, now, codes=reasons)
                else:  # a conflicting resubmission: the first filing stands
                    self._history(state, item, key, "resubmission_refused", existing.status, now, codes=reasons)
                self._publish(
                    state,
                    item,
                    ev.TicketRejected(
                        ticket_id=filed.ticket_id, portal_id=filed.portal_id, reasons=reasons, rejected_at=now
                    ),
                )
                log.info("ticket rejected", reasons=[r.code for r in reasons])

    async def refuse_invalid(self, uow: UnitOfWork, state: _BatchState, item: Inbound) -> None:
        invalid, now = item.event, state.now
        assert isinstance(invalid, InvalidFiling)
        key = str(invalid.ticket_id)
        existing = state.tickets.get(key)
        if existing is not None and existing.content_hash == invalid.fingerprint:
            return  # the same invalid filing again: it was answered already
        reasons = [reason("invalid_schema", where) for where, _ in invalid.problems] or [reason("invalid_schema")]
        if existing is None:
            state.save(
                Ticket(
                    ticket_id=key,
                    portal_id=invalid.portal_id or "unknown",
                    content_hash=invalid.fingerprint,
                    status=Status.REJECTED,
                    office_code="",
                    service_code="",
                )
            )
            self._history(state, item, key, "rejected", Status.REJECTED, now, codes=reasons)
        else:
            reasons = [reason("duplicate_conflict", "ticket_id"), *reasons]
            self._history(state, item, key, "resubmission_refused", existing.status, now, codes=reasons)
        self._publish(
            state,
            item,
            ev.TicketRejected(
                ticket_id=invalid.ticket_id, portal_id=invalid.portal_id or "unknown", reasons=reasons, rejected_at=now
            ),
        )
        # The malformed record is also kept on the dead-letter topic for ops.
        detail = "; ".join(f"{where}: {kind}" for where, kind in invalid.problems)
        uow.dead_letter(
            DeadLetter.of(item.delivery, "ticketing", "invalid_event", detail, attempts=1, event_id=item.cloud_event.id)
        )

    async def _issue_codes(self, conn: DbConnection, state: _BatchState) -> None:
        """Reserve the codes of the acceptances decided so far, per office and local day in
        one statement each (a cancellation later in the batch needs its ticket's code)."""
        by_day: dict[tuple[str, Any], list[_Acceptance]] = defaultdict(list)
        for acceptance in state.uncoded:
            by_day[(acceptance.decision.office.code, acceptance.decision.local_day)].append(acceptance)
        for (office_code, local_day), group in by_day.items():
            first = await store.reserve_code_numbers(conn, office_code, local_day, len(group))
            for number, acceptance in enumerate(group, start=first):
                acceptance.ticket.ticket_code = format_ticket_code(office_code, local_day, number)
        state.uncoded.clear()

    # ------------------------------------------------- cancellation, reschedule

    async def cancel(self, uow: UnitOfWork, state: _BatchState, item: Inbound) -> None:
        request, now = item.event, state.now
        assert isinstance(request, ev.CancellationRequested)
        await self._issue_codes(uow.conn, state)  # a ticket accepted earlier in this batch needs its code
        ticket = state.tickets.get(str(request.ticket_id))
        decision = decide_cancellation(request, ticket)
        if isinstance(decision, Approve) and ticket is not None and ticket.ticket_code is not None:
            ticket.status = Status.CANCELLED
            state.save(ticket)
            self._history(state, item, ticket.ticket_id, "cancelled", Status.CANCELLED, now)
            self._publish(
                state,
                item,
                ev.TicketCancelled(
                    ticket_id=request.ticket_id,
                    ticket_code=ticket.ticket_code,
                    portal_id=request.portal_id,
                    office_code=ticket.office_code,
                    cancelled_at=now,
                ),
            )
            return
        reasons = self._refusal(state, item, ticket, request.portal_id, decision, "cancellation_refused", now)
        self._publish(
            state,
            item,
            ev.CancellationRefused(
                ticket_id=request.ticket_id, portal_id=request.portal_id, reasons=reasons, refused_at=now
            ),
        )

    async def approve_erasure(self, uow: UnitOfWork, state: _BatchState, item: Inbound) -> None:
        """A portal's erasure request, its portal checked by the decoder (the topic's own): on to
        the archive, which erases that portal's stakeholder's sessions and says what per ticket."""
        request = item.event
        assert isinstance(request, ev.ErasureRequested) and item.portal_id is not None
        approved = ev.ErasureApproved(**request.model_dump(), approved_at=state.now)
        message = event_message(
            approved,
            source=SOURCE,
            key=approved.record_key(),
            traceparent=item.cloud_event.traceparent,
        )
        state.outbox.append(message)
        state.outbox.append(to_portal(message, item.portal_id))

    async def reschedule(self, uow: UnitOfWork, state: _BatchState, item: Inbound) -> None:
        request, now = item.event, state.now
        assert isinstance(request, ev.RescheduleRequested)
        await self._issue_codes(uow.conn, state)
        ticket = state.tickets.get(str(request.ticket_id))
        office = state.offices.get(ticket.office_code) if ticket is not None else None
        decision = decide_reschedule(request, ticket, office, now)
        if isinstance(decision, Approve) and ticket is not None and ticket.ticket_code is not None:
            self._history(state, item, ticket.ticket_id, "reschedule_approved", ticket.status, now)
            self._publish(
                state,
                item,
                ev.RescheduleApproved(
                    ticket_id=request.ticket_id,
                    ticket_code=ticket.ticket_code,
                    office_code=ticket.office_code,
                    service_code=ticket.service_code,
                    preferred_windows=request.preferred_windows,
                    approved_at=now,
                ),
            )
            return
        reasons = self._refusal(state, item, ticket, request.portal_id, decision, "reschedule_refused", now)
        self._publish(
            state,
            item,
            ev.RescheduleRefused(
                ticket_id=request.ticket_id, portal_id=request.portal_id, reasons=reasons, refused_at=now
            ),
        )

    def _refusal(
        self,
        state: _BatchState,
        item: Inbound,
        ticket: Ticket | None,
        portal_id: str,
        decision: Approve | Refuse,
        entry: str,
        now: datetime,
    ) -> list[ev.Reason]:
        """The reasons a request is refused, noted in the ticket's history when the
        ticket is the requesting portal's own (others' tickets stay untouched)."""
        reasons = decision.reasons if isinstance(decision, Refuse) else [reason("already_final")]
        if ticket is not None and ticket.portal_id == portal_id:
            self._history(state, item, ticket.ticket_id, entry, ticket.status, now, codes=reasons)
        return reasons

    # ---------------------------------------------------------------- lifecycle

    async def track(self, uow: UnitOfWork, state: _BatchState, item: Inbound) -> None:
        event = item.event
        key = str(getattr(event, "ticket_id", ""))
        ticket = state.tickets.get(key)
        if ticket is None:
            raise PermanentFailure("unknown_ticket", f"{item.cloud_event.type} for a ticket ticketing never accepted")
        transition = lifecycle_transition(event, ticket.status)
        ticket.status = next_status(ticket.status, transition)
        state.save(ticket)
        self._history(
            state, item, key, transition.entry, ticket.status, item.cloud_event.time, detail=transition.detail
        )
        # The portal hears of it as it was published (same id, headers and body), on its own topic.
        delivery = item.delivery
        state.outbox.append(
            to_portal(
                OutboxMessage(delivery.topic, delivery.key, list(delivery.headers), delivery.value), ticket.portal_id
            )
        )

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _history(
        state: _BatchState,
        item: Inbound,
        ticket_id: str,
        entry: str,
        status: Status,
        at: datetime,
        codes: list[ev.Reason] | None = None,
        detail: dict[str, str] | None = None,
    ) -> None:
        data: dict[str, Any] = dict(detail or {})
        if codes:
            data["reasons"] = [r.code for r in codes]
        state.history.append(store.HistoryEntry(ticket_id, entry, status, item.cloud_event.id, at, data))

    @staticmethod
    def _publish(state: _BatchState, item: Inbound, event: Event) -> None:
        """A decision on what a portal filed: on ticketing's topic, and to that portal."""
        message = event_message(
            event, source=SOURCE, key=str(event.ticket_id), traceparent=item.cloud_event.traceparent
        )
        state.outbox.append(message)
        assert item.portal_id is not None, "decisions answer records from a portal's own topic"
        state.outbox.append(to_portal(message, item.portal_id))


def to_portal(message: OutboxMessage, portal_id: str) -> OutboxMessage:
    """The same record, bound for the portal's own updates topic."""
    return replace(message, topic=PORTAL_UPDATES.for_portal(portal_id))


def _messages(entry: OutboxMessage | _Acceptance, now: datetime) -> list[OutboxMessage]:
    return entry.messages(now) if isinstance(entry, _Acceptance) else [entry]


def lifecycle_transition(event: BaseModel, current: Status) -> Transition:
    """The history entry and status a downstream event means for a ticket in `current`."""
    match event:
        case ev.SlotAssigned():
            return Transition(
                "rescheduled" if event.replaces_slot_id else "scheduled",
                Status.SCHEDULED,
                {"starts_at": event.starts_at.isoformat(), "office_zone": event.office_zone},
            )
        case ev.AssignmentPending():
            # A slot that came first (another topic is not behind this one) is not undone.
            status = None if current == Status.SCHEDULED else Status.AWAITING_ROUND
            return Transition("awaiting_round", status, {"round_at": event.round_at.isoformat()})
        case ev.SlotReleased():
            return Transition("slot_released", None, {"reason": event.reason})
        case ev.SchedulingFailed() if event.waitlisted:
            return Transition("waitlisted", Status.WAITLISTED, {"reason": event.reason})
        case ev.SchedulingFailed() if current == Status.SCHEDULED:
            # A reschedule found no new slot: the ticket keeps the slot it has.
            return Transition("reschedule_failed", None, {"reason": event.reason})
        case ev.SchedulingFailed():
            return Transition("unschedulable", Status.UNSCHEDULABLE, {"reason": event.reason})
        case ev.SessionHeld():
            return Transition("held", Status.HELD)
        case ev.SessionMissed():
            return Transition("missed", Status.MISSED, {"missing_party": event.missing_party})
        case ev.RecordingArchived():
            return Transition("archived", Status.ARCHIVED)
        case ev.ArchiveFailed():
            return Transition("archive_failed", None, {"reason": event.reason})
        case ev.ArchiveErased():
            return Transition("archive_erased", None, {"cause": event.cause, "objects": str(event.objects)})
        case ev.NotificationSent():
            return Transition("notified", None, {"purpose": event.purpose, "channel": event.channel})
        case ev.NotificationFailed():
            return Transition(
                "notification_failed",
                None,
                {"purpose": event.purpose, "channel": event.channel, "reason": event.reason},
            )
    raise PermanentFailure("unexpected_type", f"ticketing does not handle {type(event).__name__}")
