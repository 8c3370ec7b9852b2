"""Wiring: the archive service from settings."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from starlette.routing import BaseRoute

from glv_archive import store
from glv_archive.access import download_routes
from glv_archive.fetch import FetchPolicy
from glv_archive.handlers import ArchiveUseCase
from glv_archive.keys import Keyring
from glv_archive.record import Records
from glv_archive.retention import BlobDeletion, purge
from glv_archive.sessions import fetch_job
from glv_archive.settings import ArchiveSettings
from glv_archive.storage import ObjectStore
from glv_archive.transfer import Transfers
from glv_runtime.jobs import JobKind, Periodic
from glv_runtime.logs import get_logger
from glv_runtime.secrets import InsecureSecret, check_secret
from glv_runtime.service import ServiceSpec, run_until_signalled
from glv_runtime.unit_of_work import Database

SERVICE = "archive"
MIGRATIONS = ["glv_archive.migrations"]
log = get_logger(__name__)
Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Parts:
    """What the service and its commands share, made once from checked settings."""

    settings: ArchiveSettings
    keyring: Keyring
    objects: ObjectStore
    policy: FetchPolicy
    link_secret: bytes


def parts(settings: ArchiveSettings | None = None) -> Parts:
    """Settings checked: keys, link secret, store and fetch policy; a start with any wrong is refused."""
    settings = settings or ArchiveSettings()
    secret = check_secret("GLV_ARCHIVE_LINK_SECRET", settings.link_secret, settings.environment)
    if settings.environment == "production" and not settings.public_base_url.startswith("https://"):
        raise ValueError("GLV_ARCHIVE_PUBLIC_BASE_URL must be https:// in production: links carry their signature")
    return Parts(
        settings=settings,
        keyring=Keyring.from_settings(settings),
        objects=ObjectStore.from_settings(settings),
        policy=FetchPolicy.from_settings(settings),
        link_secret=secret.get_secret_value().encode(),
    )


def recheck_late(clock: Clock, interval_s: float) -> Periodic:
    """Late artifacts (not there yet after their attempts) get another transfer when due."""

    async def run(db: Database) -> None:
        async with db.unit_of_work() as uow:
            due = await store.due_late_artifacts(uow.conn, clock())
            uow.enqueue(*(fetch_job(r["artifact_id"], r["generation"]) for r in due))
        if due:
            log.info("late artifacts tried again", artifacts=len(due))

    return Periodic("recheck-late", interval_s, run)


def sweep_leftovers(objects: ObjectStore, older_than_s: float) -> Periodic:
    """Staging files of transfers whose process was killed (local store only)."""

    async def run(db: Database) -> None:
        removed = await objects.sweep_leftovers(older_than_s)
        if removed:
            log.info("half-written staging files removed", files=removed)

    return Periodic("sweep-leftovers", max(60.0, older_than_s), run)


def build_spec(settings: ArchiveSettings | None = None, clock: Clock = _utc_now) -> ServiceSpec:
    p = parts(settings)
    s = p.settings

    def job_kinds(db: Database) -> Sequence[JobKind]:
        return [
            Transfers(db, s, p.keyring, p.objects, p.policy, clock).kind(),
            Records(db, p.keyring, p.objects, clock).kind(),
            BlobDeletion(p.objects, clock).kind(),
        ]

    def routes(db: Database) -> Sequence[BaseRoute]:
        return download_routes(db, p.keyring, p.objects, p.link_secret, clock)

    return ServiceSpec(
        name=SERVICE,
        settings=s,
        migrations=MIGRATIONS,
        router=ArchiveUseCase(
            retention=timedelta(days=s.retention_days), late_give_up=timedelta(hours=s.late_give_up_h), clock=clock
        ).router(),
        job_kinds=job_kinds,
        periodic=[
            purge(s.purge_interval_s, clock),
            recheck_late(clock, min(s.late_recheck_s, 300.0)),
            sweep_leftovers(p.objects, 4 * s.fetch_lease_s),
        ],
        routes=routes,
    )


def main() -> None:
    try:
        spec = build_spec()
    except (InsecureSecret, ValueError) as refused:
        raise SystemExit(f"glv-archive refuses to start: {refused}") from None
    asyncio.run(run_until_signalled(spec))
