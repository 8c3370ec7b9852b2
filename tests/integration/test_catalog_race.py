"""The catalog before the tickets: a fresh ticketing facing a backlog it has not
read the catalog for yet must not reject a single valid ticket as unknown_office."""

from __future__ import annotations

import asyncio
import random

import pytest

from glv_devtools.catalog import office_entries, publish_office_entries
from glv_devtools.portal import PortalClient, record_for, ticket
from glv_runtime.kafka import ensure_topics
from glv_runtime.service import RunningService
from glv_schemas.topics import ALL_TOPICS
from glv_ticketing.app import build_spec
from glv_ticketing.settings import TicketingSettings
from tests.integration.conftest import settings_from

BACKLOG = 20_000


async def test_a_backlog_filed_before_the_first_start_is_judged_against_the_catalog(
    ticketing_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings: TicketingSettings = settings_from(ticketing_env, monkeypatch)
    await ensure_topics(settings, ALL_TOPICS)
    offices = office_entries()
    rng = random.Random(20_000)
    filings = [
        ticket(
            rng, portal_id="sim-portal", office_code=office.office_code, service_code=office.services[0].service_code
        )
        for office in (rng.choice(offices) for _ in range(BACKLOG))
    ]
    # The backlog is on the portal topic and the catalog on its own, all before ticketing first starts.
    async with PortalClient(settings.kafka_bootstrap_servers, settings.topic_prefix) as portal:
        await portal.send([record_for(f, source="/portal/sim") for f in filings])
    await publish_office_entries(settings, offices)

    service = RunningService(build_spec(settings))
    await service.start(http=False)
    try:
        deadline = asyncio.get_running_loop().time() + 240
        while await service.pool.fetchval("SELECT count(*) FROM ticket") < BACKLOG:
            assert asyncio.get_running_loop().time() < deadline, "backlog not decided in time"
            await asyncio.sleep(0.2)
        rows = await service.pool.fetch("SELECT status, count(*) AS n FROM ticket GROUP BY status")
        statuses = {r["status"]: r["n"] for r in rows}
        reasons = await service.pool.fetch(
            "SELECT r AS reason, count(*) AS n FROM ticket_history, jsonb_array_elements_text(detail->'reasons') r"
            " GROUP BY r"
        )
    finally:
        await service.stop()
    print(f"backlog {BACKLOG}: statuses {statuses}; rejection reasons {[(r['reason'], r['n']) for r in reasons]}")
    assert statuses == {"accepted": BACKLOG}
    assert not [r for r in reasons if r["reason"] == "unknown_office"]
