"""Scheduler settings: environment variables prefixed GLV_SCHEDULER_."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from glv_runtime.logs import get_logger
from glv_runtime.secrets import InsecureSecret, check_secret, check_secret_list, env_name
from glv_runtime.settings import ServiceSettings

log = get_logger(__name__)


class SchedulerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GLV_SCHEDULER_", extra="ignore")

    service_name: str = "scheduler"
    database_url: SecretStr = SecretStr("postgresql://glv_scheduler:glv_scheduler@127.0.0.1:55432/glv_scheduler")
    http_port: int = 8082
    # A batch's acceptances are placed together (one read, one write per table). A booking clash
    # with another replica places again only the clashing office's tickets, from the clash on.
    batch_max_records: int = Field(default=500, gt=0, le=10_000)

    meeting_provider: Literal["jitsi", "bigbluebutton"] = "jitsi"
    jitsi_domain: str = "meet.glv.example.go.id"
    jitsi_app_id: str = "glv"
    # No default secrets: the chosen provider's one is checked at start (`checked`).
    jitsi_app_secret: SecretStr | None = None
    bbb_url: str = "https://bbb.glv.example.go.id/bigbluebutton"
    bbb_secret: SecretStr | None = None
    # The meeting platform's signed webhook. Shared secrets: several allow rotation. Without
    # the webhook, officers report sessions with `glv-scheduler session`; turning it off must
    # be said (webhook_enabled=false), so that a secret missing by mistake refuses the start.
    webhook_enabled: bool = True
    webhook_secrets: list[SecretStr] = Field(default_factory=list)
    # Refused with 413 before it is read; a real delivery is a few kilobytes.
    webhook_max_body_bytes: int = Field(default=256 * 1024, gt=0, le=16 * 1024 * 1024)
    # Where officers reach this service's HTTP port from outside: the base of calendar feed
    # URLs that `glv-scheduler officer-token issue --purpose feed` prints. https in production.
    public_base_url: str = "http://127.0.0.1:8082"
    # Waitlisted tickets are retried when a slot is released and also on this
    # period, since time brings new days inside the horizon.
    waitlist_sweep_interval_s: float = Field(default=300.0, gt=0)
    # Rounds (services the catalog says an office decides in rounds): the solver's time limit per
    # round (then its best solution, or the greedy), and the round job's lease: a replica takes
    # over a round whose runner died after about this long.
    round_time_limit_s: float = Field(default=8.0, gt=0, le=600)
    round_lease_s: float = Field(default=15.0, ge=2)
    # Tests only: the round's runner kills its own process after the solve, before the write.
    round_crash_after_solve: bool = False


def checked(settings: SchedulerSettings, *, webhook: bool = True) -> SchedulerSettings:
    """The settings with their secrets checked (glv_runtime.secrets), or `InsecureSecret`.

    Only the chosen meeting provider's secret is needed, and the webhook's when it is on
    (`webhook=False`: a CLI command that makes join links needs no webhook secret). In
    development a missing secret is replaced by an ephemeral one here, once, so that
    everything built from the returned settings signs with the same key."""
    env = settings.environment
    update: dict[str, object] = {}
    if settings.meeting_provider == "jitsi":
        update["jitsi_app_secret"] = check_secret(
            env_name(settings, "jitsi_app_secret"), settings.jitsi_app_secret, env
        )
    else:
        update["bbb_secret"] = check_secret(env_name(settings, "bbb_secret"), settings.bbb_secret, env)
    if webhook and settings.webhook_enabled:
        name = env_name(settings, "webhook_secrets")
        if not settings.webhook_secrets:
            if env == "production":
                raise InsecureSecret(
                    f"{name} is empty, so the meeting webhook could authenticate no delivery: set it, or set "
                    f"{env_name(settings, 'webhook_enabled')}=false to run without the webhook"
                )
            log.warning("no webhook secret: the meeting webhook answers 503 to every call", setting=name)
        update["webhook_secrets"] = check_secret_list(name, settings.webhook_secrets, env)
    return settings.model_copy(update=update)


def meeting_secret(settings: SchedulerSettings) -> str:
    """The chosen provider's secret from settings that went through `checked`."""
    field = "jitsi_app_secret" if settings.meeting_provider == "jitsi" else "bbb_secret"
    value: SecretStr | None = getattr(settings, field)
    if value is None:
        raise InsecureSecret(f"{env_name(settings, field)} is not set")
    return value.get_secret_value()
