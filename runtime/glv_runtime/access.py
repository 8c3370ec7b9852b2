"""Who may do what on Kafka, derived from the topic registry (pure: no I/O).

Each GLV service has its own SCRAM user `glv-<service>`; each portal has `portal-<id>`.
A service may write the topics it produces, read the topics it consumes, and use its
dead-letter topics and its consumer group. A portal may write only its own intake
topic and read only its own updates topic. Nothing else is granted, and the broker's
authorizer refuses what is not granted (allow.everyone.if.no.acl.found=false).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from glv_schemas.topics import (
    DEAD_LETTER_TOPICS,
    PORTAL_TICKETS,
    PORTAL_TOPICS,
    SERVICE_TOPICS,
    Topic,
    check_portal_id,
)


class Operation(StrEnum):
    READ = "READ"
    WRITE = "WRITE"
    DESCRIBE = "DESCRIBE"
    CREATE = "CREATE"


class Resource(StrEnum):
    TOPIC = "TOPIC"
    GROUP = "GROUP"


@dataclass(frozen=True, order=True)
class Grant:
    """One ALLOW rule: `principal` may `operation` on a resource, named exactly or by prefix."""

    principal: str
    resource: Resource
    name: str
    operation: Operation
    prefixed: bool = False


def service_user(service: str) -> str:
    return f"glv-{service}"


def portal_user(portal_id: str) -> str:
    return f"portal-{check_portal_id(portal_id)}"


def principal(user: str) -> str:
    return f"User:{user}"


def _topic_grants(user: str, name: str, operations: set[Operation]) -> list[Grant]:
    return [Grant(principal(user), Resource.TOPIC, name, op) for op in sorted(operations)]


def service_grants(service: str, prefix: str = "") -> list[Grant]:
    """What a service needs on GLV's own topics (per-portal topics come with each portal).

    CREATE on its own topics only: a service creates the topics it uses at start when
    they are missing (an empty cluster), and cannot create anything else.
    """
    user = service_user(service)
    grants: list[Grant] = []
    for topic in SERVICE_TOPICS:
        operations: set[Operation] = set()
        if service in topic.producers:
            operations |= {Operation.WRITE, Operation.DESCRIBE, Operation.CREATE}
        if service in topic.consumers:
            operations |= {Operation.READ, Operation.DESCRIBE, Operation.CREATE}
        grants += _topic_grants(user, prefix + topic.name, operations)
    for dead_letters in DEAD_LETTER_TOPICS:
        if service in dead_letters.producers:
            grants += _topic_grants(
                user,
                prefix + dead_letters.name,
                {Operation.WRITE, Operation.READ, Operation.DESCRIBE, Operation.CREATE},
            )
    # Its consumer group glv-<service>, and glv-<service>.<anything> for an operator's variants
    # (the dot keeps glv-ticketing's grant from covering a group named glv-ticketing2).
    grants.append(Grant(principal(user), Resource.GROUP, f"glv-{service}", Operation.READ))
    grants.append(Grant(principal(user), Resource.GROUP, f"glv-{service}.", Operation.READ, prefixed=True))
    return sorted(grants)


def topics_of_service(service: str) -> list[Topic]:
    """The fixed-name topics a service touches: what it creates at start if missing."""
    touched = [t for t in SERVICE_TOPICS if service in t.producers or service in t.consumers]
    return touched + [t for t in DEAD_LETTER_TOPICS if service in t.producers]


def portal_grants(portal_id: str, prefix: str = "") -> list[Grant]:
    """Everything onboarding grants for one portal: the portal's own rights on its two
    topics and its consumer groups, and GLV's services' rights on those same topics."""
    user = portal_user(portal_id)
    grants: list[Grant] = []
    for topic in PORTAL_TOPICS:
        name = prefix + topic.for_portal(portal_id)
        if "portals" in topic.producers:
            grants += _topic_grants(user, name, {Operation.WRITE, Operation.DESCRIBE})
        if "portals" in topic.consumers:
            grants += _topic_grants(user, name, {Operation.READ, Operation.DESCRIBE})
        for service in topic.consumers:
            if service != "portals":
                grants += _topic_grants(service_user(service), name, {Operation.READ, Operation.DESCRIBE})
        for service in topic.producers:
            if service != "portals":
                grants += _topic_grants(service_user(service), name, {Operation.WRITE, Operation.DESCRIBE})
    # A portal's consumer groups are portal-<id> or portal-<id>.<anything>: with the dot, portal
    # "lelang" cannot join the groups of portal "lelang-2" (a bare prefix would match them).
    grants.append(Grant(principal(user), Resource.GROUP, user, Operation.READ))
    grants.append(Grant(principal(user), Resource.GROUP, f"{user}.", Operation.READ, prefixed=True))
    return sorted(grants)


def portal_topic_names(portal_id: str, prefix: str = "") -> dict[str, str]:
    """The portal's topics by role: {"intake": ..., "updates": ...}."""
    return {("intake" if t is PORTAL_TICKETS else "updates"): prefix + t.for_portal(portal_id) for t in PORTAL_TOPICS}
