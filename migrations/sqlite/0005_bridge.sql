-- Bitrix24 lines, outbound sends, SMS provider, API keys, media (SQLite dialect).
ALTER TABLE portals ADD COLUMN refresh_lock_until BIGINT;
ALTER TABLE portals ADD COLUMN scope TEXT;
ALTER TABLE portals ADD COLUMN last_error TEXT;

ALTER TABLE phones ADD COLUMN throughput_mps BIGINT NOT NULL DEFAULT 80;
ALTER TABLE phones ADD COLUMN connector_status TEXT;
ALTER TABLE phones ADD COLUMN connector_error TEXT;
ALTER TABLE phones ADD COLUMN sms_code TEXT;
ALTER TABLE phones ADD COLUMN sms_status TEXT;
ALTER TABLE phones ADD COLUMN sms_error TEXT;

ALTER TABLE wabas ADD COLUMN sends_paused_at BIGINT;
ALTER TABLE wabas ADD COLUMN sends_paused_reason TEXT;
ALTER TABLE wabas ADD COLUMN templates_synced_at BIGINT;

ALTER TABLE templates ADD COLUMN variant_problem TEXT;
ALTER TABLE templates ADD COLUMN parameter_format TEXT;

-- One row per message wabridge sends to WhatsApp. Its `wa.send` job is committed in the same transaction.
CREATE TABLE outbound (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    phone_id        BIGINT NOT NULL REFERENCES phones (id),
    recipient       TEXT NOT NULL,
    origin          TEXT NOT NULL,
    origin_ref      TEXT NOT NULL DEFAULT '{}',
    request         TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'queued',
    wamid           TEXT UNIQUE,
    status          TEXT,
    error_code      BIGINT,
    error_text      TEXT,
    attempts        BIGINT NOT NULL DEFAULT 0,
    unknown_since   BIGINT,
    idempotency_key TEXT UNIQUE,
    api_key_id      BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX outbound_pair ON outbound (phone_id, recipient, id);
CREATE INDEX outbound_pending ON outbound (state) WHERE state IN ('queued', 'sending', 'unknown');

-- Which open-line chat of the portal carries a customer of a phone.
CREATE TABLE crm_chats (
    phone_id     BIGINT NOT NULL REFERENCES phones (id),
    contact_key  TEXT NOT NULL,
    portal_id    BIGINT NOT NULL,
    line_id      TEXT NOT NULL,
    chat_id      TEXT,
    session_id   TEXT,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (phone_id, contact_key)
);

-- Events from portals already accepted (a duplicated event is a no-op).
CREATE TABLE portal_events (
    dedup_key    TEXT PRIMARY KEY,
    portal_id    BIGINT NOT NULL,
    received_at  BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL,
    key_hash    TEXT NOT NULL UNIQUE,
    key_prefix  TEXT NOT NULL,
    waba_id     BIGINT,
    created_at  BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at  BIGINT
);

-- Media kept locally for the CRM (without the phone's file_proxy flag).
CREATE TABLE media_files (
    media_id    TEXT NOT NULL,
    phone_id    BIGINT NOT NULL,
    mime_type   TEXT,
    file_name   TEXT,
    path        TEXT,
    size        BIGINT,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (phone_id, media_id)
);

-- The job engine's queries say `NOT dead`; SQLite uses a partial index only when the query's WHERE names the
-- index's condition, and `dead = 0` is not `NOT dead` to it. With thousands of queued sends the lease and
-- next-due queries scanned the whole table (found by bench_sender).
DROP INDEX jobs_due;
CREATE INDEX jobs_due ON jobs (run_at) WHERE done_at IS NULL AND NOT dead;
