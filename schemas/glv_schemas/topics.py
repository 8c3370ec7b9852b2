"""The one registry of GLV services and topics: names, keys, partitions, producers, consumers."""

from __future__ import annotations

from dataclasses import dataclass, field

import glv_schemas.events as ev
from glv_schemas.events import EventModel

# Every service of the design, built or planned: each has a dead-letter topic and a
# database role (deploy/local/stack.sh, deploy/compose/initdb).
SERVICES = ("ticketing", "scheduler", "notifier", "archive")


@dataclass(frozen=True)
class Service:
    """A service that exists as a package: services/<name>/ holds package <package>.

    Its console script is `glv-<name>`, its settings are GLV_<NAME>_*, and the deploy
    files (compose, Kubernetes) are generated from this entry by
    `python -m glv_devtools.deploy_files`.
    """

    name: str
    package: str
    # Default of GLV_<NAME>_HTTP_PORT: /healthz, /readyz, /metrics and the service's API.
    http_port: int
    # Whether `glv-<name> load-catalog FILE` loads the office catalog (compose's
    # catalog-loader, Kubernetes' glv-catalog-load Job). At most one service does.
    loads_catalog: bool = False

    @property
    def command(self) -> str:
        return f"glv-{self.name}"

    @property
    def env_prefix(self) -> str:
        return f"GLV_{self.name.upper()}_"


# The services built so far, in start order. Adding one: its package folder
# services/<name>/ plus an entry here (and in SERVICES, if it is not planned yet).
DEPLOYED_SERVICES: tuple[Service, ...] = (
    Service("ticketing", "glv_ticketing", http_port=8081),
    Service("scheduler", "glv_scheduler", http_port=8082, loads_catalog=True),
)


@dataclass(frozen=True)
class Topic:
    name: str
    description: str
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    events: tuple[EventModel, ...]
    key: str = "ticket_id"
    partitions: int = 6
    compacted: bool = False
    config: dict[str, str] = field(default_factory=dict)

    def topic_config(self) -> dict[str, str]:
        base = {"cleanup.policy": "compact"} if self.compacted else {"retention.ms": str(14 * 24 * 3600 * 1000)}
        return {**base, **self.config}


PORTAL_TICKETS = Topic(
    name="glv.portal.tickets",
    description="What upstream portals file: new tickets, cancellation and reschedule requests.",
    producers=("portals",),
    consumers=("ticketing", "notifier"),
    events=(ev.TicketFiled, ev.CancellationRequested, ev.RescheduleRequested),
)
TICKETING_EVENTS = Topic(
    name="glv.ticketing.events",
    description="Ticketing's decisions on what portals filed.",
    producers=("ticketing",),
    consumers=("scheduler", "notifier", "portals"),
    events=(
        ev.TicketAccepted,
        ev.TicketRejected,
        ev.TicketCancelled,
        ev.CancellationRefused,
        ev.RescheduleApproved,
        ev.RescheduleRefused,
    ),
)
SCHEDULER_EVENTS = Topic(
    name="glv.scheduler.events",
    description="Slots assigned and released, scheduling failures, and how sessions went.",
    producers=("scheduler",),
    consumers=("ticketing", "notifier", "archive", "portals"),
    events=(ev.SlotAssigned, ev.SlotReleased, ev.SchedulingFailed, ev.SessionHeld, ev.SessionMissed),
)
NOTIFIER_EVENTS = Topic(
    name="glv.notifier.events",
    description="What the stakeholder was told, and what could not be delivered.",
    producers=("notifier",),
    consumers=("portals",),
    events=(ev.NotificationSent, ev.NotificationFailed),
)
ARCHIVE_EVENTS = Topic(
    name="glv.archive.events",
    description="Where a session's recordings and chat were archived, or why they were not.",
    producers=("archive",),
    consumers=("ticketing", "notifier", "portals"),
    events=(ev.RecordingArchived, ev.ArchiveFailed),
)
CATALOG = Topic(
    name="glv.catalog",
    description="Offices and the services they offer; compacted, latest entry per office wins.",
    producers=("scheduler",),
    consumers=("ticketing",),
    events=(ev.OfficeCatalogUpdated, ev.OfficeCatalogUpdatedV2),
    key="office_code",
    partitions=1,
    compacted=True,
)


def dead_letter_topic(service: str) -> Topic:
    return Topic(
        name=f"glv.dlq.{service}",
        description=f"Messages the {service} service could not decode or apply, with the reason in headers.",
        producers=(service,),
        consumers=(f"{service} dead-letters replay",),
        events=(),
        key="original key",
        partitions=1,
        config={"retention.ms": str(90 * 24 * 3600 * 1000)},
    )


EVENT_TOPICS: tuple[Topic, ...] = (
    PORTAL_TICKETS,
    TICKETING_EVENTS,
    SCHEDULER_EVENTS,
    NOTIFIER_EVENTS,
    ARCHIVE_EVENTS,
    CATALOG,
)
DEAD_LETTER_TOPICS: tuple[Topic, ...] = tuple(dead_letter_topic(s) for s in SERVICES)
ALL_TOPICS: tuple[Topic, ...] = EVENT_TOPICS + DEAD_LETTER_TOPICS


def topic_of(model: EventModel) -> Topic:
    """The single topic an event type is published on."""
    for topic in EVENT_TOPICS:
        if model in topic.events:
            return topic
    raise KeyError(model.event_type())


def consumed_by(service: str) -> tuple[Topic, ...]:
    return tuple(t for t in EVENT_TOPICS if service in t.consumers)
