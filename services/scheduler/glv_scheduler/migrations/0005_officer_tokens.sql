-- Officers' tokens for their agenda (Authorization: Bearer) and their calendar feed (in the
-- feed's URL). Only the SHA-256 of a token is kept: it is shown once, when it is issued
-- (`glv-scheduler officer-token issue`). At most one live token per officer and purpose:
-- issuing another revokes the earlier one. Revoked rows stay, for the record.
CREATE TABLE IF NOT EXISTS officer_token (
    token_id     uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    officer_id   text        NOT NULL REFERENCES officer,
    purpose      text        NOT NULL CHECK (purpose IN ('agenda', 'feed')),
    token_sha256 bytea       NOT NULL UNIQUE CHECK (length(token_sha256) = 32),
    created_at   timestamptz NOT NULL,
    revoked_at   timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS officer_token_one_live ON officer_token (officer_id, purpose) WHERE revoked_at IS NULL;
