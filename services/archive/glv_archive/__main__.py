"""`glv-archive run | link | objects | erase | keys new|rewrap | audit`."""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from glv_archive import links, store
from glv_archive.access import download_url
from glv_archive.app import MIGRATIONS, Parts, parts
from glv_archive.app import main as run_service
from glv_archive.keys import WrappedKey, new_kek
from glv_archive.retention import ErasureReport, erase_stakeholder
from glv_runtime.logs import configure_cli_logging
from glv_runtime.secrets import InsecureSecret
from glv_runtime.service import run_command
from glv_runtime.unit_of_work import Database

SOURCE = "/glv/archive"
REWRAP_BATCH = 200
# A link is a bearer credential: a week at most, however it is issued.
MAX_LINK_TTL_S = 7 * 24 * 3600


async def issue_link(p: Parts, object_id: uuid.UUID, recipient: str, ttl_s: int, issuer: str) -> str:
    """A signed link to one object, its issue audited; refused for an unknown or shredded object."""
    if not 0 < ttl_s <= MAX_LINK_TTL_S:
        raise ValueError(f"a link lasts 1..{MAX_LINK_TTL_S} seconds")
    expires_at = datetime.now(UTC) + timedelta(seconds=ttl_s)
    link = links.sign(p.link_secret, object_id, expires_at, recipient)

    async def issue(db: Database) -> str | None:
        async with db.unit_of_work() as uow:
            row = await store.get_object(uow.conn, object_id)
            refusal = "not_found" if row is None else ("shredded" if row["wrapped_key"] is None else None)
            await store.audit(
                uow.conn,
                action="link_issued",
                outcome="refused" if refusal else "allowed",
                actor=issuer,
                object_id=object_id,
                session_id=row["session_id"] if row else None,
                reason=refusal,
                detail={"recipient": recipient, "expires": link.expires},
            )
        return refusal

    refusal = await run_command(p.settings, MIGRATIONS, SOURCE, issue)
    if refusal:
        raise SystemExit(f"no link: the object is {refusal.replace('_', ' ')}")
    return download_url(p.settings.public_base_url, link)


async def list_objects(p: Parts, session_id: uuid.UUID) -> list[dict[str, Any]]:
    async def read(db: Database) -> list[dict[str, Any]]:
        async with db.pool.acquire() as conn:
            rows = await store.session_objects(conn, session_id)
        return [
            {
                k: str(r[k])
                for k in ("object_id", "kind", "content_type", "size_bytes", "sha256", "storage_uri", "key_id")
            }
            for r in rows
        ]

    result: list[dict[str, Any]] = await run_command(p.settings, MIGRATIONS, SOURCE, read)
    return result


async def erase(p: Parts, portal_id: str, stakeholder_ref: str, request_id: uuid.UUID) -> ErasureReport:
    async def work(db: Database) -> ErasureReport:
        now = datetime.now(UTC)
        async with db.unit_of_work() as uow:
            return await erase_stakeholder(uow, portal_id, stakeholder_ref, request_id, "command", now, now)

    report: ErasureReport = await run_command(p.settings, MIGRATIONS, SOURCE, work)
    return report


async def rewrap(p: Parts) -> dict[str, int]:
    """Every data key not under the active key-encryption key, wrapped again under it (the
    blobs are not touched); then the old key can leave GLV_ARCHIVE_KEYS."""
    keyring = p.keyring

    async def work(db: Database) -> dict[str, int]:
        moved = 0
        while True:
            async with db.unit_of_work() as uow:
                rows = await uow.conn.fetch(
                    "SELECT object_id, key_id, wrapped_key FROM archive_object"
                    " WHERE wrapped_key IS NOT NULL AND key_id <> $1 LIMIT $2 FOR UPDATE SKIP LOCKED",
                    keyring.active_id,
                    REWRAP_BATCH,
                )
                for r in rows:
                    new = keyring.rewrap(r["object_id"], WrappedKey(r["key_id"], bytes(r["wrapped_key"])))
                    await uow.conn.execute(
                        "UPDATE archive_object SET key_id = $2, wrapped_key = $3 WHERE object_id = $1",
                        r["object_id"],
                        new.key_id,
                        new.wrapped,
                    )
                if rows:
                    await store.audit(
                        uow.conn,
                        action="rewrap",
                        outcome="done",
                        actor="operator",
                        detail={"objects": len(rows), "to_key": keyring.active_id},
                    )
            moved += len(rows)
            if len(rows) < REWRAP_BATCH:
                break
        async with db.pool.acquire() as conn:
            left = await conn.fetch(
                "SELECT key_id, count(*) AS n FROM archive_object WHERE wrapped_key IS NOT NULL GROUP BY key_id"
            )
        return {"rewrapped": moved, **{f"objects_under_{r['key_id']}": r["n"] for r in left}}

    result: dict[str, int] = await run_command(p.settings, MIGRATIONS, SOURCE, work)
    return result


