"""`glv-kafka-access service NAME [--rotate-password] | show USER`: GLV's services on Kafka.

Run with a Kafka super user (GLV_ADMIN_KAFKA_SASL_USERNAME / _PASSWORD). Portals are
onboarded with `glv-ticketing portal onboard ID`, which also issues their status token.
"""

from __future__ import annotations

import argparse
import json
import sys

from glv_runtime.kafka_admin import KafkaAdmin
from glv_runtime.logs import configure_cli_logging
from glv_runtime.onboarding import AdminSettings, ensure_service_access
from glv_schemas.topics import SERVICES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="glv-kafka-access", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    service = commands.add_parser("service", help="create a service's SCRAM user (if missing) and its ACLs")
    service.add_argument("name", choices=SERVICES)
    service.add_argument("--rotate-password", action="store_true", help="set a new password even if the user exists")
    show = commands.add_parser("show", help="list the ACLs naming a user (glv-<service> or portal-<id>)")
    show.add_argument("user")
    args = parser.parse_args(argv)

    settings = AdminSettings()
    configure_cli_logging("glv-kafka-access", settings.log_level)
    admin = KafkaAdmin(settings)
    if args.command == "service":
        access = ensure_service_access(admin, args.name, prefix=settings.topic_prefix, rotate=args.rotate_password)
        # The password is printed once, to stdout only, for the operator to put in the
        # service's secret; it is stored nowhere else (the broker keeps a SCRAM hash).
        print(json.dumps({"user": access.user, "password": access.password, "acls": access.grants}))
        if access.password is None and admin.secured:
            print("user existed: password unchanged (use --rotate-password to set a new one)", file=sys.stderr)
        return 0
    for line in admin.grants_of(args.user):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
