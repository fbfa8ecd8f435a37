-- Value-level errors in Meta's messages webhooks (`value.errors`, e.g. 131000 "Unsupported webhook payload" or
-- 130429 "Rate limit hit"), which are not tied to a message: kept per phone, once each, shown in the admin API
-- (GET /admin/api/v1/webhook-errors) and counted in /metrics.
CREATE TABLE webhook_errors (
    id          BIGSERIAL PRIMARY KEY,
    dedup_key   TEXT NOT NULL UNIQUE,
    phone_id    BIGINT NOT NULL REFERENCES phones (id) ON DELETE CASCADE,
    code        BIGINT NOT NULL,
    title       TEXT,
    message     TEXT,
    details     TEXT,
    occurred_at BIGINT NOT NULL
);
CREATE INDEX webhook_errors_phone ON webhook_errors (phone_id, id);
CREATE INDEX webhook_errors_time ON webhook_errors (occurred_at);
