"""Wiring: the scheduler service from settings."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from starlette.routing import BaseRoute

from glv_runtime.jobs import Periodic
from glv_runtime.logs import get_logger
from glv_runtime.secrets import InsecureSecret, env_name
from glv_runtime.service import ServiceSpec, run_until_signalled
from glv_runtime.unit_of_work import Database
from glv_scheduler.api import officer_routes, webhook_routes
from glv_scheduler.handlers import SchedulerUseCase
from glv_scheduler.intake import decode_for_scheduler
from glv_scheduler.meetings import MeetingProvider, provider_from_settings
from glv_scheduler.round_runner import RoundRunner
from glv_scheduler.settings import SchedulerSettings, checked, meeting_secret

SERVICE = "scheduler"
log = get_logger(__name__)
# A batch holds thousands of objects for its whole transaction (tickets, placements, rows,
# events); with the default thresholds (700, 10, 10) they are promoted to the oldest generation
# and its full collections took about a tenth of the scheduler's time. Fewer, larger young
# collections keep them young; memory is freed by reference counting as before.
GC_THRESHOLDS = (10_000, 10, 10)
# RFC 7518 §3.2: an HS256 key is at least as long as the hash, in development too.
_MIN_HS256_KEY_BYTES = 32


def meeting_provider(settings: SchedulerSettings) -> MeetingProvider:
    """The chosen provider, from settings that went through `checked` (their secret is set)."""
    secret = meeting_secret(settings)
    if settings.meeting_provider == "bigbluebutton":
        return provider_from_settings("bigbluebutton", base_url=settings.bbb_url, shared_secret=secret)
    if len(secret.encode()) < _MIN_HS256_KEY_BYTES:
        raise InsecureSecret(
            f"{env_name(settings, 'jitsi_app_secret')} is shorter than {_MIN_HS256_KEY_BYTES} bytes,"
            " which a Jitsi (HS256) key may never be"
        )
    return provider_from_settings(
        "jitsi", domain=settings.jitsi_domain, app_id=settings.jitsi_app_id, app_secret=secret
    )


def build_spec(
    settings: SchedulerSettings | None = None, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> ServiceSpec:
    """The service, its secrets checked first: `InsecureSecret` refuses the start."""
    settings = checked(settings or SchedulerSettings())
    provider = meeting_provider(settings)
    use_case = SchedulerUseCase(provider, clock)
    if not settings.webhook_enabled:
        log.info("the meeting webhook is off: sessions are reported with `glv-scheduler session`")

    async def sweep(db: Database) -> None:
        await use_case.sweep_waitlist(db)
        await use_case.sweep_rounds(db)

    def routes(db: Database) -> Sequence[BaseRoute]:
        webhook = (
            webhook_routes(db, settings.webhook_secrets, clock, settings.webhook_max_body_bytes)
            if settings.webhook_enabled
            else []
        )
        return [*webhook, *officer_routes(db, provider, clock)]

    return ServiceSpec(
        name=SERVICE,
        settings=settings,
        migrations=["glv_scheduler.migrations"],
        router=use_case.router(),
        decoder=decode_for_scheduler,
        routes=routes,
        periodic=[Periodic("waitlist-sweep", settings.waitlist_sweep_interval_s, sweep)],
        job_kinds=lambda db: [RoundRunner(use_case, db, settings, clock).kind()],
    )


def main() -> None:
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        spec = build_spec()
    except InsecureSecret as refused:
        raise SystemExit(f"glv-scheduler refuses to start: {refused}") from None
    asyncio.run(run_until_signalled(spec))
