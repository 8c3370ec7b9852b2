"""Pipeline benchmark: tickets/s per hop and end to end, latency under load, peak RSS.

Run from the repository root with the local stack up (`bash deploy/local/stack.sh start`):

    .venv/bin/python benchmarks/pipeline_bench.py                    # full: 20,000-ticket backlogs, 20 s steps
    .venv/bin/python benchmarks/pipeline_bench.py --quick            # 4,000-ticket backlogs, 8 s steps
    .venv/bin/python benchmarks/pipeline_bench.py --label after --profile

It is not a test: it prints figures and says which targets were met. One run, in a namespace of
its own (databases `glv_pbench_<run>_<service>`, topic prefix `pbench-<run>.`, its own consumer
groups and ports), which it removes at the end, also after an error:

1. Echo ceiling. Raw aiokafka through the same broker: N records (TicketFiled-sized) are produced
   to one topic; a consumer reads them in batches of up to 500, produces each to another topic
   (idempotent, acks=all, as the services do), waits for the acknowledgements and commits.
2. Ticketing and the scheduler run as real OS processes (`python -m glv_<service> run`) on a
   generated catalog (offices x officers with every skill, open 07:00-19:00 every day, 60-day
   horizon) loaded with `python -m glv_scheduler load-catalog FILE`, so that every ticket gets a slot.
3. Per hop at saturation: a backlog waits on the hop's input topic while its service is stopped;
   the service starts and drains it. Rate = tickets / (last output - first output), from the
   records' timestamps. Ticketing: TicketFiled -> TicketAccepted/Rejected, with the scheduler
   stopped. Scheduler: TicketAccepted -> SlotAssigned/SchedulingFailed, with ticketing stopped.
   End to end: both stopped, the backlog filed, both started; first TicketAccepted to last
   SlotAssigned.
4. Latency: a portal files at a fixed (open-loop) rate, 50/s, 200/s and 80 % of the end-to-end
   saturation; latency is from the moment the send was acknowledged to the moment this process
   read the ticket's SlotAssigned back.
5. Peak RSS of each service: VmHWM from /proc/<pid>/status (the highest over its restarts).
6. --profile: py-spy records both services during one more backlog drain (both running) and the
   top frames are printed; the speedscope files are kept.

The table goes to stdout and to OUT/pipeline-<label>.md, the plot to OUT/pipeline-<label>.png.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import itertools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from glv_devtools.machine import CLOCK_TICK, cpu_and_python, git_commit, load_average, machine_busy_seconds
from glv_devtools.portal import RawRecord, record_for, ticket
from glv_runtime.logs import configure_cli_logging
from glv_runtime.onboarding import AdminSettings
from glv_schemas.base import TimeWindow
from glv_schemas.events import SchedulingFailed, SlotAssigned, TicketAccepted, TicketRejected
from glv_schemas.topics import PORTAL_TICKETS, SCHEDULER_EVENTS, TICKETING_EVENTS
from glv_ticketing import portals
from glv_ticketing.settings import TicketingSettings

REPO = Path(__file__).resolve().parent.parent
ADMIN_DSN = os.environ.get("GLV_BENCH_ADMIN_DSN", "postgresql://glv_test:glv_test@127.0.0.1:55432/glv_test")
BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:59092")
SERVICES = ("ticketing", "scheduler")
# The services run as on the local stack (plain listener, ephemeral secrets where none are set).
ENVIRONMENT = "development"
PORTAL = "pbench-portal"
SOURCE = "/portal/pbench"
# The portal's own intake topic: it exists once the portal is onboarded (`onboard_portal`).
INTAKE = PORTAL_TICKETS.for_portal(PORTAL)
PARTITIONS = 6  # the services' default GLV_<SVC>_TOPIC_PARTITIONS; the echo topics get the same
BATCH = 500  # the services' default GLV_<SVC>_BATCH_MAX_RECORDS (the scheduler's is 100)

DECIDED = {TicketAccepted.event_type(), TicketRejected.event_type()}
PLACED = {SlotAssigned.event_type(), SchedulingFailed.event_type()}
ASSIGNED = SlotAssigned.event_type()

# The generated catalog: every officer has every skill; offices open every day.
ZONES = ("Asia/Jakarta", "Asia/Makassar", "Asia/Jayapura")
OPEN_FROM, OPEN_UNTIL = 7, 19  # local hours, every day of the week
HORIZON_DAYS = 60
NOTICE_HOURS = 1
BENCH_SERVICES = {  # code: (duration, buffer) in minutes
    "konsultasi-singkat": (30, 0),
    "konsultasi": (45, 15),
    "konsultasi-panjang": (60, 15),
}

TARGET_E2E = 2000.0  # tickets/s
TARGET_SHARE, STRETCH_SHARE = 0.036, 0.25  # of the echo ceiling
TARGET_P99_MS, TARGET_P99_RATE = 100.0, 200.0
TARGET_RSS_MB = 150.0


@dataclass(frozen=True)
class Sizes:
    offices: int
    officers: int
    backlog: int
    echo: int
    step_seconds: float
    profile_backlog: int
    warmup: int


FULL = Sizes(offices=120, officers=8, backlog=20_000, echo=100_000, step_seconds=20.0, profile_backlog=10_000,
             warmup=300)  # fmt: skip
QUICK = Sizes(offices=120, officers=8, backlog=4_000, echo=20_000, step_seconds=8.0, profile_backlog=3_000, warmup=200)


def say(text: str) -> None:
    print(text, flush=True)


def note(text: str) -> None:
    """Progress, on stderr, so that stdout holds the figures."""
    print(f"  .. {text}", file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    pass


# ====================================================================== the machine


def machine_facts() -> list[str]:
    return [*cpu_and_python(), f"repository: {REPO} at {git_commit(REPO)}"]


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (its threads included), or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def peak_rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def kafka_broker_pid() -> int | None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if b"kafka.Kafka" in (entry / "cmdline").read_bytes():
                return int(entry.name)
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else float("nan")


# ====================================================================== the namespace


@dataclass
class Namespace:
    run: str
    workdir: Path
    ports: dict[str, int]

    @property
    def prefix(self) -> str:
        return f"pbench-{self.run}."

    def database(self, service: str) -> str:
        return f"glv_pbench_{self.run}_{service}"

    def dsn(self, service: str) -> str:
        return f"{ADMIN_DSN.rsplit('/', 1)[0]}/{self.database(service)}"

    def topic(self, name: str) -> str:
        return self.prefix + name

    def env(self, log_level: str) -> dict[str, str]:
        env = dict(os.environ)
        env["KAFKA_BOOTSTRAP_SERVERS"] = BOOTSTRAP
        # The local stack's mode: its plain listener, ephemeral secrets where none are set.
        env["GLV_ENVIRONMENT"] = ENVIRONMENT
        for service in SERVICES:
            p = f"GLV_{service.upper()}_"
            env[p + "DATABASE_URL"] = self.dsn(service)
            env[p + "TOPIC_PREFIX"] = self.prefix
            env[p + "CONSUMER_GROUP"] = f"pbench-{self.run}-{service}"
            env[p + "HTTP_PORT"] = str(self.ports[service])
            env[p + "LOG_LEVEL"] = log_level
        return env

    def group(self, service: str) -> str:
        return f"pbench-{self.run}-{service}"


async def create_databases(ns: Namespace) -> None:
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        for service in SERVICES:
            await admin.execute(f'CREATE DATABASE "{ns.database(service)}"')
    finally:
        await admin.close()


async def onboard_portal(ns: Namespace) -> None:
    """The portal's intake and updates topics, and its status token in ticketing's database,
    as `glv-ticketing portal onboard` makes them (on the plain broker: no user, no ACLs)."""
    settings = TicketingSettings(
        environment=ENVIRONMENT,
        kafka_bootstrap_servers=BOOTSTRAP,
        database_url=ns.dsn("ticketing"),
        topic_prefix=ns.prefix,
        topic_partitions=PARTITIONS,
    )
    admin = AdminSettings(
        environment=ENVIRONMENT,
        kafka_bootstrap_servers=BOOTSTRAP,
        topic_prefix=ns.prefix,
        topic_partitions=PARTITIONS,
    )
    onboarded = await portals.onboard(settings, admin, PORTAL)
    note(f"portal {PORTAL} onboarded: topics {', '.join(onboarded.topics.values())}")


async def drop_namespace(ns: Namespace) -> None:
    """Databases and topics of this run; each step is tried even if another failed."""
    for attempt in range(15):
        try:
            admin = await asyncpg.connect(ADMIN_DSN)
            try:
                for service in SERVICES:
                    await admin.execute(f'DROP DATABASE IF EXISTS "{ns.database(service)}" WITH (FORCE)')
            finally:
                await admin.close()
            break
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            if attempt == 14:
                say(f"  COULD NOT DROP the databases glv_pbench_{ns.run}_*: {error}; drop them by hand")
            await asyncio.sleep(2)
    try:
        kafka = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
        await kafka.start()
        try:
            mine = [t for t in await kafka.list_topics() if t.startswith(ns.prefix)]
            if mine:
                await kafka.delete_topics(mine)
        finally:
            await kafka.close()
    except Exception as error:  # the databases are gone; say what is left
        say(f"  COULD NOT DELETE the topics {ns.prefix}*: {error!r}; delete them by hand")


# ====================================================================== the catalog


def office_codes(n: int) -> list[str]:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return ["Q" + "".join(p) for p in itertools.islice(itertools.product(letters, repeat=2), n)]


@dataclass(frozen=True)
class BenchOffice:
    code: str
    zone: str


def write_catalog(path: Path, offices: Sequence[BenchOffice], officers: int) -> None:
    """A catalog in deploy/catalog/catalog.yaml's format (YAML is a superset of JSON)."""
    hours = {
        day: [f"{OPEN_FROM:02d}:00-{OPEN_UNTIL:02d}:00"] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    }
    data = {
        "working_hours": hours,
        "collective_leave": [],
        "services": {
            code: {
                "name_id": f"Bench {code}",
                "name_en": f"Bench {code}",
                "kind": "consultation",
                "duration_minutes": duration,
                "buffer_minutes": buffer,
                "min_notice_hours": NOTICE_HOURS,
                "booking_horizon_days": HORIZON_DAYS,
            }
            for code, (duration, buffer) in BENCH_SERVICES.items()
        },
        "offices": [
            {
                "office_code": office.code,
                "name": f"KPKNL Bench {office.code}",
                "city": f"Kota {office.code}",
                "zone": office.zone,
                "services": list(BENCH_SERVICES),
                "officers": [
                    {"officer_id": f"{office.code}-{n:02d}", "display_name": "Petugas", "skills": list(BENCH_SERVICES)}
                    for n in range(1, officers + 1)
                ],
            }
            for office in offices
        ],
    }
    path.write_text("# Generated by benchmarks/pipeline_bench.py\n" + json.dumps(data, indent=1) + "\n")


