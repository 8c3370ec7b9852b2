"""Wiring: the notifier service from settings."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from glv_notifier import store
from glv_notifier.delivery import Delivery
from glv_notifier.handlers import NotifierUseCase
from glv_notifier.render import TemplateProblems, check_templates
from glv_notifier.settings import NotifierSettings, checked
from glv_runtime.jobs import Periodic
from glv_runtime.logs import get_logger
from glv_runtime.secrets import InsecureSecret
from glv_runtime.service import ServiceSpec, run_until_signalled
from glv_runtime.unit_of_work import Database
from glv_schemas.topics import CATALOG

SERVICE = "notifier"
log = get_logger(__name__)


def forget_contacts(settings: NotifierSettings, clock: Callable[[], datetime]) -> Periodic:
    """Contact details go once no message needs them (docs/security.md, record of processing)."""

    async def run(db: Database) -> None:
        async with db.unit_of_work() as uow:
            forgotten = await store.forget(
                uow.conn,
                clock(),
                closed_days=settings.contact_retention_days,
                undecided_hours=settings.undecided_contact_retention_h,
            )
        if any(forgotten.values()):
            log.info("forgotten what no message needs", **forgotten)

    return Periodic("forget-contacts", settings.forget_interval_s, run)


def build_spec(
    settings: NotifierSettings | None = None, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> ServiceSpec:
    """The service, its secrets and templates checked first: a start with either wrong is refused."""
    settings = checked(settings or NotifierSettings())
    # An office's edited folder that cannot render every message refuses the start, not a send.
    check_templates(settings.templates_dir)
    return ServiceSpec(
        name=SERVICE,
        settings=settings,
        migrations=["glv_notifier.migrations"],
        router=NotifierUseCase(settings.reminder_leads_min, clock).router(),
        # Office and service names are in every message: the catalog is read to its end first.
        restore_first=[CATALOG],
        job_kinds=lambda db: [Delivery(db, settings, clock).kind()],
        periodic=[forget_contacts(settings, clock)],
    )


def main() -> None:
    try:
        spec = build_spec()
    except (InsecureSecret, TemplateProblems) as refused:
        raise SystemExit(f"glv-notifier refuses to start: {refused}") from None
    asyncio.run(run_until_signalled(spec))
