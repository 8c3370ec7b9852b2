"""The one registry of GLV services and topics: names, keys, partitions, producers, consumers."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

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
    Service("notifier", "glv_notifier", http_port=8083),
    Service("archive", "glv_archive", http_port=8084),
)


DAY_MS = 24 * 3600 * 1000
# A portal id names its topics and its Kafka user: lower-case letters, digits and dashes,
# starting with a letter or digit, at most 63 characters. No dots, so that a topic name
# says unambiguously which portal it belongs to.
PORTAL_ID_PATTERN = r"[a-z0-9][a-z0-9-]{0,62}"
_PORTAL_ID = re.compile(PORTAL_ID_PATTERN)
PORTAL_PLACEHOLDER = "{portal_id}"


class InvalidPortalId(ValueError):
    pass


def check_portal_id(portal_id: str) -> str:
    if not _PORTAL_ID.fullmatch(portal_id):
        raise InvalidPortalId(f"portal id {portal_id!r} must match {PORTAL_ID_PATTERN}")
    return portal_id


@dataclass(frozen=True)
class Topic:
    """A topic, or with `per_portal` a family of topics: one per onboarded portal, whose
    name has `{portal_id}` in it (`glv.portal.{portal_id}.tickets`)."""

    name: str
    description: str
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    events: tuple[EventModel, ...]
    key: str = "ticket_id"
    partitions: int = 6
    compacted: bool = False
    config: dict[str, str] = field(default_factory=dict)
    per_portal: bool = False

    def topic_config(self) -> dict[str, str]:
        base = {"cleanup.policy": "compact"} if self.compacted else {"retention.ms": str(14 * DAY_MS)}
        return {**base, **self.config}

    def for_portal(self, portal_id: str) -> str:
        """This family's topic for one portal."""
        assert self.per_portal, f"{self.name} is not a per-portal topic"
        return self.name.replace(PORTAL_PLACEHOLDER, check_portal_id(portal_id))

    def concrete(self, portal_id: str) -> Topic:
        """This family's topic for one portal, as a topic of its own."""
        return replace(self, name=self.for_portal(portal_id), per_portal=False)

    def pattern(self, prefix: str = "") -> str:
        """A regular expression matching exactly this topic's name(s) under `prefix`."""
        if not self.per_portal:
            return re.escape(prefix + self.name)
        before, _, after = self.name.partition(PORTAL_PLACEHOLDER)
        return re.escape(prefix + before) + f"({PORTAL_ID_PATTERN})" + re.escape(after)

    def portal_of(self, topic_name: str, prefix: str = "") -> str | None:
        """The portal whose topic `topic_name` is, or None when it is not one of this family."""
        if not self.per_portal:
            return None
        match = re.fullmatch(self.pattern(prefix), topic_name)
        return match.group(1) if match else None

    def names(self, topic_name: str) -> bool:
        """Whether `topic_name` is this topic (or one of this family) under any prefix ending in a dot."""
        return re.search(r"(?:^|\.)" + self.pattern() + "$", topic_name) is not None

    def portal_in(self, topic_name: str) -> str | None:
        """Like portal_of, under any prefix ending in a dot."""
        if not self.per_portal:
            return None
        match = re.search(r"(?:^|\.)" + self.pattern() + "$", topic_name)
        return match.group(1) if match else None


# Each portal writes only its own intake topic and reads only its own updates topic:
# the broker's ACLs (granted by `glv-ticketing portal onboard`) say which portal a
# record comes from, not a field in it.
PORTAL_TICKETS = Topic(
    name="glv.portal.{portal_id}.tickets",
    description=(
        "What one portal files: new tickets, cancellation and reschedule requests. Only that portal may "
        "write it; the portal named in each body must be the topic's."
    ),
    producers=("portals",),
    consumers=("ticketing", "notifier"),
    events=(ev.TicketFiled, ev.CancellationRequested, ev.RescheduleRequested, ev.ErasureRequested),
    # Filings carry personal data: kept a week, long enough to replay after an outage.
    config={"retention.ms": str(7 * DAY_MS)},
    per_portal=True,
)
TICKETING_EVENTS = Topic(
    name="glv.ticketing.events",
    description="Ticketing's decisions on what portals filed.",
    producers=("ticketing",),
    consumers=("scheduler", "notifier", "archive"),
    events=(
        ev.TicketAccepted,
        ev.TicketRejected,
        ev.TicketCancelled,
        ev.CancellationRefused,
        ev.RescheduleApproved,
        ev.RescheduleRefused,
        ev.ErasureApproved,
    ),
)
SCHEDULER_EVENTS = Topic(
    name="glv.scheduler.events",
    description="Slots assigned and released, scheduling failures, and how sessions went.",
    producers=("scheduler",),
    consumers=("ticketing", "notifier", "archive"),
    events=(
        ev.SlotAssigned,
        ev.AssignmentPending,
        ev.SlotReleased,
        ev.SchedulingFailed,
        ev.SessionHeld,
        ev.SessionMissed,
    ),
)
NOTIFIER_EVENTS = Topic(
    name="glv.notifier.events",
    description="What the stakeholder was told, and what could not be delivered.",
    producers=("notifier",),
    consumers=("ticketing",),
    events=(ev.NotificationSent, ev.NotificationFailed),
)
ARCHIVE_EVENTS = Topic(
    name="glv.archive.events",
    description="Where a session's recordings and chat were archived, or why they were not.",
    producers=("archive",),
    consumers=("ticketing", "notifier"),
    events=(ev.RecordingArchived, ev.ArchiveFailed, ev.ArchiveFailedV2, ev.ArchiveErased),
)
CATALOG = Topic(
    name="glv.catalog",
    description="Offices and the services they offer; compacted, latest entry per office wins.",
    producers=("scheduler",),
    consumers=("ticketing", "notifier", "archive"),
    events=(ev.OfficeCatalogUpdated, ev.OfficeCatalogUpdatedV2),
    key="office_code",
    partitions=1,
    compacted=True,
)