async def recent_audit(p: Parts, object_id: uuid.UUID | None, limit: int) -> list[dict[str, Any]]:
    async def read(db: Database) -> list[dict[str, Any]]:
        async with db.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT * FROM archive_audit WHERE $1::uuid IS NULL OR object_id = $1 ORDER BY audit_id DESC LIMIT $2",
                object_id,
                limit,
            )
        return [{k: (str(v) if v is not None else None) for k, v in dict(r).items()} for r in rows]

    result: list[dict[str, Any]] = await run_command(p.settings, MIGRATIONS, SOURCE, read)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="glv-archive")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="run the archive service until SIGTERM")
    link = commands.add_parser("link", help="print a signed, time-limited download link to one object")
    link.add_argument("object_id", type=uuid.UUID)
    link.add_argument("--to", required=True, help="who the link is for (an officer id): the audit names them")
    link.add_argument("--ttl", type=int, default=None, help="seconds the link is valid (default: LINK_DEFAULT_TTL_S)")
    link.add_argument("--by", default="operator", help="who issues it, for the audit")
    objects = commands.add_parser("objects", help="list a session's archived objects")
    objects.add_argument("session_id", type=uuid.UUID)
    erase_cmd = commands.add_parser("erase", help="erase every archived session of one portal's stakeholder")
    erase_cmd.add_argument("--portal", required=True)
    erase_cmd.add_argument("--stakeholder", required=True, help="the portal's stakeholder_ref")
    erase_cmd.add_argument("--request-id", type=uuid.UUID, default=None, help="the request's id (repeatable)")
    keys = commands.add_parser("keys", help="key-encryption keys")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    keys_commands.add_parser("new", help="print a new key-encryption key to add to GLV_ARCHIVE_KEYS")
    keys_commands.add_parser("rewrap", help="wrap every data key under GLV_ARCHIVE_ACTIVE_KEY_ID")
    audit = commands.add_parser("audit", help="print the newest audit rows")
    audit.add_argument("--object", type=uuid.UUID, default=None)
    audit.add_argument("--limit", type=int, default=50)
    args = parser.parse_args(argv)

    if args.command == "run":
        run_service()
        return 0
    configure_cli_logging("glv-archive")
    if args.command == "keys" and args.keys_command == "new":
        key_id, value = new_kek()
        print(json.dumps({key_id: value}))
        print(f"add it to GLV_ARCHIVE_KEYS and set GLV_ARCHIVE_ACTIVE_KEY_ID={key_id}; then `glv-archive keys rewrap`")
        return 0
    try:
        p = parts()
    except (InsecureSecret, ValueError) as refused:
        raise SystemExit(f"glv-archive: {refused}") from None
    if args.command == "link":
        ttl = p.settings.link_default_ttl_s if args.ttl is None else args.ttl
        if not 0 < ttl <= MAX_LINK_TTL_S:
            raise SystemExit(f"glv-archive: --ttl must be 1..{MAX_LINK_TTL_S} seconds (7 days)")
        print(asyncio.run(issue_link(p, args.object_id, args.to, ttl, args.by)))
    elif args.command == "objects":
        print(json.dumps(asyncio.run(list_objects(p, args.session_id)), indent=2))
    elif args.command == "erase":
        report = asyncio.run(erase(p, args.portal, args.stakeholder, args.request_id or uuid.uuid4()))
        print(json.dumps(report.__dict__, indent=2))
    elif args.command == "keys":
        print(json.dumps(asyncio.run(rewrap(p)), indent=2))
    elif args.command == "audit":
        print(json.dumps(asyncio.run(recent_audit(p, args.object, args.limit)), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
