"""Sending one message: the `deliver` job kind.

The job is enqueued in the unit of work that planned the message, claimed with a lease,
performed outside any transaction, and its outcome recorded with NotificationSent or
NotificationFailed in one unit of work (glv_runtime.jobs). A retry, or a rerun after a
crash between the server's acceptance and that record, sends with the same Message-ID
(e-mail) or Idempotency-Key (gateway), so that the receiver can recognise the repeat.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parseaddr
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

from glv_notifier import store
from glv_notifier.channels import channel_order, hold_until
from glv_notifier.email import CalendarInvite, SmtpSettings, compose, message_id_for, send_email
from glv_notifier.facts import message_facts, with_ticket
from glv_notifier.gateway import GatewaySender, GatewaySettings, PhoneMessage
from glv_notifier.handlers import DELIVER
from glv_notifier.invite import invite
from glv_notifier.messages import WITH_INVITE, Channel, MessageFacts, Purpose, Rendered
from glv_notifier.plans import TicketState
from glv_notifier.ratelimit import TokenBucket
from glv_notifier.render import REQUIRED, render
from glv_notifier.settings import NotifierSettings
from glv_runtime.jobs import Job, JobDeferred, JobFailed, JobKind
from glv_runtime.jobs_store import JsonObject
from glv_runtime.logs import get_logger
from glv_runtime.unit_of_work import Database, UnitOfWork
from glv_schemas import events as ev

log = get_logger(__name__)


def smtp_settings(settings: NotifierSettings) -> SmtpSettings:
    return SmtpSettings(
        host=settings.smtp_host,
        port=settings.smtp_port,
        from_address=settings.mail_from,
        starttls=settings.smtp_starttls,
        implicit_tls=settings.smtp_tls,
        username=settings.smtp_username,
        password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        timeout_s=settings.smtp_timeout_s,
    )


def gateway_settings(settings: NotifierSettings) -> GatewaySettings:
    return GatewaySettings(
        url=settings.gateway_url,
        format=settings.gateway_format,
        token=settings.gateway_token.get_secret_value() if settings.gateway_token else "",
        timeout_s=settings.gateway_timeout_s,
        rate_per_s=settings.gateway_rate_per_s,
    )


class Delivery:
    """Performs `deliver` jobs for one service process (its gateway rate limit is shared)."""

    def __init__(
        self, db: Database, settings: NotifierSettings, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._db = db
        self._settings = settings
        self._clock = clock
        self._smtp = smtp_settings(settings)
        self._gateway = gateway_settings(settings)
        self._limiter = TokenBucket(settings.gateway_rate_per_s)
        self._templates: Path | None = settings.templates_dir

    def kind(self) -> JobKind:
        return JobKind(
            DELIVER,
            perform=self.perform,
            succeeded=self.succeeded,
            failed=self.failed,
            timeout_s=max(self._settings.smtp_timeout_s, self._settings.gateway_timeout_s) * 2 + 10,
            concurrency=self._settings.delivery_concurrency,
            max_attempts=self._settings.delivery_max_attempts,
            backoff_base_s=self._settings.delivery_backoff_s,
        )

    async def perform(self, job: Job) -> JsonObject:
        notification_id = UUID(job.payload["notification_id"])
        async with self._db.pool.acquire() as conn:
            notification = await store.notification(conn, notification_id)
            if notification is None or notification["state"] != "queued":
                return {"skipped": "not_queued"}
            ticket_id = notification["ticket_id"]
            contact = await store.contact_of(conn, ticket_id)
            ticket = await store.load_ticket(conn, ticket_id, self._clock())
            notification["facts"] = with_ticket(notification["facts"], ticket)
            office = await store.office_of(conn, notification["facts"].get("office_code"))
            refused = await store.refused_channels(conn, notification_id)
        if contact is None:
            return {"skipped": "no_contact"}
        facts = message_facts(notification, contact, office)
        pending = [n for n in ("ticket_code", "office") if n in REQUIRED[facts.purpose] and not getattr(facts, n)]
        if pending:
            # The acceptance (with the code) or the catalog entry is on its way on another topic.
            raise JobFailed("facts_not_yet_known: " + ", ".join(pending))
        stale = self._stale(facts, ticket)
        if stale is not None:
            return {"skipped": stale}
        try:
            rendered = render(facts, templates_dir=self._templates)
        except ValueError as exc:
            # The facts cannot make this message (no retry changes them); the office sees why.
            raise JobFailed(f"render_failed: {exc}", permanent=True) from None
        channels = channel_order(contact["email"], contact["phone"], self._settings.phone_channel)
        if not channels:
            raise JobFailed("no_contact_channel", permanent=True)
        for channel in channels:
            if channel in refused:
                continue  # refused for good on an earlier attempt: straight to the fallback
            now = self._clock()
            held = hold_until(
                channel,
                now,
                facts.office.zone if facts.office else (facts.session.zone if facts.session else "Asia/Jakarta"),
                facts.session.starts_at if facts.session else None,
                start_hour=self._settings.quiet_start_hour,
                end_hour=self._settings.quiet_end_hour,
            )
            if held is not None:
                await self._record(notification_id, channel, "deferred", f"quiet hours until {held.isoformat()}")
                raise JobDeferred("quiet_hours", delay_s=(held - now).total_seconds())
            try:
                await self._send(channel, facts, rendered, contact, notification_id, job.key)
            except JobFailed as failure:
                await self._record(
                    notification_id, channel, "permanent" if failure.permanent else "transient", failure.reason
                )
                if not failure.permanent:
                    raise
                continue
            await self._record(notification_id, channel, "sent", None)
            return {"channel": channel, "sent_at": self._clock().isoformat()}
        raise JobFailed("every_channel_refused", permanent=True)

    def _stale(self, facts: MessageFacts, ticket: TicketState) -> str | None:
        """Why a message about a slot would now mislead (it was sent late, or the slot changed),
        or None. The message about the new slot, or the cancellation, is planned on its own."""
        if facts.purpose not in (Purpose.INVITATION, Purpose.RESCHEDULED, Purpose.REMINDER) or facts.session is None:
            return None
        if ticket.slot_id != facts.session.slot_id or not ticket.slot_active:
            return "slot_changed"
        if facts.purpose is Purpose.REMINDER and self._clock() >= facts.session.starts_at:
            return "session_started"  # the notifier was down when it was due
        return None

    async def _send(
        self,
        channel: Channel,
        facts: MessageFacts,
        rendered: Rendered,
        contact: dict[str, Any],
        notification_id: UUID,
        delivery_key: str,
    ) -> None:
        if channel == "email":
            attachment = None
            if facts.purpose in WITH_INVITE and facts.session is not None:
                method: Literal["REQUEST", "CANCEL"] = "CANCEL" if facts.purpose is Purpose.CANCELLED else "REQUEST"
                ics = invite(
                    facts,
                    # The bare address: a calendar ORGANIZER is mailto:<address>, no display name.
                    organizer_email=parseaddr(self._smtp.from_address)[1],
                    attendee_email=contact["email"],
                    method=method,
                    now=self._clock(),
                    templates_dir=self._templates,
                )
                attachment = CalendarInvite(ics)
            message = compose(
                rendered,
                to=contact["email"],
                from_address=self._smtp.from_address,
                message_id=message_id_for(notification_id),
                invite=attachment,
                locale=facts.locale,
            )
            await send_email(self._smtp, message)
            return
        async with GatewaySender(self._gateway, self._limiter) as sender:
            await sender.send(
                PhoneMessage(
                    to=contact["phone"],
                    channel=channel,
                    purpose=facts.purpose,
                    locale=facts.locale,
                    rendered=rendered,
                    delivery_key=delivery_key,
                )
            )

    async def _record(self, notification_id: UUID, channel: str, outcome: str, detail: str | None) -> None:
        """Every attempt, in its own unit of work: kept whatever becomes of the job."""
        async with self._db.unit_of_work() as uow:
            await store.record_attempt(uow.conn, notification_id, channel, outcome, detail, self._clock())

    async def succeeded(self, uow: UnitOfWork, job: Job, result: JsonObject) -> None:
        notification_id = UUID(job.payload["notification_id"])
        notification = await store.notification(uow.conn, notification_id)
        assert notification is not None
        now = self._clock()
        if "skipped" in result:
            await store.finish_notification(
                uow.conn, notification_id, "skipped", now, channel=None, reason=result["skipped"]
            )
            log.info("message not sent", purpose=notification["purpose"], reason=result["skipped"])
            return
        await store.finish_notification(uow.conn, notification_id, "sent", now, channel=result["channel"], reason=None)
        uow.publish(
            ev.NotificationSent(
                ticket_id=notification["ticket_id"],
                notification_id=notification_id,
                channel=result["channel"],
                purpose=notification["purpose"],
                sent_at=datetime.fromisoformat(result["sent_at"]),
            ),
            key=str(notification["ticket_id"]),
        )

    async def failed(self, uow: UnitOfWork, job: Job, error: str) -> None:
        notification_id = UUID(job.payload["notification_id"])
        notification = await store.notification(uow.conn, notification_id)
        assert notification is not None
        now = self._clock()
        channel = await store.last_channel(uow.conn, notification_id) or "email"
        reason = next(
            (code for code in ("every_channel_refused", "no_contact_channel", "render_failed") if code in error),
            "retries_exhausted",
        )
        await store.finish_notification(uow.conn, notification_id, "failed", now, channel=channel, reason=reason)
        uow.publish(
            ev.NotificationFailed(
                ticket_id=notification["ticket_id"],
                notification_id=notification_id,
                channel=channel,
                purpose=notification["purpose"],
                reason=reason,
                will_retry=False,
                failed_at=now,
            ),
            key=str(notification["ticket_id"]),
        )
        log.warning("message failed for good", purpose=notification["purpose"], reason=reason)
