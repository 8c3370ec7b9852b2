"""Wiring: the scheduler service from settings."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg

from glv_runtime.logs import get_logger
from glv_runtime.outbox import write_outbox
from glv_runtime.service import ServiceSpec, run_until_signalled
from glv_scheduler.api import webhook_routes
from glv_scheduler.handlers import SchedulerUseCase
from glv_scheduler.meetings import MeetingProvider, provider_from_settings
from glv_scheduler.settings import DEV_SECRET, SchedulerSettings
from glv_schemas import consumed_by

SERVICE = "scheduler"
log = get_logger(__name__)


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

    async def sweep(pool: asyncpg.Pool) -> None:
        while True:
            await asyncio.sleep(settings.waitlist_sweep_interval_s)
            try:
                async with pool.acquire() as conn, conn.transaction():
                    await write_outbox(conn, await use_case.sweep_waitlist(conn))
            except Exception as exc:  # a failed sweep is retried at the next period
                log.warning("waitlist sweep failed", error=repr(exc))

    return ServiceSpec(
        name=SERVICE,
        settings=settings,
        migrations=["glv_scheduler.migrations"],
        consumes=consumed_by(SERVICE),
        apply=use_case.apply,
        routes=lambda pool: webhook_routes(pool, settings.webhook_secrets, clock),
        background=[sweep],
    )


def main() -> None:
    asyncio.run(run_until_signalled(build_spec()))
