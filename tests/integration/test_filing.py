"""Every acceptance and rejection rule, on the real broker and database."""

from __future__ import annotations

import random
from datetime import timedelta

import httpx

from glv_devtools.portal import PortalClient, ticket
from tests.integration.conftest import Ticketing


async def test_valid_ticket_is_accepted_with_a_code(ticketing: Ticketing) -> None:
    rng = random.Random(1)
    filed = ticket(rng, portal_id="sim-portal", office_code="PLP", service_code="lelang", now=ticketing.clock.now)
    async with PortalClient(ticketing.settings.kafka_bootstrap_servers, ticketing.prefix) as portal:
        await portal.file([filed])
    await ticketing.probe.wait_for(lambda _: len(ticketing.probe.of_type("TicketAccepted")) == 1)
    accepted = ticketing.probe.of_type("TicketAccepted")[0]
    local_day = (ticketing.clock.now + timedelta(hours=8)).strftime("%y%m%d")
    assert accepted.event.ticket_code == f"PLP-{local_day}-0001"
    assert accepted.key == str(filed.ticket_id)
    assert accepted.headers["ce_source"] == "/glv/ticketing"
    async with httpx.AsyncClient(base_url=ticketing.base_url) as client:
        answer = await client.get(f"/v1/tickets/{filed.ticket_id}", headers={"Authorization": "Bearer token-sim"})
    assert answer.status_code == 200
    assert answer.json()["status"] == "accepted"
    assert answer.json()["ticket_code"] == accepted.event.ticket_code
