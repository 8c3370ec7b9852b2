-- Kafka keys are bytes: a dead letter must keep a key that is not UTF-8 as it was.
ALTER TABLE glv_outbox ALTER COLUMN msg_key TYPE bytea USING convert_to(msg_key, 'UTF8');
-- The inbox is purged by age (older than any redelivery can be).
CREATE INDEX IF NOT EXISTS glv_inbox_applied_at ON glv_inbox (applied_at);
