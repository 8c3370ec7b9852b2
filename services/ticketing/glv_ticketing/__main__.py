"""`glv-ticketing run`."""

from __future__ import annotations

import argparse

from glv_ticketing.app import main as run_service


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="glv-ticketing",
        description="The office catalog comes from the scheduler: `glv-scheduler load-catalog FILE`.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="run the ticketing service until SIGTERM")
    parser.parse_args(argv)
    run_service()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
