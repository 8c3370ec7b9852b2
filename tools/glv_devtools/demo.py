"""`make demo`: the ticketing service on the local stack, fed by a portal simulator.

Starts the service as its own process, loads the office catalog, files a few
hundred tickets (valid ones across three time zones, invalid ones, exact
resubmissions, conflicting ones, poison records and cancellations), waits until
every one has an outcome, prints what became of them and one status API answer,
then stops the service with SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx

from glv_devtools.catalog import office_entries, publish_office_entries
from glv_devtools.portal import PortalClient, RawRecord, record_for, ticket
from glv_devtools.probe import EventProbe, Seen
from glv_schemas.base import TimeWindow
from glv_schemas.events import CancellationRequested, TicketFiled
from glv_schemas.topics import PORTAL_TICKETS, TICKETING_EVENTS, dead_letter_topic
from glv_ticketing.settings import TicketingSettings

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "demo-portal-token"
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


def build_filings(rng: random.Random, now: datetime) -> tuple[list[TicketFiled], list[RawRecord], dict[str, str]]:
    """What the simulated portals send, and what each ticket id is expected to become."""
    expected: dict[str, str] = {}
    valid = []
    for i in range(240):
        office, service = OFFICES[i % len(OFFICES)]
        valid.append(
            ticket(
                rng,
                portal_id="demo-portal",
                office_code=office,
                service_code=service,
                now=now,
                window_days=rng.randint(2, 10),
            )
        )
        expected[str(valid[-1].ticket_id)] = "accepted"

    def bad(reason: str, **changes: object) -> TicketFiled:
        office, service = OFFICES[rng.randrange(len(OFFICES))]
        filed = ticket(rng, portal_id="demo-portal", office_code=office, service_code=service, now=now)
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


async def wait_ready(port: int, process: subprocess.Popen[bytes], timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit("the ticketing service exited while starting; see its log")
            try:
                if (await client.get(f"http://127.0.0.1:{port}/readyz", timeout=2)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit("the ticketing service did not become ready")


async def run_demo() -> int:
    settings = TicketingSettings(portal_tokens={"demo-portal": TOKEN})
    env = {
        **os.environ,
        "GLV_TICKETING_PORTAL_TOKENS": json.dumps({"demo-portal": TOKEN}),
        "GLV_TICKETING_LOG_LEVEL": "WARNING",
    }
    log_path = Path(os.environ.get("GLV_STATE_DIR", "/var/tmp/glv")) / "demo-ticketing.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    say(f"starting the ticketing service (log: {log_path})")
    with open(log_path, "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "glv_ticketing", "run"], env=env, stdout=log, stderr=log)
    try:
        await wait_ready(settings.http_port, process)
        offices = office_entries()
        say(f"loading the office catalog: {len(offices)} offices in 3 time zones")
        await publish_office_entries(settings, offices)
        conn = await asyncpg.connect(settings.dsn())
        try:
            while await conn.fetchval("SELECT count(*) FROM office") < len(offices):
                await asyncio.sleep(0.1)
        finally:
            await conn.close()

        rng = random.Random()
        now = datetime.now(UTC)
        filings, poison, expected = build_filings(rng, now)
        topics = [TICKETING_EVENTS.name, dead_letter_topic("ticketing").name]
        async with EventProbe(settings.kafka_bootstrap_servers, topics) as probe:
            start_count = await probe.catch_up()  # earlier runs' events are not this run's
            cancel = [f for f in filings[:240:40]]
            say(f"a simulated portal files {len(filings) + len(poison)} records on {PORTAL_TICKETS.name}")
            started = time.monotonic()
            async with PortalClient(settings.kafka_bootstrap_servers) as portal:
                await portal.file(filings, source="/portal/demo")
                await portal.send(poison)
            ids = set(expected)

            def decided(seen: list) -> bool:  # type: ignore[type-arg]
                mine = {str(s.event.ticket_id) for s in seen[start_count:] if s.event is not None}
                return ids <= mine

            await probe.wait_for(decided, timeout_s=180)
            decided_after = time.monotonic() - started
            say(f"every ticket decided in {decided_after:.2f} s; portal cancels {len(cancel)} tickets")
            async with PortalClient(settings.kafka_bootstrap_servers) as portal:
                await portal.file(
                    [
                        CancellationRequested(
                            ticket_id=f.ticket_id, portal_id="demo-portal", requested_at=datetime.now(UTC)
                        )
                        for f in cancel
                    ],
                    source="/portal/demo",
                )
            cancel_ids = {f.ticket_id for f in cancel}
            await probe.wait_for(
                lambda seen: (
                    cancel_ids <= {s.event.ticket_id for s in seen[start_count:] if s.type == "glv.TicketCancelled.v1"}
                ),
                timeout_s=60,
            )
            dlq_name = dead_letter_topic("ticketing").name
            await probe.wait_for(lambda seen: sum(s.topic == dlq_name for s in seen[start_count:]) >= len(poison))
            mine = [s for s in probe.seen[start_count:]]
        print_summary(mine, filings, poison, expected, decided_after)
        await show_status(settings.http_port, filings[0].ticket_id)
    finally:
        # Stop the child before printing anything: a closed stdout must not leave it running.
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
    say(f"ticketing service stopped with SIGTERM (exit code {process.returncode})")
    return 0


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
    dead = Counter(s.headers.get("x-dlq-error-code") for s in seen if s.topic.startswith("glv.dlq."))
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


async def show_status(port: int, ticket_id: uuid.UUID) -> None:
    async with httpx.AsyncClient() as client:
        answer = await client.get(
            f"http://127.0.0.1:{port}/v1/tickets/{ticket_id}", headers={"Authorization": f"Bearer {TOKEN}"}
        )
    print()
    print(f"GET /v1/tickets/{ticket_id}  ->  HTTP {answer.status_code}")
    print(json.dumps(answer.json(), indent=2))


def main() -> int:
    return asyncio.run(run_demo())


if __name__ == "__main__":
    raise SystemExit(main())
