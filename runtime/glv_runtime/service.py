"""Start, run and stop a service: migrations, topics, restore, consumer, relay, jobs, HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from faststream.kafka import KafkaBroker
from starlette.routing import BaseRoute

from glv_runtime.access import topics_of_service
from glv_runtime.consumer import BatchProcessor, Delivery, Inbound, decode
from glv_runtime.fetch_guard import guarded_builder
from glv_runtime.http import build_http_app
from glv_runtime.jobs import JobKind, JobRunner, Periodic
from glv_runtime.jobs_store import purge_finished
from glv_runtime.kafka import KafkaSender, build_broker, ensure_topics
from glv_runtime.logs import configure_logging, get_logger
from glv_runtime.migrate import apply_migrations
from glv_runtime.outbox import OutboxRelay, purge_sent
from glv_runtime.progress import ConsumerProgress
from glv_runtime.restore import restore_topics
from glv_runtime.router import Router
from glv_runtime.settings import ServiceSettings
from glv_runtime.subscription import subscribe_batches
from glv_runtime.transport import check_transport
from glv_runtime.unit_of_work import Database, UnitOfWork, connector, create_pool
from glv_schemas import Topic, consumed_by
from glv_schemas.topics import subscription_pattern

log = get_logger(__name__)


@dataclass
class ServiceSpec:
    """What makes one service: its name, settings, schema, router, jobs and routes.

    The topics it consumes come from the registry (`consumed_by(name)`); the router
    must declare every event type on them as handled or ignored.
    """

    name: str
    settings: ServiceSettings
    migrations: list[str]
    router: Router[Any]
    decoder: Callable[[Delivery], Inbound] = decode
    # Topics read to their end on every start before anything else is consumed.
    restore_first: Sequence[Topic] = ()
    jobs: Sequence[JobKind] = ()
    # Job kinds that need the service's database (made once it is open).
    job_kinds: Callable[[Database], Sequence[JobKind]] = field(default=lambda _db: [])
    periodic: Sequence[Periodic] = ()
    routes: Callable[[Database], Sequence[BaseRoute]] = field(default=lambda _db: [])

    @property
    def source(self) -> str:
        return f"/glv/{self.name}"

    @property
    def consumes(self) -> tuple[Topic, ...]:
        return consumed_by(self.name)


class _HttpServer(uvicorn.Server):
    """uvicorn without its own signal handling: the service decides the shutdown order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def housekeeping(settings: ServiceSettings) -> Periodic:
    """Sent outbox rows, old inbox ids and finished jobs go, once per period per database."""

    async def run(db: Database) -> None:
        async with db.unit_of_work() as uow:
            await purge_sent(uow.conn, settings.outbox_retention_s, settings.inbox_retention_days)
            await purge_finished(uow.conn, settings.job_retention_s)

    return Periodic("housekeeping", settings.housekeeping_interval_s, run)


