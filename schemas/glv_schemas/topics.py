"""The one registry of GLV topics: names, keys, partitions, producers, consumers."""

from __future__ import annotations

from dataclasses import dataclass, field

from glv_schemas import events as ev
from glv_schemas.events import EventModel

SERVICES = ("ticketing", "scheduler", "notifier", "archive")


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
    events=(ev.OfficeCatalogUpdated,),
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
