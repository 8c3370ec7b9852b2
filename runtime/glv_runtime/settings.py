"""Settings common to every service; each service subclasses with its own prefix."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# "development" is set by the local stack, the demo and the tests: it lets a service start
# with a missing or short secret (an ephemeral random one is made) and without TLS.
# Everything else is production, which refuses both (glv_runtime.secrets, glv_runtime.transport).
Environment = Literal["production", "development"]


class ServiceSettings(BaseSettings):
    """Read from the environment with the service's prefix (e.g. GLV_TICKETING_).

    `KAFKA_BOOTSTRAP_SERVERS` is shared by all services, so it is also read unprefixed.
    Defaults run against the local stack (deploy/local/stack.sh).
    """

    model_config = SettingsConfigDict(env_prefix="GLV_", extra="ignore", validate_by_name=True)

    service_name: str = "glv"
    environment: Environment = Field(default="production", validation_alias="GLV_ENVIRONMENT")
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:59092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers"),
    )
    # Kafka transport: SASL_SSL with SCRAM-SHA-512 in production. The CA file verifies the
    # broker's certificate (the system's CAs when unset); the user is the service's own.
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        validation_alias="KAFKA_SECURITY_PROTOCOL",
    )
    kafka_ssl_cafile: str | None = Field(default=None, validation_alias="KAFKA_SSL_CAFILE")
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    # How soon a newly onboarded portal's topics are seen by a pattern subscription.
    kafka_metadata_max_age_ms: int = Field(default=30_000, gt=0)

    database_url: SecretStr = SecretStr("postgresql://glv:glv@127.0.0.1:55432/glv")
    # PostgreSQL transport: "verify-full" (TLS, certificate chain and host name checked
    # against the root certificate) in production; "disable" only in development.
    database_ssl_mode: Literal["disable", "verify-full"] = Field(
        default="disable", validation_alias="GLV_DATABASE_SSL_MODE"
    )
    database_ssl_root_cert: str | None = Field(default=None, validation_alias="GLV_DATABASE_SSL_ROOT_CERT")
    # An operator whose network already encrypts and authenticates (a service mesh with
    # mTLS) may run production without TLS here: it must say so; a warning says it at start.
    allow_plaintext_transport: bool = False
    db_pool_min: int = 2
    db_pool_max: int = 10
    db_connect_timeout_s: float = Field(default=10.0, gt=0)
    # A runaway statement or lock wait fails as an outage (retried), instead of holding a partition.
    db_statement_timeout_ms: int = Field(default=30_000, ge=0)
    db_lock_timeout_ms: int = Field(default=5_000, ge=0)

    http_host: str = "127.0.0.1"
    http_port: int = 8080

    # Consuming: a batch is what partitions have ready, up to this bound.
    batch_max_records: int = Field(default=500, gt=0, le=10_000)
    batch_timeout_ms: int = Field(default=100, gt=0)
    # A message that keeps failing is dead-lettered after this many attempts.
    max_attempts: int = Field(default=3, gt=0, le=20)
    retry_backoff_s: float = Field(default=0.2, ge=0)
    # Backoff while the database or broker is unreachable (nothing is acked meanwhile).
    outage_backoff_s: float = Field(default=1.0, gt=0)
    outage_backoff_max_s: float = Field(default=30.0, gt=0)
    # /readyz turns false when the consumer has lag and has committed nothing for this long.
    stall_timeout_s: float = Field(default=120.0, gt=0)

    # Producing: linger is set explicitly; idempotence and acks=all are not settings.
    # 5 ms: measured against 1 ms in the pipeline benchmark, a shorter linger sent more,
    # smaller requests (broker CPU 4% -> 10%) and lowered throughput and latency alike.
    producer_linger_ms: int = Field(default=5, ge=0, le=1000)
    producer_max_batch_bytes: int = Field(default=256 * 1024, gt=0)
    # Prepended to every topic name: several environments (or test runs) can
    # share one cluster without seeing each other's events.
    topic_prefix: str = ""
    # Defaults to glv-<service>.
    consumer_group: str | None = None
    topic_partitions: int = Field(default=6, gt=0)
    # Dead letters from portals' intake topics hold personal data: kept this long
    # (the topic's retention.ms, set when the service creates the topic).
    intake_dead_letter_retention_days: int = Field(default=7, gt=0, le=90)
    topic_replication: int = Field(default=1, gt=0)

    # Outbox relay: LISTEN/NOTIFY wakes it; this poll is what makes it correct.
    relay_poll_interval_s: float = Field(default=0.5, gt=0)
    relay_batch_size: int = Field(default=1000, gt=0)
    relay_batch_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    outbox_retention_s: int = Field(default=3600, ge=0)
    inbox_retention_days: int = Field(default=30, gt=0)
    # Side-effect jobs and periodic tasks (glv_runtime.jobs).
    job_concurrency: int = Field(default=8, gt=0)
    job_poll_interval_s: float = Field(default=1.0, gt=0)
    job_retention_s: int = Field(default=7 * 24 * 3600, ge=0)
    housekeeping_interval_s: float = Field(default=60.0, gt=0)

    graceful_timeout_s: float = Field(default=20.0, gt=0)
    log_level: str = "INFO"

    # Fault injection for the crash tests only: SIGKILL self right after a
    # database commit and before the offset commit.
    crash_after_db_commit: bool = False

    def dsn(self) -> str:
        return self.database_url.get_secret_value()
