"""The archive's queries. Every write runs inside a unit of work (the caller's connection)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from glv_archive.completeness import ArtifactState
from glv_runtime.db import DbConnection
from glv_schemas import events as ev

Row = Any  # asyncpg.Record


# ------------------------------------------------------------------ facts


async def remember_ticket(conn: DbConnection, accepted: ev.TicketAccepted) -> None:
    await conn.execute(
        "INSERT INTO archive_ticket (ticket_id, ticket_code, portal_id, stakeholder_ref, service_code, office_code)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (ticket_id) DO NOTHING",
        accepted.ticket_id,
        accepted.ticket_code,
        accepted.portal_id,
        accepted.stakeholder_ref,
        accepted.service_code,
        accepted.office_code,
    )


async def remember_slot(conn: DbConnection, slot: ev.SlotAssigned) -> None:
    await conn.execute(
        "INSERT INTO archive_slot (slot_id, office_code, office_zone, service_code, officer_id, starts_at, ends_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (slot_id) DO NOTHING",
        slot.slot_id,
        slot.office_code,
        slot.office_zone,
        slot.service_code,
        slot.officer_id,
        slot.starts_at,
        slot.ends_at,
    )


async def remember_office(conn: DbConnection, entry: ev.OfficeCatalogUpdated) -> None:
    services = {s.service_code: {"name_id": s.name_id, "name_en": s.name_en} for s in entry.services}
    await conn.execute(
        "INSERT INTO archive_office (office_code, name, city, zone, services, updated_at)"
        " VALUES ($1, $2, $3, $4, $5::jsonb, $6) ON CONFLICT (office_code) DO UPDATE SET"
        " name = excluded.name, city = excluded.city, zone = excluded.zone, services = excluded.services,"
        " updated_at = excluded.updated_at WHERE archive_office.updated_at < excluded.updated_at",
        entry.office_code,
        entry.name,
        entry.city,
        entry.zone,
        json.dumps(services),
        entry.updated_at,
    )


async def forget_office(conn: DbConnection, office_code: str) -> None:
    await conn.execute("DELETE FROM archive_office WHERE office_code = $1", office_code)


# ------------------------------------------------------------------ sessions


def artifact_id(session_id: uuid.UUID, position: int) -> uuid.UUID:
    """Stable, so that a redelivered SessionHeld names the same artifacts."""
    return uuid.uuid5(session_id, f"artifact/{position}")


async def add_session(
    conn: DbConnection, held: ev.SessionHeld, *, retain_until: datetime, give_up_at: datetime, now: datetime
) -> list[uuid.UUID] | None:
    """Record a held session and its expected artifacts; None when it was recorded before."""
    added = await conn.fetchval(
        "INSERT INTO archive_session (session_id, ticket_id, slot_id, office_code, started_at, ended_at,"
        " attendance, archive_id, retain_until, received_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10) ON CONFLICT (session_id) DO NOTHING RETURNING true",
        held.session_id,
        held.ticket_id,
        held.slot_id,
        held.office_code,
        held.started_at,
        held.ended_at,
        json.dumps([a.model_dump(mode="json") for a in held.attendance]),
        uuid.uuid5(held.session_id, "archive"),
        retain_until,
        now,
    )
    if not added:
        return None
    ids = [artifact_id(held.session_id, position) for position in range(len(held.artifacts))]
    await conn.executemany(
        "INSERT INTO archive_artifact (artifact_id, session_id, position, kind, url, content_type, declared_size,"
        " declared_sha256, give_up_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        [
            (aid, held.session_id, position, a.kind, str(a.url), a.content_type, a.size_bytes, a.sha256, give_up_at)
            for position, (aid, a) in enumerate(zip(ids, held.artifacts, strict=True))
        ],
    )
    return ids


async def session(conn: DbConnection, session_id: uuid.UUID, *, lock: bool = False) -> Row | None:
    return await conn.fetchrow(
        "SELECT * FROM archive_session WHERE session_id = $1" + (" FOR UPDATE" if lock else ""), session_id
    )


async def artifact(conn: DbConnection, aid: uuid.UUID) -> Row | None:
    return await conn.fetchrow("SELECT * FROM archive_artifact WHERE artifact_id = $1", aid)


async def artifact_states(conn: DbConnection, session_id: uuid.UUID) -> list[ArtifactState]:
    rows = await conn.fetch(
        "SELECT kind, status, reason, detail FROM archive_artifact WHERE session_id = $1 ORDER BY position", session_id
    )
    return [ArtifactState(r["kind"], r["status"], r["reason"], r["detail"]) for r in rows]


async def set_session_status(
    conn: DbConnection, session_id: uuid.UUID, status: str, *, told: str | None = None, recorded_with: int | None = None
) -> None:
    await conn.execute(
        "UPDATE archive_session SET status = $2, told = coalesce($3, told),"
        " recorded_with = coalesce($4, recorded_with),"
        " completed_at = CASE WHEN $2 IN ('archived', 'failed') THEN now() ELSE completed_at END"
        " WHERE session_id = $1",
        session_id,
        status,
        told,
        recorded_with,
    )


async def artifact_stored(conn: DbConnection, aid: uuid.UUID, object_id: uuid.UUID) -> bool:
    """The artifact's transfer is recorded; False when it was erased meanwhile."""
    done = await conn.fetchval(
        "UPDATE archive_artifact SET status = 'stored', object_id = $2, url = NULL, reason = NULL, detail = NULL,"
        " next_check_at = NULL WHERE artifact_id = $1 AND status IN ('pending', 'late') RETURNING true",
        aid,
        object_id,
    )
    return bool(done)


