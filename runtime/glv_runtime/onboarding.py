"""Kafka access for GLV's services and for portals: users, ACLs and a portal's topics.

Each function is idempotent: a user that exists keeps its password unless a rotation
is asked for, a binding that exists stays, a topic that exists is left as it is. A
password is returned only when it was set by this call (it is shown once, never stored).
On a broker without authentication (the plain local stack, `make demo`) only topics
are created: there are no users or ACLs to manage.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic_settings import SettingsConfigDict

from glv_runtime.access import (
    portal_grants,
    portal_topic_names,
    portal_user,
    service_grants,
    service_user,
)
from glv_runtime.kafka_admin import KafkaAdmin, TopicSpec, new_password
from glv_runtime.settings import ServiceSettings
from glv_schemas.topics import PORTAL_TOPICS


class AdminSettings(ServiceSettings):
    """The administrator's connection: GLV_ADMIN_KAFKA_SASL_USERNAME / _PASSWORD (a Kafka
    super user), with the shared KAFKA_BOOTSTRAP_SERVERS, KAFKA_SECURITY_PROTOCOL and
    KAFKA_SSL_CAFILE. Topic names: `glv-kafka-access` uses GLV_ADMIN_TOPIC_PREFIX; portal
    onboarding (`glv-ticketing portal`) uses ticketing's own prefix, partitions and replication,
    since ticketing reads and writes those topics."""

    model_config = SettingsConfigDict(env_prefix="GLV_ADMIN_", extra="ignore")

    service_name: str = "admin"


@dataclass(frozen=True)
class Access:
    user: str
    # Set only when this call created the user or rotated its password.
    password: str | None
    grants: int


def _ensure_user(admin: KafkaAdmin, user: str, *, rotate: bool) -> str | None:
    if not admin.secured:
        return None
    if rotate or not admin.user_exists(user):
        password = new_password()
        admin.set_password(user, password)
        return password
    return None


def ensure_service_access(admin: KafkaAdmin, service: str, *, prefix: str = "", rotate: bool = False) -> Access:
    """The service's SCRAM user and its ACLs on GLV's own topics."""
    user = service_user(service)
    password = _ensure_user(admin, user, rotate=rotate)
    grants = service_grants(service, prefix)
    if admin.secured:
        admin.grant(grants)
    return Access(user, password, len(grants) if admin.secured else 0)


def ensure_portal_access(
    admin: KafkaAdmin, portal_id: str, settings: ServiceSettings, *, rotate: bool = False
) -> tuple[Access, dict[str, str]]:
    """The portal's two topics, its SCRAM user, its ACLs and the services' ACLs on its topics."""
    prefix = settings.topic_prefix
    topics = portal_topic_names(portal_id, prefix)
    admin.create_topics(
        [
            TopicSpec(
                prefix + topic.for_portal(portal_id),
                settings.topic_partitions,
                settings.topic_replication,
                topic.topic_config(),
            )
            for topic in PORTAL_TOPICS
        ]
    )
    user = portal_user(portal_id)
    password = _ensure_user(admin, user, rotate=rotate)
    grants = portal_grants(portal_id, prefix)
    if admin.secured:
        admin.grant(grants)
    return Access(user, password, len(grants) if admin.secured else 0), topics


def revoke_portal_access(admin: KafkaAdmin, portal_id: str) -> int:
    """The portal's user and every ACL naming it go; its topics stay until their retention
    ends (what it filed is still being processed). Returns how many ACLs were deleted."""
    user = portal_user(portal_id)
    if not admin.secured:
        return 0
    deleted = admin.revoke_everything_of(user)
    admin.delete_user(user)
    return deleted
