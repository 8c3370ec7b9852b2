"""Onboarding and revoking a portal: its Kafka topics, user and ACLs, and its status token.

Ticketing owns the portal registry because it is what portals talk to: it reads their
intake topics, writes their updates topics and answers their status API.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from glv_runtime.kafka_admin import KafkaAdmin
from glv_runtime.onboarding import AdminSettings, ensure_portal_access, revoke_portal_access
from glv_runtime.service import run_command
from glv_runtime.tokens import new_token, token_hash
from glv_runtime.unit_of_work import Database
from glv_schemas.topics import check_portal_id
from glv_ticketing import store
from glv_ticketing.settings import TicketingSettings

MIGRATIONS = ["glv_ticketing.migrations"]
SOURCE = "/glv/ticketing"
TOKEN_KIND = "glvp"


@dataclass(frozen=True)
class Onboarded:
    portal_id: str
    kafka_user: str
    # Each is set only when this run created or rotated it: shown once, stored nowhere.
    kafka_password: str | None
    status_token: str | None
    topics: dict[str, str]
    acls: int

    def as_json(self) -> dict[str, Any]:
        return {
            "portal_id": self.portal_id,
            "kafka_user": self.kafka_user,
            "kafka_password": self.kafka_password,
            "status_token": self.status_token,
            "topics": self.topics,
            "acls": self.acls,
        }


async def onboard(
    settings: TicketingSettings,
    admin_settings: AdminSettings,
    portal_id: str,
    *,
    rotate_password: bool = False,
    rotate_token: bool = False,
) -> Onboarded:
    """Idempotent: run again, it changes nothing but what is missing (or asked to rotate)."""
    check_portal_id(portal_id)
    admin = KafkaAdmin(admin_settings)
    access, topics = ensure_portal_access(admin, portal_id, settings, rotate=rotate_password)

    async def issue_token(db: Database) -> str | None:
        async with db.unit_of_work() as uow:
            state = await store.portal_token_state(uow.conn, portal_id)
            if state == "active" and not rotate_token:
                return None
            token = new_token(TOKEN_KIND)
            await store.set_portal_token(uow.conn, portal_id, token_hash(token), datetime.now(UTC))
            return token

    token = await run_command(settings, MIGRATIONS, SOURCE, issue_token)
    return Onboarded(portal_id, access.user, access.password, token, topics, access.grants)


async def revoke(settings: TicketingSettings, admin_settings: AdminSettings, portal_id: str) -> dict[str, Any]:
    """The portal can no longer authenticate to Kafka nor to the status API."""
    check_portal_id(portal_id)
    acls = revoke_portal_access(KafkaAdmin(admin_settings), portal_id)

    async def revoke_token(db: Database) -> bool:
        async with db.unit_of_work() as uow:
            return await store.revoke_portal(uow.conn, portal_id, datetime.now(UTC))

    token_revoked = await run_command(settings, MIGRATIONS, SOURCE, revoke_token)
    return {"portal_id": portal_id, "acls_deleted": acls, "status_token_revoked": token_revoked}


async def listing(settings: TicketingSettings) -> list[dict[str, Any]]:
    async def read(db: Database) -> list[dict[str, Any]]:
        async with db.pool.acquire() as conn:
            return await store.list_portals(conn)

    rows: list[dict[str, Any]] = await run_command(settings, MIGRATIONS, SOURCE, read)
    return rows
