-- Account health (the console's Health page, `wabridge health`, /metrics): what the hourly `health.check` job
-- learned from Meta. Times of checks are Unix milliseconds; Meta's own times (`expires_at`,
-- `data_access_expires_at`) are kept as Meta gives them, in Unix seconds, 0 meaning "never". The token itself is
-- never stored here.

-- Per WABA: its access token as `GET /debug_token` describes it. `checked_at` is the last check, `ok_at` the last
-- one that got an answer (the figures are from then; a later failed check keeps them and sets `error`).
CREATE TABLE waba_health (
    waba_id                 BIGINT PRIMARY KEY REFERENCES wabas (id) ON DELETE CASCADE,
    checked_at              BIGINT NOT NULL,
    ok_at                   BIGINT,
    -- 1 valid, 0 not valid, NULL not known yet.
    token_valid             BIGINT,
    token_type              TEXT,
    expires_at              BIGINT,
    data_access_expires_at  BIGINT,
    -- Comma-separated permission names.
    scopes                  TEXT,
    missing_scopes          TEXT,
    -- Why the last check did not get an answer, or what Meta said about the token, in plain words.
    error                   TEXT
);

-- Per phone: `GET /{phone-number-id}?fields=health_status,quality_rating,messaging_limit_tier`.
CREATE TABLE phone_health (
    phone_id              BIGINT PRIMARY KEY REFERENCES phones (id) ON DELETE CASCADE,
    checked_at            BIGINT NOT NULL,
    ok_at                 BIGINT,
    -- health_status.can_send_message: AVAILABLE, LIMITED or BLOCKED.
    can_send              TEXT,
    -- JSON array of the entities that limit or block the number, with Meta's additional_info and errors.
    reasons               TEXT,
    quality_rating        TEXT,
    messaging_limit_tier  TEXT,
    error                 TEXT
);
