"""Kafka's administrative side: topics, SCRAM users and ACLs (confluent-kafka's AdminClient).

aiokafka, which the services use for data, has no SCRAM or ACL APIs; confluent-kafka
(librdkafka, maintained by Confluent) has all three. Only the onboarding commands use
this module; every call is idempotent, so a command that failed halfway is run again.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from glv_runtime.access import Grant, Resource, principal
from glv_runtime.settings import ServiceSettings

# The iterations Kafka's own tools use by default for SCRAM-SHA-512.
SCRAM_ITERATIONS = 8192
TIMEOUT_S = 30.0


class AdminError(RuntimeError):
    pass


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int
    config: Mapping[str, str]


def admin_config(settings: ServiceSettings) -> dict[str, Any]:
    """librdkafka's configuration for the same transport and user the settings name."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "client.id": "glv-admin",
        "security.protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol == "SASL_SSL":
        if not settings.kafka_sasl_username or settings.kafka_sasl_password is None:
            raise AdminError("SASL_SSL needs an administrator's user and password")
        config |= {
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": settings.kafka_sasl_username,
            "sasl.password": settings.kafka_sasl_password.get_secret_value(),
            # Chain and host name checked (librdkafka's default), against this CA if given.
            "ssl.endpoint.identification.algorithm": "https",
        }
        if settings.kafka_ssl_cafile:
            config["ssl.ca.location"] = settings.kafka_ssl_cafile
    return config


def new_password() -> str:
    return secrets.token_urlsafe(32)


def _wait(futures: Mapping[Any, Future[Any]], *, ignore: Iterable[int] = ()) -> None:
    """Wait for every future; raise the first error that is not one of `ignore`."""
    ignored = set(ignore)
    for subject, future in futures.items():
        try:
            future.result(timeout=TIMEOUT_S)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.code() not in ignored:
                raise AdminError(f"{subject}: {error.str()}") from exc


def _binding(grant: Grant) -> AclBinding:
    return AclBinding(
        ResourceType.TOPIC if grant.resource is Resource.TOPIC else ResourceType.GROUP,
        grant.name,
        ResourcePatternType.PREFIXED if grant.prefixed else ResourcePatternType.LITERAL,
        grant.principal,
        "*",
        AclOperation[grant.operation.value],
        AclPermissionType.ALLOW,
    )


class KafkaAdmin:
    """The administrative calls onboarding makes, each idempotent."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.secured = settings.kafka_security_protocol == "SASL_SSL"
        self._client = AdminClient(admin_config(settings))

    def create_topics(self, specs: Sequence[TopicSpec]) -> None:
        if not specs:
            return
        futures = self._client.create_topics(
            [NewTopic(s.name, s.partitions, s.replication, config=dict(s.config)) for s in specs],
            request_timeout=TIMEOUT_S,
        )
        _wait(futures, ignore=[KafkaError.TOPIC_ALREADY_EXISTS])

    def user_exists(self, user: str) -> bool:
        futures = self._client.describe_user_scram_credentials([user], request_timeout=TIMEOUT_S)
        assert isinstance(futures, dict)
        try:
            description = futures[user].result(timeout=TIMEOUT_S)
        except KafkaException as exc:
            if exc.args[0].code() == KafkaError.RESOURCE_NOT_FOUND:
                return False
            raise AdminError(f"{user}: {exc.args[0].str()}") from exc
        return any(info.mechanism == ScramMechanism.SCRAM_SHA_512 for info in description.scram_credential_infos)

    def set_password(self, user: str, password: str) -> None:
        upsert = UserScramCredentialUpsertion(
            user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS), password.encode()
        )
        _wait(self._client.alter_user_scram_credentials([upsert], request_timeout=TIMEOUT_S))

    def delete_user(self, user: str) -> None:
        deletion = UserScramCredentialDeletion(user, ScramMechanism.SCRAM_SHA_512)
        _wait(
            self._client.alter_user_scram_credentials([deletion], request_timeout=TIMEOUT_S),
            ignore=[KafkaError.RESOURCE_NOT_FOUND],
        )

    def grant(self, grants: Sequence[Grant]) -> None:
        """Create these ALLOW bindings; one that exists already is left as it is."""
        if grants:
            _wait(self._client.create_acls([_binding(g) for g in grants], request_timeout=TIMEOUT_S))

    def revoke_everything_of(self, user: str) -> int:
        """Delete every ACL naming this user; returns how many went."""
        any_filter = AclBindingFilter(
            ResourceType.ANY,
            None,  # type: ignore[arg-type]  # None matches any name
            ResourcePatternType.ANY,
            principal(user),
            None,  # type: ignore[arg-type]  # any host
            AclOperation.ANY,
            AclPermissionType.ANY,
        )
        futures = self._client.delete_acls([any_filter], request_timeout=TIMEOUT_S)
        deleted = 0
        for future in futures.values():
            deleted += len(future.result(timeout=TIMEOUT_S))
        return deleted

    def grants_of(self, user: str) -> list[str]:
        """Every ACL naming this user, readable (for `list` commands and tests)."""
        any_filter = AclBindingFilter(
            ResourceType.ANY,
            None,  # type: ignore[arg-type]
            ResourcePatternType.ANY,
            principal(user),
            None,  # type: ignore[arg-type]
            AclOperation.ANY,
            AclPermissionType.ANY,
        )
        bindings = self._client.describe_acls(any_filter, request_timeout=TIMEOUT_S).result(timeout=TIMEOUT_S)
        return sorted(f"{b.operation.name} {b.restype.name} {b.resource_pattern_type.name} {b.name}" for b in bindings)
