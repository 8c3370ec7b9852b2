"""`make demo`: every deployed service on the local stack, fed by a portal simulator.

Starts the services of the registry as their own processes, loads the catalog, files a few
hundred tickets (valid ones across three time zones, invalid ones, exact
resubmissions, conflicting ones, poison records and cancellations), waits until
every one has an outcome, has a meeting platform hold a few sessions whose recordings
the archive fetches and encrypts, prints what became of them, one signed download of
an archived recording (checked) and one status API answer, then stops the services
with SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import httpx
from aiokafka.admin import AIOKafkaAdminClient

from glv_archive.settings import ArchiveSettings
from glv_devtools import demo_archive
from glv_devtools.catalog import CATALOG_FILE
from glv_devtools.gatewaysink import GatewaySink
from glv_devtools.mailsink import MailSink
from glv_devtools.meetingsim import MeetingPlatform
from glv_devtools.portal import PortalClient, RawRecord, record_for, ticket
from glv_devtools.probe import EventProbe, Seen
from glv_notifier.settings import NotifierSettings
from glv_runtime.onboarding import AdminSettings
from glv_scheduler.__main__ import load_catalog
from glv_scheduler.catalog import read_catalog
from glv_scheduler.settings import SchedulerSettings
from glv_schemas.base import TimeWindow
from glv_schemas.events import CancellationRequested, SlotAssigned, TicketFiled
from glv_schemas.topics import (
    DEPLOYED_SERVICES,
    PORTAL_TICKETS,
    PORTAL_UPDATES,
    Service,
    intake_dead_letter_topic,
)
from glv_ticketing import portals
from glv_ticketing.settings import TicketingSettings

PORTAL = "demo-portal"
# The local stack's role that may create databases (deploy/local/stack.sh).
DEMO_ADMIN_DSN = "postgresql://glv_test:glv_test@127.0.0.1:55432/glv_test"
RESUBMITTED = 20
CONFLICTING = 5
OFFICES = [
    ("JKT", "lelang"),
    ("BDG", "piutang-negara"),
    ("MKS", "penilaian"),
    ("PLP", "lelang"),
    ("DPS", "pengelolaan-kekayaan-negara"),
    ("JYP", "informasi-pengaduan"),
    ("AMB", "piutang-negara"),
]


def say(text: str) -> None:
    print(f"==> {text}", flush=True)


ZONES = {
    "JKT": "Asia/Jakarta",
    "BDG": "Asia/Jakarta",
    "MKS": "Asia/Makassar",
    "PLP": "Asia/Makassar",
    "DPS": "Asia/Makassar",
    "JYP": "Asia/Jayapura",
    "AMB": "Asia/Jayapura",
}


def office_morning(office: str, now: datetime, days_ahead: int) -> TimeWindow:
    """A stakeholder's wish: 09:00-12:00 at the office, some days ahead."""
    day = (now + timedelta(days=days_ahead)).astimezone(ZoneInfo(ZONES[office])).date()
    start = datetime.combine(day, datetime.min.time(), tzinfo=ZoneInfo(ZONES[office])) + timedelta(hours=9)
    return TimeWindow(start=start, end=start + timedelta(hours=3))


