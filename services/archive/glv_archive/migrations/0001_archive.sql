-- The archive's own state: what it knows of tickets, slots and offices (for the session
-- record), each held session and its expected artifacts, the encrypted objects it stored,
-- erasure requests, and the append-only access audit.

-- From TicketAccepted: the ticket's code, and whose it is (an erasure request names the
-- portal's id of the person, never more).
CREATE TABLE IF NOT EXISTS archive_ticket (
    ticket_id       uuid PRIMARY KEY,
    ticket_code     text        NOT NULL,
    portal_id       text        NOT NULL,
    stakeholder_ref text        NOT NULL,
    service_code    text        NOT NULL,
    office_code     text        NOT NULL
);
CREATE INDEX IF NOT EXISTS archive_ticket_stakeholder ON archive_ticket (portal_id, stakeholder_ref);

-- From SlotAssigned: the officer and the service of a slot.
CREATE TABLE IF NOT EXISTS archive_slot (
    slot_id      uuid PRIMARY KEY,
    office_code  text        NOT NULL,
    office_zone  text        NOT NULL,
    service_code text        NOT NULL,
    officer_id   text        NOT NULL,
    starts_at    timestamptz NOT NULL,
    ends_at      timestamptz NOT NULL
);

-- From the catalog: office and service names for the session record.
CREATE TABLE IF NOT EXISTS archive_office (
    office_code text PRIMARY KEY,
    name        text        NOT NULL,
    city        text        NOT NULL,
    zone        text        NOT NULL,
    services    jsonb       NOT NULL,  -- {service_code: {"name_id", "name_en"}}
    updated_at  timestamptz NOT NULL
);

-- One per SessionHeld. status: collecting (artifacts on their way) | recording (the session
-- record is being written) | archived | failed (a problem reported; a late artifact may
-- still complete it) | erased (keys destroyed: retention or an erasure request).
CREATE TABLE IF NOT EXISTS archive_session (
    session_id    uuid PRIMARY KEY,
    ticket_id     uuid        NOT NULL,
    slot_id       uuid        NOT NULL,
    office_code   text        NOT NULL,
    started_at    timestamptz NOT NULL,
    ended_at      timestamptz NOT NULL,
    attendance    jsonb       NOT NULL,
    status        text        NOT NULL DEFAULT 'collecting',
    archive_id    uuid        NOT NULL,
    retain_until  timestamptz NOT NULL,
    -- What was last told: archived | failed_retrying | failed (each told once per change),
    -- and how many stored artifacts the newest session record was written with.
    told          text,
    recorded_with integer,
    received_at   timestamptz NOT NULL,
    completed_at  timestamptz
);
CREATE INDEX IF NOT EXISTS archive_session_ticket ON archive_session (ticket_id);

-- The artifacts a session's SessionHeld declared. status: pending | stored | late (not
-- there yet after the attempts: re-checked until give_up_at) | failed (for good) | erased.
-- The platform's URL is dropped once the artifact is stored or given up.
CREATE TABLE IF NOT EXISTS archive_artifact (
    artifact_id     uuid PRIMARY KEY,
    session_id      uuid        NOT NULL REFERENCES archive_session,
    position        integer     NOT NULL,
    kind            text        NOT NULL,
    url             text,
    content_type    text        NOT NULL,
    declared_size   bigint      NOT NULL,
    declared_sha256 text,
    status          text        NOT NULL DEFAULT 'pending',
    reason          text,
    detail          text,
    -- Each fetch (the first, and each re-check of a late artifact) is one job: its key.
    generation      integer     NOT NULL DEFAULT 0,
    next_check_at   timestamptz,
    give_up_at      timestamptz NOT NULL,
    object_id       uuid,
    UNIQUE (session_id, position)
);
CREATE INDEX IF NOT EXISTS archive_artifact_late ON archive_artifact (next_check_at) WHERE status = 'late';

-- An encrypted object in the store: a recording, a chat log or the session record. Its
-- data key is wrapped by the key-encryption key `key_id`; wrapped_key NULL means the key
-- was destroyed (crypto-shredding), after which the blob is unreadable even where a copy
-- of it survives (a backup, a replica), and deleted_at says when the blob went too.
CREATE TABLE IF NOT EXISTS archive_object (
    object_id       uuid PRIMARY KEY,
    session_id      uuid        NOT NULL REFERENCES archive_session,
    kind            text        NOT NULL,  -- video | audio | chat | record
    object_key      text        NOT NULL UNIQUE,
    storage_uri     text        NOT NULL,
    content_type    text        NOT NULL,
    size_bytes      bigint      NOT NULL,
    sha256          text        NOT NULL,
    stored_bytes    bigint      NOT NULL,
    key_id          text,
    wrapped_key     bytea,
    created_at      timestamptz NOT NULL,
    retain_until    timestamptz NOT NULL,
    shredded_at     timestamptz,
    shred_cause     text,      -- retention | erasure_request
    deleted_at      timestamptz
);
CREATE INDEX IF NOT EXISTS archive_object_session ON archive_object (session_id);
CREATE INDEX IF NOT EXISTS archive_object_due ON archive_object (retain_until) WHERE shredded_at IS NULL;
CREATE INDEX IF NOT EXISTS archive_object_key ON archive_object (key_id) WHERE shredded_at IS NULL;

-- Erasure requests (a portal's event, or the command) and what each erased.
CREATE TABLE IF NOT EXISTS archive_erasure (
    request_id      uuid PRIMARY KEY,
    portal_id       text        NOT NULL,
    stakeholder_ref text        NOT NULL,
    source          text        NOT NULL,  -- event | command
    requested_at    timestamptz NOT NULL,
    done_at         timestamptz NOT NULL,
    report          jsonb       NOT NULL
);

-- Every access to the archive and every refusal, append-only: the trigger refuses UPDATE,
-- DELETE and TRUNCATE to every role (the table's owner included), and the privileges are
-- revoked from the role that ran this migration. Run migrations as a separate owner role in
-- production so that the service's role cannot drop the trigger (docs/operations.md).
CREATE TABLE IF NOT EXISTS archive_audit (
    audit_id   bigserial PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    action     text        NOT NULL,  -- download | link_issued | purge | erasure | rewrap | ...
    outcome    text        NOT NULL,  -- allowed | refused | done
    actor      text        NOT NULL,  -- who: a link's recipient, an operator, the purge job
    object_id  uuid,
    session_id uuid,
    reason     text,                  -- why a refusal, e.g. expired | bad_signature | shredded
    detail     jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS archive_audit_object ON archive_audit (object_id, at);

CREATE OR REPLACE FUNCTION archive_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'archive_audit is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$;
DROP TRIGGER IF EXISTS archive_audit_no_change ON archive_audit;
CREATE TRIGGER archive_audit_no_change BEFORE UPDATE OR DELETE ON archive_audit
    FOR EACH ROW EXECUTE FUNCTION archive_audit_append_only();
DROP TRIGGER IF EXISTS archive_audit_no_truncate ON archive_audit;
CREATE TRIGGER archive_audit_no_truncate BEFORE TRUNCATE ON archive_audit
    FOR EACH STATEMENT EXECUTE FUNCTION archive_audit_append_only();
REVOKE UPDATE, DELETE, TRUNCATE ON archive_audit FROM CURRENT_USER;
