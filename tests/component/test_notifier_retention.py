"""The notifier forgets contact details and records once no message needs them (real PostgreSQL)."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from glv_devtools.portal import ticket
from glv_notifier import store
from glv_notifier.messages import Purpose
from glv_notifier.plans import Planned, TicketState, delivery_key
from glv_notifier.settings import NotifierSettings
from glv_runtime.migrate import apply_migrations

pytestmark = pytest.mark.real

NOW = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:  # type: ignore[type-arg]
    connection = await asyncpg.connect(database_url)
    await apply_migrations(connection, ["glv_runtime.migrations", "glv_notifier.migrations"])
    yield connection
    await connection.close()


async def remembered(conn: asyncpg.Connection, seed: int, stored_at: datetime) -> uuid.UUID:  # type: ignore[type-arg]
    filed = ticket(random.Random(seed), portal_id="p", office_code="JKT", service_code="lelang", now=NOW)
    assert await store.remember_contact(conn, filed, "p", stored_at)
    return filed.ticket_id


async def test_contacts_go_when_no_message_needs_them_and_not_before(conn: asyncpg.Connection) -> None:  # type: ignore[type-arg]
    closed_long_ago = await remembered(conn, 1, NOW - timedelta(days=40))
    closed_recently = await remembered(conn, 2, NOW - timedelta(days=40))
    closed_but_pending = await remembered(conn, 3, NOW - timedelta(days=40))
    rejected_and_told = await remembered(conn, 4, NOW)
    never_decided = await remembered(conn, 5, NOW - timedelta(hours=49))
    open_ticket = await remembered(conn, 6, NOW - timedelta(days=40))
    for ticket_id, decision, closed_at in (
        (closed_long_ago, "accepted", NOW - timedelta(days=31)),
        (closed_recently, "accepted", NOW - timedelta(days=29)),
        (closed_but_pending, "accepted", NOW - timedelta(days=31)),
        (rejected_and_told, "rejected", NOW),
        (open_ticket, "accepted", None),
    ):
        await store.save_ticket(conn, TicketState(ticket_id, NOW, decision=decision, closed_at=closed_at))
    pending = Planned(Purpose.ARCHIVED, delivery_key(closed_but_pending, Purpose.ARCHIVED), {})
    await store.add_notification(conn, closed_but_pending, pending, "queued", NOW)
    sent = Planned(Purpose.MISSED, delivery_key(closed_long_ago, Purpose.MISSED), {})
    await store.add_notification(conn, closed_long_ago, sent, "sent", NOW - timedelta(days=31))
    await store.finish_notification(
        conn, sent.notification_id, "sent", NOW - timedelta(days=31), channel="email", reason=None
    )
    waited_in_vain = uuid.uuid4()
    orphan = Planned(Purpose.ACKNOWLEDGEMENT, delivery_key(waited_in_vain, Purpose.ACKNOWLEDGEMENT), {})
    await store.add_notification(conn, waited_in_vain, orphan, "waiting", NOW - timedelta(hours=49))

    forgotten = await store.forget(conn, NOW, closed_days=30, undecided_hours=48)

    kept = {r["ticket_id"] for r in await conn.fetch("SELECT ticket_id FROM contact")}
    assert kept == {closed_recently, closed_but_pending, open_ticket}
    assert rejected_and_told not in kept and never_decided not in kept
    assert forgotten["contacts"] == 3 and forgotten["never_told"] == 1
    assert await conn.fetchval("SELECT state FROM notification WHERE notification_id = $1", orphan.notification_id) == (
        "skipped"
    )
    # The long-closed ticket's messages and state went with its contact.
    assert not await conn.fetchval("SELECT count(*) FROM notification WHERE ticket_id = $1", closed_long_ago)
    assert not await conn.fetchval("SELECT count(*) FROM ticket WHERE ticket_id = $1", closed_long_ago)


def test_settings_refuse_sms_through_the_whatsapp_cloud_api() -> None:
    with pytest.raises(ValueError, match="WhatsApp Cloud API sends no SMS"):
        NotifierSettings(gateway_format="whatsapp_cloud", phone_channel="sms")
