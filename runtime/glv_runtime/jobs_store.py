"""The jobs table's queries: enqueue (inside a unit of work), claim, record.

Kept apart from the runner (`jobs.py`) so that the unit of work can enqueue
without importing the runner.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from glv_runtime.db import DbConnection

JsonObject = dict[str, Any]


@dataclass(frozen=True)
class JobRequest:
    """An effect to perform once, after the transaction that decided it commits.

    `key` is the idempotency key: enqueueing the same (kind, key) twice is one job,
    and every attempt of it hands the same key to the receiver.
    """

    kind: str
    key: str
    payload: JsonObject = field(default_factory=dict)
    run_at: datetime | None = None


@dataclass(frozen=True)
class Job:
    """A claimed job: the lease token fences a late worker out."""

    id: int
    kind: str
    key: str
    payload: JsonObject
    attempt: int
    lease_token: uuid.UUID


async def write_jobs(conn: DbConnection, jobs: Sequence[JobRequest]) -> None:
    if not jobs:
        return
    await conn.execute(
        "INSERT INTO glv_job (kind, idempotency_key, payload, run_at)"
        " SELECT k, i, p, coalesce(r, now()) FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::timestamptz[])"
        " AS t(k, i, p, r) ON CONFLICT (kind, idempotency_key) DO NOTHING",
        [j.kind for j in jobs],
        [j.key for j in jobs],
        [json.dumps(j.payload) for j in jobs],
        [j.run_at for j in jobs],
    )


async def claim_due(conn: DbConnection, leases: dict[str, float], limit: int) -> list[Job]:
    """Lease due jobs (and jobs whose lease expired: their worker died) to this worker.

    Each kind has its own lease (its timeout and a margin), so that a killed worker's
    short job runs again soon after, whatever other kinds this process runs."""
    rows = await conn.fetch(
        "UPDATE glv_job j SET status = 'running', attempts = j.attempts + 1, lease_token = gen_random_uuid(),"
        "  lease_until = now() + make_interval(secs => k.lease)"
        " FROM (SELECT id FROM glv_job"
        "       WHERE kind = ANY($1::text[]) AND ((status = 'pending' AND run_at <= now())"
        "          OR (status = 'running' AND lease_until < now()))"
        "       ORDER BY run_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) due,"
        "      unnest($1::text[], $2::float8[]) AS k(kind, lease)"
        " WHERE j.id = due.id AND j.kind = k.kind"
        " RETURNING j.id, j.kind, j.idempotency_key, j.payload, j.attempts, j.lease_token",
        list(leases),
        list(leases.values()),
        limit,
    )
    return [
        Job(
            id=r["id"],
            kind=r["kind"],
            key=r["idempotency_key"],
            payload=json.loads(r["payload"]),
            attempt=r["attempts"],
            lease_token=r["lease_token"],
        )
        for r in rows
    ]


async def finish(conn: DbConnection, job: Job, *, status: str, result: JsonObject | None, error: str | None) -> bool:
    """Record a final outcome; False when the lease was lost (a successor owns the job)."""
    done = await conn.fetchval(
        "UPDATE glv_job SET status = $3, result = $4::jsonb, last_error = $5, finished_at = now(),"
        "  lease_token = NULL, lease_until = NULL"
        " WHERE id = $1 AND lease_token = $2 AND status = 'running' RETURNING true",
        job.id,
        job.lease_token,
        status,
        json.dumps(result) if result is not None else None,
        error,
    )
    return bool(done)


async def renew_lease(conn: DbConnection, job: Job, lease_s: float) -> bool:
    """Extend a running job's lease; False when it was lost (a successor owns the job)."""
    done = await conn.fetchval(
        "UPDATE glv_job SET lease_until = now() + make_interval(secs => $3)"
        " WHERE id = $1 AND lease_token = $2 AND status = 'running' RETURNING true",
        job.id,
        job.lease_token,
        lease_s,
    )
    return bool(done)


async def retry_later(
    conn: DbConnection,
    job: Job,
    *,
    delay_s: float,
    error: str | None,
    reset: bool = False,
    uncount: bool = False,
) -> bool:
    """Put the job back for another attempt after `delay_s`; False when fenced out.
    `reset`: its attempts start again from zero (periodic tasks); `uncount`: this attempt
    does not count (a deferral)."""
    done = await conn.fetchval(
        "UPDATE glv_job SET status = 'pending', run_at = now() + make_interval(secs => $3), last_error = $4,"
        "  attempts = CASE WHEN $5 THEN 0 WHEN $6 THEN greatest(attempts - 1, 0) ELSE attempts END,"
        "  lease_token = NULL, lease_until = NULL"
        " WHERE id = $1 AND lease_token = $2 AND status = 'running' RETURNING true",
        job.id,
        job.lease_token,
        delay_s,
        error,
        reset,
        uncount,
    )
    return bool(done)


async def purge_finished(conn: DbConnection, older_than_s: float) -> int:
    removed: str = await conn.execute(
        "DELETE FROM glv_job WHERE finished_at < now() - make_interval(secs => $1) AND kind NOT LIKE 'periodic:%'",
        older_than_s,
    )
    return int(removed.rsplit(maxsplit=1)[-1])
