"""Start, run and stop a service: migrations, broker, relay, HTTP, signals."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import uvicorn
from faststream.kafka import KafkaBroker
from starlette.routing import BaseRoute

from glv_runtime.consumer import Applier, BatchProcessor, Delivery, Inbound, decode
from glv_runtime.http import build_http_app
from glv_runtime.kafka import KafkaSender, build_broker, ensure_topics
from glv_runtime.logs import configure_logging, get_logger
from glv_runtime.migrate import apply_migrations
from glv_runtime.outbox import OutboxRelay
from glv_runtime.settings import ServiceSettings
from glv_runtime.subscription import subscribe_batches
from glv_schemas import ALL_TOPICS, Topic

log = get_logger(__name__)


@dataclass
class ServiceSpec:
    """What makes one service: its name, settings, schema, topics, use case and routes."""

    name: str
    settings: ServiceSettings
    migrations: list[str]
    consumes: Sequence[Topic]
    apply: Applier
    decoder: Callable[[Delivery], Inbound] = decode
    # Long-running jobs besides consuming (e.g. a periodic sweep); cancelled at stop.
    background: Sequence[Callable[[asyncpg.Pool], Coroutine[Any, Any, None]]] = ()
    routes: Callable[[asyncpg.Pool], Sequence[BaseRoute]] = field(default=lambda _pool: [])


class _HttpServer(uvicorn.Server):
    """uvicorn without its own signal handling: the service decides the shutdown order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class RunningService:
    """A started service. `stop()` drains in-flight work before it returns."""

    def __init__(self, spec: ServiceSpec) -> None:
        self.spec = spec
        self.settings = spec.settings
        self.pool: asyncpg.Pool | None = None
        self.broker: KafkaBroker | None = None
        self.sender: KafkaSender | None = None
        self.relay: OutboxRelay | None = None
        self.http: uvicorn.Server | None = None
        self._http_task: asyncio.Task[None] | None = None
        self._background: list[asyncio.Task[None]] = []

    async def start(self, *, http: bool = True) -> None:
        s = self.settings
        self.pool = await asyncpg.create_pool(s.dsn(), min_size=s.db_pool_min, max_size=s.db_pool_max)
        async with self.pool.acquire() as conn:
            await apply_migrations(conn, ["glv_runtime.migrations", *self.spec.migrations])
        await ensure_topics(s, ALL_TOPICS)

        self.sender = KafkaSender(s)
        await self.sender.start()
        self.relay = OutboxRelay(
            self.pool,
            self.sender,
            dsn=s.dsn(),
            poll_interval_s=s.relay_poll_interval_s,
            batch_size=s.relay_batch_size,
            retention_s=s.outbox_retention_s,
            inbox_retention_days=s.inbox_retention_days,
        )
        self.relay.start()

        processor = BatchProcessor(
            self.pool,
            self.spec.apply,
            service=self.spec.name,
            max_attempts=s.max_attempts,
            retry_backoff_s=s.retry_backoff_s,
            crash_after_db_commit=s.crash_after_db_commit,
            decoder=self.spec.decoder,
        )
        self.broker = build_broker(s)
        subscribe_batches(
            self.broker,
            [s.topic_prefix + t.name for t in self.spec.consumes],
            processor,
            s,
            group_id=s.consumer_group or f"glv-{self.spec.name}",
        )
        await self.broker.start()
        self._background = [asyncio.create_task(job(self.pool)) for job in self.spec.background]

        if http:
            app = build_http_app(
                {"database": self._db_ready, "broker": self._broker_ready}, self.spec.routes(self.pool)
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
        log.info("service started", http_port=s.http_port if http else None)

    async def _db_ready(self) -> bool:
        assert self.pool is not None
        async with self.pool.acquire(timeout=2) as conn:
            return bool(await conn.fetchval("SELECT 1"))

    async def _broker_ready(self) -> bool:
        return self.broker is not None and bool(await asyncio.wait_for(self.broker.ping(timeout=2), timeout=3))

    async def stop(self) -> None:
        # Order matters: stop taking messages (in-flight batches finish and are
        # acked, up to graceful_timeout), then let the relay publish what they
        # wrote, then close the rest.
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.broker is not None:
            await self.broker.stop()
        if self.relay is not None:
            await self.relay.stop()
        if self.sender is not None:
            await self.sender.stop()
        if self.http is not None and self._http_task is not None:
            self.http.should_exit = True
            with contextlib.suppress(asyncio.CancelledError, SystemExit):
                await self._http_task
        if self.pool is not None:
            await self.pool.close()
        log.info("service stopped")


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
