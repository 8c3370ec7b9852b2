"""PostgreSQL stopped with -m immediate and started again: nothing lost, nothing twice."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest

from glv_devtools.portal import PortalClient, ticket
from tests.infra import Infra
from tests.integration.conftest import Ticketing

STACK = Path(__file__).resolve().parents[2] / "deploy" / "local" / "stack.sh"


def stack(command: str) -> None:
    subprocess.run(["bash", str(STACK), command], check=True, capture_output=True, timeout=120)


@pytest.fixture
def local_stack(infra: Infra) -> None:
    if infra.origin != "local stack":
        pytest.skip("restarts PostgreSQL through deploy/local/stack.sh; only on the local stack")


async def test_relay_and_consumer_catch_up_after_postgres_crash(local_stack: None, ticketing: Ticketing) -> None:
    rng = random.Random(41)
    first = [ticket(rng, portal_id="sim-portal", office_code="BDG", service_code="lelang") for _ in range(300)]
    second = [ticket(rng, portal_id="sim-portal", office_code="SBY", service_code="lelang") for _ in range(300)]
    bootstrap = ticketing.settings.kafka_bootstrap_servers
    try:
        async with PortalClient(bootstrap, ticketing.prefix) as portal:
            await portal.file(first)
            await ticketing.probe.wait_for(lambda _: len(ticketing.probe.of_type("TicketAccepted")) >= 1)
            # Crash the database while batches and outbox rows are in flight.
            stack("pg-stop-immediate")
            await portal.file(second)
            await ticketing.probe.poll()
    finally:
        stack("pg-start")
    ids = {f.ticket_id for f in first + second}
    await ticketing.probe.wait_for(
        lambda _: ids <= {s.event.ticket_id for s in ticketing.probe.of_type("TicketAccepted")}, 120
    )
    accepted = ticketing.probe.of_type("TicketAccepted")
    # One decision per ticket. If the database died between the relay's send and
    # its "sent" mark, that decision is published again with the same event id,
    # which every consumer's inbox absorbs: that is the outbox's at-least-once.
    decisions: dict[object, set[str]] = {}
    for seen in accepted:
        decisions.setdefault(seen.event.ticket_id, set()).add(seen.headers["ce_id"])
    assert all(len(event_ids) == 1 for event_ids in decisions.values())
    codes = {s.event.ticket_id: s.event.ticket_code for s in accepted}
    assert len(set(codes.values())) == len(ids)
    print(f"records: {len(accepted)}, decisions: {len(decisions)}, republished: {len(accepted) - len(decisions)}")


async def test_everything_is_decided_once_across_a_broker_restart(local_stack: None, ticketing: Ticketing) -> None:
    rng = random.Random(42)
    filed = [ticket(rng, portal_id="sim-portal", office_code="JKT", service_code="lelang") for _ in range(300)]
    bootstrap = ticketing.settings.kafka_bootstrap_servers
    async with PortalClient(bootstrap, ticketing.prefix) as portal:
        await portal.file(filed)
    await ticketing.probe.wait_for(lambda _: len(ticketing.probe.of_type("TicketAccepted")) >= 1)
    # Stop the broker while batches are being applied and their outbox rows relayed.
    try:
        stack("kafka-stop")
    finally:
        stack("kafka-start")
    ids = {f.ticket_id for f in filed}
    await ticketing.probe.wait_for(
        lambda _: ids <= {s.event.ticket_id for s in ticketing.probe.of_type("TicketAccepted")}, 180
    )
    decisions: dict[object, set[str]] = {}
    for seen in ticketing.probe.of_type("TicketAccepted"):
        decisions.setdefault(seen.event.ticket_id, set()).add(seen.headers["ce_id"])
    assert all(len(event_ids) == 1 for event_ids in decisions.values())
