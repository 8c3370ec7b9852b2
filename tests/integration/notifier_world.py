"""The notifier on the real stack, with a real SMTP server and a real HTTP gateway on 127.0.0.1,
for the notifier's integration tests: helpers to file tickets and to read what arrived."""

from __future__ import annotations

import asyncio
import email
import email.policy
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from uuid import UUID

from icalendar import Calendar

from glv_devtools.gatewaysink import GatewaySink
from glv_devtools.mailsink import MailSink, Received
from glv_devtools.portal import ticket
from glv_notifier.messages import Purpose
from glv_notifier.plans import delivery_key, notification_id
from glv_notifier.settings import NotifierSettings
from glv_runtime.service import RunningService
from glv_schemas.events import Stakeholder, TicketFiled
from tests.conftest import free_port


def notifier_settings(
    bootstrap: str, database_url: str, prefix: str, mail: MailSink, gateway: GatewaySink, **more: Any
) -> NotifierSettings:
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": bootstrap,
        "database_url": database_url,
        "topic_prefix": prefix,
        "consumer_group": f"{prefix}notifier",
        "http_port": free_port(),
        "smtp_port": mail.port,
        "gateway_url": gateway.generic_url,
        "retry_backoff_s": 0.05,
        "relay_poll_interval_s": 0.2,
        "job_poll_interval_s": 0.2,
        "delivery_backoff_s": 0.2,
        "log_level": "WARNING",
    }
    return NotifierSettings(**(values | more))


def person(
    rng: random.Random, *, office: str, service: str, locale: str, email_address: bool = True, phone: bool = True
) -> TicketFiled:
    filed = ticket(
        rng, portal_id="sim-portal", office_code=office, service_code=service, email=email_address, phone=phone
    )
    stakeholder: Stakeholder = filed.stakeholder.model_copy(update={"locale": locale})
    return filed.model_copy(update={"stakeholder": stakeholder})


def message_id(ticket_id: UUID, purpose: Purpose, distinct: str = "") -> str:
    """The Message-ID the notifier gives this message (fixed by its delivery key)."""
    return f"<{notification_id(delivery_key(ticket_id, purpose, distinct))}@notifier.glv>"


def idempotency_key(ticket_id: UUID, purpose: Purpose, distinct: str = "") -> str:
    return delivery_key(ticket_id, purpose, distinct)


def parse(received: Received) -> EmailMessage:
    with received.path.open("rb") as raw:
        parsed = email.message_from_binary_file(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def html_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


def calendar_of(message: EmailMessage) -> Calendar | None:
    for part in message.walk():
        if part.get_content_type() == "text/calendar":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return Calendar.from_ical(payload)
    return None


@dataclass
class Notifiers:
    """One or more notifier replicas sharing one database and consumer group."""

    settings: NotifierSettings
    mail: MailSink
    gateway: GatewaySink
    clock: Callable[[], datetime]
    replicas: list[RunningService] = field(default_factory=list)

    @property
    def pool(self) -> Any:
        return self.replicas[0].pool

    async def wait_for_mail(self, ids: set[str], timeout_s: float = 90) -> None:
        await until(lambda: ids <= set(self.mail.counts), timeout_s, lambda: f"missing {ids - set(self.mail.counts)}")

    async def wait_for_gateway(self, keys: set[str], timeout_s: float = 90) -> None:
        await until(
            lambda: keys <= set(self.gateway.counts), timeout_s, lambda: f"missing {keys - set(self.gateway.counts)}"
        )

    def mail_with(self, message_id_: str) -> EmailMessage:
        [received] = [r for r in self.mail.received if r.message_id == message_id_]
        return parse(received)

    async def settled(self, timeout_s: float = 60) -> None:
        """Every message planned so far is sent, failed or skipped (no job pending or running)."""

        async def done() -> bool:
            return not await self.pool.fetchval(
                "SELECT count(*) FROM glv_job WHERE kind = 'deliver' AND status IN ('pending', 'running')"
                " AND run_at <= now() + interval '1 minute'"
            )

        await until_async(done, timeout_s, "deliveries still pending")


async def until(condition: Callable[[], bool], timeout_s: float, what: Callable[[], str] | str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(what() if callable(what) else what)
        await asyncio.sleep(0.1)


async def until_async(condition: Callable[[], Any], timeout_s: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.1)


def eml_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "mail"
    folder.mkdir()
    return folder
