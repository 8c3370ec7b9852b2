"""`glv-ticketing run | load-catalog FILE`."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from glv_ticketing.app import main as run_service
from glv_ticketing.catalog import publish_catalog, read_catalog
from glv_ticketing.settings import TicketingSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="glv-ticketing")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="run the ticketing service until SIGTERM")
    load = commands.add_parser("load-catalog", help="publish an office catalog file to the catalog topic")
    load.add_argument("file", type=Path)
    args = parser.parse_args(argv)
    if args.command == "run":
        run_service()
        return 0
    entries = read_catalog(args.file)
    asyncio.run(publish_catalog(TicketingSettings(), entries))
    print(f"published {len(entries)} office(s) to the catalog topic")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
