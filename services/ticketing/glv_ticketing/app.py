"""Wiring: the ticketing service from settings."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from glv_runtime.service import RunningService, ServiceSpec, run_until_signalled
from glv_schemas import consumed_by
from glv_ticketing.api import status_routes
from glv_ticketing.handlers import TicketingUseCase, decode_for_ticketing
from glv_ticketing.settings import TicketingSettings

SERVICE = "ticketing"


def build_spec(
    settings: TicketingSettings | None = None, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> ServiceSpec:
    settings = settings or TicketingSettings()
    use_case = TicketingUseCase(clock)
    return ServiceSpec(
        name=SERVICE,
        settings=settings,
        migrations=["glv_ticketing.migrations"],
        consumes=consumed_by(SERVICE),
        apply=use_case.apply,
        decoder=decode_for_ticketing,
        routes=lambda pool: status_routes(pool, settings.portal_tokens),
    )


def build_service(settings: TicketingSettings | None = None) -> RunningService:
    return RunningService(build_spec(settings))


def main() -> None:
    asyncio.run(run_until_signalled(build_spec()))