# Everything a portal may know of its own tickets, and nothing of another portal's:
# ticketing forwards each event that concerns a ticket (its own decisions, slots with
# the stakeholder's join link, session outcomes, notifications, archive results) to the
# updates topic of the portal that filed it, with the event's id and headers unchanged.
PORTAL_UPDATES = Topic(
    name="glv.portal.{portal_id}.updates",
    description=(
        "What became of one portal's tickets: ticketing's decisions and every downstream event about "
        "them, as published on the service topics. Only that portal may read it."
    ),
    producers=("ticketing",),
    consumers=("portals",),
    events=TICKETING_EVENTS.events + SCHEDULER_EVENTS.events + NOTIFIER_EVENTS.events + ARCHIVE_EVENTS.events,
    per_portal=True,
)

DEAD_LETTER_RETENTION_DAYS = 90
# What a portal filed carries personal data: its dead letters are kept a short time.
INTAKE_DEAD_LETTER_RETENTION_DAYS = 7


def dead_letter_topic(service: str) -> Topic:
    return Topic(
        name=f"glv.dlq.{service}",
        description=(
            f"Messages from GLV's service topics that the {service} service could not decode or apply, "
            "with the reason in headers."
        ),
        producers=(service,),
        consumers=(f"{service} dead-letters replay",),
        events=(),
        key="original key",
        partitions=1,
        config={"retention.ms": str(DEAD_LETTER_RETENTION_DAYS * DAY_MS)},
    )


def intake_dead_letter_topic(service: str) -> Topic:
    """Where a service's dead letters from the portals' intake topics go: kept a week by
    default (GLV_<SERVICE>_INTAKE_DEAD_LETTER_RETENTION_DAYS), as they hold personal data."""
    return Topic(
        name=f"glv.dlq.{service}.intake",
        description=(
            f"Records from portals' intake topics that the {service} service could not decode or apply; "
            f"personal data, so kept {INTAKE_DEAD_LETTER_RETENTION_DAYS} days by default."
        ),
        producers=(service,),
        consumers=(f"{service} dead-letters replay",),
        events=(),
        key="original key",
        partitions=1,
        config={"retention.ms": str(INTAKE_DEAD_LETTER_RETENTION_DAYS * DAY_MS)},
    )


def dead_letter_topic_for(service: str, original_topic: str, prefix: str | None = None) -> Topic:
    """The dead-letter topic for a record consumed from `original_topic` (under `prefix`, or
    under any prefix ending in a dot when None)."""
    portal = (
        PORTAL_TICKETS.portal_in(original_topic) if prefix is None else PORTAL_TICKETS.portal_of(original_topic, prefix)
    )
    if portal is not None:
        return intake_dead_letter_topic(service)
    return dead_letter_topic(service)


EVENT_TOPICS: tuple[Topic, ...] = (
    PORTAL_TICKETS,
    TICKETING_EVENTS,
    SCHEDULER_EVENTS,
    NOTIFIER_EVENTS,
    ARCHIVE_EVENTS,
    CATALOG,
    PORTAL_UPDATES,
)
# The topics GLV's services own (one of each): created by each service at start.
SERVICE_TOPICS: tuple[Topic, ...] = tuple(t for t in EVENT_TOPICS if not t.per_portal)
# One of each per onboarded portal: created by `glv-ticketing portal onboard`.
PORTAL_TOPICS: tuple[Topic, ...] = tuple(t for t in EVENT_TOPICS if t.per_portal)
DEAD_LETTER_TOPICS: tuple[Topic, ...] = tuple(dead_letter_topic(s) for s in SERVICES) + tuple(
    intake_dead_letter_topic(s) for s in SERVICES if s in PORTAL_TICKETS.consumers
)
# Every topic with a fixed name.
ALL_TOPICS: tuple[Topic, ...] = SERVICE_TOPICS + DEAD_LETTER_TOPICS


def topic_of(model: EventModel) -> Topic:
    """The single topic (or per-portal family) an event type is first published on.
    Forwarding to a portal's updates topic comes after and is not this."""
    for topic in EVENT_TOPICS:
        if topic is not PORTAL_UPDATES and model in topic.events:
            return topic
    raise KeyError(model.event_type())


def topic_name_of(event: object, prefix: str = "") -> str:
    """The concrete topic an event is published on (a portal's own, for what portals file)."""
    topic = topic_of(type(event))  # type: ignore[arg-type]
    if topic.per_portal:
        return prefix + topic.for_portal(str(getattr(event, "portal_id", "")))
    return prefix + topic.name


def consumed_by(service: str) -> tuple[Topic, ...]:
    return tuple(t for t in EVENT_TOPICS if service in t.consumers)


def subscription_pattern(topics: tuple[Topic, ...] | list[Topic], prefix: str = "") -> str:
    """One regular expression for a consumer reading these topics, per-portal ones included."""
    return "^(" + "|".join(t.pattern(prefix) for t in topics) + ")$"


def family_of(topic_name: str, prefix: str = "") -> Topic | None:
    """The registry topic a concrete topic name belongs to."""
    for topic in EVENT_TOPICS:
        if re.fullmatch(topic.pattern(prefix), topic_name):
            return topic
    return None
