"""Retention and erasure by crypto-shredding: an object's data key is destroyed in the
database (one commit, after which no copy of its blob can be read), and the blob itself is
deleted by a durable job after that commit. Each is recorded in the audit; each ticket whose
sessions lost objects is told with ArchiveErased."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from glv_archive import store
from glv_archive.sessions import DELETE_BLOB, delete_blob_job
from glv_archive.storage import ObjectStore
from glv_runtime.jobs import Job, JobKind, Periodic
from glv_runtime.jobs_store import JsonObject
from glv_runtime.logs import get_logger
from glv_runtime.unit_of_work import Database, UnitOfWork
from glv_schemas import events as ev

log = get_logger(__name__)

Cause = Literal["erasure_request", "retention"]
PURGE_BATCH = 500


@dataclass
class ErasureReport:
    request_id: str
    portal_id: str
    stakeholder_ref: str
    tickets: int = 0
    sessions: list[str] = field(default_factory=list)
    objects: int = 0
    bytes: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    repeated: bool = False

    def counts(self) -> dict[str, Any]:
        return {"tickets": self.tickets, "sessions": len(self.sessions), "objects": self.objects, "bytes": self.bytes}


async def _shred_sessions(
    uow: UnitOfWork, sessions: Sequence[Any], cause: Cause, actor: str, request_id: uuid.UUID | None, now: datetime
) -> list[Any]:
    """Shred every live object of these sessions, erase their artifacts, tell each ticket."""
    session_ids = [s["session_id"] for s in sessions]
    objects = await uow.conn.fetch(
        "SELECT object_id FROM archive_object WHERE session_id = ANY($1::uuid[]) AND shredded_at IS NULL",
        session_ids,
    )
    shredded = await store.shred(uow.conn, [o["object_id"] for o in objects], cause, now)
    await uow.conn.execute(
        "UPDATE archive_artifact SET status = 'erased', url = NULL WHERE session_id = ANY($1::uuid[])", session_ids
    )
    # Who attended goes with the recordings; ids, times and hashes stay as the record of what was erased.
    await uow.conn.execute(
        "UPDATE archive_session SET status = 'erased', attendance = '[]'::jsonb WHERE session_id = ANY($1::uuid[])",
        session_ids,
    )
    uow.enqueue(*(delete_blob_job(o["object_key"]) for o in shredded))
    await store.audit_many(uow.conn, [(cause, "done", actor, o["object_id"], o["session_id"]) for o in shredded])
    per_ticket: dict[uuid.UUID, list[Any]] = defaultdict(list)
    objects_of: dict[uuid.UUID, int] = defaultdict(int)
    for o in shredded:
        objects_of[o["session_id"]] += 1
    for s in sessions:
        per_ticket[s["ticket_id"]].append(s)
    for ticket_id, ticket_sessions in per_ticket.items():
        uow.publish(
            ev.ArchiveErased(
                ticket_id=ticket_id,
                request_id=request_id,
                cause=cause,
                sessions=len(ticket_sessions),
                objects=sum(objects_of[s["session_id"]] for s in ticket_sessions),
                erased_at=now,
            ),
            key=str(ticket_id),
        )
    return list(shredded)


async def erase_stakeholder(
    uow: UnitOfWork,
    portal_id: str,
    stakeholder_ref: str,
    request_id: uuid.UUID,
    source: Literal["event", "command"],
    requested_at: datetime,
    now: datetime,
) -> ErasureReport:
    """Erase every archived session of one portal's stakeholder; the same request twice
    erases once and reports the first time's result."""
    done = await uow.conn.fetchrow("SELECT report FROM archive_erasure WHERE request_id = $1", request_id)
    if done is not None:
        return ErasureReport(**{**json.loads(done["report"]), "repeated": True})
    sessions = await uow.conn.fetch(
        "SELECT s.session_id, s.ticket_id FROM archive_session s JOIN archive_ticket t USING (ticket_id)"
        " WHERE t.portal_id = $1 AND t.stakeholder_ref = $2 ORDER BY s.started_at FOR UPDATE OF s",
        portal_id,
        stakeholder_ref,
    )
    report = ErasureReport(str(request_id), portal_id, stakeholder_ref)
    report.tickets = len({s["ticket_id"] for s in sessions})
    report.sessions = [str(s["session_id"]) for s in sessions]
    if sessions:
        actor = f"erasure:{source}"
        shredded = await _shred_sessions(uow, sessions, "erasure_request", actor, request_id, now)
        report.objects = len(shredded)
        report.bytes = sum(o["size_bytes"] for o in shredded)
        for o in shredded:
            report.by_kind[o["kind"]] = report.by_kind.get(o["kind"], 0) + 1
    await uow.conn.execute(
        "INSERT INTO archive_erasure (request_id, portal_id, stakeholder_ref, source, requested_at, done_at, report)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)",
        request_id,
        portal_id,
        stakeholder_ref,
        source,
        requested_at,
        now,
        json.dumps(asdict(report)),
    )
    await store.audit(
        uow.conn,
        action="erasure_request",
        outcome="done",
        actor=f"erasure:{source}",
        reason=None,
        detail={"request_id": str(request_id), **report.counts()},
    )
    return report


async def purge_due(db: Database, now: datetime) -> int:
    """Shred what is past its retain-until (a batch per unit of work); the number shredded."""
    total = 0
    while True:
        async with db.unit_of_work() as uow:
            sessions = await uow.conn.fetch(
                "SELECT DISTINCT s.session_id, s.ticket_id FROM archive_session s"
                " JOIN archive_object o ON o.session_id = s.session_id"
                " WHERE o.shredded_at IS NULL AND o.retain_until <= $1 LIMIT $2",
                now,
                PURGE_BATCH,
            )
            if not sessions:
                return total
            locked = await uow.conn.fetch(
                "SELECT session_id, ticket_id FROM archive_session WHERE session_id = ANY($1::uuid[])"
                " FOR UPDATE SKIP LOCKED",
                [s["session_id"] for s in sessions],
            )
            if not locked:
                return total
            total += len(await _shred_sessions(uow, locked, "retention", "purge", None, now))


def purge(interval_s: float, clock: Callable[[], datetime]) -> Periodic:
    async def run(db: Database) -> None:
        shredded = await purge_due(db, clock())
        if shredded:
            log.info("retention purge: data keys destroyed", objects=shredded)

    return Periodic("purge", interval_s, run)


class BlobDeletion:
    """The `delete-blob` job: the blob of a shredded object leaves the store (a blob already
    gone counts as deleted), then its row and the audit say so."""

    def __init__(self, objects: ObjectStore, clock: Callable[[], datetime]) -> None:
        self._objects = objects
        self._clock = clock

    def kind(self) -> JobKind:
        return JobKind(name=DELETE_BLOB, perform=self.perform, succeeded=self.succeeded, timeout_s=120.0)

    async def perform(self, job: Job) -> JsonObject:
        existed = await self._objects.delete(job.payload["object_key"])
        return {"existed": existed}

    async def succeeded(self, uow: UnitOfWork, job: Job, result: JsonObject) -> None:
        key = job.payload["object_key"]
        await store.blob_deleted(uow.conn, key, self._clock())
        row = await uow.conn.fetchrow("SELECT object_id, session_id FROM archive_object WHERE object_key = $1", key)
        await store.audit(
            uow.conn,
            action="blob_deleted",
            outcome="done",
            actor="archive",
            object_id=row["object_id"] if row else None,
            session_id=row["session_id"] if row else None,
            detail={"existed": bool(result.get("existed"))},
        )
