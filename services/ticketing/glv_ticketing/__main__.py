"""`glv-ticketing run | portal onboard ID | portal revoke ID | portal list`."""

from __future__ import annotations

import argparse
import asyncio
import json

from glv_runtime.logs import configure_cli_logging
from glv_runtime.onboarding import AdminSettings
from glv_ticketing import portals
from glv_ticketing.app import main as run_service
from glv_ticketing.settings import TicketingSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="glv-ticketing",
        description="The office catalog comes from the scheduler: `glv-scheduler load-catalog FILE`.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="run the ticketing service until SIGTERM")
    portal = commands.add_parser(
        "portal",
        help="onboard or revoke a portal (Kafka admin: GLV_ADMIN_KAFKA_SASL_USERNAME/_PASSWORD)",
    )
    actions = portal.add_subparsers(dest="action", required=True)
    onboard = actions.add_parser(
        "onboard",
        help="its topics, Kafka user, ACLs and status-API token; prints new credentials once, as JSON",
    )
    onboard.add_argument("portal_id")
    onboard.add_argument("--rotate-password", action="store_true", help="a new Kafka password even if it has one")
    onboard.add_argument("--rotate-token", action="store_true", help="a new status-API token even if it has one")
    revoke = actions.add_parser("revoke", help="delete its Kafka user and ACLs and revoke its status-API token")
    revoke.add_argument("portal_id")
    actions.add_parser("list", help="onboarded portals (never their tokens)")
    args = parser.parse_args(argv)

    if args.command == "run":
        run_service()
        return 0
    settings = TicketingSettings()
    configure_cli_logging("glv-ticketing", settings.log_level)
    if args.action == "onboard":
        onboarded = asyncio.run(
            portals.onboard(
                settings,
                AdminSettings(),
                args.portal_id,
                rotate_password=args.rotate_password,
                rotate_token=args.rotate_token,
            )
        )
        print(json.dumps(onboarded.as_json(), indent=2))
    elif args.action == "revoke":
        print(json.dumps(asyncio.run(portals.revoke(settings, AdminSettings(), args.portal_id))))
    else:
        for row in asyncio.run(portals.listing(settings)):
            print(json.dumps(row, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
