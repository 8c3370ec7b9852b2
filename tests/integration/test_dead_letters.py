"""Poison messages are dead-lettered while the partition moves on; dead letters replay."""

from __future__ import annotations

import random
from datetime import timedelta

from glv_devtools.portal import PortalClient, RawRecord, record_for, slot_for, ticket
from glv_runtime.deadletters import read_dead_letters, replay
from glv_schemas.topics import PORTAL_TICKETS, dead_letter_topic, intake_dead_letter_topic
from tests.integration.conftest import Ticketing


async def test_poison_messages_go_to_the_dead_letter_topic_and_the_partition_moves_on(ticketing: Ticketing) -> None:
    rng = random.Random(21)
    good = ticket(rng, portal_id="sim-portal", office_code="MKS", service_code="lelang", now=ticketing.clock.now)
    template = record_for(good, source="/portal/sim")
    key = template.key  # one key: every record lands on the same partition, poison first
    headers = dict(template.headers)

    def with_headers(**changes: bytes | None) -> list[tuple[str, bytes]]:
        merged = {**headers, **changes}
        return [(n, v) for n, v in merged.items() if v is not None]

    poison = {
        "bad_json": RawRecord(template.topic, key, b"{not json", template.headers),
        "unknown_type": RawRecord(template.topic, key, template.value, with_headers(ce_type=b"glv.Nonsense.v1")),
        "missing_header": RawRecord(template.topic, key, template.value, with_headers(ce_id=None)),
        "bad_header": RawRecord(template.topic, key, template.value, with_headers(ce_source=b"\xff\xfe")),
        "invalid_event": RawRecord(template.topic, key, b'{"ticket_id": 42}', template.headers),  # wrong types
        "empty_value": RawRecord(template.topic, key, None, template.headers),
    }
    async with PortalClient(ticketing.settings.kafka_bootstrap_servers, ticketing.prefix) as portal:
        await portal.send(list(poison.values()))
        await portal.send([template])
    await ticketing.probe.wait_for(lambda _: len(ticketing.probe.of_type("TicketAccepted")) == 1)
    # What a portal filed is dead-lettered apart from the service topics' letters (kept a week).
    dlq = ticketing.prefix + intake_dead_letter_topic("ticketing").name
    await ticketing.probe.wait_for(lambda seen: sum(s.topic == dlq for s in seen) == len(poison))
    letters = [s for s in ticketing.probe.seen if s.topic == dlq]
    assert sorted(s.headers["x-dlq-error-code"] for s in letters) == sorted(poison)
    assert not [s for s in ticketing.probe.seen if s.topic == ticketing.prefix + dead_letter_topic("ticketing").name]
    source = ticketing.prefix + PORTAL_TICKETS.for_portal("sim-portal")
    assert template.topic == PORTAL_TICKETS.for_portal("sim-portal")
    for letter in letters:
        assert letter.headers["x-dlq-original-topic"] == source
        assert letter.headers["x-dlq-original-partition"].isdigit()
        assert letter.headers["x-dlq-original-offset"].isdigit()
        assert letter.headers["x-dlq-error"]
        assert letter.key == key.decode()
    # The bytes that made a header unreadable are kept as they were.
    listed = await read_dead_letters(
        ticketing.settings.kafka_bootstrap_servers, "ticketing", ticketing.prefix, intake=True
    )
    bad = next(x for x in listed if x["code"] == "bad_header")
    assert ("ce_source", b"\xff\xfe") in [tuple(h) for h in bad["headers"]]


async def test_a_dead_letter_replays_once_its_cause_is_fixed(ticketing: Ticketing) -> None:
    rng = random.Random(22)
    now = ticketing.clock.now
    filed = ticket(rng, portal_id="sim-portal", office_code="DPS", service_code="lelang", now=now)
    starts = now + timedelta(days=2)
    slot = slot_for(filed, "Asia/Makassar", starts)
    bootstrap = ticketing.settings.kafka_bootstrap_servers
    async with PortalClient(bootstrap, ticketing.prefix) as portal:
        await portal.file([slot], source="/glv/scheduler")  # the slot arrives for a ticket not filed yet
    dlq = ticketing.prefix + dead_letter_topic("ticketing").name  # from a service topic: the service's DLQ
    await ticketing.probe.wait_for(lambda seen: any(s.topic == dlq for s in seen))
    [letter] = [s for s in ticketing.probe.seen if s.topic == dlq]
    assert letter.headers["x-dlq-error-code"] == "unknown_ticket"
    assert int(letter.headers["x-dlq-attempts"]) >= 1

    async with PortalClient(bootstrap, ticketing.prefix) as portal:
        await portal.file([filed])
    await ticketing.probe.wait_for(lambda _: len(ticketing.probe.of_type("TicketAccepted")) == 1)
    assert await replay(bootstrap, "ticketing", None, ticketing.prefix) == 1

    assert ticketing.service.pool is not None
    for _ in range(300):
        status = await ticketing.service.pool.fetchval(
            "SELECT status FROM ticket WHERE ticket_id = $1", filed.ticket_id
        )
        if status == "scheduled":
            break
        await ticketing.probe.poll()  # paces the loop (up to 200 ms)
    assert status == "scheduled"
    history = await ticketing.service.pool.fetch(
        "SELECT entry FROM ticket_history WHERE ticket_id = $1 ORDER BY id", filed.ticket_id
    )
    assert [h["entry"] for h in history] == ["accepted", "scheduled"]
