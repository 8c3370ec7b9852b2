"""Prometheus metrics every service exposes on /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CONSUMED = Counter("glv_messages_consumed_total", "Messages applied", ["topic", "type"])
DUPLICATES = Counter("glv_messages_duplicate_total", "Redelivered messages that changed nothing", ["topic"])
FAILED = Counter("glv_messages_failed_total", "Attempts that failed while applying a message", ["topic"])
DEAD_LETTERED = Counter("glv_messages_dead_lettered_total", "Messages sent to the dead-letter topic", ["topic", "code"])
PUBLISHED = Counter("glv_messages_published_total", "Outbox records published", ["topic"])
BATCH_SECONDS = Histogram(
    "glv_handler_batch_seconds",
    "Time to apply one batch (decode and database transaction; the offset commit follows)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BATCH_SIZE = Histogram(
    "glv_handler_batch_size", "Messages per batch", buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 5000)
)
OUTBOX_BACKLOG = Gauge("glv_outbox_backlog", "Outbox rows not yet published")
OUTBOX_PARKED = Counter(
    "glv_outbox_parked_total", "Outbox rows the broker can never take, parked with their error", ["topic"]
)
CONSUMER_STALLED = Gauge("glv_consumer_stalled", "1 while the consumer has lag and has made no progress for too long")
