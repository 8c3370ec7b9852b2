"""`glv-scheduler run | load-catalog FILE | session held|no-show | officer-link | officer-token issue|revoke|list`."""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from glv_runtime.logs import configure_cli_logging
from glv_runtime.outbox import OutboxMessage
from glv_runtime.secrets import InsecureSecret, env_name
from glv_runtime.service import run_command
from glv_runtime.transport import check_transport
from glv_runtime.unit_of_work import Database, connector
from glv_scheduler import officer_tokens, sessions, store
from glv_scheduler.agenda import moderator_link
from glv_scheduler.app import main as run_service
from glv_scheduler.app import meeting_provider
from glv_scheduler.catalog import CatalogFromTheFuture, read_catalog, refuse_entries_from_the_future
from glv_scheduler.officer_tokens import PURPOSES, Purpose
from glv_scheduler.settings import SchedulerSettings, checked

MIGRATIONS = ["glv_scheduler.migrations"]
SOURCE = "/glv/scheduler"


async def load_catalog(
    settings: SchedulerSettings, path: Path, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> str:
    catalog = read_catalog(path)

    async def store_and_publish(db: Database) -> None:
        async with db.unit_of_work() as uow:
            entries = catalog.office_entries(clock())
            # This host's clock dates the entries; the database's clock is a second opinion. An
            # entry dated ahead would block every later correct one: CatalogFromTheFuture, and
            # the transaction stores and publishes nothing.
            refuse_entries_from_the_future(entries, await uow.conn.fetchval("SELECT statement_timestamp()"))
            await store.save_catalog(uow.conn, catalog)
            for entry in entries:
                uow.publish(entry, key=entry.office_code)

    await run_command(settings, MIGRATIONS, SOURCE, store_and_publish)
    return (
        f"catalog loaded: {len(catalog.services)} services, {len(catalog.offices)} offices, "
        f"{len(catalog.officers)} officers; published to the catalog topic"
    )


async def report_session(settings: SchedulerSettings, slot_id: uuid.UUID, *, held: bool, party: str, notes: str) -> str:
    async def record(db: Database) -> list[OutboxMessage]:
        async with db.unit_of_work() as uow:
            messages = await sessions.officer_report(
                uow.conn,
                slot_id,
                held=held,
                missing=party if not held else None,  # type: ignore[arg-type]
                notes=notes,
                now=datetime.now(UTC),
            )
            uow.publish_messages(messages)
        return messages

    messages = await run_command(settings, MIGRATIONS, SOURCE, record)
    return (
        f"{len(messages)} session outcome(s) recorded"
        if messages
        else "nothing recorded: already reported, or no one holds this slot"
    )


async def officer_link(settings: SchedulerSettings, slot_id: uuid.UUID, officer_id: str) -> str:
    check_transport(settings)
    conn = await connector(settings)()  # TLS as the service's own pool uses it
    try:
        slot = await store.get_slot(conn, slot_id)
    finally:
        await conn.close()
    if slot is None or officer_id not in slot.officer_ids:
        raise SystemExit("no such slot for this officer")
    return moderator_link(meeting_provider(checked(settings, webhook=False)), slot.plan(), officer_id)


def feed_url(settings: SchedulerSettings, token: str) -> str:
    return f"{settings.public_base_url.rstrip('/')}/v1/officers/feed/{token}.ics"


async def issue_officer_token(settings: SchedulerSettings, officer_id: str, purpose: Purpose) -> tuple[str, str]:
    """The new token (for an agenda) or feed URL (which holds the token), and a note for people."""
    if (
        purpose == "feed"
        and settings.environment == "production"
        and not settings.public_base_url.startswith("https://")
    ):
        # The feed URL carries the token: it must not travel over plain HTTP.
        raise InsecureSecret(f"{env_name(settings, 'public_base_url')} must be an https:// URL in production")

    async def issue(db: Database) -> tuple[str, int]:
        async with db.unit_of_work() as uow:
            return await officer_tokens.issue(uow.conn, officer_id, purpose, datetime.now(UTC))

    token, replaced = await run_command(settings, MIGRATIONS, SOURCE, issue)
    note = f"{purpose} token issued for officer {officer_id}; it is shown this once and stored only as a hash"
    if replaced:
        note += "; the earlier one no longer works"
    return (feed_url(settings, token) if purpose == "feed" else token), note


async def revoke_officer_tokens(settings: SchedulerSettings, officer_id: str, purpose: Purpose | None) -> str:
    async def revoke(db: Database) -> int:
        async with db.unit_of_work() as uow:
            return await officer_tokens.revoke(uow.conn, officer_id, purpose, datetime.now(UTC))

    count = await run_command(settings, MIGRATIONS, SOURCE, revoke)
    return f"{count} {purpose or 'agenda and feed'} token(s) of officer {officer_id} revoked"


async def list_officer_tokens(settings: SchedulerSettings, *, revoked: bool) -> str:
    async def read(db: Database) -> list[officer_tokens.TokenRecord]:
        async with db.unit_of_work() as uow:
            return await officer_tokens.listed(uow.conn, revoked=revoked)

    records = await run_command(settings, MIGRATIONS, SOURCE, read)
    lines = [f"{'officer':<16} {'purpose':<7} {'token id':<36} {'created (UTC)':<20} revoked (UTC)"]
    for r in records:
        revoked_at = f"{r.revoked_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}" if r.revoked_at else "-"
        lines.append(
            f"{r.officer_id:<16} {r.purpose:<7} {r.token_id!s:<36} {r.created_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}  "
            f"{revoked_at}"
        )
    return "\n".join(lines)


def officer_token(settings: SchedulerSettings, args: argparse.Namespace) -> int:
    try:
        if args.action == "issue":
            secret, note = asyncio.run(issue_officer_token(settings, args.officer_id, args.purpose))
            print(note, file=sys.stderr)
            print(secret)  # alone on stdout, for a script to pick up
        elif args.action == "revoke":
            print(asyncio.run(revoke_officer_tokens(settings, args.officer_id, args.purpose)))
        else:
            print(asyncio.run(list_officer_tokens(settings, revoked=args.all)))
    except officer_tokens.UnknownOfficer:
        print(f"no active officer {args.officer_id} in the catalog", file=sys.stderr)
        return 2
    except InsecureSecret as refused:
        print(f"refused: {refused}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="glv-scheduler")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="run the scheduler service until SIGTERM")
    load = commands.add_parser("load-catalog", help="store a catalog file and publish it to the catalog topic")
    load.add_argument("file", type=Path)
    session = commands.add_parser("session", help="an officer reports how a session went")
    session.add_argument("outcome", choices=["held", "no-show"])
    session.add_argument("--slot-id", type=uuid.UUID, required=True)
    session.add_argument("--party", choices=["stakeholder", "officer", "both"], default="stakeholder")
    session.add_argument("--notes", default="", help="kept in the scheduler's database, never in events")
    link = commands.add_parser("officer-link", help="print an officer's (moderator) join link for a slot")
    link.add_argument("--slot-id", type=uuid.UUID, required=True)
    link.add_argument("--officer-id", required=True)
    tokens = commands.add_parser("officer-token", help="officers' agenda and calendar feed tokens")
    actions = tokens.add_subparsers(dest="action", required=True)
    issue = actions.add_parser("issue", help="print a new token (agenda) or feed URL once; replaces the earlier one")
    issue.add_argument("officer_id")
    issue.add_argument("--purpose", choices=PURPOSES, required=True)
    revoke = actions.add_parser("revoke", help="revoke an officer's tokens (of one purpose, or all)")
    revoke.add_argument("officer_id")
    revoke.add_argument("--purpose", choices=PURPOSES)
    listing = actions.add_parser("list", help="list live tokens (never the tokens themselves)")
    listing.add_argument("--all", action="store_true", help="revoked tokens too")
    args = parser.parse_args(argv)
    settings = SchedulerSettings()
    if args.command != "run":  # the service configures its own logging
        # Whatever a command logs goes through the same redaction, on stderr.
        configure_cli_logging("glv-scheduler", settings.log_level)
    if args.command == "run":
        run_service()
    elif args.command == "load-catalog":
        try:
            print(asyncio.run(load_catalog(settings, args.file)))
        except CatalogFromTheFuture as refused:
            print(f"catalog refused: {refused}", file=sys.stderr)
            return 2
    elif args.command == "session":
        held = args.outcome == "held"
        try:
            print(asyncio.run(report_session(settings, args.slot_id, held=held, party=args.party, notes=args.notes)))
        except sessions.UnknownSlot:
            print(f"no slot {args.slot_id}", file=sys.stderr)
            return 2
    elif args.command == "officer-token":
        return officer_token(settings, args)
    else:
        try:
            print(asyncio.run(officer_link(settings, args.slot_id, args.officer_id)))
        except InsecureSecret as refused:
            print(f"refused: {refused}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
