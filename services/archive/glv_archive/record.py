"""The `write-record` job: a readable record of one session (who, when, office, service,
officer, what was archived, and the chat rendered), stored encrypted beside the recordings.
When it is recorded, the session's outcome is told: RecordingArchived once complete,
ArchiveFailed (v2, naming each missing or corrupt artifact) once per change while not.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2

from glv_archive import store
from glv_archive.completeness import problems, retryable, verdict
from glv_archive.keys import Keyring, KeyUnavailable, WrappedKey
from glv_archive.sessions import RECORD, advance, delete_blob_job, to_tell
from glv_archive.storage import ObjectStore
from glv_archive.transfer import object_key, stored_object
from glv_runtime.jobs import Job, JobFailed, JobKind
from glv_runtime.jobs_store import JsonObject
from glv_runtime.logs import get_logger
from glv_runtime.unit_of_work import Database, UnitOfWork
from glv_schemas import events as ev

log = get_logger(__name__)

RECORD_TYPE = "text/html; charset=utf-8"
# A chat log larger than this is archived but not rendered into the record (which says so).
CHAT_RENDER_LIMIT = 16 * 1024 * 1024
# How long a record waits for the slot's and ticket's facts (other topics, maybe behind).
FACTS_ATTEMPTS = 6

_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,  # chat text is the participants' own words
    undefined=jinja2.StrictUndefined,
)


def _read_chat(objects: ObjectStore, row: Any, keyring: Keyring) -> bytes | None:
    """The chat log's plaintext, or None when it is too large to render (runs in a thread)."""
    data_key = keyring.unwrap(row["object_id"], WrappedKey(row["key_id"], bytes(row["wrapped_key"])))
    parts: list[bytes] = []
    size = 0
    for chunk in objects.open_decrypted(row["object_key"], data_key, row["object_id"].bytes):
        size += len(chunk)
        if size > CHAT_RENDER_LIMIT:
            return None
        parts.append(chunk)
    return b"".join(parts)


def chat_lines(content_type: str, body: bytes) -> list[dict[str, str]]:
    """The platform's chat log as lines to render: its JSON ({"messages": [...]}) or plain text."""
    if content_type.startswith("application/json"):
        try:
            document = json.loads(body)
        except ValueError:
            return [{"at": "", "name": "", "role": "", "text": body.decode("utf-8", "replace")}]
        messages = document.get("messages", []) if isinstance(document, dict) else []
        return [
            {
                "at": str(m.get("at", "")),
                "name": str(m.get("name") or m.get("participant_ref") or ""),
                "role": str(m.get("role", "")),
                "text": str(m.get("text", "")),
            }
            for m in messages
            if isinstance(m, dict)
        ]
    return [{"at": "", "name": "", "role": "", "text": line} for line in body.decode("utf-8", "replace").splitlines()]


def _local(moment: datetime, zone: str | None) -> str:
    if zone is None:
        return moment.strftime("%Y-%m-%d %H:%M UTC")
    return moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z")


def _local_text(moment: str, zone: str | None) -> str:
    """A chat line's time in the office's zone like the rest of the record (as given if unparsable)."""
    try:
        parsed = datetime.fromisoformat(moment)
    except ValueError:
        return moment
    if parsed.tzinfo is None:
        return moment
    local = parsed if zone is None else parsed.astimezone(ZoneInfo(zone))
    return local.strftime("%H:%M:%S %Z" if zone else "%H:%M:%S UTC")


def render(facts: dict[str, Any]) -> str:
    return _TEMPLATES.get_template("record.html").render(**facts)


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


