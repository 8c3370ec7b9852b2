"""Ticketing's settings: environment variables prefixed GLV_TICKETING_."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from glv_runtime.settings import ServiceSettings


class TicketingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GLV_TICKETING_", extra="ignore")

    service_name: str = "ticketing"
    database_url: SecretStr = SecretStr("postgresql://glv_ticketing:glv_ticketing@127.0.0.1:55432/glv_ticketing")
    http_port: int = 8081
    # portal id -> bearer token, e.g. GLV_TICKETING_PORTAL_TOKENS='{"sim-portal": "..."}'.
    portal_tokens: dict[str, SecretStr] = Field(default_factory=dict)
