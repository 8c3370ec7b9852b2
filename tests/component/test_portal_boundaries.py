"""Ticketing at the portals' boundary (fast tier: real PostgreSQL, no broker): the portal is
the topic's, a body naming another is dead-lettered, and every event about a ticket also
goes, unchanged, to the updates topic of the portal that filed it."""

from __future__ import annotations

import base64
import json
import random
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from glv_devtools.catalog import office_entries
from glv_devtools.portal import record_for, slot_for, ticket
from glv_schemas import events as ev
from glv_schemas.topics import PORTAL_TICKETS
from glv_ticketing.app import build_spec
from glv_ticketing.settings import TicketingSettings
from tests.component.feed import Feeder, feeder_for

pytestmark = pytest.mark.real  # a real PostgreSQL, though no broker


@pytest.fixture
async def feeder(database_url: str) -> AsyncIterator[Feeder]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    feeder = await feeder_for(build_spec(TicketingSettings(database_url=database_url)), pool)
    await feeder.feed(*(record_for(e, source="/glv/scheduler") for e in office_entries()))
    yield feeder
    await pool.close()


def filing(portal_id: str, seed: int = 1) -> ev.TicketFiled:
    return ticket(random.Random(seed), portal_id=portal_id, office_code="JKT", service_code="lelang")


def headers_of(row: asyncpg.Record) -> dict[str, str]:
    """An outbox row's headers (stored as [name, base64 value] pairs)."""
    return {name: base64.b64decode(value).decode() for name, value in json.loads(row["headers"])}


def ids_and_types(rows: list[asyncpg.Record]) -> list[tuple[str, str]]:
    return [(h["ce_id"], h["ce_type"]) for h in map(headers_of, rows)]


async def test_each_decision_and_downstream_event_reaches_the_filing_portal_unchanged(feeder: Feeder) -> None:
    filed = filing("alpha")
    await feeder.file(filed)
    slot = slot_for(filed, "Asia/Jakarta", datetime.now(UTC) + timedelta(days=3))
    await feeder.feed(record_for(slot, source="/glv/scheduler"))

    on_service_topics = await feeder.outbox("glv.ticketing.events")
    forwarded = await feeder.outbox("glv.portal.alpha.updates")
    assert [t for _, t in ids_and_types(forwarded)] == ["glv.TicketAccepted.v1", "glv.SlotAssigned.v1"]
    # The decision is the same record on both topics: a portal dedupes by id, whatever it reads.
    assert ids_and_types(forwarded)[0] == ids_and_types(on_service_topics)[0]
    assert forwarded[0]["payload"] == on_service_topics[0]["payload"]
    assert json.loads(forwarded[1]["payload"])["meeting"]["join_url"] == str(slot.meeting.join_url)
    assert await feeder.outbox("glv.portal.beta.updates") == []


async def test_a_body_naming_another_portal_is_dead_lettered_and_changes_nothing(feeder: Feeder) -> None:
    alphas = filing("alpha")
    await feeder.file(alphas)
    as_beta = ev.CancellationRequested(ticket_id=alphas.ticket_id, portal_id="alpha", requested_at=datetime.now(UTC))
    forged = replace(record_for(as_beta, source="/portal/beta"), topic=PORTAL_TICKETS.for_portal("beta"))
    betas_own_name = as_beta.model_copy(update={"portal_id": "beta"})
    await feeder.feed(forged, record_for(betas_own_name, source="/portal/beta"))

    assert await feeder.dead_letter_codes() == ["portal_mismatch"]
    status = await feeder.db.pool.fetchval("SELECT status FROM ticket WHERE ticket_id = $1", alphas.ticket_id)
    assert status == "accepted"
    [answer] = await feeder.outbox("glv.portal.beta.updates")
    refused = json.loads(answer["payload"])
    assert [r["code"] for r in refused["reasons"]] == ["unknown_ticket"]
    assert [t for _, t in ids_and_types(await feeder.outbox("glv.portal.alpha.updates"))] == ["glv.TicketAccepted.v1"]


async def test_an_invalid_filing_is_answered_to_the_topics_portal(feeder: Feeder) -> None:
    filed = filing("alpha")
    broken = record_for(filed, source="/portal/alpha")
    raw = json.loads(broken.value or b"")
    raw["office_code"] = 7  # not a string: schema-invalid, but with a usable ticket id
    await feeder.feed(replace(broken, value=json.dumps(raw).encode()))
    [answer] = await feeder.outbox("glv.portal.alpha.updates")
    assert headers_of(answer)["ce_type"] == "glv.TicketRejected.v1"
    assert json.loads(answer["payload"])["portal_id"] == "alpha"
