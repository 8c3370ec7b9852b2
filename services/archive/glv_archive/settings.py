"""Archive settings: environment variables prefixed GLV_ARCHIVE_."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from glv_runtime.settings import ServiceSettings

MIB = 1024 * 1024


class ArchiveSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GLV_ARCHIVE_", extra="ignore")

    service_name: str = "archive"
    database_url: SecretStr = SecretStr("postgresql://glv_archive:glv_archive@127.0.0.1:55432/glv_archive")
    http_port: int = 8084
    # Where signed download links point (the archive's HTTP endpoint as officers reach it).
    public_base_url: str = "http://127.0.0.1:8084"

    # ---------------------------------------------------------------- storage
    # An obstore URL: file:///var/lib/glv/archive (the default, a local folder) or
    # s3://bucket/prefix with the S3_* settings below (AWS, MinIO, Ceph, moto...).
    store_url: str = "file:///var/tmp/glv/archive"
    s3_endpoint: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    # Plain http to the S3 endpoint: only for a server on the same host (tests, MinIO in dev).
    s3_allow_http: bool = False

    # ---------------------------------------------------------------- keys
    # Key-encryption keys, JSON {"<key id>": "<base64 Tink AES256-GCM keyset>"}, made by
    # `glv-archive keys new`. Every object's own data key is wrapped by ACTIVE_KEY_ID; older
    # ids stay listed until `glv-archive keys rewrap` has moved every object off them.
    keys: SecretStr | None = None
    active_key_id: str | None = None

    # ---------------------------------------------------------------- fetching
    # Hosts artifacts may be fetched from: exact names, or "*.example.org" for subdomains.
    fetch_allowed_hosts: list[str] = Field(default_factory=list)
    # Hosts that may be fetched over plain http (development only; production refuses it).
    fetch_http_hosts: list[str] = Field(default_factory=list)
    # Hosts allowed to resolve to loopback/private/link-local addresses (a platform on the
    # office's own network). Metadata addresses (169.254.169.254, fd00:ec2::254) never are.
    fetch_private_hosts: list[str] = Field(default_factory=list)
    fetch_max_bytes: int = Field(default=4 * 1024 * MIB, gt=0)
    fetch_max_redirects: int = Field(default=3, ge=0, le=10)
    fetch_connect_timeout_s: float = Field(default=10.0, gt=0)
    # Longest silence while reading a body before the transfer counts as stalled.
    fetch_read_timeout_s: float = Field(default=60.0, gt=0)
    # The whole transfer of one artifact, however large.
    fetch_timeout_s: float = Field(default=3 * 3600.0, gt=0)
    # A job holds its lease this long and renews it while it runs, so that a killed
    # archive's transfer is taken over within about this time, not after FETCH_TIMEOUT_S.
    fetch_lease_s: float = Field(default=60.0, ge=2)
    fetch_max_attempts: int = Field(default=8, gt=0, le=50)
    fetch_backoff_s: float = Field(default=30.0, gt=0)
    fetch_concurrency: int = Field(default=2, gt=0, le=32)
    # Content types accepted for each kind of artifact (parameters such as charset ignored).
    video_types: list[str] = Field(default_factory=lambda: ["video/mp4", "video/webm"])
    audio_types: list[str] = Field(
        default_factory=lambda: ["audio/mp4", "audio/mpeg", "audio/ogg", "audio/webm", "audio/wav", "audio/opus"]
    )
    chat_types: list[str] = Field(default_factory=lambda: ["application/json", "text/plain"])
    # An artifact not there yet (404, 5xx, timeouts) after the attempts is "late": the
    # session is reported ArchiveFailed (retryable) and the artifact is tried again every
    # LATE_RECHECK_S for LATE_GIVE_UP_H; if it arrives, the session is archived then.
    late_recheck_s: float = Field(default=3600.0, gt=0)
    late_give_up_h: float = Field(default=7 * 24.0, gt=0)

    # ---------------------------------------------------------------- access
    # HMAC key of the signed download links (at least 32 random characters in production).
    link_secret: SecretStr | None = None
    link_default_ttl_s: Annotated[int, Field(gt=0, le=7 * 24 * 3600)] = 900

    # ---------------------------------------------------------------- retention
    # How long a session's recordings are kept (the office's records schedule).
    retention_days: int = Field(default=365 * 5, gt=0)
    purge_interval_s: float = Field(default=3600.0, gt=0)
