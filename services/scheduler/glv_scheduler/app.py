"""Wiring: the scheduler service from settings."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from datetime import UTC, datetime

from glv_runtime.jobs import Periodic
from glv_runtime.logs import get_logger
from glv_runtime.service import ServiceSpec, run_until_signalled
from glv_runtime.unit_of_work import Database
from glv_scheduler.api import webhook_routes
from glv_scheduler.handlers import SchedulerUseCase
from glv_scheduler.intake import decode_for_scheduler
from glv_scheduler.meetings import MeetingProvider, provider_from_settings
from glv_scheduler.settings import DEV_SECRET, SchedulerSettings

SERVICE = "scheduler"
log = get_logger(__name__)
# A batch holds thousands of objects for its whole transaction (tickets, placements, rows,
# events); with the default thresholds (700, 10, 10) they are promoted to the oldest generation
# and its full collections took about a tenth of the scheduler's time. Fewer, larger young
# collections keep them young; memory is freed by reference counting as before.
GC_THRESHOLDS = (10_000, 10, 10)


def meeting_provider(settings: SchedulerSettings) -> MeetingProvider:
    if settings.meeting_provider == "bigbluebutton":
        return provider_from_settings(
            "bigbluebutton", base_url=settings.bbb_url, shared_secret=settings.bbb_secret.get_secret_value()
        )
    return provider_from_settings(
        "jitsi",
        domain=settings.jitsi_domain,
        app_id=settings.jitsi_app_id,
        app_secret=settings.jitsi_app_secret.get_secret_value(),
    )


def build_spec(
    settings: SchedulerSettings | None = None, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> ServiceSpec:
    settings = settings or SchedulerSettings()
    use_case = SchedulerUseCase(meeting_provider(settings), clock)
    if settings.meeting_provider == "jitsi" and settings.jitsi_app_secret.get_secret_value() == DEV_SECRET:
        log.warning("the Jitsi token secret is the development placeholder: set GLV_SCHEDULER_JITSI_APP_SECRET")

    async def sweep(db: Database) -> None:
        await use_case.sweep_waitlist(db)

    return ServiceSpec(
        name=SERVICE,
        settings=settings,
        migrations=["glv_scheduler.migrations"],
        router=use_case.router(),
        decoder=decode_for_scheduler,
        routes=lambda db: webhook_routes(db, settings.webhook_secrets, clock),
        periodic=[Periodic("waitlist-sweep", settings.waitlist_sweep_interval_s, sweep)],
    )


def main() -> None:
    gc.set_threshold(*GC_THRESHOLDS)
    asyncio.run(run_until_signalled(build_spec()))
