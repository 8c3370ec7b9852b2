-- CloudEvents identity is (source, id): two portals may both send id "evt-1".
ALTER TABLE glv_inbox ADD COLUMN IF NOT EXISTS source text NOT NULL DEFAULT '';
ALTER TABLE glv_inbox DROP CONSTRAINT IF EXISTS glv_inbox_pkey;
ALTER TABLE glv_inbox ADD PRIMARY KEY (source, event_id);

-- The relay reads by bytes as well as rows, and parks a row the broker can never
-- take (with its error) instead of retrying it ahead of every later row.
ALTER TABLE glv_outbox ADD COLUMN IF NOT EXISTS size_bytes int NOT NULL DEFAULT 0;
ALTER TABLE glv_outbox ADD COLUMN IF NOT EXISTS parked_at timestamptz;
ALTER TABLE glv_outbox ADD COLUMN IF NOT EXISTS error text;
DROP INDEX IF EXISTS glv_outbox_unsent;
CREATE INDEX IF NOT EXISTS glv_outbox_pending ON glv_outbox (id) WHERE sent_at IS NULL AND parked_at IS NULL;

-- Durable side-effect jobs and periodic tasks (glv_runtime.jobs).
CREATE TABLE IF NOT EXISTS glv_job (
    id              bigserial   PRIMARY KEY,
    kind            text        NOT NULL,
    idempotency_key text        NOT NULL,
    payload         jsonb       NOT NULL DEFAULT '{}',
    status          text        NOT NULL DEFAULT 'pending'
                                CHECK (status IN ('pending', 'running', 'done', 'failed')),
    attempts        int         NOT NULL DEFAULT 0,
    run_at          timestamptz NOT NULL DEFAULT now(),
    -- A claim's fencing token: only the holder of the current lease may record a result.
    lease_token     uuid,
    lease_until     timestamptz,
    last_error      text,
    result          jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    UNIQUE (kind, idempotency_key)
);
CREATE INDEX IF NOT EXISTS glv_job_due ON glv_job (run_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS glv_job_leased ON glv_job (lease_until) WHERE status = 'running';
CREATE INDEX IF NOT EXISTS glv_job_finished ON glv_job (finished_at) WHERE finished_at IS NOT NULL;

CREATE OR REPLACE FUNCTION glv_job_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('glv_job', '');
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS glv_job_notify ON glv_job;
CREATE TRIGGER glv_job_notify AFTER INSERT ON glv_job
    FOR EACH STATEMENT EXECUTE FUNCTION glv_job_notify();
