-- Ticketing's own state. No personal data: names and contacts stay with the
-- notifier; here a ticket is ids, routing, a content fingerprint and its status.

CREATE TABLE IF NOT EXISTS office (
    office_code text PRIMARY KEY,
    name        text        NOT NULL,
    city        text        NOT NULL,
    zone        text        NOT NULL,
    services    jsonb       NOT NULL,
    active      boolean     NOT NULL DEFAULT true,
    updated_at  timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS ticket (
    ticket_id    uuid PRIMARY KEY,
    portal_id    text        NOT NULL,
    ticket_code  text UNIQUE,
    office_code  text        NOT NULL,
    service_code text        NOT NULL,
    status       text        NOT NULL,
    content_hash text        NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS ticket_portal ON ticket (portal_id);

CREATE TABLE IF NOT EXISTS ticket_history (
    id        bigserial PRIMARY KEY,
    ticket_id uuid        NOT NULL,
    entry     text        NOT NULL,
    status    text        NOT NULL,
    event_id  text        NOT NULL,
    detail    jsonb       NOT NULL DEFAULT '{}',
    at        timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS ticket_history_ticket ON ticket_history (ticket_id, id);

-- One running number per office and local day, for the human ticket code.
CREATE TABLE IF NOT EXISTS ticket_code_counter (
    office_code text NOT NULL,
    local_day   date NOT NULL,
    last_number int  NOT NULL,
    PRIMARY KEY (office_code, local_day)
);
