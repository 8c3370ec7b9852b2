-- Scheduling rounds: an office may decide a service's tickets together, every N minutes,
-- with an exact optimizer, instead of each at once (glv_scheduler/rounds.py).

-- (office, service) pairs decided in rounds, from the catalog; absent: decided at once.
CREATE TABLE IF NOT EXISTS round_policy (
    office_code   text NOT NULL,
    service_code  text NOT NULL,
    every_minutes int  NOT NULL CHECK (every_minutes > 0 AND 1440 % every_minutes = 0),
    cutoff        time,
    PRIMARY KEY (office_code, service_code)
);
DROP TRIGGER IF EXISTS round_policy_changed ON round_policy;
CREATE TRIGGER round_policy_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON round_policy
    FOR EACH STATEMENT EXECUTE FUNCTION catalog_changed();

-- A ticket accepted for a round waits for it ('awaiting_round', round_at).
ALTER TABLE request DROP CONSTRAINT IF EXISTS request_status_check;
ALTER TABLE request ADD CONSTRAINT request_status_check
    CHECK (status IN ('assigned', 'waitlisted', 'unschedulable', 'cancelled', 'done', 'awaiting_round'));
ALTER TABLE request ADD COLUMN IF NOT EXISTS round_at timestamptz;
CREATE INDEX IF NOT EXISTS request_round ON request (office_code, round_at, arrival) WHERE status = 'awaiting_round';

-- One row per office and round instant: 'done' in the same commit as the round's bookings,
-- so a round is decided once whichever replica runs it; a ticket that arrives while its round
-- is being decided waits for the next one. The figures say how the round went.
CREATE TABLE IF NOT EXISTS scheduling_round (
    office_code      text        NOT NULL,
    round_at         timestamptz NOT NULL,
    status           text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done')),
    tickets          int,
    placed           int,
    windows_honoured int,
    method           text,         -- optimal | time_limit | greedy
    fallback_reason  text,
    solve_seconds    real,
    decided_at       timestamptz,
    PRIMARY KEY (office_code, round_at)
);