async def artifact_not_stored(
    conn: DbConnection, aid: uuid.UUID, *, status: str, reason: str, detail: str, next_check_at: datetime | None
) -> bool:
    done = await conn.fetchval(
        "UPDATE archive_artifact SET status = $2, reason = $3, detail = $4, next_check_at = $5,"
        " url = CASE WHEN $2 = 'failed' THEN NULL ELSE url END"
        " WHERE artifact_id = $1 AND status IN ('pending', 'late') RETURNING true",
        aid,
        status,
        reason,
        detail[:500],
        next_check_at,
    )
    return bool(done)


async def due_late_artifacts(conn: DbConnection, now: datetime, limit: int = 200) -> list[Row]:
    """Late artifacts due for another look, moved back to pending with a new generation."""
    return await conn.fetch(
        "UPDATE archive_artifact a SET status = 'pending', generation = a.generation + 1, next_check_at = NULL"
        " FROM (SELECT artifact_id FROM archive_artifact WHERE status = 'late' AND next_check_at <= $1"
        "       ORDER BY next_check_at LIMIT $2 FOR UPDATE SKIP LOCKED) due"
        " WHERE a.artifact_id = due.artifact_id RETURNING a.artifact_id, a.generation, a.session_id",
        now,
        limit,
    )


# ------------------------------------------------------------------ objects


@dataclass(frozen=True)
class StoredObject:
    object_id: uuid.UUID
    session_id: uuid.UUID
    kind: str
    object_key: str
    storage_uri: str
    content_type: str
    size_bytes: int
    sha256: str
    stored_bytes: int
    key_id: str
    wrapped_key: bytes


async def add_object(conn: DbConnection, obj: StoredObject, *, retain_until: datetime, now: datetime) -> None:
    await conn.execute(
        "INSERT INTO archive_object (object_id, session_id, kind, object_key, storage_uri, content_type, size_bytes,"
        " sha256, stored_bytes, key_id, wrapped_key, created_at, retain_until)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        obj.object_id,
        obj.session_id,
        obj.kind,
        obj.object_key,
        obj.storage_uri,
        obj.content_type,
        obj.size_bytes,
        obj.sha256,
        obj.stored_bytes,
        obj.key_id,
        obj.wrapped_key,
        now,
        retain_until,
    )


async def get_object(conn: DbConnection, object_id: uuid.UUID) -> Row | None:
    return await conn.fetchrow("SELECT * FROM archive_object WHERE object_id = $1", object_id)


async def session_objects(conn: DbConnection, session_id: uuid.UUID) -> list[Row]:
    return await conn.fetch(
        "SELECT o.*, a.position FROM archive_object o LEFT JOIN archive_artifact a ON a.object_id = o.object_id"
        " WHERE o.session_id = $1 AND o.shredded_at IS NULL ORDER BY o.created_at, o.object_id",
        session_id,
    )


async def shred(conn: DbConnection, object_ids: Sequence[uuid.UUID], cause: str, now: datetime) -> list[Row]:
    """Destroy the objects' data keys (crypto-shredding): from this commit on they are
    unreadable wherever a copy of the blob is. Returns those shredded now."""
    return await conn.fetch(
        "UPDATE archive_object SET wrapped_key = NULL, shredded_at = $3, shred_cause = $2"
        " WHERE object_id = ANY($1::uuid[]) AND shredded_at IS NULL"
        " RETURNING object_id, session_id, kind, object_key, size_bytes",
        list(object_ids),
        cause,
        now,
    )


async def blob_deleted(conn: DbConnection, object_key: str, now: datetime) -> None:
    await conn.execute(
        "UPDATE archive_object SET deleted_at = $2 WHERE object_key = $1 AND deleted_at IS NULL", object_key, now
    )


# ------------------------------------------------------------------ audit


async def audit(
    conn: DbConnection,
    *,
    action: str,
    outcome: str,
    actor: str,
    object_id: uuid.UUID | None = None,
    session_id: uuid.UUID | None = None,
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO archive_audit (action, outcome, actor, object_id, session_id, reason, detail)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)",
        action,
        outcome,
        actor,
        object_id,
        session_id,
        reason,
        json.dumps(detail or {}),
    )


async def audit_many(
    conn: DbConnection, rows: Sequence[tuple[str, str, str, uuid.UUID | None, uuid.UUID | None]]
) -> None:
    """(action, outcome, actor, object_id, session_id) each."""
    await conn.executemany(
        "INSERT INTO archive_audit (action, outcome, actor, object_id, session_id) VALUES ($1, $2, $3, $4, $5)",
        list(rows),
    )
