"""The notifier on the real stack (Kafka, PostgreSQL, ticketing and the scheduler), sending to a
real SMTP server and a real HTTP gateway on 127.0.0.1: each stakeholder told once, in their
language and their office's local time, with calendar invites that follow the slot."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from glv_devtools.catalog import office_entries
from glv_devtools.gatewaysink import GatewaySink
from glv_devtools.mailsink import MailSink
from glv_devtools.portal import PortalClient, accepted_for, record_for, slot_for
from glv_devtools.probe import EventProbe
from glv_notifier.app import build_spec
from glv_notifier.invite import event_uid
from glv_notifier.messages import Purpose
from glv_runtime.kafka import partitions_of
from glv_runtime.service import RunningService
from glv_schemas.events import (
    CancellationRequested,
    RescheduleRequested,
    SlotAssigned,
    SlotReleased,
    TicketCancelled,
    TicketFiled,
)
from glv_schemas.topics import PORTAL_UPDATES, consumed_by
from tests.conftest import create_database, drop_database, free_port
from tests.infra import Infra
from tests.integration.conftest import Glv
from tests.integration.notifier_world import (
    Notifiers,
    calendar_of,
    eml_folder,
    html_of,
    idempotency_key,
    message_id,
    notifier_settings,
    person,
    text_of,
    until,
    until_async,
)
from tests.integration.processes import LOGS, ServiceProcess

# An office's local time as the stakeholder reads it, by zone (the test's own table).
ZONE_NAMES = {"Asia/Jakarta": "WIB", "Asia/Makassar": "WITA", "Asia/Jayapura": "WIT"}


def midday_everywhere() -> datetime:
    """05:00 UTC today: 12.00 WIB, 13.00 WITA, 14.00 WIT. The notifier's clock in the tests
    that are not about quiet hours, which the real clock would otherwise decide (CI runs at
    any hour, and at 02.00 WIT a phone message is rightly held until morning)."""
    return datetime.now(UTC).replace(hour=5, minute=0, second=0, microsecond=0)


@contextlib.asynccontextmanager
async def running_notifiers(
    glv: Glv,
    infra: Infra,
    tmp_path: Path,
    *,
    replicas: int = 1,
    clock: Callable[[], datetime] = midday_everywhere,
    mail_options: dict[str, Any] | None = None,
    gateway_options: dict[str, Any] | None = None,
    **settings: Any,
) -> AsyncIterator[Notifiers]:
    database_url = await create_database(infra)
    try:
        async with (
            MailSink(eml_folder(tmp_path), **(mail_options or {})) as mail,
            GatewaySink(tmp_path / "gateway.jsonl", **(gateway_options or {})) as gateway,
        ):
            base = notifier_settings(infra.bootstrap, database_url, glv.ticketing.prefix, mail, gateway, **settings)
            notifiers = Notifiers(base, mail, gateway, clock)
            try:
                for n in range(replicas):
                    # Each replica its own free port (the port after another one may be taken).
                    replica = base.model_copy(update={"http_port": free_port() if n else base.http_port})
                    service = RunningService(build_spec(replica, clock))
                    await service.start()
                    notifiers.replicas.append(service)
                yield notifiers
            finally:
                for service in notifiers.replicas:
                    await service.stop()
    finally:
        await drop_database(infra, database_url)


def slots_of(glv: Glv, tickets: list[TicketFiled]) -> dict[uuid.UUID, SlotAssigned]:
    ids = {t.ticket_id for t in tickets}
    return {s.event.ticket_id: s.event for s in glv.probe.of_type("SlotAssigned") if s.event.ticket_id in ids}


async def placed(glv: Glv, tickets: list[TicketFiled], count: int | None = None) -> dict[uuid.UUID, SlotAssigned]:
    wanted = len(tickets) if count is None else count
    await glv.probe.wait_for(lambda _: len(slots_of(glv, tickets)) >= wanted, 90)
    return slots_of(glv, tickets)


def local(slot: SlotAssigned) -> datetime:
    return slot.starts_at.astimezone(ZoneInfo(slot.office_zone))


async def test_each_stakeholder_is_told_once_in_their_language_with_an_invite(
    glv: Glv, infra: Infra, tmp_path: Path
) -> None:
    rng = random.Random(11)
    in_jakarta = person(rng, office="JKT", service="lelang", locale="id")
    in_makassar = person(rng, office="MKS", service="lelang", locale="en")
    in_jayapura = person(rng, office="JYP", service="piutang-negara", locale="id", email_address=False)
    tickets = [in_jakarta, in_makassar, in_jayapura]
    updates = glv.ticketing.prefix + PORTAL_UPDATES.for_portal("sim-portal")
    async with (
        running_notifiers(glv, infra, tmp_path, replicas=2) as notifiers,
        EventProbe(infra.bootstrap, [updates]) as portal_sees,
    ):
        async with PortalClient(infra.bootstrap, glv.ticketing.prefix) as portal:
            await portal.file(tickets)
        slots = await placed(glv, tickets)
        by_mail = {
            t.ticket_id: (
                message_id(t.ticket_id, Purpose.ACKNOWLEDGEMENT),
                message_id(t.ticket_id, Purpose.INVITATION, str(slots[t.ticket_id].slot_id)),
            )
            for t in (in_jakarta, in_makassar)
        }
        by_phone = {
            idempotency_key(in_jayapura.ticket_id, Purpose.ACKNOWLEDGEMENT),
            idempotency_key(in_jayapura.ticket_id, Purpose.INVITATION, str(slots[in_jayapura.ticket_id].slot_id)),
        }
        await notifiers.wait_for_mail({i for pair in by_mail.values() for i in pair})
        await notifiers.wait_for_gateway(by_phone)

        codes = {s.event.ticket_id: s.event.ticket_code for s in glv.probe.of_type("TicketAccepted")}
        for filed, words in ((in_jakarta, "pukul"), (in_makassar, "at")):
            slot = slots[filed.ticket_id]
            acknowledgement, invitation = (notifiers.mail_with(i) for i in by_mail[filed.ticket_id])
            assert codes[filed.ticket_id] in str(acknowledgement["Subject"])
            assert acknowledgement["To"] == str(filed.stakeholder.email)
            when = local(slot)
            clock = f"{when:%H.%M}" if filed.stakeholder.locale == "id" else f"{when:%H:%M}"
            zone = ZONE_NAMES[slot.office_zone]
            assert f"{words} {clock} {zone}" in str(invitation["Subject"])
            assert f"{clock}" in text_of(invitation) and zone in text_of(invitation)
            assert str(slot.meeting.join_url) in text_of(invitation)
            assert filed.stakeholder.name in html_of(invitation)
            calendar = calendar_of(invitation)
            assert calendar is not None and str(calendar["METHOD"]) == "REQUEST"
            [event] = calendar.walk("VEVENT")
            assert str(event["UID"]) == event_uid(filed.ticket_id) and int(event["SEQUENCE"]) == 0
            assert event.decoded("DTSTART") == slot.starts_at and event.decoded("DTEND") == slot.ends_at
        phone_requests = [r for r in notifiers.gateway.requests if r.idempotency_key in by_phone]
        assert {r.body["to"] for r in phone_requests} == {in_jayapura.stakeholder.phone}
        invitation_text = next(
            r.body["text"] for r in phone_requests if r.idempotency_key and ":invitation:" in r.idempotency_key
        )
        assert f"{local(slots[in_jayapura.ticket_id]):%H.%M} WIT" in invitation_text

        # NotificationSent for each, and the portal hears of it on its own updates topic.
        await portal_sees.wait_for(lambda seen: sum(s.type == "glv.NotificationSent.v1" for s in seen) >= 6, 60)

        # Redelivered from the start (a new consumer group), nothing is sent again.
        sent_before = dict(notifiers.mail.counts), dict(notifiers.gateway.counts)
        again = notifiers.settings.model_copy(
            update={
                "consumer_group": f"{glv.ticketing.prefix}notifier-again",
                "http_port": notifiers.settings.http_port + 9,
            }
        )
        replay = RunningService(build_spec(again, notifiers.clock))
        await replay.start()
        try:
            topics = [glv.ticketing.prefix + t.name for t in consumed_by("notifier") if not t.per_portal]
            await until_caught_up(infra.bootstrap, again.consumer_group or "", topics)
            await notifiers.settled()
        finally:
            await replay.stop()
        assert (dict(notifiers.mail.counts), dict(notifiers.gateway.counts)) == sent_before
        assert set(notifiers.mail.counts.values()) == {1} and set(notifiers.gateway.counts.values()) == {1}


async def until_caught_up(bootstrap: str, group: str, topics: list[str], timeout_s: float = 60) -> None:
    """Until the consumer group has committed up to the end of every partition of `topics`
    (they do not grow meanwhile: nothing is filed while it replays)."""
    partitions = await partitions_of(bootstrap, topics)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            committed = await admin.list_consumer_group_offsets(group)
            behind = [tp for tp, end in ends.items() if end > 0 and (tp not in committed or committed[tp].offset < end)]
            if not behind:
                return
            assert asyncio.get_running_loop().time() < deadline, f"the replaying consumer is behind on {behind}"
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def test_a_reschedule_updates_and_a_cancellation_withdraws_the_calendar_entry(
    glv: Glv, infra: Infra, tmp_path: Path
) -> None:
    rng = random.Random(12)
    filed = person(rng, office="PLP", service="lelang", locale="id")
    async with running_notifiers(glv, infra, tmp_path) as notifiers:
        async with PortalClient(infra.bootstrap, glv.ticketing.prefix) as portal:
            await portal.file([filed])
            first = (await placed(glv, [filed]))[filed.ticket_id]
            await notifiers.wait_for_mail({message_id(filed.ticket_id, Purpose.INVITATION, str(first.slot_id))})
            later = [
                w.model_copy(update={"start": w.start + timedelta(days=1), "end": w.end + timedelta(days=1)})
                for w in filed.preferred_windows
            ]
            await portal.file(
                [
                    RescheduleRequested(
                        ticket_id=filed.ticket_id,
                        portal_id="sim-portal",
                        preferred_windows=later,
                        requested_at=datetime.now(UTC),
                    )
                ]
            )
            await glv.probe.wait_for(
                lambda _: any(s.event.replaces_slot_id == first.slot_id for s in glv.probe.of_type("SlotAssigned")), 60
            )
            second = next(
                s.event for s in glv.probe.of_type("SlotAssigned") if s.event.replaces_slot_id == first.slot_id
            )
            moved = message_id(filed.ticket_id, Purpose.RESCHEDULED, str(second.slot_id))
            await notifiers.wait_for_mail({moved})
            await portal.file(
                [
                    CancellationRequested(
                        ticket_id=filed.ticket_id, portal_id="sim-portal", requested_at=datetime.now(UTC)
                    )
                ]
            )
            cancelled = message_id(filed.ticket_id, Purpose.CANCELLED)
            await notifiers.wait_for_mail({cancelled})

        entries = []
        for mid, method in (
            (message_id(filed.ticket_id, Purpose.INVITATION, str(first.slot_id)), "REQUEST"),
            (moved, "REQUEST"),
            (cancelled, "CANCEL"),
        ):
            calendar = calendar_of(notifiers.mail_with(mid))
            assert calendar is not None and str(calendar["METHOD"]) == method
            [event] = calendar.walk("VEVENT")
            entries.append((str(event["UID"]), int(event["SEQUENCE"]), event.decoded("DTSTART")))
        assert [uid for uid, _, _ in entries] == [event_uid(filed.ticket_id)] * 3
        assert [sequence for _, sequence, _ in entries] == [0, 1, 2]
        assert entries[1][2] == second.starts_at and entries[2][2] == second.starts_at
        # The reminders of the first slot will find it gone and send nothing.
        state = await notifiers.pool.fetchrow(
            "SELECT slot_id, slot_active FROM ticket WHERE ticket_id = $1", filed.ticket_id
        )
        assert state["slot_id"] == second.slot_id and state["slot_active"] is False


async def test_a_refused_address_falls_back_to_the_phone(glv: Glv, infra: Infra, tmp_path: Path) -> None:
    rng = random.Random(13)
    filed = person(rng, office="JKT", service="lelang", locale="en")
    async with running_notifiers(
        glv,
        infra,
        tmp_path,
        mail_options={"refuse_recipients": str(filed.stakeholder.email).replace(".", r"\.")},
    ) as notifiers:
        async with PortalClient(infra.bootstrap, glv.ticketing.prefix) as portal:
            await portal.file([filed])
        key = idempotency_key(filed.ticket_id, Purpose.ACKNOWLEDGEMENT)
        await notifiers.wait_for_gateway({key})
        attempts = await notifiers.pool.fetch(
            "SELECT a.channel, a.outcome FROM delivery_attempt a JOIN notification n USING (notification_id)"
            " WHERE n.delivery_key = $1 ORDER BY a.id",
            key,
        )
        assert [(a["channel"], a["outcome"]) for a in attempts] == [("email", "permanent"), ("whatsapp", "sent")]
        assert notifiers.mail.count(message_id(filed.ticket_id, Purpose.ACKNOWLEDGEMENT)) == 0


async def test_quiet_hours_hold_sms_and_whatsapp_until_morning_but_not_email(
    glv: Glv, infra: Infra, tmp_path: Path
) -> None:
    rng = random.Random(14)
    by_phone = person(rng, office="JKT", service="lelang", locale="id", email_address=False)
    by_mail = person(rng, office="JKT", service="lelang", locale="id", phone=False)
    tonight = datetime.now(ZoneInfo("Asia/Jakarta")).replace(hour=22, minute=30, second=0, microsecond=0)
    async with running_notifiers(glv, infra, tmp_path, clock=lambda: tonight.astimezone(UTC)) as notifiers:
        async with PortalClient(infra.bootstrap, glv.ticketing.prefix) as portal:
            await portal.file([by_phone, by_mail])
        await notifiers.wait_for_mail({message_id(by_mail.ticket_id, Purpose.ACKNOWLEDGEMENT)})
        key = idempotency_key(by_phone.ticket_id, Purpose.ACKNOWLEDGEMENT)

        async def deferred() -> Any:
            return await notifiers.pool.fetchrow(
                "SELECT j.run_at - now() AS wait, j.attempts FROM glv_job j JOIN notification n"
                " ON n.delivery_key = j.idempotency_key JOIN delivery_attempt a USING (notification_id)"
                " WHERE j.idempotency_key = $1 AND a.outcome = 'deferred' AND j.status = 'pending'",
                key,
            )

        await until_async(deferred, 60, "the phone message was not held back")
        held = await deferred()
        # 22:30 to 06:00 WIB: seven and a half hours, and the deferral is not an attempt.
        assert timedelta(hours=7, minutes=25) < held["wait"] < timedelta(hours=7, minutes=35)
        assert held["attempts"] == 0
        assert key not in notifiers.gateway.counts


async def test_a_429_slows_the_sender_down_without_losing_a_message(glv: Glv, infra: Infra, tmp_path: Path) -> None:
    rng = random.Random(15)
    tickets = [person(rng, office="MKS", service="lelang", locale="id", email_address=False) for _ in range(3)]
    async with running_notifiers(
        glv, infra, tmp_path, gateway_options={"throttle_first": 2, "retry_after": "1"}
    ) as notifiers:
        async with PortalClient(infra.bootstrap, glv.ticketing.prefix) as portal:
            await portal.file(tickets)
        keys = {idempotency_key(t.ticket_id, Purpose.ACKNOWLEDGEMENT) for t in tickets}
        await notifiers.wait_for_gateway(keys)
        assert all(notifiers.gateway.counts[k] == 1 for k in keys)
        throttled = [r for r in notifiers.gateway.requests if r.status == 429]
        assert len(throttled) == 2
        after = [r for r in notifiers.gateway.requests if r.status < 300 and r.monotonic_s > throttled[0].monotonic_s]
        assert min(r.monotonic_s for r in after) - throttled[0].monotonic_s >= 0.9


async def test_reminders_fire_once_on_time_and_never_for_a_moved_or_cancelled_slot(
    infra: Infra, topic_prefix: str, portal_tokens: dict[str, str], tmp_path: Path
) -> None:
    """Driven by events published directly (no ticketing or scheduler), so that a slot can
    start in a minute: a one-minute reminder is due a few seconds after the slot is told."""
    rng = random.Random(16)
    stays, moves, cancelled = (person(rng, office="JKT", service="lelang", locale="id") for _ in range(3))
    now = datetime.now(UTC)
    starts = now + timedelta(seconds=75)
    database_url = await create_database(infra)
    try:
        async with MailSink(eml_folder(tmp_path)) as mail, GatewaySink(tmp_path / "gateway.jsonl") as gateway:
            settings = notifier_settings(
                infra.bootstrap, database_url, topic_prefix, mail, gateway, reminder_leads_min=[1]
            )
            service = RunningService(build_spec(settings))
            await service.start()
            try:
                # The catalog's office names, as the scheduler would have published them.
                async with PortalClient(infra.bootstrap, topic_prefix) as publisher:
                    await publisher.send([record_for(e, source="/glv/scheduler") for e in office_entries()])
                first = {t.ticket_id: slot_for(t, "Asia/Jakarta", starts) for t in (stays, moves, cancelled)}
                moved = slot_for(
                    moves, "Asia/Jakarta", now + timedelta(minutes=30), replaces=first[moves.ticket_id].slot_id
                )
                records = [record_for(t, source="/portal/sim") for t in (stays, moves, cancelled)]
                records += [
                    record_for(accepted_for(t, f"JKT-{now:%y%m%d}-{n:04d}"), source="/glv/ticketing")
                    for n, t in enumerate((stays, moves, cancelled), start=1)
                ]
                records += [record_for(s, source="/glv/scheduler") for s in first.values()]
                released = SlotReleased(
                    ticket_id=cancelled.ticket_id,
                    slot_id=first[cancelled.ticket_id].slot_id,
                    office_code="JKT",
                    officer_id=first[cancelled.ticket_id].officer_id,
                    reason="cancelled",
                    released_at=now,
                )
                records += [
                    record_for(moved, source="/glv/scheduler"),
                    record_for(released, source="/glv/scheduler"),
                    record_for(
                        TicketCancelled(
                            ticket_id=cancelled.ticket_id,
                            ticket_code=f"JKT-{now:%y%m%d}-0003",
                            portal_id="sim-portal",
                            office_code="JKT",
                            cancelled_at=now,
                        ),
                        source="/glv/ticketing",
                    ),
                ]
                async with PortalClient(infra.bootstrap, topic_prefix) as publisher:
                    await publisher.send(records)

                def reminder(ticket_id: uuid.UUID) -> str:
                    return message_id(ticket_id, Purpose.REMINDER, f"{first[ticket_id].slot_id}:1")

                await until(lambda: mail.count(reminder(stays.ticket_id)) >= 1, 60, "no reminder arrived")

                async def others_done() -> bool:
                    # The moved slot's reminder was planned and found its slot gone; the cancelled
                    # ticket's was skipped too, or never planned if the cancellation came first.
                    moved_state = await service.pool.fetchval(
                        "SELECT state FROM notification WHERE delivery_key = $1",
                        f"{moves.ticket_id}:reminder:{first[moves.ticket_id].slot_id}:1",
                    )
                    cancelled_state = await service.pool.fetchval(
                        "SELECT coalesce((SELECT state FROM notification WHERE delivery_key = $1), 'never planned')"
                        " FROM ticket WHERE ticket_id = $2 AND decision = 'cancelled' AND NOT slot_active",
                        f"{cancelled.ticket_id}:reminder:{first[cancelled.ticket_id].slot_id}:1",
                        cancelled.ticket_id,
                    )
                    return moved_state == "skipped" and cancelled_state in ("skipped", "never planned")

                await until_async(others_done, 60, "the moved and cancelled slots' reminders were not settled")
                [arrived] = [r for r in mail.received if r.message_id == reminder(stays.ticket_id)]
                due = starts - timedelta(minutes=1)
                assert due - timedelta(seconds=1) <= arrived.received_at <= due + timedelta(seconds=20)
                assert mail.count(reminder(stays.ticket_id)) == 1
                assert mail.count(reminder(moves.ticket_id)) == mail.count(reminder(cancelled.ticket_id)) == 0
            finally:
                await service.stop()
    finally:
        await drop_database(infra, database_url)


async def test_a_notifier_killed_at_random_moments_sends_everything_and_repeats_only_what_a_kill_cut_short(
    glv: Glv, infra: Infra, tmp_path: Path
) -> None:
    rng = random.Random(17)
    offices = [("JKT", "lelang"), ("MKS", "lelang"), ("PLP", "piutang-negara"), ("JYP", "lelang"), ("SBY", "lelang")]
    tickets = [
        person(rng, office=office, service=service, locale=rng.choice(("id", "en")), phone=False)
        for office, service in (rng.choice(offices) for _ in range(120))
    ]
    database_url = await create_database(infra)
    try:
        async with MailSink(eml_folder(tmp_path)) as mail, GatewaySink(tmp_path / "gateway.jsonl") as gateway:
            settings = notifier_settings(infra.bootstrap, database_url, glv.ticketing.prefix, mail, gateway)
            env = {
                "KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap,
                "GLV_NOTIFIER_DATABASE_URL": database_url,
                "GLV_NOTIFIER_TOPIC_PREFIX": glv.ticketing.prefix,
                "GLV_NOTIFIER_CONSUMER_GROUP": settings.consumer_group or "",
                "GLV_NOTIFIER_HTTP_PORT": str(settings.http_port),
                "GLV_NOTIFIER_SMTP_PORT": str(mail.port),
                "GLV_NOTIFIER_GATEWAY_URL": gateway.generic_url,
                "GLV_NOTIFIER_JOB_POLL_INTERVAL_S": "0.2",
                "GLV_NOTIFIER_DELIVERY_BACKOFF_S": "0.2",
                "GLV_NOTIFIER_LOG_LEVEL": "INFO",
            }
            process = ServiceProcess("glv_notifier", env, f"notifier-kills-{glv.ticketing.prefix}")
            await process.start()
            kills = 0
            try:
                async with PortalClient(infra.bootstrap, glv.ticketing.prefix) as portal:
                    await portal.file(tickets)
                ids = {t.ticket_id for t in tickets}
                await glv.probe.wait_for(
                    lambda seen: (
                        ids
                        <= {
                            s.event.ticket_id
                            for s in seen
                            if s.type in ("glv.SlotAssigned.v1", "glv.SchedulingFailed.v1")
                        }
                    ),
                    120,
                )
                expected = expected_messages(glv, ids)
                # Kill at random moments in the sending: each time a random share more has arrived.
                for share in sorted(rng.uniform(0.05, 0.9) for _ in range(5)):
                    await until(lambda s=share: len(mail.counts) >= s * len(expected), 120, "sending stalled")
                    process.kill()
                    kills += 1
                    await process.start()
                await notifiers_done(mail, expected)
            finally:
                process.kill()
            received = mail.counts
            assert set(received) == expected
            repeats = sum(count - 1 for count in received.values())
            assert repeats <= kills, (repeats, kills)
            log = (LOGS / f"notifier-kills-{glv.ticketing.prefix}.log").read_text(errors="replace")
            for filed in tickets:
                person_ = filed.stakeholder
                assert str(person_.email) not in log and person_.name not in log
    finally:
        await drop_database(infra, database_url)


def expected_messages(glv: Glv, ids: set[uuid.UUID]) -> set[str]:
    """The Message-IDs every ticket's events call for: the acknowledgement, then the invitation
    or the word that it waits (reminders are days away)."""
    expected = set()
    for seen in glv.probe.seen:
        event = seen.event
        if event is None or getattr(event, "ticket_id", None) not in ids:
            continue
        if seen.type == "glv.TicketAccepted.v1":
            expected.add(message_id(event.ticket_id, Purpose.ACKNOWLEDGEMENT))
        elif seen.type == "glv.SlotAssigned.v1":
            expected.add(message_id(event.ticket_id, Purpose.INVITATION, str(event.slot_id)))
        elif seen.type == "glv.SchedulingFailed.v1" and event.waitlisted:
            expected.add(message_id(event.ticket_id, Purpose.WAITLISTED, "-1"))
        elif seen.type == "glv.SchedulingFailed.v1":
            expected.add(message_id(event.ticket_id, Purpose.UNSCHEDULABLE))
    return expected


async def notifiers_done(mail: MailSink, expected: set[str], timeout_s: float = 180) -> None:
    await until(lambda: expected <= set(mail.counts), timeout_s, lambda: f"{len(expected - set(mail.counts))} missing")
