"""Durable side-effect jobs on the real PostgreSQL: once, with the same key, fenced."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from glv_runtime.jobs import JOBS, Job, JobFailed, JobKind, JobRequest, JobRunner, Periodic
from glv_runtime.unit_of_work import Database, UnitOfWork
from tests.jobs.receiver import deliver_kind, prepare


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    await prepare(database_url)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=8)
    yield Database(pool, source="/glv/test")
    await pool.close()


def request(key: str) -> JobRequest:
    payload = {
        "ticket_id": str(uuid.uuid4()),
        "notification_id": str(uuid.uuid4()),
        "at": datetime.now(UTC).isoformat(),
    }
    return JobRequest(kind="deliver", key=key, payload=payload)


async def until(condition: Any, timeout_s: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def job_status(db: Database, key: str) -> str:
    return str(await db.fetchval("SELECT status FROM glv_job WHERE idempotency_key = $1", key))


async def test_enqueued_in_a_rolled_back_unit_of_work_is_never_performed(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.unit_of_work() as uow:
            uow.enqueue(request("lost"))
            raise RuntimeError("the decision is rolled back")
    async with db.unit_of_work() as uow:
        uow.enqueue(request("kept"), request("kept"))  # the same key twice is one job
    assert await db.fetchval("SELECT count(*) FROM glv_job") == 1


async def test_two_workers_never_run_one_job(db: Database, database_url: str) -> None:
    keys = [f"k{n}" for n in range(60)]
    async with db.unit_of_work() as uow:
        uow.enqueue(*(request(k) for k in keys))
    runners = [
        JobRunner(db, [deliver_kind(database_url)], dsn=database_url, poll_interval_s=0.05, concurrency=4)
        for _ in range(2)
    ]
    for runner in runners:
        await runner.start()
    try:
        await until(lambda: db.fetchval("SELECT count(*) = 60 FROM glv_job WHERE status = 'done'"))
    finally:
        for runner in runners:
            await runner.stop()
    performed = await db.pool.fetch("SELECT key, count(*) AS n FROM receiver GROUP BY key")
    assert sorted(r["key"] for r in performed) == sorted(keys)
    assert {r["n"] for r in performed} == {1}
    # Each outcome published its event once, in the same transaction that recorded it.
    assert await db.fetchval("SELECT count(*) FROM glv_outbox WHERE topic = 'glv.notifier.events'") == 60


async def test_a_worker_killed_mid_effect_is_retried_with_the_same_key(db: Database, database_url: str) -> None:
    async with db.unit_of_work() as uow:
        uow.enqueue(request("killed"))
    child = subprocess.Popen([sys.executable, "-m", "tests.jobs.receiver", database_url])
    try:
        await until(lambda: db.fetchval("SELECT count(*) = 1 FROM receiver"))
        child.kill()  # SIGKILL in the middle of the effect
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
    assert await job_status(db, "killed") == "running"  # leased to a dead worker
    runner = JobRunner(db, [deliver_kind(database_url)], dsn=database_url, poll_interval_s=0.1)
    await runner.start()
    try:
        await until(lambda: db.fetchval("SELECT status = 'done' FROM glv_job"))  # after the lease expired
    finally:
        await runner.stop()
    rows = await db.pool.fetch("SELECT key, attempt, pid FROM receiver ORDER BY at")
    assert [(r["key"], r["attempt"]) for r in rows] == [("killed", 1), ("killed", 2)]
    assert rows[0]["pid"] == child.pid and rows[1]["pid"] != child.pid


async def test_a_stuck_effect_times_out_and_fails_for_good_with_an_event(db: Database, database_url: str) -> None:
    calls: list[int] = []

    async def stuck(job: Job) -> dict[str, Any]:
        calls.append(job.attempt)
        await asyncio.Event().wait()  # never answers
        return {}

    async def failed(uow: UnitOfWork, job: Job, error: str) -> None:
        await uow.conn.execute("CREATE TABLE IF NOT EXISTS failures (key text, error text)")
        await uow.conn.execute("INSERT INTO failures VALUES ($1, $2)", job.key, error)

    kind = JobKind("deliver", stuck, failed=failed, timeout_s=0.2, max_attempts=3, backoff_base_s=0.05)
    async with db.unit_of_work() as uow:
        uow.enqueue(request("stuck"))
    runner = JobRunner(db, [kind], dsn=database_url, poll_interval_s=0.05)
    await runner.start()
    try:
        await until(lambda: _is(db, "stuck", "failed"))
    finally:
        await runner.stop()
    assert calls == [1, 2, 3]
    row = await db.pool.fetchrow("SELECT key, error FROM failures")
    assert row is not None and row["key"] == "stuck" and "timed out" in row["error"]


async def _is(db: Database, key: str, status: str) -> bool:
    return await job_status(db, key) == status


async def test_a_permanent_refusal_is_not_retried(db: Database, database_url: str) -> None:
    async def refused(job: Job) -> dict[str, Any]:
        raise JobFailed("mailbox does not exist", permanent=True)

    async with db.unit_of_work() as uow:
        uow.enqueue(request("refused"))
    runner = JobRunner(db, [JobKind("deliver", refused)], dsn=database_url, poll_interval_s=0.05)
    await runner.start()
    try:
        await until(lambda: _is(db, "refused", "failed"))
    finally:
        await runner.stop()
    row = await db.pool.fetchrow("SELECT attempts, last_error FROM glv_job")
    assert row is not None and row["attempts"] == 1 and row["last_error"] == "mailbox does not exist"


async def test_a_fenced_worker_cannot_record_over_its_successor(db: Database, database_url: str) -> None:
    release_first = asyncio.Event()
    first = JobRunner(db, [deliver_kind(database_url, block=release_first)], dsn=database_url, poll_interval_s=0.05)
    async with db.unit_of_work() as uow:
        uow.enqueue(request("fenced"))
    await first.start()
    try:
        await until(lambda: db.fetchval("SELECT count(*) = 1 FROM receiver"))
        # The first worker stalls past its lease (as after a long GC pause or a frozen VM).
        await db.pool.execute("UPDATE glv_job SET lease_until = now() - interval '1 second'")
        second = JobRunner(db, [deliver_kind(database_url)], dsn=database_url, poll_interval_s=0.05)
        await second.start()
        try:
            await until(lambda: _is(db, "fenced", "done"))
        finally:
            await second.stop()
        successors_result = await db.fetchval("SELECT result FROM glv_job")
        fenced_before = JOBS.labels(kind="deliver", outcome="fenced")._value.get()
        release_first.set()  # the stalled worker wakes up and tries to record its outcome
        await first.stop(grace_s=5)  # waits for it
        assert JOBS.labels(kind="deliver", outcome="fenced")._value.get() == fenced_before + 1
    finally:
        release_first.set()
    assert json.loads(await db.fetchval("SELECT result FROM glv_job")) == json.loads(successors_result)
    attempts = await db.fetchval("SELECT attempts FROM glv_job")
    assert attempts == 2
    # Only the successor's outcome published its event.
    assert await db.fetchval("SELECT count(*) FROM glv_outbox WHERE topic = 'glv.notifier.events'") == 1


async def test_a_periodic_task_runs_once_per_period_with_two_runners(db: Database, database_url: str) -> None:
    runs: list[float] = []

    async def tick(_: Database) -> None:
        runs.append(asyncio.get_running_loop().time())

    runners = [
        JobRunner(db, periodic=[Periodic("tick", 0.5, tick)], dsn=database_url, poll_interval_s=0.05) for _ in range(2)
    ]
    for runner in runners:
        await runner.start()
    try:
        await until(lambda: _enough(runs, 4))
    finally:
        for runner in runners:
            await runner.stop()
    gaps = [later - earlier for earlier, later in itertools.pairwise(runs)]
    assert all(gap >= 0.45 for gap in gaps), gaps  # never two runs in one period
    assert await db.fetchval("SELECT count(*) FROM glv_job WHERE kind = 'periodic:tick'") == 1


async def _enough(runs: list[float], count: int) -> bool:
    return len(runs) >= count


async def test_a_long_effect_keeps_its_short_lease_and_runs_once(db: Database, database_url: str) -> None:
    """A download of hours holds a lease of seconds, renewed while it runs: a second runner
    never takes it over, and a killed worker's job would be taken over within the lease."""
    started: list[str] = []

    async def perform(job: Job) -> dict[str, Any]:
        started.append(job.key)
        await asyncio.sleep(3.0)  # ten lease periods
        return {}

    kind = JobKind(name="long", perform=perform, timeout_s=60.0, lease_s=0.3)
    async with db.unit_of_work() as uow:
        uow.enqueue(JobRequest(kind="long", key="the-one"))
    runners = [JobRunner(db, [kind], dsn=database_url, poll_interval_s=0.05) for _ in range(2)]
    for runner in runners:
        await runner.start()
    try:
        await until(lambda: _is(db, "the-one", "done"))
    finally:
        for runner in runners:
            await runner.stop()
    assert started == ["the-one"]
    assert await db.fetchval("SELECT attempts FROM glv_job WHERE idempotency_key = 'the-one'") == 1