class Filings:
    """TicketFiled records as a portal files them, each with a preferred window inside office hours."""

    def __init__(self, offices: Sequence[BenchOffice], seed: int) -> None:
        self._offices = offices
        self._rng = random.Random(seed)

    def make(self, n: int) -> list[RawRecord]:
        now = datetime.now(UTC)
        records = []
        for _ in range(n):
            office = self._rng.choice(self._offices)
            service = self._rng.choice(list(BENCH_SERVICES))
            filed = ticket(self._rng, portal_id=PORTAL, office_code=office.code, service_code=service, now=now)
            tz = ZoneInfo(office.zone)
            day = now.astimezone(tz).date() + timedelta(days=self._rng.randint(2, HORIZON_DAYS - 4))
            start = datetime.combine(day, datetime.min.time(), tzinfo=tz) + timedelta(
                hours=self._rng.randint(OPEN_FROM, OPEN_UNTIL - 3)
            )
            window = TimeWindow(start=start, end=start + timedelta(hours=3))
            records.append(record_for(filed.model_copy(update={"preferred_windows": [window]}), source=SOURCE))
        return records


# ====================================================================== Kafka helpers


def new_producer(linger_ms: int = 5) -> Any:
    """Idempotent, acks=all, as the services' producers (glv_runtime.kafka.producer_config)."""
    return AIOKafkaProducer(
        bootstrap_servers=BOOTSTRAP,
        enable_idempotence=True,
        acks="all",
        linger_ms=linger_ms,
        max_batch_size=256 * 1024,
        request_timeout_ms=30_000,
    )


class Kafka:
    """An admin client and an offsets reader for the whole run."""

    def __init__(self) -> None:
        self.admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP, client_id="pbench-admin")
        self._offsets = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False)
        self._partitions: dict[str, list[Any]] = {}

    async def start(self) -> None:
        await self.admin.start()
        await self._offsets.start()

    async def stop(self) -> None:
        await self._offsets.stop()
        await self.admin.close()

    async def create_topics(self, names: Sequence[str]) -> None:
        await self.admin.create_topics([NewTopic(n, num_partitions=PARTITIONS, replication_factor=1) for n in names])
        await self.partitions(names, wait=True)

    async def partitions(self, topics: Sequence[str], wait: bool = False) -> list[Any]:
        missing = [t for t in topics if t not in self._partitions]
        for _ in range(200):
            if not missing:
                break
            for d in await self.admin.describe_topics(missing):
                parts = d.get("partitions") or []
                if d.get("error_code", 0) == 0 and parts and all(p["leader"] >= 0 for p in parts):
                    self._partitions[d["topic"]] = [TopicPartition(d["topic"], p["partition"]) for p in parts]
            missing = [t for t in topics if t not in self._partitions]
            if missing and not wait:
                raise BenchError(f"topics not found: {missing}")
            if missing:
                await asyncio.sleep(0.1)
        if missing:
            raise BenchError(f"topics without leaders: {missing}")
        return [tp for t in topics for tp in self._partitions[t]]

    async def lag(self, group: str, topics: Sequence[str]) -> int:
        parts = await self.partitions(topics)
        committed = await self.admin.list_consumer_group_offsets(group)
        end = await self._offsets.end_offsets(parts)
        total = 0
        for tp in parts:
            meta = committed.get(tp)
            done = meta.offset if meta is not None and meta.offset >= 0 else 0
            total += max(0, end[tp] - done)
        return total


