"""A stand-in for an outside receiver (a mail server, a gateway): it notes every
request it gets, with the idempotency key, on its own connection."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import asyncpg

from glv_runtime.jobs import Job, JobKind, JobRunner
from glv_runtime.migrate import apply_migrations
from glv_runtime.unit_of_work import Database, UnitOfWork
from glv_schemas.events import NotificationSent

RECEIVER_TABLE = "CREATE TABLE IF NOT EXISTS receiver (key text, attempt int, pid int, at timestamptz DEFAULT now())"


async def prepare(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await apply_migrations(conn, ["glv_runtime.migrations"])
        await conn.execute(RECEIVER_TABLE)
    finally:
        await conn.close()


def deliver_kind(url: str, *, block: asyncio.Event | None = None, timeout_s: float = 5.0, **options: Any) -> JobKind:
    """A job kind whose effect is noted by the receiver; `block` holds it until set."""

    async def perform(job: Job) -> dict[str, Any]:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(
                "INSERT INTO receiver (key, attempt, pid) VALUES ($1, $2, $3)", job.key, job.attempt, os.getpid()
            )
        finally:
            await conn.close()
        if block is not None:
            await block.wait()
        return {"receipt": f"r-{job.key}"}

    async def succeeded(uow: UnitOfWork, job: Job, result: dict[str, Any]) -> None:
        uow.publish(
            NotificationSent(
                ticket_id=job.payload["ticket_id"],
                notification_id=job.payload["notification_id"],
                channel="email",
                purpose="invitation",
                sent_at=job.payload["at"],
            ),
            key=job.payload["ticket_id"],
        )

    return JobKind("deliver", perform, succeeded, timeout_s=timeout_s, **options)


async def run_blocked_worker(url: str) -> None:
    """A worker whose effect never returns: the test kills it mid-effect."""
    pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
    db = Database(pool, source="/glv/test")
    runner = JobRunner(
        db, [deliver_kind(url, block=asyncio.Event(), timeout_s=3)], dsn=url, poll_interval_s=0.1, lease_margin_s=0
    )
    await runner.start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(run_blocked_worker(sys.argv[1]))
