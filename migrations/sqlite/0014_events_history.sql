-- Tenant event webhooks (Standard Webhooks) and what the message history needs (SQLite dialect).

-- The message a reaction, an edit or a revoke is about (`reaction.message_id`, `edit.original_message_id`,
-- `revoke.original_message_id`), so the history can show it on its target: inbound rows from the customer,
-- outbound rows for the business's own reactions. Rows stored before this migration have none.
ALTER TABLE messages ADD COLUMN target_wamid TEXT;
CREATE INDEX messages_target ON messages (target_wamid) WHERE target_wamid IS NOT NULL;
ALTER TABLE outbound ADD COLUMN target_wamid TEXT;
CREATE INDEX outbound_target ON outbound (target_wamid) WHERE target_wamid IS NOT NULL;
CREATE INDEX messages_phone_time ON messages (phone_id, sent_at);
CREATE INDEX outbound_phone_time ON outbound (phone_id, created_at);

-- Where a tenant wants events: a URL, the event types, and a scope (an API key's scope, a WABA, or everything).
-- `secret` is the Standard Webhooks signing secret (`whsec_…`), sealed. An endpoint that failed for
-- `events_disable_after_seconds` is disabled (`disabled_at`, `disabled_reason`) and gets no new events.
CREATE TABLE event_subscriptions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    url             TEXT NOT NULL,
    secret          TEXT NOT NULL,
    event_types     TEXT NOT NULL,
    api_key_id      BIGINT REFERENCES api_keys (id),
    waba_id         BIGINT REFERENCES wabas (id),
    description     TEXT NOT NULL DEFAULT '',
    failing_since   BIGINT,
    disabled_at     BIGINT,
    disabled_reason TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

-- One fact worth telling (a message received, a status, a failed send, a call, a template status), with the
-- exact body every subscriber gets. `id` is the `webhook-id`: the same on every attempt and every redrive.
CREATE TABLE events (
    id          TEXT PRIMARY KEY,
    event_type  TEXT NOT NULL,
    waba_id     BIGINT,
    phone_id    BIGINT,
    body        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX events_time ON events (created_at);

-- An event on its way to one subscription; its `event.deliver` job is committed with it.
CREATE TABLE event_deliveries (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id         TEXT NOT NULL REFERENCES events (id),
    subscription_id  BIGINT NOT NULL REFERENCES event_subscriptions (id) ON DELETE CASCADE,
    state            TEXT NOT NULL DEFAULT 'pending',
    attempts         BIGINT NOT NULL DEFAULT 0,
    first_attempt_at BIGINT,
    last_attempt_at  BIGINT,
    delivered_at     BIGINT,
    last_error       TEXT,
    job_id           BIGINT,
    created_at       BIGINT NOT NULL,
    UNIQUE (event_id, subscription_id)
);
CREATE INDEX event_deliveries_sub ON event_deliveries (subscription_id, id);

-- Every attempt: the HTTP status (none when no answer came), how long it took, and the start of the answer.
CREATE TABLE event_attempts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id  BIGINT NOT NULL REFERENCES event_deliveries (id) ON DELETE CASCADE,
    attempted_at BIGINT NOT NULL,
    status_code  BIGINT,
    latency_ms   BIGINT NOT NULL,
    answer       TEXT,
    error        TEXT
);
CREATE INDEX event_attempts_delivery ON event_attempts (delivery_id, id);

-- Stats: a send's WhatsApp type (`text`, `template`, … from its request; null for read marks and rows stored
-- before this migration) and, per API key, its calls and media uploads.
ALTER TABLE outbound ADD COLUMN msg_type TEXT;
ALTER TABLE api_keys ADD COLUMN calls BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN media_uploads BIGINT NOT NULL DEFAULT 0;
