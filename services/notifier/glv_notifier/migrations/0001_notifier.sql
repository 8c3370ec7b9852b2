-- The notifier's own state. The contact book is the only personal data here, kept while
-- a ticket still needs messages (see forget_contacts); everything else is ids and facts
-- from GLV's own events.

-- What a portal filed about the person, for the tickets ticketing decides on.
CREATE TABLE IF NOT EXISTS contact (
    ticket_id uuid PRIMARY KEY,
    portal_id text        NOT NULL,
    name      text        NOT NULL,
    email     text,
    phone     text,
    locale    text        NOT NULL,
    stored_at timestamptz NOT NULL
);

-- What the notifier knows of a ticket from ticketing's and the scheduler's events.
CREATE TABLE IF NOT EXISTS ticket (
    ticket_id     uuid PRIMARY KEY,
    decision      text,            -- accepted | rejected | cancelled; NULL until decided
    ticket_code   text,
    office_code   text,
    service_code  text,
    locale        text,
    -- The latest slot told to the stakeholder, and the calendar SEQUENCE it was told with.
    slot_id       uuid,
    slot_active   boolean     NOT NULL DEFAULT false,
    slot_sequence integer     NOT NULL DEFAULT -1,
    starts_at     timestamptz,
    ends_at       timestamptz,
    zone          text,
    join_url      text,
    -- When the last message a ticket can need was decided: the contact goes some days after.
    closed_at     timestamptz,
    updated_at    timestamptz NOT NULL
);

-- Office and service names for the messages, from the catalog topic.
CREATE TABLE IF NOT EXISTS office (
    office_code text PRIMARY KEY,
    name        text        NOT NULL,
    city        text        NOT NULL,
    zone        text        NOT NULL,
    services    jsonb       NOT NULL,
    updated_at  timestamptz NOT NULL
);

-- One row per message: its delivery key makes it once, whatever is redelivered or replayed.
CREATE TABLE IF NOT EXISTS notification (
    notification_id uuid PRIMARY KEY,
    delivery_key    text        NOT NULL UNIQUE,
    ticket_id       uuid        NOT NULL,
    purpose         text        NOT NULL,
    facts           jsonb       NOT NULL,  -- what the message states, no contact details
    state           text        NOT NULL,  -- waiting | queued | sent | failed | skipped
    not_before      timestamptz,
    channel         text,
    reason          text,
    created_at      timestamptz NOT NULL,
    finished_at     timestamptz
);
CREATE INDEX IF NOT EXISTS notification_waiting ON notification (ticket_id) WHERE state = 'waiting';

-- Every attempt on every channel, for the record (no contact details).
CREATE TABLE IF NOT EXISTS delivery_attempt (
    id              bigserial PRIMARY KEY,
    notification_id uuid        NOT NULL,
    channel         text        NOT NULL,
    outcome         text        NOT NULL,  -- sent | transient | permanent | deferred
    detail          text,
    at              timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS delivery_attempt_notification ON delivery_attempt (notification_id);
