"""Scheduler settings: environment variables prefixed GLV_SCHEDULER_."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from glv_runtime.settings import ServiceSettings

DEV_SECRET = "dev-only-jitsi-secret-never-use-in-production"


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
    # Development placeholder: the service warns at start while it is in use.
    jitsi_app_secret: SecretStr = SecretStr(DEV_SECRET)
    bbb_url: str = "https://bbb.glv.example.go.id/bigbluebutton"
    bbb_secret: SecretStr = SecretStr("change-me")
    # Shared secrets of the meeting platform's webhook; several allow rotation.
    webhook_secrets: list[SecretStr] = Field(default_factory=list)
    # Waitlisted tickets are retried when a slot is released and also on this
    # period, since time brings new days inside the horizon.
    waitlist_sweep_interval_s: float = Field(default=300.0, gt=0)
