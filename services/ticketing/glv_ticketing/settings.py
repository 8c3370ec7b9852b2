"""Ticketing's settings: environment variables prefixed GLV_TICKETING_."""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from glv_runtime.settings import ServiceSettings


class TicketingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GLV_TICKETING_", extra="ignore")

    service_name: str = "ticketing"
    database_url: SecretStr = SecretStr("postgresql://glv_ticketing:glv_ticketing@127.0.0.1:55432/glv_ticketing")
    http_port: int = 8081
    # Portals' status-API tokens live in the database (`glv-ticketing portal onboard`).