@dataclass(frozen=True)
class Out:
    type: str
    timestamp: float  # the record's timestamp (set by its producer, milliseconds), epoch seconds
    received: float  # time.time() when this process read it


class Reader:
    """Reads a topic from its end at start(): the first record of each key, by type."""

    def __init__(self, kafka: Kafka, topic: str, types: set[str]) -> None:
        self._kafka = kafka
        self._topic = topic
        self._types = types
        self._consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False)
        self.first: dict[str, Out] = {}

    async def __aenter__(self) -> Reader:
        await self._consumer.start()
        parts = await self._kafka.partitions([self._topic])
        self._consumer.assign(parts)
        await self._consumer.seek_to_end(*parts)
        for tp in parts:  # resolve the end offsets now, before anything is produced
            await self._consumer.position(tp)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def poll(self, timeout_ms: int) -> None:
        batch = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=10_000)
        received = time.time()
        for records in batch.values():
            for r in records:
                kind = next((v.decode() for n, v in r.headers if n == "ce_type"), "")
                if kind in self._types and r.key is not None:
                    key = r.key.decode()
                    if key not in self.first:
                        self.first[key] = Out(kind, r.timestamp / 1000, received)

    async def collect(
        self, keys: Iterable[str], watch: Sequence[Service], stall_s: float = 120.0, timeout_ms: int = 250
    ) -> dict[str, Out]:
        """Poll until every key has an output; fail when nothing new comes for stall_s."""
        wanted = set(keys)
        last_progress, seen = time.monotonic(), -1
        while True:
            found = len(wanted & self.first.keys())
            if found == len(wanted):
                return {k: self.first[k] for k in wanted}
            if found != seen:
                last_progress, seen = time.monotonic(), found
            if time.monotonic() - last_progress > stall_s:
                raise BenchError(f"{self._topic}: {found} of {len(wanted)} outputs, none for {stall_s:.0f} s")
            for service in watch:
                service.check_alive()
            await self.poll(timeout_ms)


async def produce(producer: Any, topic: str, records: Sequence[RawRecord]) -> float:
    """Send every record, wait for every acknowledgement; the seconds that took."""
    started = time.monotonic()
    futures = [await producer.send(topic, value=r.value, key=r.key, headers=r.headers) for r in records]
    await asyncio.gather(*futures)
    return time.monotonic() - started


# ====================================================================== services and sampling


METRICS = {
    "glv_handler_batch_seconds_sum",
    "glv_handler_batch_seconds_count",
    "glv_handler_batch_size_sum",
    "glv_scheduler_assignment_seconds_sum",
    "glv_scheduler_assignment_seconds_count",
}


@dataclass(frozen=True)
class Metrics:
    pid: int | None
    values: dict[str, float]


@dataclass(frozen=True)
class Batches:
    """What a service's consumer did in a phase (from its /metrics: glv_handler_batch_*)."""

    service: str
    batches: float
    records: float
    seconds: float
    assign_seconds: float
    assigned: float

    def row(self, phase: str) -> list[str]:
        if not self.batches:
            return [phase, self.service, "0", "-", "-", "-", "-"]
        assign = f"{1000 * self.assign_seconds / self.assigned:.2f}" if self.assigned else "-"
        return [
            phase,
            self.service,
            f"{self.batches:,.0f}",
            f"{self.records / self.batches:,.1f}",
            f"{1000 * self.seconds / self.batches:,.1f}",
            f"{1000 * self.seconds / max(self.records, 1):.2f}",
            assign,
        ]


def batches_between(service: str, before: Metrics | None, after: Metrics) -> Batches:
    """The difference of two readings of one process (a restarted process counts from zero)."""
    base = before.values if before is not None and before.pid == after.pid else {}

    def delta(name: str) -> float:
        return after.values.get(name, 0.0) - base.get(name, 0.0)

    return Batches(
        service,
        delta("glv_handler_batch_seconds_count"),
        delta("glv_handler_batch_size_sum"),
        delta("glv_handler_batch_seconds_sum"),
        delta("glv_scheduler_assignment_seconds_sum"),
        delta("glv_scheduler_assignment_seconds_count"),
    )


class Service:
    """One service as its own OS process (`python -m glv_<name> run`), restartable."""

    def __init__(self, name: str, ns: Namespace, env: dict[str, str]) -> None:
        self.name = name
        self._ns = ns
        self._env = env
        self.log = ns.workdir / f"{name}.log"
        self.process: asyncio.subprocess.Process | None = None
        self.peak_kb = 0
        self.starts = 0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None and self.process.returncode is None else None

    async def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", f"glv_{self.name}", "run", env=self._env, stdout=log, stderr=subprocess.STDOUT
            )
        self.starts += 1

    def check_alive(self) -> None:
        if self.process is None or self.process.returncode is not None:
            raise BenchError(f"the {self.name} service is not running; see {self.log}")

    async def _get(self, path: str) -> tuple[int, bytes]:
        port = self._ns.ports[self.name]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), 10)
        finally:
            writer.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        status = head.split(b" ", 2)
        return (int(status[1]) if len(status) > 1 and status[1].isdigit() else 0), body

    async def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            with contextlib.suppress(OSError, TimeoutError):
                if (await self._get("/readyz"))[0] == 200:
                    return
            await asyncio.sleep(0.2)
        raise BenchError(f"the {self.name} service did not become ready in {timeout_s:.0f} s; see {self.log}")

    async def metrics(self) -> Metrics:
        """The Prometheus sums and counts this benchmark reads (empty if the service does not answer)."""
        values: dict[str, float] = defaultdict(float)
        if self.pid is None:
            return Metrics(None, values)
        with contextlib.suppress(OSError, TimeoutError):
            _, body = await self._get("/metrics")
            for line in body.decode(errors="replace").splitlines():
                name, _, value = line.partition(" ")
                name = name.split("{", 1)[0]
                if name in METRICS:
                    with contextlib.suppress(ValueError):
                        values[name] += float(value.split()[0])
        return Metrics(self.pid, values)

    def sample_rss(self) -> None:
        pid = self.pid
        if pid is not None:
            self.peak_kb = max(self.peak_kb, peak_rss_kb(pid) or 0)

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.sample_rss()
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), 60)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


