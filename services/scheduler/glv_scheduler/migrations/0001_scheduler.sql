-- The scheduler's own state: the catalog (services, offices, officers, closures),
-- the tickets it was given, slots, bookings and sessions.

CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE IF NOT EXISTS service_type (
    service_code       text PRIMARY KEY,
    name_id            text NOT NULL,
    name_en            text NOT NULL,
    kind               text NOT NULL CHECK (kind IN ('consultation', 'internal_meeting', 'webinar')),
    duration_minutes   int  NOT NULL CHECK (duration_minutes > 0),
    buffer_minutes     int  NOT NULL CHECK (buffer_minutes >= 0),
    min_notice_hours   int  NOT NULL,
    horizon_days       int  NOT NULL,
    officers_required  int  NOT NULL DEFAULT 1,
    capacity           int  NOT NULL DEFAULT 1
);

CREATE TABLE IF NOT EXISTS office (
    office_code text PRIMARY KEY,
    name        text   NOT NULL,
    city        text   NOT NULL,
    zone        text   NOT NULL,
    hours       jsonb  NOT NULL,   -- weekday -> [["08:00","12:00"], ...]
    closures    date[] NOT NULL DEFAULT '{}',
    services    text[] NOT NULL
);

CREATE TABLE IF NOT EXISTS officer (
    officer_id   text PRIMARY KEY,
    office_code  text    NOT NULL REFERENCES office,
    display_name text    NOT NULL DEFAULT '',
    skills       text[]  NOT NULL,
    roster       jsonb,            -- null: the office's hours
    leave        jsonb   NOT NULL DEFAULT '[]',
    active       boolean NOT NULL DEFAULT true
);

CREATE TABLE IF NOT EXISTS collective_leave (
    day  date PRIMARY KEY,
    name text NOT NULL
);

-- What ticketing accepted, as far as scheduling needs it.
CREATE TABLE IF NOT EXISTS request (
    ticket_id         uuid PRIMARY KEY,
    ticket_code       text        NOT NULL,
    office_code       text        NOT NULL,
    service_code      text        NOT NULL,
    stakeholder_ref   text        NOT NULL,
    preferred_windows jsonb       NOT NULL,
    accepted_at       timestamptz NOT NULL,
    status            text        NOT NULL CHECK (status IN ('assigned', 'waitlisted', 'unschedulable', 'cancelled', 'done')),
    waitlisted_at     timestamptz,
    arrival           bigserial   -- the order tickets reached the scheduler: first come, first served
);
CREATE INDEX IF NOT EXISTS request_waitlist ON request (office_code, service_code, arrival) WHERE status = 'waitlisted';

CREATE TABLE IF NOT EXISTS slot (
    slot_id      uuid PRIMARY KEY,
    office_code  text        NOT NULL,
    service_code text        NOT NULL,
    kind         text        NOT NULL,
    starts_at    timestamptz NOT NULL,
    ends_at      timestamptz NOT NULL,
    capacity     int         NOT NULL,
    seats_taken  int         NOT NULL DEFAULT 0 CHECK (seats_taken >= 0 AND seats_taken <= capacity),
    meeting      jsonb       NOT NULL,   -- provider, room_id, valid_from, valid_until
    live         boolean     NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS slot_open_webinars ON slot (office_code, service_code, starts_at) WHERE live AND kind = 'webinar';
CREATE UNIQUE INDEX IF NOT EXISTS slot_room ON slot ((meeting ->> 'room_id'));

-- Each officer's time held by a slot (the session plus the service's buffer). The
-- exclusion constraint makes double-booking impossible whatever the code does,
-- however many scheduler replicas run.
CREATE TABLE IF NOT EXISTS booking (
    slot_id    uuid      NOT NULL REFERENCES slot,
    officer_id text      NOT NULL,
    during     tstzrange NOT NULL,
    live       boolean   NOT NULL DEFAULT true,
    PRIMARY KEY (slot_id, officer_id),
    CONSTRAINT booking_no_overlap EXCLUDE USING gist (officer_id WITH =, during WITH &&) WHERE (live)
);

-- A ticket's place in a slot; at most one live seat per ticket.
CREATE TABLE IF NOT EXISTS seat (
    ticket_id   uuid        NOT NULL,
    slot_id     uuid        NOT NULL REFERENCES slot,
    live        boolean     NOT NULL DEFAULT true,
    assigned_at timestamptz NOT NULL,
    released_at timestamptz,
    PRIMARY KEY (ticket_id, slot_id)
);
CREATE UNIQUE INDEX IF NOT EXISTS seat_one_live_per_ticket ON seat (ticket_id) WHERE live;
CREATE INDEX IF NOT EXISTS seat_slot ON seat (slot_id) WHERE live;

-- How a session went, once per ticket and slot (webhook or officer, whichever comes first).
CREATE TABLE IF NOT EXISTS session_outcome (
    session_id  uuid        NOT NULL,
    slot_id     uuid        NOT NULL REFERENCES slot,
    ticket_id   uuid        NOT NULL,
    outcome     text        NOT NULL CHECK (outcome IN ('held', 'missed')),
    source      text        NOT NULL,
    notes       text        NOT NULL DEFAULT '',
    reported_at timestamptz NOT NULL,
    PRIMARY KEY (slot_id, ticket_id)
);

CREATE TABLE IF NOT EXISTS webhook_delivery (
    delivery_id text PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now()
);