class RunningService:
    """A started service. `stop()` drains in-flight work before it returns."""

    def __init__(self, spec: ServiceSpec) -> None:
        self.spec = spec
        self.settings = spec.settings
        self.db: Database | None = None
        self.broker: KafkaBroker | None = None
        self.sender: KafkaSender | None = None
        self.relay: OutboxRelay | None = None
        self.jobs: JobRunner | None = None
        self.processor: BatchProcessor | None = None
        self.progress: ConsumerProgress | None = None
        self.http: uvicorn.Server | None = None
        self.consuming = False
        self._subscriber: Any = None
        self._http_task: asyncio.Task[None] | None = None

    @property
    def pool(self) -> Any:
        assert self.db is not None
        return self.db.pool

    async def start(self, *, http: bool = True) -> None:
        s = self.settings
        # Before anything is touched: what it consumes is declared, its transport allowed.
        self.spec.router.check(self.spec.consumes)
        check_transport(s)
        self.db = Database(await create_pool(s), source=self.spec.source)
        async with self.db.pool.acquire() as conn:
            await apply_migrations(conn, ["glv_runtime.migrations", *self.spec.migrations])
        await ensure_topics(s, topics_of_service(self.spec.name))

        self.sender = KafkaSender(s)
        await self.sender.start()
        self.relay = OutboxRelay(
            self.db.pool,
            self.sender,
            dsn=connector(s),
            poll_interval_s=s.relay_poll_interval_s,
            batch_size=s.relay_batch_size,
            batch_bytes=s.relay_batch_bytes,
        )
        self.relay.start()
        self.jobs = JobRunner(
            self.db,
            [*self.spec.jobs, *self.spec.job_kinds(self.db)],
            [housekeeping(s), *self.spec.periodic],
            dsn=connector(s),
            poll_interval_s=s.job_poll_interval_s,
            concurrency=s.job_concurrency,
        )
        relay, jobs = self.relay, self.jobs

        def wake(uow: UnitOfWork) -> None:
            if uow.wrote_outbox:
                relay.wake()
            if uow.wrote_jobs:
                jobs.wake()

        self.db.after_commit(wake)

        # HTTP first: /healthz answers while the service restores; /readyz says it is not ready yet.
        if http:
            await self._start_http()

        if self.spec.restore_first:
            await restore_topics(s, [s.topic_prefix + t.name for t in self.spec.restore_first], self._processor())
        self.processor = self._processor(crash_after_db_commit=s.crash_after_db_commit)
        self.broker = build_broker(s)
        consumes = self.spec.consumes
        self._subscriber = subscribe_batches(
            self.broker,
            [] if any(t.per_portal for t in consumes) else [s.topic_prefix + t.name for t in consumes],
            self.processor,
            s,
            group_id=s.consumer_group or f"glv-{self.spec.name}",
            # Portals' topics come and go with onboarding: one pattern reads them all.
            pattern=subscription_pattern(consumes, s.topic_prefix) if any(t.per_portal for t in consumes) else None,
        )
        # The guard wraps the consumer FastStream builds (connect() sets the builder,
        # start() uses it), so that no fetch happens unguarded.
        await self.broker.connect()
        broker_config = self.broker.config.broker_config
        broker_config.builder = guarded_builder(broker_config.builder)
        await self.broker.start()
        processor = self.processor
        self.progress = ConsumerProgress(
            lambda: processor.last_progress, lambda: getattr(self._subscriber, "consumer", None), s.stall_timeout_s
        )
        self.progress.start()
        await self.jobs.start()
        self.consuming = True
        log.info("service started", http_port=s.http_port if http else None)

    def _processor(self, *, crash_after_db_commit: bool = False) -> BatchProcessor:
        assert self.db is not None
        return BatchProcessor(
            self.db,
            self.spec.router.apply,
            service=self.spec.name,
            max_attempts=self.settings.max_attempts,
            retry_backoff_s=self.settings.retry_backoff_s,
            crash_after_db_commit=crash_after_db_commit,
            decoder=self.spec.decoder,
        )

    async def _start_http(self) -> None:
        s = self.settings
        assert self.db is not None
        app = build_http_app(
            {
                "database": self._db_ready,
                "broker": self._broker_ready,
                "consuming": self._consuming_ready,
            },
            self.spec.routes(self.db),
        )
        config = uvicorn.Config(app, host=s.http_host, port=s.http_port, log_config=None, access_log=False)
        self.http = _HttpServer(config)
        self._http_task = asyncio.create_task(self.http.serve(), name="http")
        # Fail the start, not later and silently, if the port cannot be bound.
        while not self.http.started:
            if self._http_task.done():
                await self.stop()
                raise RuntimeError(f"HTTP server could not start on {s.http_host}:{s.http_port}")
            await asyncio.sleep(0.01)

    async def _db_ready(self) -> bool:
        assert self.db is not None
        async with self.db.pool.acquire(timeout=2) as conn:
            return bool(await conn.fetchval("SELECT 1"))

    async def _broker_ready(self) -> bool:
        return self.broker is not None and bool(await asyncio.wait_for(self.broker.ping(timeout=2), timeout=3))

    async def _consuming_ready(self) -> bool:
        # Restored and subscribed, and not stuck with lag.
        return self.consuming and self.progress is not None and not self.progress.stalled

    async def stop(self) -> None:
        # Order matters: stop taking messages (in-flight batches finish and are
        # acked, up to graceful_timeout), let effects in hand finish, then let the
        # relay publish what they wrote, then close the rest. Every step is bounded:
        # what a step leaves undone is safe (unacked records are redelivered, unsent
        # outbox rows are published by the next start, leased jobs run again), and a
        # stop that never returns would keep a deployment from rolling.
        s = self.settings
        self.consuming = False
        if self.progress is not None:
            await self._bounded("progress watch", self.progress.stop(), 5)
        if self.broker is not None:
            await self._bounded("consumer", self.broker.stop(), s.graceful_timeout_s + 15)
        if self.jobs is not None:
            await self._bounded("job runner", self.jobs.stop(grace_s=s.graceful_timeout_s / 2), s.graceful_timeout_s)
        if self.relay is not None:
            await self._bounded("outbox relay", self.relay.stop(), s.graceful_timeout_s)
        if self.sender is not None:
            await self._bounded("producer", self.sender.stop(), 15)
        if self.http is not None and self._http_task is not None:
            self.http.should_exit = True
            with contextlib.suppress(asyncio.CancelledError, SystemExit):
                await self._bounded("http", self._http_task, 10)
        # Waits for connections still lent out; a stuck one must not hang the stop.
        if self.db is not None and not await self._bounded("database pool", self.db.pool.close(), 10):
            self.db.pool.terminate()
        log.info("service stopped")

    @staticmethod
    async def _bounded(step: str, work: Awaitable[Any], timeout_s: float) -> bool:
        """Await one stop step for at most `timeout_s`; False (and a warning) when it ran out."""
        try:
            await asyncio.wait_for(work, timeout=timeout_s)
        except TimeoutError:
            log.warning("stop step did not finish in time; went on without it", step=step, timeout_s=timeout_s)
            return False
        return True