class Sampler:
    """Every 0.25 s: peak RSS of the services, and CPU seconds of everything that does the work."""

    def __init__(self, services: Sequence[Service], ns: Namespace) -> None:
        self._services = services
        self._ns = ns
        self._kafka_pid = kafka_broker_pid()
        self._backends: set[int] = set()
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Sampler:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _snapshot(self) -> dict[str, float]:
        values: dict[str, float] = {"machine": machine_busy_seconds(), "bench": sum(os.times()[:2])}
        for service in self._services:
            service.sample_rss()
            if service.pid is not None and (cpu := cpu_seconds(service.pid)) is not None:
                values[f"{service.name}:{service.pid}"] = cpu
        if self._kafka_pid is not None and (cpu := cpu_seconds(self._kafka_pid)) is not None:
            values["kafka"] = cpu
        for pid in self._backends:
            if (cpu := cpu_seconds(pid)) is not None:
                values[f"postgres:{pid}"] = cpu
        return values

    async def _run(self) -> None:
        conn: asyncpg.Connection[Any] | None = None
        refreshed = 0.0
        try:
            conn = await asyncpg.connect(ADMIN_DSN)
            while True:
                if time.monotonic() - refreshed > 1.0:
                    with contextlib.suppress(asyncpg.PostgresError, OSError, asyncpg.InterfaceError):
                        rows = await conn.fetch(
                            "SELECT pid FROM pg_stat_activity WHERE datname = ANY($1::text[])",
                            [self._ns.database(s) for s in SERVICES],
                        )
                        self._backends |= {r["pid"] for r in rows}
                    refreshed = time.monotonic()
                self.samples.append((time.time(), self._snapshot()))
                await asyncio.sleep(0.25)
        finally:
            if conn is not None:
                await conn.close()

    def cpu(self, start: float, end: float) -> dict[str, float]:
        """% of one core each component used from the last sample at or before `start` to the first
        at or after `end` (epoch seconds; samples are 0.25 s apart)."""
        times = [at for at, _ in self.samples]
        if len(times) < 2:
            return {}
        first = max(0, bisect.bisect_right(times, start) - 1)
        last = min(len(times) - 1, max(first + 1, bisect.bisect_left(times, end)))
        before: dict[str, float] = {}
        after: dict[str, float] = {}
        for _, values in self.samples[: first + 1]:
            before.update(values)
        for _, values in self.samples[first + 1 : last + 1]:
            after.update(values)  # a process that ended in the window keeps its last reading
        usage: dict[str, float] = defaultdict(float)
        for key, value in after.items():
            # A pid first seen in the window started in it; a component without a pid is always there.
            usage[key.split(":")[0]] += value - before.get(key, 0.0 if ":" in key else value)
        span = times[last] - times[first]
        return {k: 100 * v / span for k, v in usage.items()}


# ====================================================================== phases


@dataclass
class Drain:
    name: str
    what: str
    count: int
    first: float
    last: float
    outcomes: Counter[str]
    produce_s: float
    load: str
    untimed: int = 0  # outputs of the first relay round: the interval starts when they were sent
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        timed = self.count - self.untimed
        return timed / (self.last - self.first) if timed > 0 and self.last > self.first else float("nan")


BURST_GAP_S = 0.010


def first_round(timestamps: Iterable[float]) -> int:
    """How many outputs the first relay round sent: those before the first gap of BURST_GAP_S.

    A relay publishes what each batch committed in one round, so outputs come in bursts. From the
    first output to the last, the interval spans every round's work but the first's: counting the
    first round's tickets too would overstate the rate by one batch (much, for small backlogs)."""
    ordered = sorted(timestamps)
    for n in range(1, len(ordered)):
        if ordered[n] - ordered[n - 1] >= BURST_GAP_S:
            return n
    return len(ordered)


@dataclass
class Echo:
    count: int
    produce_rate: float
    rate: float
    load: str


@dataclass
class Step:
    offered: float
    sent: int
    send_rate: float
    latencies_ms: list[float]
    failed: int
    load: str
    segments: dict[str, list[float]]


@dataclass
class Profile:
    service: str
    path: Path
    seconds: float
    samples: float
    idle: float
    threads: int
    self_top: list[tuple[str, float]]
    package_top: list[tuple[str, float]]
    owner_top: list[tuple[str, float]]
    glv_top: list[tuple[str, float]]


