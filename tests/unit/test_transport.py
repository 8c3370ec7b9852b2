"""What a service accepts as its transport to Kafka and PostgreSQL, before it connects."""

from __future__ import annotations

import ssl
from typing import Any

import pytest

from glv_runtime.settings import ServiceSettings
from glv_runtime.transport import TransportError, check_transport, database_ssl, kafka_client_options
from glv_ticketing.settings import TicketingSettings

STRONG = "k" + "9f2Qx7LmZp4Rt8Wv1Ny6Bc3Hd5Js0Ga" * 2


def settings(**values: Any) -> ServiceSettings:
    return TicketingSettings(**values)


SECURE: dict[str, Any] = {
    "environment": "production",
    "kafka_security_protocol": "SASL_SSL",
    "kafka_sasl_username": "glv-ticketing",
    "kafka_sasl_password": STRONG,
    "database_ssl_mode": "verify-full",
    "database_ssl_root_cert": "/etc/glv/ca.crt",
}


def test_production_with_sasl_ssl_and_verify_full_starts() -> None:
    check_transport(settings(**SECURE))


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        ({"kafka_security_protocol": "PLAINTEXT"}, "plaintext to Kafka"),
        ({"database_ssl_mode": "disable"}, "plaintext to PostgreSQL"),
        ({"kafka_sasl_username": None}, "GLV_TICKETING_KAFKA_SASL_USERNAME"),
        ({"kafka_sasl_password": None}, "GLV_TICKETING_KAFKA_SASL_PASSWORD"),
        ({"kafka_sasl_password": ""}, "GLV_TICKETING_KAFKA_SASL_PASSWORD"),
        ({"kafka_sasl_password": "short"}, "GLV_TICKETING_KAFKA_SASL_PASSWORD"),
        ({"database_ssl_root_cert": None}, "GLV_DATABASE_SSL_ROOT_CERT"),
    ],
)
def test_production_refuses_what_is_not_secured(change: dict[str, Any], refusal: str) -> None:
    with pytest.raises(TransportError, match=refusal):
        check_transport(settings(**{**SECURE, **change}))


def test_plaintext_in_production_only_when_the_operator_says_so() -> None:
    plain = {"environment": "production", "allow_plaintext_transport": True}
    check_transport(settings(**plain))
    with pytest.raises(TransportError, match="GLV_TICKETING_ALLOW_PLAINTEXT_TRANSPORT"):
        check_transport(settings(environment="production"))


def test_development_may_run_plaintext_but_never_sasl_without_a_password() -> None:
    check_transport(settings(environment="development"))
    with pytest.raises(TransportError, match="PASSWORD"):
        check_transport(
            settings(environment="development", kafka_security_protocol="SASL_SSL", kafka_sasl_username="u")
        )


def test_client_options_carry_scram_and_a_verifying_context() -> None:
    options = kafka_client_options(settings(**{**SECURE, "database_ssl_root_cert": None}))
    assert options["security_protocol"] == "SASL_SSL" and options["sasl_mechanism"] == "SCRAM-SHA-512"
    context = options["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert kafka_client_options(settings()) == {"security_protocol": "PLAINTEXT"}
    assert database_ssl(settings()) is False
