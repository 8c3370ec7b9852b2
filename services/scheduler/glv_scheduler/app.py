"""Wiring: the scheduler service from settings."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from glv_runtime.service import ServiceSpec, run_until_signalled
from glv_scheduler.api import webhook_routes
from glv_scheduler.handlers import SchedulerUseCase
from glv_scheduler.meetings import MeetingProvider, provider_from_settings
from glv_scheduler.settings import SchedulerSettings
from glv_schemas import consumed_by

SERVICE = "scheduler"


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
    return ServiceSpec(
        name=SERVICE,
        settings=settings,
        migrations=["glv_scheduler.migrations"],
        consumes=consumed_by(SERVICE),
        apply=use_case.apply,
        routes=lambda pool: webhook_routes(pool, settings.webhook_secrets, clock),
    )


def main() -> None:
    asyncio.run(run_until_signalled(build_spec()))