def build_filings(rng: random.Random, now: datetime) -> tuple[list[TicketFiled], list[RawRecord], dict[str, str]]:
    """What the simulated portals send, and what each ticket id is expected to become."""
    expected: dict[str, str] = {}
    valid = []
    for i in range(240):
        office, service = OFFICES[i % len(OFFICES)]
        valid.append(
            ticket(
                rng,
                portal_id=PORTAL,
                office_code=office,
                service_code=service,
                now=now,
                # One in six has only a phone: the notifier tells them by WhatsApp, through the gateway.
                email=i % 6 != 5,
            ).model_copy(update={"preferred_windows": [office_morning(office, now, rng.randint(3, 10))]})
        )
        expected[str(valid[-1].ticket_id)] = "accepted"

    def bad(reason: str, **changes: object) -> TicketFiled:
        office, service = OFFICES[rng.randrange(len(OFFICES))]
        filed = ticket(rng, portal_id=PORTAL, office_code=office, service_code=service, now=now)
        filed = filed.model_copy(update=changes)
        expected[str(filed.ticket_id)] = f"rejected: {reason}"
        return filed

    person = valid[0].stakeholder
    past = [TimeWindow(start=now - timedelta(days=2), end=now - timedelta(days=2) + timedelta(hours=2))]
    far = [TimeWindow(start=now + timedelta(days=200), end=now + timedelta(days=200, hours=2))]
    short = [TimeWindow(start=now + timedelta(days=3), end=now + timedelta(days=3, minutes=5))]
    invalid = (
        [bad("unknown_office", office_code="XYZ") for _ in range(5)]
        + [bad("service_not_offered", office_code="AMB", service_code="penilaian") for _ in range(5)]
        + [
            bad("no_contact_channel", stakeholder=person.model_copy(update={"email": None, "phone": None}))
            for _ in range(5)
        ]
        + [bad("window_in_past", preferred_windows=past) for _ in range(4)]
        + [bad("window_beyond_horizon", preferred_windows=far) for _ in range(3)]
        + [bad("window_malformed", preferred_windows=short) for _ in range(3)]
        + [bad("text_too_long", subject="x" * 300) for _ in range(3)]
        + [bad("kind_mismatch", kind="webinar") for _ in range(3)]
        + [bad("filed_in_future", filed_at=now + timedelta(hours=2)) for _ in range(2)]
        + [
            bad("invalid_stakeholder_ref", stakeholder=person.model_copy(update={"stakeholder_ref": "\U0001f600" * 9}))
            for _ in range(2)
        ]
    )
    resubmitted = rng.sample(valid, RESUBMITTED)  # same content again: no second decision
    conflicting = [f.model_copy(update={"subject": "Isi berbeda"}) for f in rng.sample(valid, CONFLICTING)]
    filings = valid + invalid + resubmitted + conflicting

    template = record_for(valid[0], source="/portal/demo")
    poison = [
        RawRecord(template.topic, template.key, b"{this is not json", template.headers),
        RawRecord(
            template.topic,
            template.key,
            template.value,
            [(n, b"glv.Unknown.v1" if n == "ce_type" else v) for n, v in template.headers],
        ),
        RawRecord(template.topic, template.key, template.value, [(n, v) for n, v in template.headers if n != "ce_id"]),
        RawRecord(template.topic, template.key, b'{"ticket_id": "not-a-uuid"}', template.headers),
        RawRecord(template.topic, template.key, None, template.headers),
    ]
    schema_broken = json.loads(valid[1].model_dump_json()) | {
        "ticket_id": str(uuid.UUID(int=rng.getrandbits(128))),
        "unexpected": True,
    }
    expected[schema_broken["ticket_id"]] = "rejected: invalid_schema"
    poison.append(
        RawRecord(
            template.topic,
            schema_broken["ticket_id"].encode(),
            json.dumps(schema_broken).encode(),
            record_for(valid[1], source="/portal/demo").headers,
        )
    )
    return filings, poison, expected


