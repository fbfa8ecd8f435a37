-- The web console (/admin): its login sessions, and when webhooks last arrived per app and per phone (the
-- console's account health page; a number verified at Meta but silent is the most common support case).

-- A session is known by the SHA-256 of its cookie value only; the CSRF token is the one its forms must carry.
CREATE TABLE console_sessions (
    id_hash       TEXT PRIMARY KEY,
    csrf_token    TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    -- The outcome of the last action, shown once on the next page.
    flash         TEXT
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);

-- `scope` is `app` (ref_id: meta_apps.id) or `phone` (ref_id: phones.id); `last_at` is when the last webhook
-- body for it was received (written at most about once a minute per scope and id, after the body is processed).
CREATE TABLE webhook_activity (
    scope    TEXT NOT NULL,
    ref_id   BIGINT NOT NULL,
    last_at  BIGINT NOT NULL,
    PRIMARY KEY (scope, ref_id)
);
