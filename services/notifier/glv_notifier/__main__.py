"""`glv-notifier run | check-templates [DIR]`."""

from __future__ import annotations

import argparse
from pathlib import Path

from glv_notifier.app import main as run_service
from glv_notifier.render import check_templates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="glv-notifier")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="run the notifier service until SIGTERM")
    check = commands.add_parser(
        "check-templates", help="render every message in every language from a templates folder (an office's edit)"
    )
    check.add_argument("folder", nargs="?", type=Path, help="the folder (default: the shipped templates)")
    args = parser.parse_args(argv)
    if args.command == "check-templates":
        check_templates(args.folder)
        print("every message renders in every language")
        return 0
    run_service()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