async def wait_ready(name: str, port: int, process: subprocess.Popen[bytes], timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit(f"the {name} service exited while starting; see its log")
            try:
                if (await client.get(f"http://127.0.0.1:{port}/readyz", timeout=2)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit(f"the {name} service did not become ready")


def start_service(service: Service, env: dict[str, str]) -> subprocess.Popen[bytes]:
    log_path = Path(os.environ.get("GLV_STATE_DIR", "/var/tmp/glv")) / f"demo-{service.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    say(f"starting the {service.name} service (log: {log_path})")
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", service.package, "run"], env=env, stdout=log, stderr=log)


def stop_services(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


async def make_namespace(admin_dsn: str, run: str) -> dict[str, str]:
    """Fresh databases and a topic prefix for this run, so that every demo starts clean."""
    admin = await asyncpg.connect(admin_dsn)
    try:
        for service in DEPLOYED_SERVICES:
            await admin.execute(f'CREATE DATABASE "glv_demo_{run}_{service.name}"')
    finally:
        await admin.close()
    base = admin_dsn.rsplit("/", 1)[0]
    namespace: dict[str, str] = {}
    for service in DEPLOYED_SERVICES:
        namespace[f"{service.env_prefix}DATABASE_URL"] = f"{base}/glv_demo_{run}_{service.name}"
        namespace[f"{service.env_prefix}TOPIC_PREFIX"] = f"demo-{run}."
    return namespace


async def drop_namespace(admin_dsn: str, bootstrap: str, run: str) -> None:
    """The run's databases and every topic under its prefix (the portal's included)."""
    admin = await asyncpg.connect(admin_dsn)
    try:
        for service in DEPLOYED_SERVICES:
            await admin.execute(f'DROP DATABASE IF EXISTS "glv_demo_{run}_{service.name}" WITH (FORCE)')
    finally:
        await admin.close()
    kafka = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await kafka.start()
    try:
        mine = [t for t in await kafka.list_topics() if t.startswith(f"demo-{run}.")]
        if mine:
            await kafka.delete_topics(mine)
    finally:
        await kafka.close()


async def run_demo() -> int:
    run = uuid.uuid4().hex[:8]
    # The local stack's mode: ephemeral secrets where none are set, the plain listener.
    os.environ.setdefault("GLV_ENVIRONMENT", "development")
    admin_dsn = os.environ.get("GLV_TEST_DATABASE_URL", DEMO_ADMIN_DSN)
    namespace = await make_namespace(admin_dsn, run)
    os.environ.update(namespace)
    # The archive's folder, keys and link secret are the run's own, like its databases.
    archive_folder = demo_archive.store_folder(run)
    os.environ.update(demo_archive.archive_environment(archive_folder))
    # The meeting platform signs its reports with the scheduler's webhook secret: one is needed.
    if not SchedulerSettings().webhook_secrets:
        os.environ["GLV_SCHEDULER_WEBHOOK_SECRETS"] = json.dumps([secrets.token_urlsafe(32)])
    try:
        return await demo_in(namespace, run)
    finally:
        await drop_namespace(admin_dsn, TicketingSettings().kafka_bootstrap_servers, run)
        demo_archive.remove_store(archive_folder)
        say(f"demo databases, topics and archive storage {archive_folder} (run {run}) removed")


async def demo_in(namespace: dict[str, str], run: str) -> int:
    # The notifier's real counterparts on 127.0.0.1: an SMTP server writing .eml files and an
    # SMS/WhatsApp gateway recording what it receives.
    mail_folder = Path(os.environ.get("GLV_STATE_DIR", "/var/tmp/glv")) / f"demo-mail-{run}"
    async with MailSink(mail_folder) as mail, GatewaySink(mail_folder / "gateway.jsonl") as gateway:
        say(f"a local SMTP server on 127.0.0.1:{mail.port} writes every message to {mail_folder}")
        say(f"a local SMS/WhatsApp gateway on {gateway.generic_url} records what it receives")
        return await demo_with(namespace, mail, gateway)


async def demo_with(namespace: dict[str, str], mail: MailSink, gateway: GatewaySink) -> int:
    ticketing = TicketingSettings()
    scheduler = SchedulerSettings()
    notifier = NotifierSettings(environment="development")
    archive = ArchiveSettings()
    prefix = ticketing.topic_prefix
    env = {
        **os.environ,
        **namespace,
        **{f"{service.env_prefix}LOG_LEVEL": "WARNING" for service in DEPLOYED_SERVICES},
        "GLV_NOTIFIER_SMTP_PORT": str(mail.port),
        "GLV_NOTIFIER_GATEWAY_URL": gateway.generic_url,
    }
    say(f"glv-ticketing portal onboard {PORTAL}: its intake and updates topics and its status-API token")
    admin = AdminSettings(kafka_bootstrap_servers=ticketing.kafka_bootstrap_servers, topic_prefix=prefix)
    onboarded = await portals.onboard(ticketing, admin, PORTAL)
    assert onboarded.status_token is not None
    token = onboarded.status_token
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for service in DEPLOYED_SERVICES:
            processes.append(start_service(service, env))
        for service, process in zip(DEPLOYED_SERVICES, processes, strict=True):
            port = int(env.get(f"{service.env_prefix}HTTP_PORT", service.http_port))
            await wait_ready(service.name, port, process)
        say("glv-scheduler load-catalog: offices, calendars and officers, published to the catalog topic")
        say(await load_catalog(scheduler, CATALOG_FILE))
        offices = read_catalog(CATALOG_FILE).offices
        conn = await asyncpg.connect(ticketing.dsn())
        try:
            while await conn.fetchval("SELECT count(*) FROM office") < len(offices):
                await asyncio.sleep(0.1)
        finally:
            await conn.close()

        rng = random.Random()
        now = datetime.now(UTC)
        filings, poison, expected = build_filings(rng, now)
        accepted_ids = {t for t, want in expected.items() if want == "accepted"}
        # What the portal sees: its own updates topic (ticketing's decisions and the slots,
        # with join links), and for the operator the intake dead letters.
        updates = prefix + PORTAL_UPDATES.for_portal(PORTAL)
        archive_topic = demo_archive.archive_topic(prefix)
        topics = [updates, prefix + intake_dead_letter_topic("ticketing").name, archive_topic]
        async with EventProbe(ticketing.kafka_bootstrap_servers, topics) as probe:
            start_count = await probe.catch_up()  # earlier runs' events are not this run's

            def ids_of(seen: list[Seen], *types: str) -> set[str]:
                return {str(s.event.ticket_id) for s in seen[start_count:] if s.event is not None and s.type in types}

            say(f"the portal files {len(filings) + len(poison)} records on {PORTAL_TICKETS.for_portal(PORTAL)}")
            started = time.monotonic()
            async with PortalClient(ticketing.kafka_bootstrap_servers, prefix) as portal:
                await portal.file(filings, source="/portal/demo")
                await portal.send(poison)
            await probe.wait_for(
                lambda seen: set(expected) <= ids_of(seen, "glv.TicketAccepted.v1", "glv.TicketRejected.v1"), 180
            )
            decided_after = time.monotonic() - started
            await probe.wait_for(
                lambda seen: accepted_ids <= ids_of(seen, "glv.SlotAssigned.v1", "glv.SchedulingFailed.v1"), 180
            )
            scheduled_after = time.monotonic() - started
            say(f"every ticket decided in {decided_after:.2f} s and placed by the scheduler in {scheduled_after:.2f} s")
            cancel = filings[:240:40]
            say(f"the portal cancels {len(cancel)} tickets; their slots are released")
            async with PortalClient(ticketing.kafka_bootstrap_servers, prefix) as portal:
                await portal.file(
                    [
                        CancellationRequested(ticket_id=f.ticket_id, portal_id=PORTAL, requested_at=datetime.now(UTC))
                        for f in cancel
                    ],
                    source="/portal/demo",
                )
            cancel_ids = {str(f.ticket_id) for f in cancel}
            with_slot = cancel_ids & ids_of(probe.seen, "glv.SlotAssigned.v1")
            await probe.wait_for(lambda seen: cancel_ids <= ids_of(seen, "glv.TicketCancelled.v1"), 60)
            await probe.wait_for(lambda seen: with_slot <= ids_of(seen, "glv.SlotReleased.v1"), 60)
            dlq_name = prefix + intake_dead_letter_topic("ticketing").name
            await probe.wait_for(lambda seen: sum(s.topic == dlq_name for s in seen[start_count:]) >= len(poison))
            say("the notifier tells each stakeholder; waiting until every message due now is sent")
            await messages_settled(notifier, probe, start_count)
            # After the invitations, as in life: some meetings are held and their recordings archived.
            archived = await hold_and_archive(
                probe, start_count, archive_topic, scheduler, cancel_ids, {str(f.ticket_id): f for f in filings}
            )
            say("the notifier tells of the sessions held and archived; waiting until those messages are sent")
            told = await messages_settled(notifier, probe, start_count, archived.told())
            mine = list(probe.seen[start_count:])
        print_summary(mine, filings, poison, expected, decided_after)
        print_schedule(mine, {str(f.ticket_id): f for f in filings})
        print_messages(mine, told, mail, gateway)
        # While the archive still runs: its link is downloaded and checked.
        archive_ok = await demo_archive.print_archive(archive, archived)
        scheduled = next(
            s.event.ticket_id
            for s in mine
            if s.type == "glv.SlotAssigned.v1" and str(s.event.ticket_id) not in cancel_ids
        )
        await show_status(ticketing.http_port, scheduled, token)
    finally:
        # Stop the children before printing anything: a closed stdout must not leave them running.
        stop_services(processes)
    say(
        ", ".join(s.name for s in DEPLOYED_SERVICES)
        + " stopped with SIGTERM (exit codes "
        + ", ".join(str(p.returncode) for p in processes)
        + ")"
    )
    if not archive_ok:
        say("the archive part of the demo FAILED: see its summary above")
        return 1
    return 0


async def hold_and_archive(
    probe: EventProbe,
    start_count: int,
    topic: str,
    scheduler: SchedulerSettings,
    excluded: set[str],
    filed: dict[str, TicketFiled],
) -> demo_archive.ArchiveRun:
    """A meeting platform holds a few of the scheduled sessions and reports them to the
    scheduler; wait until the archive has said what became of each one's recordings."""
    mine = probe.seen[start_count:]
    codes = {str(s.event.ticket_id): s.event.ticket_code for s in mine if s.type == "glv.TicketAccepted.v1"}
    slots = demo_archive.sessions_to_hold(mine, excluded)
    secret = scheduler.webhook_secrets[0].get_secret_value().encode()
    async with MeetingPlatform() as platform:
        say(
            f"a meeting platform on {platform.base_url} holds {len(slots)} sessions ({demo_archive.RECORDINGS} each)"
            " and reports them to the scheduler's signed webhook"
        )
        started = time.monotonic()
        held = await demo_archive.hold_sessions(
            platform, f"http://127.0.0.1:{scheduler.http_port}", secret, slots, filed
        )
        say("the archive fetches, encrypts and stores each session's recordings; waiting for RecordingArchived")
        outcomes = await demo_archive.wait_outcomes(probe, topic, held, demo_archive.OUTCOME_TIMEOUT_S)
        seconds = time.monotonic() - started
    return demo_archive.ArchiveRun(held, outcomes, seconds, codes)


async def messages_settled(
    notifier: NotifierSettings, probe: EventProbe, start_count: int, planned: Collection[tuple[str, str]] = ()
) -> dict[str, int]:
    """Wait until the notifier has planned the `planned` messages (ticket id, purpose), has
    nothing due to send (reminders and quiet-hour messages wait for their time) and the portal
    has heard of every message sent or failed; its counts."""
    conn = await asyncpg.connect(notifier.dsn())
    try:
        deadline = time.monotonic() + 180
        while True:
            known = await conn.fetch(
                "SELECT DISTINCT ticket_id::text AS ticket_id, purpose FROM notification"
                " WHERE ticket_id = ANY($1::uuid[]) AND purpose = ANY($2::text[])",
                [t for t, _ in planned],
                [p for _, p in planned],
            )
            if set(planned) - {(r["ticket_id"], r["purpose"]) for r in known}:
                if time.monotonic() > deadline:
                    raise SystemExit("the notifier did not plan the messages of the sessions held and archived")
                await probe.poll()
                continue
            due = await conn.fetchval(
                "SELECT count(*) FROM glv_job WHERE kind = 'deliver' AND status IN ('pending', 'running')"
                " AND run_at <= now()"
            )
            counts = {
                r["state"]: r["n"]
                for r in await conn.fetch("SELECT state, count(*) AS n FROM notification GROUP BY state")
            }
            finished = counts.get("sent", 0) + counts.get("failed", 0)
            heard = sum(
                s.type in ("glv.NotificationSent.v1", "glv.NotificationFailed.v1") for s in probe.seen[start_count:]
            )
            if not due and counts and heard >= finished:
                counts["held_by_quiet_hours"] = await conn.fetchval(
                    "SELECT count(*) FROM notification n WHERE n.state = 'queued' AND EXISTS ("
                    " SELECT 1 FROM delivery_attempt a WHERE a.notification_id = n.notification_id"
                    " AND a.outcome = 'deferred')"
                )
                return counts
            if time.monotonic() > deadline:
                raise SystemExit(f"messages not settled in time: {counts}, {due} due")
            await probe.poll()
    finally:
        await conn.close()


def print_messages(seen: list[Seen], told: dict[str, int], mail: MailSink, gateway: GatewaySink) -> None:
    """What the stakeholders were told, by purpose and channel, as the portal heard of it."""
    sent = Counter((s.event.purpose, s.event.channel) for s in seen if s.type == "glv.NotificationSent.v1")
    failed = Counter(s.event.purpose for s in seen if s.type == "glv.NotificationFailed.v1")
    channels = ("email", "sms", "whatsapp")
    print()
    print(f"{'messages sent':<18}" + "".join(f"{c:>10}" for c in channels) + f"{'failed':>10}")
    print("-" * 58)
    for purpose in sorted({p for p, _ in sent} | set(failed)):
        row = "".join(f"{sent[(purpose, c)]:>10}" for c in channels)
        print(f"{purpose:<18}{row}{failed[purpose]:>10}")
    held = told.get("held_by_quiet_hours", 0)
    later = told.get("queued", 0) + told.get("waiting", 0) - held
    print(f"later, by the notifier's jobs: {later} reminders (24 h and 1 h before each session)")
    print(f"held until 06:00 office time (no SMS or WhatsApp at night): {held}")
    repeats = sum(count - 1 for count in mail.counts.values()) + sum(count - 1 for count in gateway.counts.values())
    print(f"messages received twice by the mail server or the gateway: {repeats}")
    print(f"the {len(mail.received)} e-mails (.eml, with their .ics invites) are in {mail.folder}")
    print(f"the gateway's {len(gateway.requests)} requests are in {gateway.log_file}")


def print_schedule(seen: list[Seen], filed: dict[str, TicketFiled]) -> None:
    """Per office: what the scheduler gave, in the office's local time."""
    slots = [s.event for s in seen if s.type == "glv.SlotAssigned.v1"]
    failed = Counter(s.event.office_code for s in seen if s.type == "glv.SchedulingFailed.v1")
    released = Counter(s.event.office_code for s in seen if s.type == "glv.SlotReleased.v1")

    def in_window(slot: SlotAssigned) -> bool:
        windows = filed[str(slot.ticket_id)].preferred_windows
        return any(w.start <= slot.starts_at and slot.ends_at <= w.end for w in windows)

    print()
    print(
        f"{'office':<7}{'zone':<15}{'slots':>6}{'in wish':>8}{'waiting':>8}{'released':>9}  first local times (officer)"
    )
    print("-" * 112)
    for office, _ in OFFICES:
        mine = sorted((e for e in slots if e.office_code == office), key=lambda e: e.starts_at)
        zone = ZONES[office]
        local = [
            f"{e.starts_at.astimezone(ZoneInfo(zone)):%a %d %b %H:%M} {_ABBREV[zone]} ({e.officer_id})"
            for e in mine[:3]
        ]
        print(
            f"{office:<7}{zone:<15}{len(mine):>6}{sum(map(in_window, mine)):>8}{failed[office]:>8}"
            f"{released[office]:>9}  {'; '.join(local)}"
        )
    print("(in wish: inside the stakeholder's preferred window; waiting: on the waitlist)")


_ABBREV = {"Asia/Jakarta": "WIB", "Asia/Makassar": "WITA", "Asia/Jayapura": "WIT"}


def print_summary(
    seen: list[Seen],
    filings: list[TicketFiled],
    poison: list[RawRecord],
    expected: dict[str, str],
    seconds: float,
) -> None:
    decisions: dict[str, list[str]] = {}
    accepted_by_office: Counter[str] = Counter()
    sample_code: dict[str, str] = {}
    for s in seen:
        if s.type == "glv.TicketAccepted.v1":
            decisions.setdefault(str(s.event.ticket_id), []).append("accepted")
            accepted_by_office[s.event.office_code] += 1
            sample_code.setdefault(s.event.office_code, s.event.ticket_code)
        elif s.type == "glv.TicketRejected.v1":
            decisions.setdefault(str(s.event.ticket_id), []).append(
                "rejected: " + ",".join(r.code for r in s.event.reasons)
            )
    outcomes: Counter[str] = Counter()
    for decision_list in decisions.values():
        for d in decision_list:
            outcomes[d] += 1
    dead = Counter(s.headers.get("x-dlq-error-code") for s in seen if ".dlq." in s.topic)
    cancelled = sum(s.type == "glv.TicketCancelled.v1" for s in seen)
    mismatched = [t for t, want in expected.items() if decisions.get(t, [""])[0] != want]
    width = 44
    print()
    print(f"{'what the portal filed':<{width}} {'count':>6}")
    print("-" * (width + 7))
    print(f"{'records filed':<{width}} {len(filings) + len(poison):>6}")
    print(f"{'distinct tickets':<{width}} {len(expected):>6}")
    print(f"{'identical resubmissions (no second decision)':<{width}} {RESUBMITTED:>6}")
    print(f"{'resubmissions with different content':<{width}} {CONFLICTING:>6}")
    print(f"{'poison records (not CloudEvents / not JSON)':<{width}} {len(poison) - 1:>6}")
    print()
    print(f"{'what GLV decided':<{width}} {'count':>6}")
    print("-" * (width + 7))
    for outcome, count in sorted(outcomes.items()):
        print(f"{outcome:<{width}} {count:>6}")
    print(f"{'cancelled afterwards by the portal':<{width}} {cancelled:>6}")
    for code, count in sorted(dead.items()):
        print(f"{'dead-lettered: ' + str(code):<{width}} {count:>6}")
    print(f"{'tickets decided twice':<{width}} {sum(v.count('accepted') > 1 for v in decisions.values()):>6}")
    print(f"{'outcomes different from expected':<{width}} {len(mismatched):>6}")
    print()
    print(f"{'office':<8}{'accepted':>9}  sample ticket code")
    for office, _ in OFFICES:
        print(f"{office:<8}{accepted_by_office[office]:>9}  {sample_code.get(office, '-')}")
    print()
    print(
        f"filed -> every ticket decided: {seconds:.2f} s ({len(expected) / seconds:.0f} tickets/s, "
        "including the catalog-loaded service's first fetch)"
    )


async def show_status(port: int, ticket_id: uuid.UUID, token: str) -> None:
    async with httpx.AsyncClient() as client:
        answer = await client.get(
            f"http://127.0.0.1:{port}/v1/tickets/{ticket_id}", headers={"Authorization": f"Bearer {token}"}
        )
    print()
    print(f"GET /v1/tickets/{ticket_id}  ->  HTTP {answer.status_code}")
    print(json.dumps(answer.json(), indent=2))


def main() -> int:
    return asyncio.run(run_demo())


if __name__ == "__main__":
    raise SystemExit(main())
