"""A session's jobs, and `advance`, which decides, under the session's row lock, when a session's record is
written and what is told about it (RecordingArchived once complete, ArchiveFailed once per
change while it is not)."""

from __future__ import annotations

import uuid

from glv_archive import store
from glv_archive.completeness import ArtifactState, retryable, verdict
from glv_runtime.jobs import JobRequest
from glv_runtime.unit_of_work import UnitOfWork

FETCH = "fetch-artifact"
RECORD = "write-record"
DELETE_BLOB = "delete-blob"


def fetch_job(artifact_id: uuid.UUID, generation: int) -> JobRequest:
    """One transfer of one artifact: a re-check of a late artifact is a new generation."""
    return JobRequest(FETCH, f"{artifact_id}/{generation}", {"artifact_id": str(artifact_id), "generation": generation})


def record_job(session_id: uuid.UUID, stored: int) -> JobRequest:
    """The session record, written again when more artifacts (a late chat) have arrived."""
    return JobRequest(RECORD, f"{session_id}/{stored}", {"session_id": str(session_id), "stored": stored})


def delete_blob_job(object_key: str) -> JobRequest:
    return JobRequest(DELETE_BLOB, object_key, {"object_key": object_key})


async def advance(uow: UnitOfWork, session_id: uuid.UUID) -> None:
    """Once no transfer is on, (re)write the session record; its job tells the outcome."""
    row = await store.session(uow.conn, session_id, lock=True)
    if row is None or row["status"] in ("recording", "erased"):
        return  # the record job in hand looks again when it finishes
    states = await store.artifact_states(uow.conn, session_id)
    outcome = verdict(states)
    stored = sum(s.status == "stored" for s in states)
    if outcome == "waiting" or (row["recorded_with"] == stored and row["told"] == to_tell(states)):
        return
    await store.set_session_status(uow.conn, session_id, "recording")
    uow.enqueue(record_job(session_id, stored))


def to_tell(states: list[ArtifactState]) -> str:
    """What a session in this state has to have told: archived, or failed (still trying or not)."""
    outcome = verdict(states)
    if outcome == "complete":
        return "archived"
    return "failed_retrying" if retryable(states) else "failed"
