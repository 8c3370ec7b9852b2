-- Tables every service has in its own database: the transactional outbox, the
-- inbox of applied event ids, and the positions already dead-lettered.

CREATE TABLE IF NOT EXISTS glv_outbox (
    id          bigserial PRIMARY KEY,
    topic       text        NOT NULL,
    msg_key     text,
    headers     jsonb       NOT NULL,
    payload     bytea,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz
);
-- The relay only ever scans unsent rows in id order.
CREATE INDEX IF NOT EXISTS glv_outbox_unsent ON glv_outbox (id) WHERE sent_at IS NULL;
CREATE INDEX IF NOT EXISTS glv_outbox_sent_at ON glv_outbox (sent_at) WHERE sent_at IS NOT NULL;

CREATE OR REPLACE FUNCTION glv_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('glv_outbox', '');
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS glv_outbox_notify ON glv_outbox;
-- Per statement, not per row: one wake-up per bulk insert is enough.
CREATE TRIGGER glv_outbox_notify AFTER INSERT ON glv_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION glv_outbox_notify();

CREATE TABLE IF NOT EXISTS glv_inbox (
    event_id    text PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS glv_dead_letter (
    topic       text        NOT NULL,
    partition   int         NOT NULL,
    "offset"    bigint      NOT NULL,
    event_id    text,
    error_code  text        NOT NULL,
    error       text        NOT NULL,
    attempts    int         NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition, "offset")
);
