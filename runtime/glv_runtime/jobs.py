"""Durable side-effect jobs and periodic tasks.

A handler decides and enqueues (`uow.enqueue(JobRequest(...))`) in its unit of
work. A runner claims due jobs with a lease (`FOR UPDATE SKIP LOCKED`), performs
the effect outside any transaction with a timeout, then records the outcome and
publishes its event in one unit of work. The record is fenced by the lease
token: a worker whose lease expired (it stalled, a successor took the job over)
cannot record over its successor, and its events are rolled back with it.
Retries back off exponentially with jitter up to `max_attempts`, then the job
fails for good and its `failed` callback publishes the failure event. A worker
killed mid-effect leaves a lease that expires; the job runs again with the same
idempotency key, so the receiver can recognise the repeat.

Periodic tasks (housekeeping, the scheduler's waitlist sweep) are rows of the
same table (kind ``periodic:<name>``): whichever replica claims the row runs the
task, so each period runs once per database however many replicas there are.

Why not PgQueuer: it enqueues transactionally and re-picks stuck jobs, but it
has no fencing token (a stalled worker's late result overwrites its successor's)
and records a job's outcome on its own connection, so the outcome and the event
it publishes cannot commit together through our outbox. Both are the guarantees
this module exists for; the rest is one table and three statements.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from prometheus_client import Counter, Gauge

from glv_runtime import jobs_store
from glv_runtime.errors import is_outage
from glv_runtime.jobs_store import Job, JobRequest, JsonObject
from glv_runtime.logs import get_logger
from glv_runtime.notifications import DsnOrConnect, listen
from glv_runtime.unit_of_work import Database, UnitOfWork

log = get_logger(__name__)

JOBS = Counter("glv_jobs_total", "Job attempts by outcome", ["kind", "outcome"])
JOBS_RUNNING = Gauge("glv_jobs_running", "Jobs this process is performing now")

__all__ = ["Job", "JobDeferred", "JobFailed", "JobKind", "JobRequest", "JobRunner", "Periodic"]


class JobFailed(Exception):
    """Raised by an effect. `permanent`: retrying cannot help (the receiver refused for good).
    `retry_after_s`: the receiver asked for a pause (e.g. HTTP 429 Retry-After)."""

    def __init__(self, reason: str, *, permanent: bool = False, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.retry_after_s = retry_after_s


class JobDeferred(Exception):
    """Raised by an effect that must not happen yet (a message held back by quiet hours):
    the job runs again after `delay_s`, and this attempt does not count as one."""

    def __init__(self, reason: str, *, delay_s: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay_s = max(0.0, delay_s)


async def _nothing(*_: object) -> None:
    return None


@dataclass(frozen=True)
class JobKind:
    """One kind of effect: how to perform it and what to record afterwards."""

    name: str
    perform: Callable[[Job], Awaitable[JsonObject]]
    succeeded: Callable[[UnitOfWork, Job, JsonObject], Awaitable[None]] = _nothing
    failed: Callable[[UnitOfWork, Job, str], Awaitable[None]] = _nothing
    timeout_s: float = 30.0
    # At most this many of this kind in flight in one process (None: the runner's limit). A
    # kind whose effect cannot be taken back (a message sent) may want 1: a process killed
    # between the receiver's acceptance and the recorded outcome then repeats at most one.
    concurrency: int | None = None
    # A long effect (a download of hours) holds a short lease and renews it every third of
    # it while it runs, so that a killed worker's job is taken over after about `lease_s`
    # rather than after `timeout_s`. None: the lease is the timeout (and a margin).
    lease_s: float | None = None
    max_attempts: int = 8
    backoff_base_s: float = 1.0
    backoff_max_s: float = 600.0

    def backoff(self, attempt: int) -> float:
        # Jitter (each wait between half and all of its ceiling): replicas retrying the same
        # receiver do not stampede it together.
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)

    def lease(self, margin_s: float) -> float:
        return self.lease_s if self.lease_s is not None else self.timeout_s + margin_s


@dataclass(frozen=True)
class Periodic:
    """Work that runs every `interval_s`, once per database; it opens its own units of work."""

    name: str
    interval_s: float
    run: Callable[[Database], Awaitable[None]]
    timeout_s: float = 300.0

    @property
    def kind(self) -> str:
        return f"periodic:{self.name}"


class _Fenced(Exception):
    """The lease was lost before the outcome could be recorded."""


class JobRunner:
    def __init__(
        self,
        db: Database,
        kinds: Sequence[JobKind] = (),
        periodic: Sequence[Periodic] = (),
        *,
        dsn: DsnOrConnect,
        poll_interval_s: float = 1.0,
        concurrency: int = 8,
        lease_margin_s: float = 10.0,
    ) -> None:
        self._db = db
        self._kinds = {k.name: k for k in kinds}
        self._periodic = {p.kind: p for p in periodic}
        self._dsn = dsn
        self._poll_interval_s = poll_interval_s
        self._slots = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency
        self._lease_margin_s = lease_margin_s
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._running: set[asyncio.Task[None]] = set()
        self._running_by_kind: collections.Counter[str] = collections.Counter()

    @property
    def kinds(self) -> list[str]:
        return [*self._kinds, *self._periodic]

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        if not self.kinds:
            return
        async with self._db.unit_of_work() as uow:
            # The first start registers each periodic task; later starts leave its schedule alone.
            uow.enqueue(*(JobRequest(kind=p.kind, key=p.name) for p in self._periodic.values()))
        self._tasks = [
            asyncio.create_task(self._loop(), name="job-runner"),
            asyncio.create_task(
                listen(self._dsn, "glv_job", self._wake, self._stopping, self._poll_interval_s), name="job-listen"
            ),
        ]

    async def stop(self, grace_s: float = 10.0) -> None:
        """Stop claiming; give effects in hand `grace_s`, then cancel them (their leases expire)."""
        self._stopping.set()
        self._wake.set()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._running:
            _, pending = await asyncio.wait(self._running, timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            # Cleared before claiming: a wake-up while claiming (a commit, a job done) is kept.
            self._wake.clear()
            try:
                claimed = await self.run_once()
            except Exception as exc:
                log.warning("job runner cannot claim", error=repr(exc), outage=is_outage(exc))
                claimed = 0
            if claimed:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_interval_s)

    async def run_once(self) -> int:
        """Claim what is due (as many as there are free slots) and start performing it."""
        free = self._concurrency - len(self._running)
        if free <= 0:
            return 0
        margin = self._lease_margin_s
        leases = {k.name: k.lease(margin) for k in self._kinds.values() if k.concurrency is None}
        leases |= {p.kind: p.timeout_s + margin for p in self._periodic.values()}
        async with self._db.pool.acquire() as conn:
            jobs = await jobs_store.claim_due(conn, leases, free) if leases else []
            for kind in self._kinds.values():
                if kind.concurrency is None:
                    continue
                room = min(free - len(jobs), kind.concurrency - self._running_by_kind[kind.name])
                if room > 0:
                    jobs += await jobs_store.claim_due(conn, {kind.name: kind.lease(margin)}, room)
        for job in jobs:
            task = asyncio.create_task(self._execute(job), name=f"job-{job.kind}-{job.id}")
            self._running.add(task)
            self._running_by_kind[job.kind] += 1
            task.add_done_callback(functools.partial(self._done, job.kind))
        return len(jobs)

    def _done(self, kind: str, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._running_by_kind[kind] -= 1
        # A slot is free: claim the next due job now rather than at the next poll.
        self._wake.set()

    async def _execute(self, job: Job) -> None:
        JOBS_RUNNING.inc()
        try:
            if job.kind in self._periodic:
                await self._run_periodic(self._periodic[job.kind], job)
            else:
                await self._run_effect(self._kinds[job.kind], job)
        except _Fenced:
            JOBS.labels(kind=job.kind, outcome="fenced").inc()
            log.warning("job lease lost before its outcome was recorded; outcome discarded", job_id=job.id)
        except Exception as exc:  # the outcome could not be recorded: the lease expires, the job runs again
            log.warning("job outcome not recorded, will run again", job_id=job.id, error=repr(exc))
        finally:
            JOBS_RUNNING.dec()

    async def _run_effect(self, kind: JobKind, job: Job) -> None:
        error: str
        retry_after: float | None = None
        permanent = False
        try:
            # Outside any transaction: no connection is held while the effect runs.
            result = await self._perform(kind, job)
        except JobDeferred as exc:
            async with self._db.unit_of_work() as uow:
                if not await jobs_store.retry_later(uow.conn, job, delay_s=exc.delay_s, error=exc.reason, uncount=True):
                    raise _Fenced from None
            JOBS.labels(kind=kind.name, outcome="deferred").inc()
            log.info("job deferred", job_id=job.id, delay_s=round(exc.delay_s, 2), reason=exc.reason)
            return
        except JobFailed as exc:
            error, permanent, retry_after = exc.reason, exc.permanent, exc.retry_after_s
        except _Fenced:
            raise
        except TimeoutError:
            error = f"timed out after {kind.timeout_s:g} s"
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:2000]
        else:
            async with self._db.unit_of_work() as uow:
                if not await jobs_store.finish(uow.conn, job, status="done", result=result, error=None):
                    raise _Fenced
                await kind.succeeded(uow, job, result)
            JOBS.labels(kind=kind.name, outcome="done").inc()
            return
        if not permanent and job.attempt < kind.max_attempts:
            delay = max(retry_after or 0.0, kind.backoff(job.attempt))
            async with self._db.unit_of_work() as uow:
                if not await jobs_store.retry_later(uow.conn, job, delay_s=delay, error=error):
                    raise _Fenced
            JOBS.labels(kind=kind.name, outcome="retry").inc()
            log.info("job failed, will retry", job_id=job.id, attempt=job.attempt, delay_s=round(delay, 2), error=error)
            return
        async with self._db.unit_of_work() as uow:
            if not await jobs_store.finish(uow.conn, job, status="failed", result=None, error=error):
                raise _Fenced
            await kind.failed(uow, job, error)
        JOBS.labels(kind=kind.name, outcome="failed").inc()
        log.warning("job failed for good", job_id=job.id, attempts=job.attempt, error=error)

    async def _perform(self, kind: JobKind, job: Job) -> JsonObject:
        effect = asyncio.wait_for(kind.perform(job), timeout=kind.timeout_s)
        if kind.lease_s is None:
            return await effect
        performing = asyncio.ensure_future(effect)
        loop = asyncio.get_running_loop()
        renewed_at = loop.time()
        try:
            while True:
                done, _ = await asyncio.wait({performing}, timeout=kind.lease_s / 3)
                if done:
                    return performing.result()
                try:
                    async with self._db.pool.acquire() as conn:
                        renewed = await jobs_store.renew_lease(conn, job, kind.lease_s)
                except Exception as exc:
                    # The database is away. Go on while the lease holds; stop before it can lapse,
                    # so that a successor never works on the same effect while this one still does.
                    log.warning("job lease not renewed", job_id=job.id, error=repr(exc))
                    if loop.time() - renewed_at < kind.lease_s * 2 / 3:
                        continue
                    raise _Fenced from None
                renewed_at = loop.time()
                if not renewed:  # a successor took the job over: stop doing its work
                    raise _Fenced
        finally:
            if not performing.done():
                performing.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await performing

    async def _run_periodic(self, task: Periodic, job: Job) -> None:
        try:
            await asyncio.wait_for(task.run(self._db), timeout=task.timeout_s)
            delay, error, outcome = task.interval_s, None, "done"
        except Exception as exc:  # next period (or sooner) tries again
            delay, error, outcome = min(task.interval_s, 30.0), repr(exc)[:2000], "retry"
            log.warning("periodic task failed", task=task.name, error=error)
        async with self._db.unit_of_work() as uow:
            if not await jobs_store.retry_later(uow.conn, job, delay_s=delay, error=error, reset=True):
                raise _Fenced
        JOBS.labels(kind=job.kind, outcome=outcome).inc()
