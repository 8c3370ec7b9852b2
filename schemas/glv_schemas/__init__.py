"""GLV event contracts: models, CloudEvents envelope and the topic registry."""

from glv_schemas import events
from glv_schemas.base import Event
from glv_schemas.envelope import (
    CloudEvent,
    EnvelopeError,
    model_for,
    new_cloud_event,
    read_headers,
)
from glv_schemas.events import ALL_EVENTS, EVENTS_BY_TYPE, OfficeCatalogUpdated
from glv_schemas.topics import (
    ALL_TOPICS,
    Topic,
    consumed_by,
    dead_letter_topic,
    topic_of,
)

__all__ = [
    "ALL_EVENTS",
    "ALL_TOPICS",
    "EVENTS_BY_TYPE",
    "CloudEvent",
    "EnvelopeError",
    "Event",
    "OfficeCatalogUpdated",
    "Topic",
    "consumed_by",
    "dead_letter_topic",
    "events",
    "model_for",
    "new_cloud_event",
    "read_headers",
    "topic_of",
]