class Bench:
    def __init__(self, args: argparse.Namespace, sizes: Sizes) -> None:
        self.args = args
        self.sizes = sizes
        run = uuid.uuid4().hex[:8]
        self.ns = Namespace(
            run=run,
            workdir=Path(tempfile.mkdtemp(prefix=f"glv-pbench-{run}-")),
            ports={s: free_port() for s in SERVICES},
        )
        zones = itertools.cycle(ZONES)
        self.offices = [BenchOffice(code, next(zones)) for code in office_codes(sizes.offices)]
        self.filings = Filings(self.offices, seed=20_261_201)
        env = self.ns.env(args.log_level)
        self.env = env
        self.services = {s: Service(s, self.ns, env) for s in SERVICES}
        self.kafka = Kafka()
        self.sampler = Sampler(list(self.services.values()), self.ns)
        self.producer: Any = None
        self.echo: Echo | None = None
        self.drains: list[Drain] = []
        self.steps: list[Step] = []
        self.profiles: list[Profile] = []
        self.batches: list[tuple[str, Batches]] = []
        self.started = datetime.now(UTC)
        self.load_start = load_average()
        self.load_end = ""

    def topic(self, name: str) -> str:
        return self.ns.topic(name)

    async def readings(self) -> dict[str, Metrics]:
        return {name: await service.metrics() for name, service in self.services.items()}

    async def count_batches(self, phase: str, before: dict[str, Metrics] | None, *names: str) -> None:
        """Batches each service applied since `before` (None: since the process started)."""
        for name in names:
            after = await self.services[name].metrics()
            self.batches.append((phase, batches_between(name, (before or {}).get(name), after)))

    # ------------------------------------------------------------------ echo

    async def run_echo(self) -> None:
        n = self.sizes.echo
        source, sink = self.topic("echo.in"), self.topic("echo.out")
        await self.kafka.create_topics([source, sink])
        templates = self.filings.make(200)
        records = [
            RawRecord(source, str(uuid.uuid4()).encode(), t.value, t.headers)
            for t in itertools.islice(itertools.cycle(templates), n)
        ]
        load = load_average()
        note(f"echo: producing {n:,} records")
        producer = new_producer()
        await producer.start()
        try:
            produce_s = await produce(producer, source, records)
        finally:
            await producer.stop()
        note("echo: consuming and producing each to another topic")
        consumer = AIOKafkaConsumer(
            source,
            bootstrap_servers=BOOTSTRAP,
            group_id=f"pbench-{self.ns.run}-echo",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        out = new_producer()
        await consumer.start()
        await out.start()
        try:
            done, first = 0, 0.0
            deadline = time.monotonic() + 600
            while done < n:
                if time.monotonic() > deadline:
                    raise BenchError(f"echo: {done} of {n} records in 10 minutes")
                batch = await consumer.getmany(timeout_ms=100, max_records=BATCH)
                if not batch:
                    continue
                if not first:
                    first = time.monotonic()
                futures = [
                    await out.send(sink, value=r.value, key=r.key, headers=list(r.headers))
                    for records_ in batch.values()
                    for r in records_
                ]
                await asyncio.gather(*futures)
                await consumer.commit()
                done += len(futures)
            elapsed = time.monotonic() - first
        finally:
            await out.stop()
            await consumer.stop()
        self.echo = Echo(count=n, produce_rate=n / produce_s, rate=n / elapsed, load=load)
        say(
            f"  echo ceiling: {n:,} records produced at {n / produce_s:,.0f}/s; consumed and produced to another "
            f"topic at {n / elapsed:,.0f}/s (load average {load})"
        )

    # ------------------------------------------------------------------ setup

    async def start_services(self) -> None:
        for service in self.services.values():
            await service.start()
        for service in self.services.values():
            await service.wait_ready()

    async def load_catalog(self) -> None:
        path = self.ns.workdir / "catalog.yaml"
        write_catalog(path, self.offices, self.sizes.officers)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "glv_scheduler",
            "load-catalog",
            str(path),
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        if process.returncode != 0:
            raise BenchError(f"load-catalog failed:\n{output.decode(errors='replace')}")
        lines = [line for line in output.decode(errors="replace").splitlines() if line.startswith("catalog loaded")]
        say(
            f"  {lines[-1] if lines else 'catalog loaded'} ({path.name}: open {OPEN_FROM:02d}:00-"
            f"{OPEN_UNTIL:02d}:00 every day, horizon {HORIZON_DAYS} d, notice {NOTICE_HOURS} h, "
            "every officer has every skill)"
        )
        conn = await asyncpg.connect(self.ns.dsn("ticketing"))
        try:
            deadline = time.monotonic() + 120
            while await conn.fetchval("SELECT count(*) FROM office") < len(self.offices):
                if time.monotonic() > deadline:
                    raise BenchError("ticketing did not receive the catalog in 2 minutes")
                await asyncio.sleep(0.2)
        finally:
            await conn.close()

    async def caught_up(self, *names: str, timeout_s: float = 600.0) -> None:
        topics = {
            "ticketing": [self.topic(INTAKE), self.topic(SCHEDULER_EVENTS.name)],
            "scheduler": [self.topic(TICKETING_EVENTS.name)],
        }
        deadline = time.monotonic() + timeout_s
        for name in names:
            while (lag := await self.kafka.lag(self.ns.group(name), topics[name])) > 0:
                self.services[name].check_alive()
                if time.monotonic() > deadline:
                    raise BenchError(f"{name}: lag {lag} after {timeout_s:.0f} s")
                await asyncio.sleep(0.25)

    async def warm_up(self) -> None:
        records = self.filings.make(self.sizes.warmup)
        async with Reader(self.kafka, self.topic(SCHEDULER_EVENTS.name), PLACED) as reader:
            await produce(self.producer, self.topic(INTAKE), records)
            outs = await reader.collect([r.key.decode() for r in records if r.key], list(self.services.values()))
        kinds = Counter(o.type for o in outs.values())
        say(f"  warm-up: {len(records)} tickets filed and placed ({dict(kinds)})")
        await self.caught_up("ticketing", "scheduler")

    # ------------------------------------------------------------------ drains

    async def drain_ticketing(self, n: int) -> list[RawRecord]:
        ticketing, scheduler = self.services["ticketing"], self.services["scheduler"]
        await scheduler.stop()
        await ticketing.stop()
        records = self.filings.make(n)
        keys = [r.key.decode() for r in records if r.key]
        load = load_average()
        async with Reader(self.kafka, self.topic(TICKETING_EVENTS.name), DECIDED) as reader:
            produce_s = await produce(self.producer, self.topic(INTAKE), records)
            note(f"ticketing hop: {n:,} filings waiting; starting ticketing alone")
            await ticketing.start()
            outs = await reader.collect(keys, [ticketing])
            await self.count_batches("ticketing hop", None, "ticketing")
        drain = self._drain("ticketing", "TicketFiled -> TicketAccepted/Rejected", outs, outs, produce_s, load)
        self.drains.append(drain)
        return records

    async def drain_scheduler(self, records: Sequence[RawRecord]) -> None:
        ticketing, scheduler = self.services["ticketing"], self.services["scheduler"]
        await ticketing.stop()
        keys = [r.key.decode() for r in records if r.key]
        load = load_average()
        async with Reader(self.kafka, self.topic(SCHEDULER_EVENTS.name), PLACED) as reader:
            note(f"scheduler hop: {len(keys):,} TicketAccepted waiting; starting the scheduler alone")
            await scheduler.start()
            outs = await reader.collect(keys, [scheduler])
            await self.count_batches("scheduler hop", None, "scheduler")
        drain = self._drain("scheduler", "TicketAccepted -> SlotAssigned/SchedulingFailed", outs, outs, 0.0, load)
        self.drains.append(drain)
        note("ticketing: starting again, reading the scheduler's events of that backlog")
        await ticketing.start()
        await ticketing.wait_ready()
        await scheduler.wait_ready()
        await self.caught_up("ticketing", "scheduler")

    async def drain_end_to_end(self) -> None:
        n = self.sizes.backlog
        ticketing, scheduler = self.services["ticketing"], self.services["scheduler"]
        await scheduler.stop()
        await ticketing.stop()
        records = self.filings.make(n)
        keys = [r.key.decode() for r in records if r.key]
        load = load_average()
        async with (
            Reader(self.kafka, self.topic(TICKETING_EVENTS.name), DECIDED) as decided,
            Reader(self.kafka, self.topic(SCHEDULER_EVENTS.name), PLACED) as placed,
        ):
            produce_s = await produce(self.producer, self.topic(INTAKE), records)
            note(f"end to end: {n:,} filings waiting; starting the scheduler, then ticketing")
            await scheduler.start()
            await scheduler.wait_ready()
            await ticketing.start()
            outs = await placed.collect(keys, [ticketing, scheduler])
            starts = await decided.collect(keys, [ticketing, scheduler], stall_s=10)
            await self.count_batches("end to end", None, "ticketing", "scheduler")
        drain = self._drain("end to end", "TicketFiled -> SlotAssigned/SchedulingFailed", starts, outs, produce_s, load)
        self.drains.append(drain)
        await ticketing.wait_ready()
        await self.caught_up("ticketing", "scheduler")

    def _drain(
        self, name: str, what: str, starts: dict[str, Out], outs: dict[str, Out], produce_s: float, load: str
    ) -> Drain:
        first = min(o.timestamp for o in starts.values())
        last = max(o.timestamp for o in outs.values())
        drain = Drain(name, what, len(outs), first, last, Counter(o.type.split(".")[1] for o in outs.values()),
                      produce_s, load)  # fmt: skip
        if starts is outs:  # one hop: its first round is not timed; end to end starts at the first decision
            drain.untimed = first_round(o.timestamp for o in outs.values())
        drain.cpu = self.sampler.cpu(first, last)
        say(
            f"  {name}: {drain.count - drain.untimed:,} tickets in {last - first:.2f} s = {drain.rate:,.0f} "
            f"tickets/s (+ {drain.untimed:,} in the first relay round, not timed) ({dict(drain.outcomes)}); "
            f"CPU {cpu_text(drain.cpu)}; load average before {load}"
        )
        if drain.count - drain.untimed < drain.count // 2:
            say(f"  WARNING: the {name} backlog was drained in very few relay rounds; use a larger --backlog")
        return drain

    # ------------------------------------------------------------------ latency

    async def latency_step(self, rate: float) -> None:
        count = max(50, round(rate * self.sizes.step_seconds))
        records = self.filings.make(count)
        keys = [r.key.decode() for r in records if r.key]
        topic = self.topic(INTAKE)
        acked: dict[str, float] = {}
        load = load_average()
        note(f"latency: {count:,} tickets at {rate:,.0f}/s")
        before = await self.readings()
        async with (
            Reader(self.kafka, self.topic(TICKETING_EVENTS.name), DECIDED) as decided,
            Reader(self.kafka, self.topic(SCHEDULER_EVENTS.name), PLACED) as placed,
        ):
            stop = asyncio.Event()

            async def read(reader: Reader) -> None:
                while not stop.is_set():
                    await reader.poll(20)

            reading = [asyncio.create_task(read(decided)), asyncio.create_task(read(placed))]
            try:
                futures = []
                started = time.monotonic() + 0.1
                for i, (record, key) in enumerate(zip(records, keys, strict=True)):
                    delay = started + i / rate - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    future = await self.producer.send(topic, value=record.value, key=record.key, headers=record.headers)
                    future.add_done_callback(lambda _, key=key: acked.__setitem__(key, time.time()))
                    futures.append(future)
                await asyncio.gather(*futures)
                send_seconds = time.monotonic() - started
                last_progress, seen = time.monotonic(), -1
                while (found := len(placed.first.keys() & acked.keys())) < count:
                    if found != seen:
                        last_progress, seen = time.monotonic(), found
                    if time.monotonic() - last_progress > 120:
                        raise BenchError(f"latency at {rate:.0f}/s: {found} of {count} placed, none for 120 s")
                    for service in self.services.values():
                        service.check_alive()
                    await asyncio.sleep(0.1)
                while len(decided.first.keys() & acked.keys()) < count and time.monotonic() - last_progress < 10:
                    await asyncio.sleep(0.05)
                await self.count_batches(f"{rate:,.0f}/s", before, "ticketing", "scheduler")
            finally:
                stop.set()
                await asyncio.gather(*reading)
        outs = {k: placed.first[k] for k in keys}
        assigned = [k for k in keys if outs[k].type == ASSIGNED]
        latencies = [(outs[k].received - acked[k]) * 1000 for k in assigned]
        # Where the time goes, from the records' own timestamps (milliseconds, set by each producer).
        both = [k for k in assigned if k in decided.first]
        segments = {
            "ack -> TicketAccepted sent": [(decided.first[k].timestamp - acked[k]) * 1000 for k in both],
            "TicketAccepted -> SlotAssigned sent": [
                (outs[k].timestamp - decided.first[k].timestamp) * 1000 for k in both
            ],
            "SlotAssigned sent -> read back": [(outs[k].received - outs[k].timestamp) * 1000 for k in both],
        }
        step = Step(rate, count, count / send_seconds, latencies, sum(o.type != ASSIGNED for o in outs.values()), load,
                    segments)  # fmt: skip
        self.steps.append(step)
        say(
            f"  latency at {rate:,.0f}/s offered ({step.send_rate:,.0f}/s sent, {count:,} tickets): "
            f"p50 {pct(latencies, 50):.1f}  p90 {pct(latencies, 90):.1f}  p99 {pct(latencies, 99):.1f}  "
            f"p99.9 {pct(latencies, 99.9):.1f}  max {max(latencies, default=float('nan')):.1f} ms; "
            + "; ".join(f"{name} p50 {pct(v, 50):.0f} ms" for name, v in segments.items())
            + f"; load average before {load}"
        )
        await self.caught_up("ticketing", "scheduler")

    # ------------------------------------------------------------------ profile

    async def profile(self, out_dir: Path, label: str) -> None:
        spy = shutil.which("py-spy", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        if spy is None:
            raise BenchError("--profile needs py-spy (pip install -c constraints.txt py-spy)")
        n = self.sizes.profile_backlog
        records = self.filings.make(n)
        keys = [r.key.decode() for r in records if r.key]
        spies: dict[str, tuple[asyncio.subprocess.Process, Path]] = {}
        try:
            for name, service in self.services.items():
                assert service.pid is not None
                path = out_dir / f"pipeline-{label}-{name}.speedscope.json"
                process = await asyncio.create_subprocess_exec(
                    spy, "record", "--pid", str(service.pid), "--rate", "100", "--function", "--format", "speedscope",
                    "--output", str(path), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
                )  # fmt: skip
                spies[name] = (process, path)
            await asyncio.sleep(2)
            note(f"profile: {n:,} filings at once, py-spy on both services")
            started = time.time()
            async with Reader(self.kafka, self.topic(SCHEDULER_EVENTS.name), PLACED) as reader:
                await produce(self.producer, self.topic(INTAKE), records)
                outs = await reader.collect(keys, list(self.services.values()))
            await self.caught_up("ticketing", "scheduler")
            ended = time.time()
        finally:
            for process, _ in spies.values():
                if process.returncode is None:
                    process.send_signal(signal.SIGINT)
            for name, (process, path) in spies.items():
                try:
                    _, err = await asyncio.wait_for(process.communicate(), 60)
                except TimeoutError:
                    process.kill()
                    await process.wait()
                    err = b""
                if not path.exists():
                    note(f"py-spy wrote no profile for {name}: {err.decode(errors='replace').strip()}")
        cpu = self.sampler.cpu(started, ended)
        say(
            f"  profiled drain: {len(outs):,} tickets filed at once, both services running, "
            f"{ended - started:.1f} s until both caught up; CPU {cpu_text(cpu)}"
        )
        for name, (_, path) in spies.items():
            if path.exists():
                self.profiles.append(summarise_profile(name, path))

    # ------------------------------------------------------------------ all

    async def run(self) -> None:
        await self.kafka.start()
        try:
            await self.run_echo()
            await create_databases(self.ns)
            await onboard_portal(self.ns)
            async with self.sampler:
                self.producer = new_producer()
                await self.producer.start()
                try:
                    note("starting ticketing and the scheduler")
                    await self.start_services()
                    await self.load_catalog()
                    await self.warm_up()
                    accepted = await self.drain_ticketing(self.sizes.backlog)
                    await self.drain_scheduler(accepted)
                    await self.drain_end_to_end()
                    saturation = self.drains[-1].rate
                    for rate in sorted({50.0, 200.0, round(0.8 * saturation)}):
                        await self.latency_step(rate)
                    if self.args.profile:
                        await self.profile(self.args.out, self.args.label)
                finally:
                    for service in self.services.values():
                        await service.stop()
                    await self.producer.stop()
        finally:
            await self.kafka.stop()
            self.load_end = load_average()


def cpu_text(cpu: dict[str, float]) -> str:
    order = ("ticketing", "scheduler", "postgres", "kafka", "bench", "machine")
    return ", ".join(f"{k} {cpu[k]:.0f}%" for k in order if k in cpu)


# ====================================================================== profiles


def short_file(path: str) -> str:
    for marker in ("site-packages/", "/services/ticketing/", "/services/scheduler/", "/runtime/", "/schemas/",
                   "/tools/", "/lib/python3."):  # fmt: skip
        if marker in path:
            rest = path.split(marker, 1)[1]
            return rest.split("/", 1)[1] if marker == "/lib/python3." else rest
    return path


def package_of(path: str) -> str:
    short = short_file(path)
    top = short.split("/", 1)[0]
    if top.endswith(".py"):
        top = top[:-3]
    return top or path


IDLE_LEAVES = {"EpollSelector.select", "Condition.wait", "Event.wait", "Queue.get", "Thread._wait_for_tstate_lock"}
TRIVIAL = {"<module>", "main", "run"}
EVENT_LOOP = "(no GLV frame: the event loop, I/O callbacks, the Kafka clients' own tasks)"


def summarise_profile(service: str, path: Path, top: int = 12) -> Profile:
    """Self time by function and by package, time by the innermost GLV function on the stack, and
    inclusive time of GLV's functions; over the samples that were not waiting (see IDLE_LEAVES)."""
    data = json.loads(path.read_text())
    frames = data["shared"]["frames"]
    names = [f"{f['name']} ({short_file(f.get('file') or '')})" for f in frames]
    packages = [package_of(f.get("file") or "") for f in frames]
    own = [p.startswith("glv_") for p in packages]
    idle_frame = [f["name"] in IDLE_LEAVES for f in frames]
    self_time: Counter[str] = Counter()
    by_package: Counter[str] = Counter()
    by_owner: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = idle = 0.0
    seconds = 0.0
    for profile in data["profiles"]:
        seconds = max(seconds, float(profile.get("endValue", 0)) - float(profile.get("startValue", 0)))
        for stack, weight in zip(profile["samples"], profile["weights"], strict=True):
            if not stack:
                continue
            if idle_frame[stack[-1]]:
                idle += weight
                continue
            total += weight
            self_time[names[stack[-1]]] += weight
            by_package[packages[stack[-1]]] += weight
            innermost = next((i for i in reversed(stack) if own[i] and frames[i]["name"] not in TRIVIAL), None)
            by_owner[names[innermost] if innermost is not None else EVENT_LOOP] += weight
            for name in {names[i] for i in stack if own[i] and frames[i]["name"] not in TRIVIAL}:
                inclusive[name] += weight
    share = 1.0 / (total or 1.0)
    return Profile(
        service=service,
        path=path,
        seconds=seconds,
        samples=total,
        idle=idle,
        threads=len(data["profiles"]),
        self_top=[(k, v * share) for k, v in self_time.most_common(top)],
        package_top=[(k, v * share) for k, v in by_package.most_common(8)],
        owner_top=[(k, v * share) for k, v in by_owner.most_common(top)],
        glv_top=[(k, v * share) for k, v in inclusive.most_common(top + 4)],
    )


def profile_text(profiles: Sequence[Profile]) -> list[str]:
    lines: list[str] = []
    for p in profiles:
        lines.append(
            f"{p.service}: {p.samples:.1f} s of working samples (+ {p.idle:.1f} s waiting in epoll or a queue) "
            f"over {p.seconds:.1f} s recorded, {p.threads} thread(s); {p.path.name}"
        )
        lines.append("  self time by package: " + ", ".join(f"{k} {v:.0%}" for k, v in p.package_top))
        lines.append("  top frames by self time (% of working samples):")
        lines.extend(f"    {v:6.1%}  {k}" for k, v in p.self_top)
        lines.append("  by the innermost GLV function on the stack (its own time and the library calls it made):")
        lines.extend(f"    {v:6.1%}  {k}" for k, v in p.owner_top)
        lines.append("  GLV functions by inclusive time:")
        lines.extend(f"    {v:6.1%}  {k}" for k, v in p.glv_top)
    return lines


# ====================================================================== report


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    out = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|",
    ]
    out.extend("| " + " | ".join(str(c) for c in row) + " |" for row in rows)
    return out


def text_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    out = []
    for n, row in enumerate(cells):
        padded = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        out.append("  ".join(padded).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


@dataclass
class Report:
    tables: list[tuple[str, list[str], list[list[str]]]]
    targets: list[tuple[str, str, str]]


def build_report(bench: Bench) -> Report:
    assert bench.echo is not None
    echo = bench.echo.rate
    throughput = [
        ["echo ceiling (raw aiokafka, batched)", f"{bench.echo.count:,}", "-", "-", f"{echo:,.0f}", "100%",
         bench.echo.load]
    ]  # fmt: skip
    for d in bench.drains:
        throughput.append(
            [f"{d.name}: {d.what}", f"{d.count:,}", f"{d.untimed:,}", f"{d.last - d.first:.2f}", f"{d.rate:,.0f}",
             f"{d.rate / echo:.2%}", d.load]
        )  # fmt: skip
    latency = [
        [f"{s.offered:,.0f}", f"{s.send_rate:,.0f}", f"{s.sent:,}", f"{pct(s.latencies_ms, 50):.1f}",
         f"{pct(s.latencies_ms, 90):.1f}", f"{pct(s.latencies_ms, 99):.1f}", f"{pct(s.latencies_ms, 99.9):.1f}",
         f"{max(s.latencies_ms, default=float('nan')):.1f}", str(s.failed), s.load]
        for s in bench.steps
    ]  # fmt: skip
    breakdown = [
        [f"{s.offered:,.0f}", *(f"{pct(v, 50):.0f} / {pct(v, 99):.0f}" for v in s.segments.values())]
        for s in bench.steps
    ]
    segment_names = list(bench.steps[0].segments) if bench.steps else []
    batches = [b.row(phase) for phase, b in bench.batches]
    rss = [[s.name, f"{s.peak_kb / 1024:.0f}", str(s.starts)] for s in bench.services.values()]
    components = ("ticketing", "scheduler", "postgres", "kafka", "bench", "machine")
    cpu = [[d.name, *(f"{d.cpu.get(k, 0):.0f}" for k in components)] for d in bench.drains]
    e2e = next((d.rate for d in bench.drains if d.name == "end to end"), float("nan"))
    at_200 = next((pct(s.latencies_ms, 99) for s in bench.steps if s.offered == TARGET_P99_RATE), float("nan"))
    worst_rss = max(s.peak_kb for s in bench.services.values()) / 1024
    share = e2e / echo

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    targets = [
        (f"end to end >= {TARGET_E2E:,.0f} tickets/s", f"{e2e:,.0f}/s", verdict(e2e >= TARGET_E2E)),
        (f"end to end >= {TARGET_SHARE:.1%} of the echo ceiling", f"{share:.2%} of {echo:,.0f}/s",
         verdict(share >= TARGET_SHARE)),
        (f"stretch: end to end >= {STRETCH_SHARE:.0%} of the echo ceiling", f"{share:.2%}",
         verdict(share >= STRETCH_SHARE)),
        (f"p99 <= {TARGET_P99_MS:.0f} ms at {TARGET_P99_RATE:.0f} tickets/s", f"{at_200:.1f} ms",
         verdict(at_200 <= TARGET_P99_MS)),
        (f"peak RSS <= {TARGET_RSS_MB:.0f} MB per service", f"{worst_rss:.0f} MB (highest)",
         verdict(worst_rss <= TARGET_RSS_MB)),
    ]  # fmt: skip
    return Report(
        tables=[
            (
                "Throughput at saturation (a backlog drained)",
                [
                    "stage",
                    "tickets",
                    "first round (not timed)",
                    "seconds",
                    "tickets/s",
                    "ratio to echo",
                    "load avg before",
                ],
                throughput,
            ),
            (
                "Latency, acknowledged send -> SlotAssigned read back (ms)",
                [
                    "offered/s",
                    "sent/s",
                    "tickets",
                    "p50",
                    "p90",
                    "p99",
                    "p99.9",
                    "max",
                    "not assigned",
                    "load avg before",
                ],
                latency,
            ),
            (
                "Where the latency goes: p50 / p99 ms per segment, from the records' timestamps (ms resolution)",
                ["offered/s", *segment_names],
                breakdown,
            ),
            (
                "Consumer batches per phase (the services' glv_handler_batch_* and glv_scheduler_assignment_seconds)",
                ["phase", "service", "batches", "records/batch", "ms/batch", "ms/record", "assign ms/ticket"],
                batches,
            ),
            (
                "CPU during each drain (% of one core; the machine has "
                f"{os.cpu_count()} cores, 'machine' counts every process)",
                ["drain", "ticketing", "scheduler", "postgres (this run)", "kafka broker", "benchmark", "machine"],
                cpu,
            ),
            ("Peak RSS (VmHWM, highest over the service's restarts)", ["service", "MB", "starts"], rss),
        ],
        targets=targets,
    )


def print_report(bench: Bench, report: Report) -> None:
    say("")
    for title, headers, rows in report.tables:
        say(f"  {title}")
        for line in text_table(headers, rows):
            say("    " + line)
        say("")
    say("  Targets")
    for line in text_table(["target", "measured", "result"], report.targets):
        say("    " + line)
    if bench.profiles:
        say("")
        say("  Profiles (py-spy, 100 Hz, during the profiled drain)")
        for line in profile_text(bench.profiles):
            say("    " + line)


def write_markdown(bench: Bench, report: Report, path: Path, png: Path) -> None:
    s = bench.sizes
    lines = [
        f"# Pipeline benchmark: {bench.args.label}",
        "",
        f"- started {bench.started.isoformat(timespec='seconds')}, `benchmarks/pipeline_bench.py"
        f"{' --quick' if bench.args.quick else ''} --label {bench.args.label}"
        f"{' --profile' if bench.args.profile else ''}`",
        *(f"- {line}" for line in machine_facts()),
        f"- load average at the start {bench.load_start}, at the end {bench.load_end}",
        f"- catalog: {s.offices} offices x {s.officers} officers (every skill), open {OPEN_FROM:02d}:00-"
        f"{OPEN_UNTIL:02d}:00 every day, horizon {HORIZON_DAYS} d; backlogs of {s.backlog:,} tickets; echo "
        f"{s.echo:,} records; latency steps of {s.step_seconds:.0f} s; service log level {bench.args.log_level}",
        "",
    ]
    for title, headers, rows in report.tables:
        lines += [f"## {title}", "", *markdown_table(headers, rows), ""]
    lines += ["## Targets", "", *markdown_table(["target", "measured", "result"], report.targets), ""]
    if bench.profiles:
        lines += ["## Profiles", "", "```text", *profile_text(bench.profiles), "```", ""]
    lines += [f"![pipeline benchmark]({png.name})", ""]
    path.write_text("\n".join(lines))


def write_plot(bench: Bench, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    assert bench.echo is not None
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    rates = [s.offered for s in bench.steps]
    for q, marker in ((50, "o"), (90, "s"), (99, "^"), (99.9, "v")):
        left.plot(rates, [pct(s.latencies_ms, q) for s in bench.steps], marker=marker, label=f"p{q:g}")
    left.axhline(
        TARGET_P99_MS, color="grey", linestyle="--", linewidth=1, label=f"target p99 at {TARGET_P99_RATE:.0f}/s"
    )
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xticks(rates, labels=[f"{r:,.0f}" for r in rates])
    left.xaxis.set_minor_formatter(NullFormatter())
    left.set_xlabel("offered tickets/s")
    left.set_ylabel("ms, acknowledged send -> SlotAssigned read back")
    left.set_title("Latency against offered rate")
    left.legend()
    left.grid(True, which="both", alpha=0.3)
    names = ["echo ceiling", *(d.name for d in bench.drains)]
    values = [bench.echo.rate, *(d.rate for d in bench.drains)]
    bars = right.bar(names, values, color=["grey", *["tab:blue"] * len(bench.drains)])
    right.bar_label(bars, labels=[f"{v:,.0f}" for v in values])
    right.axhline(TARGET_E2E, color="tab:red", linestyle="--", linewidth=1, label=f"target {TARGET_E2E:,.0f}/s")
    right.axhline(
        TARGET_SHARE * bench.echo.rate,
        color="tab:orange",
        linestyle=":",
        linewidth=1,
        label=f"target {TARGET_SHARE:.1%} of the echo",
    )
    right.set_yscale("log")
    right.set_ylabel("records or tickets/s")
    right.set_title("Throughput at saturation")
    right.legend()
    figure.suptitle(
        f"GLV pipeline benchmark: {bench.args.label}, {git_commit(REPO)}, {bench.started:%Y-%m-%d},"
        f" load {bench.load_start}"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# ====================================================================== main


async def main_async(args: argparse.Namespace) -> int:
    sizes = QUICK if args.quick else FULL
    if args.backlog:
        sizes = Sizes(sizes.offices, sizes.officers, args.backlog, sizes.echo, sizes.step_seconds,
                      sizes.profile_backlog, sizes.warmup)  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    say("== Pipeline benchmark ==")
    for line in machine_facts():
        say("  " + line)
    bench = Bench(args, sizes)
    say(
        f"  started   : {bench.started.isoformat(timespec='seconds')}, load average {bench.load_start}, "
        f"mode {'quick' if args.quick else 'full'}, label {args.label}; namespace pbench-{bench.ns.run} "
        f"(databases glv_pbench_{bench.ns.run}_*, topics {bench.ns.prefix}*), logs in {bench.ns.workdir}"
    )
    if float(bench.load_start.split()[0]) > 0.5:
        say(f"  NOTE      : the machine is not idle (load average {bench.load_start}); the figures share it")
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    failed = True
    try:
        await bench.run()
        failed = False
    finally:
        note("removing this run's databases and topics")
        await drop_namespace(bench.ns)
        if failed:
            say(f"  the run failed; service logs kept in {bench.ns.workdir}")
        else:
            shutil.rmtree(bench.ns.workdir, ignore_errors=True)
        say(
            f"  removed databases glv_pbench_{bench.ns.run}_* and topics {bench.ns.prefix}*; "
            f"load average {load_average()}"
        )
    report = build_report(bench)
    print_report(bench, report)
    md, png = args.out / f"pipeline-{args.label}.md", args.out / f"pipeline-{args.label}.png"
    write_plot(bench, png)
    write_markdown(bench, report, md, png)
    if bench.profiles:
        (args.out / f"pipeline-{args.label}-profile.txt").write_text("\n".join(profile_text(bench.profiles)) + "\n")
    say(f"\n  wrote {md}, {png}" + (f" and the profiles in {args.out}" if bench.profiles else ""))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4,000-ticket backlogs, 8 s latency steps")
    parser.add_argument("--label", default="after", help="names the output files (e.g. before, after)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="output directory")
    parser.add_argument("--profile", action="store_true", help="py-spy both services during one more drain")
    parser.add_argument("--backlog", type=int, default=0, help="tickets per backlog (default 20,000; quick 4,000)")
    parser.add_argument("--log-level", default="INFO", help="the services' log level (default INFO, as deployed)")
    args = parser.parse_args()
    # What the in-process steps log (onboarding's migrations) goes to stderr: stdout holds the figures.
    configure_cli_logging("pipeline-bench", "WARNING")
    try:
        return asyncio.run(main_async(args))
    except (BenchError, asyncio.CancelledError, KeyboardInterrupt) as error:
        print(f"pipeline benchmark stopped: {error!r}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