async def run_until_signalled(spec: ServiceSpec) -> None:
    configure_logging(spec.name, spec.settings.log_level)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    service = RunningService(spec)
    await service.start()
    await stop.wait()
    log.info("signal received, draining")
    await service.stop()


async def run_command(
    settings: ServiceSettings, migrations: Sequence[str], source: str, work: Callable[[Database], Any]
) -> Any:
    """A CLI command's state change: migrations, one pool, `work(db)` (which opens its units
    of work), then what they wrote to the outbox published before returning (a running
    relay would too)."""
    check_transport(settings)
    pool = await create_pool(settings, min_size=1, max_size=2)
    db = Database(pool, source=source)
    published: list[bool] = []
    db.after_commit(lambda uow: published.append(uow.wrote_outbox))
    try:
        async with pool.acquire() as conn:
            await apply_migrations(conn, ["glv_runtime.migrations", *migrations])
        result = await work(db)
        if any(published):
            await flush_outbox(settings, db)
        return result
    finally:
        await pool.close()


async def flush_outbox(settings: ServiceSettings, db: Database) -> int:
    """Publish every pending outbox row now; returns how many this call published."""
    await ensure_topics(settings, topics_of_service(settings.service_name))
    sender = KafkaSender(settings)
    await sender.start()
    relay = OutboxRelay(
        db.pool, sender, dsn=connector(settings), poll_interval_s=0.2, batch_size=settings.relay_batch_size
    )
    published = 0
    try:
        while True:
            count, _ = await relay.publish_once()
            published += count
            pending = await db.fetchval("SELECT count(*) FROM glv_outbox WHERE sent_at IS NULL AND parked_at IS NULL")
            if count == 0 and not pending:
                return published
            if count == 0:
                await asyncio.sleep(0.2)  # another relay holds the lock; it is publishing them
    finally:
        await sender.stop()
