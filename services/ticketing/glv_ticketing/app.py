"""Wiring: the ticketing service from settings."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from glv_runtime.service import ServiceSpec, run_until_signalled
from glv_schemas.topics import CATALOG
from glv_ticketing.api import status_routes
from glv_ticketing.handlers import TicketingUseCase, decode_for_ticketing
from glv_ticketing.settings import TicketingSettings

SERVICE = "ticketing"


def build_spec(
    settings: TicketingSettings | None = None, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> ServiceSpec:
    settings = settings or TicketingSettings()
    return ServiceSpec(
        name=SERVICE,
        settings=settings,
        migrations=["glv_ticketing.migrations"],
        router=TicketingUseCase(clock).router(),
        decoder=decode_for_ticketing,
        # No ticket is judged against a catalog ticketing has not read to its end.
        restore_first=[CATALOG],
        routes=lambda db: status_routes(db.pool),
    )


def main() -> None:
    asyncio.run(run_until_signalled(build_spec()))
