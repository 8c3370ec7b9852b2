"""Notifier settings: environment variables prefixed GLV_NOTIFIER_."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from glv_runtime.secrets import check_secret, env_name
from glv_runtime.settings import ServiceSettings


class NotifierSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GLV_NOTIFIER_", extra="ignore")

    service_name: str = "notifier"
    database_url: SecretStr = SecretStr("postgresql://glv_notifier:glv_notifier@127.0.0.1:55432/glv_notifier")
    http_port: int = 8083

    # E-mail (SMTP). The local stack's mail sink listens on 127.0.0.1:2525 (make demo).
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=2525, gt=0, lt=65536)
    smtp_starttls: bool = False
    # Implicit TLS (SMTPS, usually port 465) instead of STARTTLS.
    smtp_tls: bool = False
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout_s: float = Field(default=20.0, gt=0)
    mail_from: str = "GLV <no-reply@glv.example.go.id>"

    # The SMS / WhatsApp gateway: a generic JSON POST, or WhatsApp Cloud API template messages.
    gateway_url: str = "http://127.0.0.1:8099/v1/messages"
    gateway_format: Literal["generic", "whatsapp_cloud"] = "generic"
    gateway_token: SecretStr | None = None
    gateway_timeout_s: float = Field(default=15.0, gt=0)
    # Messages per second this process sends to the gateway at most (its rate limit).
    gateway_rate_per_s: float = Field(default=20.0, gt=0)
    # Which phone channel a stakeholder without e-mail (or as e-mail's fallback) gets.
    phone_channel: Literal["sms", "whatsapp"] = "whatsapp"

    # No SMS or WhatsApp between these hours, office local time, unless the session is
    # sooner than the next morning. E-mail is never held back.
    quiet_start_hour: int = Field(default=21, ge=0, le=23)
    quiet_end_hour: int = Field(default=6, ge=0, le=23)

    # Reminders, in minutes before the session (24 hours and 1 hour by default).
    reminder_leads_min: list[Annotated[int, Field(gt=0, le=30 * 24 * 60)]] = Field(
        default_factory=lambda: [24 * 60, 60], max_length=5
    )

    # An office's own templates; the package's folder when unset (glv_notifier/templates).
    templates_dir: Path | None = None

    # Contact details are kept while a ticket still needs messages: after its last message
    # (archived, missed, cancelled), this many days; a filing never decided, this many hours.
    contact_retention_days: int = Field(default=30, gt=0)
    undecided_contact_retention_h: int = Field(default=48, gt=0)
    forget_interval_s: float = Field(default=3600.0, gt=0)

    @model_validator(mode="after")
    def _channels_agree(self) -> NotifierSettings:
        if self.gateway_format == "whatsapp_cloud" and self.phone_channel == "sms":
            raise ValueError(
                "the WhatsApp Cloud API sends no SMS: set PHONE_CHANNEL=whatsapp or GATEWAY_FORMAT=generic"
            )
        return self

    # A delivery is tried this many times (backoff doubling from DELIVERY_BACKOFF_S up to 10
    # minutes, each wait between half and all of that) before it fails for good: 25 to 50
    # minutes, so an SMTP or gateway outage shorter than that loses nothing.
    delivery_max_attempts: int = Field(default=12, gt=0, le=50)
    # Messages one process sends at a time. 1: a process killed after a server accepted a message
    # and before the notifier recorded it repeats at most that one message (with the same
    # Message-ID or Idempotency-Key). Raise it for throughput, and that bound with it; replicas
    # add throughput without weakening it.
    delivery_concurrency: int = Field(default=1, gt=0, le=64)
    delivery_backoff_s: float = Field(default=5.0, gt=0)


def checked(settings: NotifierSettings) -> NotifierSettings:
    """The settings with their secrets checked (glv_runtime.secrets), or `InsecureSecret`:
    the SMTP password when SMTP authenticates, and the gateway's token."""
    env = settings.environment
    update: dict[str, object] = {
        "gateway_token": check_secret(env_name(settings, "gateway_token"), settings.gateway_token, env)
    }
    if settings.smtp_username:
        update["smtp_password"] = check_secret(env_name(settings, "smtp_password"), settings.smtp_password, env)
    return settings.model_copy(update=update)