class Records:
    def __init__(self, db: Database, keyring: Keyring, objects: ObjectStore, clock: Callable[[], datetime]) -> None:
        self._db = db
        self._keyring = keyring
        self._objects = objects
        self._clock = clock

    def kind(self) -> JobKind:
        return JobKind(
            name=RECORD,
            perform=self.perform,
            succeeded=self.succeeded,
            timeout_s=300.0,
            max_attempts=12,
            backoff_base_s=2.0,
            backoff_max_s=300.0,
        )

    async def perform(self, job: Job) -> JsonObject:
        session_id = uuid.UUID(job.payload["session_id"])
        async with self._db.pool.acquire() as conn:
            session = await store.session(conn, session_id)
            if session is None or session["status"] == "erased":
                return {"skipped": "no session"}
            slot = await conn.fetchrow("SELECT * FROM archive_slot WHERE slot_id = $1", session["slot_id"])
            ticket = await conn.fetchrow("SELECT * FROM archive_ticket WHERE ticket_id = $1", session["ticket_id"])
            office = await conn.fetchrow("SELECT * FROM archive_office WHERE office_code = $1", session["office_code"])
            artifacts = await conn.fetch(
                "SELECT a.kind, a.status, a.reason, a.detail, o.object_id, o.object_key, o.content_type, o.size_bytes,"
                " o.sha256, o.key_id, o.wrapped_key FROM archive_artifact a"
                " LEFT JOIN archive_object o ON o.object_id = a.object_id AND o.shredded_at IS NULL"
                " WHERE a.session_id = $1 ORDER BY a.position",
                session_id,
            )
        if (slot is None or ticket is None) and job.attempt < FACTS_ATTEMPTS:
            # The slot and the ticket come on other topics than SessionHeld: give them time.
            raise JobFailed("facts_missing: the slot or the ticket is not known yet")

        chat: list[dict[str, str]] | None = []
        chat_row = next((a for a in artifacts if a["kind"] == "chat" and a["object_id"] is not None), None)
        if chat_row is not None:
            try:
                body = await asyncio.to_thread(_read_chat, self._objects, chat_row, self._keyring)
            except KeyUnavailable as exc:
                raise JobFailed(f"key_unavailable: {exc}") from None
            chat = None if body is None else chat_lines(chat_row["content_type"], body)
        zone = slot["office_zone"] if slot is not None else (office["zone"] if office is not None else None)
        for line in chat or []:
            line["at"] = _local_text(line["at"], zone)
        services = json.loads(office["services"]) if office is not None else {}
        service_code = slot["service_code"] if slot is not None else (ticket["service_code"] if ticket else None)
        html = render(
            {
                "session_id": str(session_id),
                "ticket_code": ticket["ticket_code"] if ticket is not None else None,
                "office": dict(office) if office is not None else None,
                "office_code": session["office_code"],
                "service_code": service_code,
                "service": services.get(service_code) if service_code else None,
                "officer_id": slot["officer_id"] if slot is not None else None,
                "started": _local(session["started_at"], zone),
                "ended": _local(session["ended_at"], zone),
                "attendance": [
                    {**a, "joined": _local(datetime.fromisoformat(a["joined_at"]), zone)}
                    for a in json.loads(session["attendance"])
                ],
                "artifacts": [dict(a) for a in artifacts],
                "chat": chat,
                "has_chat": chat_row is not None,
                "written": _local(self._clock(), zone),
            }
        ).encode()

        object_id = uuid.uuid5(session_id, f"record/{job.payload['stored']}")
        key = object_key(session_id, session["ended_at"], object_id, "record.html")
        data_key, wrapped = self._keyring.new_data_key(object_id)
        stored_bytes = await self._objects.store_encrypted(key, _once(html), data_key.encryptor(object_id.bytes))
        return {
            "object_id": str(object_id),
            "session_id": str(session_id),
            "kind": "record",
            "object_key": key,
            "storage_uri": self._objects.uri(key),
            "content_type": RECORD_TYPE,
            "size_bytes": len(html),
            "sha256": hashlib.sha256(html).hexdigest(),
            "stored_bytes": stored_bytes,
            "key_id": wrapped.key_id,
            "wrapped_key": base64.b64encode(wrapped.wrapped).decode(),
        }

    async def succeeded(self, uow: UnitOfWork, job: Job, result: JsonObject) -> None:
        if "skipped" in result:
            return
        record = stored_object(result)
        now = self._clock()
        session = await store.session(uow.conn, record.session_id, lock=True)
        assert session is not None
        if session["status"] == "erased":
            await store.add_object(uow.conn, record, retain_until=session["retain_until"], now=now)
            await store.shred(uow.conn, [record.object_id], "erasure_request", now)
            uow.enqueue(delete_blob_job(record.object_key))
            return
        # The newest record replaces the older ones: their keys go, then their blobs.
        older = await uow.conn.fetch(
            "SELECT object_id, object_key FROM archive_object"
            " WHERE session_id = $1 AND kind = 'record' AND shredded_at IS NULL AND object_id <> $2",
            record.session_id,
            record.object_id,
        )
        await store.add_object(uow.conn, record, retain_until=session["retain_until"], now=now)
        await store.shred(uow.conn, [r["object_id"] for r in older], "superseded", now)
        uow.enqueue(*(delete_blob_job(r["object_key"]) for r in older))

        states = await store.artifact_states(uow.conn, record.session_id)
        stored = sum(s.status == "stored" for s in states)
        written_with = int(job.payload["stored"])
        if verdict(states) == "waiting" or stored != written_with:
            # Something moved while the record was written (a late artifact): write it again.
            await store.set_session_status(uow.conn, record.session_id, "collecting", recorded_with=written_with)
            await advance(uow, record.session_id)
            return
        told = to_tell(states)
        if told != session["told"]:
            await self._tell(uow, session, states, told, now)
        status = "archived" if told == "archived" else "failed"
        await store.set_session_status(uow.conn, record.session_id, status, told=told, recorded_with=stored)

    async def _tell(self, uow: UnitOfWork, session: Any, states: list[Any], told: str, now: datetime) -> None:
        key = str(session["ticket_id"])
        if told == "archived":
            if not states:
                return  # no recording was made (an officer's report): nothing to list
            uow.publish(
                ev.RecordingArchived(
                    ticket_id=session["ticket_id"],
                    session_id=session["session_id"],
                    archive_id=session["archive_id"],
                    items=await self._items(uow, session["session_id"]),
                    retention_until=session["retain_until"],
                    archived_at=now,
                ),
                key=key,
            )
            return
        found = problems(states)
        uow.publish(
            ev.ArchiveFailedV2(
                ticket_id=session["ticket_id"],
                session_id=session["session_id"],
                reason=found[0].reason if len(found) == 1 else "several_artifacts",
                retryable=retryable(states),
                failed_at=now,
                problems=found,
            ),
            key=key,
        )

    @staticmethod
    async def _items(uow: UnitOfWork, session_id: uuid.UUID) -> list[ev.ArchivedItem]:
        rows = await uow.conn.fetch(
            "SELECT o.kind, o.object_key, o.content_type, o.size_bytes, o.sha256 FROM archive_artifact a"
            " JOIN archive_object o ON o.object_id = a.object_id WHERE a.session_id = $1 AND a.status = 'stored'"
            " ORDER BY a.position",
            session_id,
        )
        return [
            ev.ArchivedItem(
                kind=r["kind"],
                object_key=r["object_key"],
                content_type=r["content_type"],
                size_bytes=r["size_bytes"],
                sha256=r["sha256"],
            )
            for r in rows
        ]
