-- Onboarded portals and their status-API tokens (SHA-256 of a 256-bit random token;
-- the token itself is shown once, by `glv-ticketing portal onboard`, and kept nowhere).
CREATE TABLE IF NOT EXISTS portal (
    portal_id    text PRIMARY KEY,
    token_hash   bytea       NOT NULL UNIQUE,
    onboarded_at timestamptz NOT NULL,
    token_issued_at timestamptz NOT NULL,
    revoked_at   timestamptz
);
