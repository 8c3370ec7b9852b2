"""`glv-scheduler run | load-catalog FILE | session held|no-show | officer-link`."""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from glv_runtime.outbox import OutboxMessage
from glv_runtime.service import run_command
from glv_runtime.unit_of_work import Database
from glv_scheduler import sessions, store
from glv_scheduler.app import main as run_service
from glv_scheduler.app import meeting_provider
from glv_scheduler.catalog import read_catalog
from glv_scheduler.meetings import Participant
from glv_scheduler.settings import SchedulerSettings

MIGRATIONS = ["glv_scheduler.migrations"]
SOURCE = "/glv/scheduler"


async def load_catalog(settings: SchedulerSettings, path: Path) -> str:
    catalog = read_catalog(path)

    async def store_and_publish(db: Database) -> None:
        async with db.unit_of_work() as uow:
            await store.save_catalog(uow.conn, catalog)
            for entry in catalog.office_entries(datetime.now(UTC)):
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
    conn = await asyncpg.connect(settings.dsn())
    try:
        slot = await store.get_slot(conn, slot_id)
    finally:
        await conn.close()
    if slot is None or officer_id not in slot.officer_ids:
        raise SystemExit("no such slot for this officer")
    return meeting_provider(settings).join_url(slot.plan(), Participant(officer_id, "Petugas", moderator=True))


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
    args = parser.parse_args(argv)
    settings = SchedulerSettings()
    if args.command == "run":
        run_service()
    elif args.command == "load-catalog":
        print(asyncio.run(load_catalog(settings, args.file)))
    elif args.command == "session":
        held = args.outcome == "held"
        try:
            print(asyncio.run(report_session(settings, args.slot_id, held=held, party=args.party, notes=args.notes)))
        except sessions.UnknownSlot:
            print(f"no slot {args.slot_id}", file=sys.stderr)
            return 2
    else:
        print(asyncio.run(officer_link(settings, args.slot_id, args.officer_id)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
