"""The `fetch-artifact` job: one artifact from the meeting platform into the object store,
encrypted as it streams, then recorded with its hash, size and wrapped data key.

The effect runs outside any transaction. Its object key is fixed per artifact and
generation, so an attempt that dies (a SIGKILL, a lost lease) is overwritten by the next
one, never left beside it; an attempt that fails a check aborts its upload, so nothing
half-written remains. The outcome and what it leads to are recorded in one unit of work.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from prometheus_client import Counter, Histogram

from glv_archive import store
from glv_archive.completeness import after_attempts, split_error
from glv_archive.fetch import FetchPolicy, FetchRefused, make_client, open_artifact
from glv_archive.keys import Keyring
from glv_archive.sessions import FETCH, advance, delete_blob_job
from glv_archive.settings import ArchiveSettings
from glv_archive.storage import ObjectStore
from glv_runtime.jobs import Job, JobFailed, JobKind
from glv_runtime.jobs_store import JsonObject
from glv_runtime.logs import get_logger
from glv_runtime.unit_of_work import Database, UnitOfWork

log = get_logger(__name__)

ARCHIVED_BYTES = Counter("glv_archive_bytes_total", "Plaintext bytes of artifacts fetched and stored", ["kind"])
TRANSFER_SECONDS = Histogram(
    "glv_archive_transfer_seconds",
    "Time to fetch, hash, encrypt and store one artifact",
    buckets=(1, 5, 15, 60, 300, 900, 3600, 10800),
)


def object_key(session_id: uuid.UUID, ended_at: datetime, object_id: uuid.UUID, kind: str) -> str:
    """Where an object lives in the store: by month, then session; ids only, no names."""
    return f"{ended_at:%Y/%m}/{session_id}/{object_id}.{kind}"


def stored_object(result: JsonObject) -> store.StoredObject:
    return store.StoredObject(
        object_id=uuid.UUID(result["object_id"]),
        session_id=uuid.UUID(result["session_id"]),
        kind=result["kind"],
        object_key=result["object_key"],
        storage_uri=result["storage_uri"],
        content_type=result["content_type"],
        size_bytes=result["size_bytes"],
        sha256=result["sha256"],
        stored_bytes=result["stored_bytes"],
        key_id=result["key_id"],
        wrapped_key=base64.b64decode(result["wrapped_key"]),
    )


class Transfers:
    def __init__(
        self,
        db: Database,
        settings: ArchiveSettings,
        keyring: Keyring,
        objects: ObjectStore,
        policy: FetchPolicy,
        clock: Callable[[], datetime],
    ) -> None:
        self._db = db
        self._settings = settings
        self._keyring = keyring
        self._objects = objects
        self._policy = policy
        self._clock = clock

    def kind(self) -> JobKind:
        s = self._settings
        return JobKind(
            name=FETCH,
            perform=self.perform,
            succeeded=self.succeeded,
            failed=self.failed,
            timeout_s=s.fetch_timeout_s,
            lease_s=s.fetch_lease_s,
            concurrency=s.fetch_concurrency,
            max_attempts=s.fetch_max_attempts,
            backoff_base_s=s.fetch_backoff_s,
            backoff_max_s=1800.0,
        )

    async def perform(self, job: Job) -> JsonObject:
        artifact_id = uuid.UUID(job.payload["artifact_id"])
        generation = int(job.payload["generation"])
        async with self._db.pool.acquire() as conn:
            artifact = await store.artifact(conn, artifact_id)
            session = await store.session(conn, artifact["session_id"]) if artifact is not None else None
        if artifact is None or session is None:
            return {"skipped": "unknown artifact"}
        if artifact["status"] != "pending" or artifact["generation"] != generation or artifact["url"] is None:
            return {"skipped": f"artifact is {artifact['status']}"}

        object_id = uuid.uuid5(artifact_id, f"object/{generation}")
        key = object_key(session["session_id"], session["ended_at"], object_id, artifact["kind"])
        data_key, wrapped = self._keyring.new_data_key(object_id)
        declared_size = artifact["declared_size"] or None  # 0: the platform did not say
        started = time.monotonic()
        try:
            async with (
                make_client(self._policy) as client,
                open_artifact(
                    client,
                    artifact["url"],
                    artifact["kind"],
                    self._policy,
                    expected_size=declared_size,
                    expected_sha256=artifact["declared_sha256"],
                ) as download,
            ):
                stored_bytes = await self._objects.store_encrypted(
                    key, download.chunks(), data_key.encryptor(object_id.bytes)
                )
        except FetchRefused as refused:
            raise JobFailed(
                f"{refused.reason}: {refused.detail}", permanent=refused.permanent, retry_after_s=refused.retry_after_s
            ) from None
        TRANSFER_SECONDS.observe(time.monotonic() - started)
        ARCHIVED_BYTES.labels(kind=artifact["kind"]).inc(download.size)
        log.info(
            "artifact stored",
            session_id=str(session["session_id"]),
            kind=artifact["kind"],
            size_bytes=download.size,
            stored_bytes=stored_bytes,
        )
        return {
            "object_id": str(object_id),
            "artifact_id": str(artifact_id),
            "session_id": str(session["session_id"]),
            "kind": artifact["kind"],
            "object_key": key,
            "storage_uri": self._objects.uri(key),
            "content_type": download.content_type,
            "size_bytes": download.size,
            "sha256": download.sha256,
            "stored_bytes": stored_bytes,
            "key_id": wrapped.key_id,
            "wrapped_key": base64.b64encode(wrapped.wrapped).decode(),
        }

    async def succeeded(self, uow: UnitOfWork, job: Job, result: JsonObject) -> None:
        if "skipped" in result:
            return
        obj = stored_object(result)
        session = await store.session(uow.conn, obj.session_id, lock=True)
        assert session is not None
        now = self._clock()
        await store.add_object(uow.conn, obj, retain_until=session["retain_until"], now=now)
        if not await store.artifact_stored(uow.conn, uuid.UUID(result["artifact_id"]), obj.object_id):
            # Erased while it was on its way: its key goes at once, the blob after.
            await store.shred(uow.conn, [obj.object_id], "erasure_request", now)
            uow.enqueue(delete_blob_job(obj.object_key))
            return
        await advance(uow, obj.session_id)

    async def failed(self, uow: UnitOfWork, job: Job, error: str) -> None:
        artifact_id = uuid.UUID(job.payload["artifact_id"])
        artifact = await store.artifact(uow.conn, artifact_id)
        if artifact is None:
            return
        now = self._clock()
        reason, detail = split_error(error)
        status = after_attempts(reason, past_give_up=now >= artifact["give_up_at"])
        next_check = now + timedelta(seconds=self._settings.late_recheck_s) if status == "late" else None
        if await store.artifact_not_stored(
            uow.conn, artifact_id, status=status, reason=reason, detail=detail, next_check_at=next_check
        ):
            log.warning(
                "artifact not archived",
                session_id=str(artifact["session_id"]),
                kind=artifact["kind"],
                reason=reason,
                status=status,
            )
            await advance(uow, artifact["session_id"])
