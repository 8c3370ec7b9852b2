"""How a service reaches Kafka and PostgreSQL: SASL_SSL and verify-full TLS, from settings.

Every Kafka client (producer, FastStream consumer, admin, restore reader) and every
PostgreSQL connection (pool, LISTEN connections) takes its security from here, so
that no client is left on plaintext by accident. Production refuses plaintext unless
the operator has said explicitly that the network secures it (`allow_plaintext_transport`).
"""

from __future__ import annotations

import ssl
from typing import Any

from faststream.security import BaseSecurity, SASLScram512

from glv_runtime.logs import get_logger
from glv_runtime.secrets import InsecureSecret, check_secret, env_name
from glv_runtime.settings import ServiceSettings

log = get_logger(__name__)

SASL_MECHANISM = "SCRAM-SHA-512"


class TransportError(RuntimeError):
    """Settings that would connect without the security production requires."""


def check_transport(settings: ServiceSettings) -> None:
    """Refuse to start on a transport the environment does not allow, or on half a config."""
    problems: list[str] = []
    if settings.kafka_security_protocol == "SASL_SSL":
        if not settings.kafka_sasl_username:
            problems.append(f"SASL_SSL needs the service's Kafka user ({env_name(settings, 'kafka_sasl_username')})")
        password_name = env_name(settings, "kafka_sasl_password")
        if settings.kafka_sasl_password is None or not settings.kafka_sasl_password.get_secret_value():
            # Even in development: an ephemeral password could not match the broker's.
            problems.append(f"SASL_SSL needs the service's Kafka password ({password_name})")
        else:
            try:
                check_secret(password_name, settings.kafka_sasl_password, settings.environment)
            except InsecureSecret as exc:
                problems.append(str(exc))
    if settings.database_ssl_mode == "verify-full" and not settings.database_ssl_root_cert:
        problems.append("verify-full needs GLV_DATABASE_SSL_ROOT_CERT (the CA that signed the server's certificate)")
    plaintext = [
        name
        for name, insecure in (
            ("Kafka (KAFKA_SECURITY_PROTOCOL=PLAINTEXT)", settings.kafka_security_protocol == "PLAINTEXT"),
            ("PostgreSQL (GLV_DATABASE_SSL_MODE=disable)", settings.database_ssl_mode == "disable"),
        )
        if insecure
    ]
    if plaintext and settings.environment == "production":
        if settings.allow_plaintext_transport:
            log.warning("plaintext transport allowed by setting", plaintext=plaintext)
        else:
            problems.append(
                "production refuses plaintext to " + " and ".join(plaintext) + "; set SASL_SSL and verify-full, "
                f"or {env_name(settings, 'allow_plaintext_transport')}=true where the network itself encrypts "
                "and authenticates"
            )
    if problems:
        raise TransportError("; ".join(problems))


def kafka_ssl_context(cafile: str | None) -> ssl.SSLContext:
    """Certificate chain and host name checked; the given CA, else the system's."""
    context = ssl.create_default_context(cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def kafka_client_options(settings: ServiceSettings) -> dict[str, Any]:
    """aiokafka keyword arguments (producer, consumer, admin) for the configured transport."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return {"security_protocol": "PLAINTEXT"}
    assert settings.kafka_sasl_password is not None
    return {
        "security_protocol": "SASL_SSL",
        "ssl_context": kafka_ssl_context(settings.kafka_ssl_cafile),
        "sasl_mechanism": SASL_MECHANISM,
        "sasl_plain_username": settings.kafka_sasl_username,
        "sasl_plain_password": settings.kafka_sasl_password.get_secret_value(),
    }


def faststream_security(settings: ServiceSettings) -> BaseSecurity | None:
    """The same transport for FastStream's broker (it passes it on to its consumers)."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return None
    assert settings.kafka_sasl_username is not None and settings.kafka_sasl_password is not None
    return SASLScram512(
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password.get_secret_value(),
        ssl_context=kafka_ssl_context(settings.kafka_ssl_cafile),
        use_ssl=True,
    )


def database_ssl(settings: ServiceSettings) -> ssl.SSLContext | bool:
    """asyncpg's `ssl` argument: verify-full is a context that checks chain and host name."""
    if settings.database_ssl_mode == "disable":
        return False
    context = ssl.create_default_context(cafile=settings.database_ssl_root_cert)
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def database_connect_options(settings: ServiceSettings) -> dict[str, Any]:
    """Keyword arguments for asyncpg.connect / create_pool beside the DSN."""
    return {"ssl": database_ssl(settings)}
