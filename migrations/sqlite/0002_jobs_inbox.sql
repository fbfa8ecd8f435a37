-- The job engine and the webhook inbox (SQLite dialect).
CREATE TABLE jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    kind             TEXT NOT NULL,
    payload          TEXT NOT NULL DEFAULT '{}',
    dedup_key        TEXT,
    attempts         BIGINT NOT NULL DEFAULT 0,
    max_attempts     BIGINT,
    run_at           BIGINT NOT NULL,
    lease_owner      TEXT,
    lease_expires_at BIGINT,
    last_error       TEXT,
    dead             INTEGER NOT NULL DEFAULT 0,
    done_at          BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
-- Only periodic work has a dedup key; NULLs stay out of the index.
CREATE UNIQUE INDEX jobs_dedup ON jobs (dedup_key) WHERE dedup_key IS NOT NULL;
CREATE INDEX jobs_due ON jobs (run_at) WHERE done_at IS NULL AND dead = 0;
CREATE INDEX jobs_done ON jobs (done_at) WHERE done_at IS NOT NULL;
CREATE INDEX jobs_dead ON jobs (id) WHERE dead = 1;

-- Raw verified webhook bodies, exactly as received. The trigger below gives every row its processing job in
-- the same statement, so intake is one multi-row INSERT: atomic, one round trip, one commit.
-- No AUTOINCREMENT: an inbox id is referenced only by its own job, which is done before the row is pruned.
CREATE TABLE inbox (
    id           INTEGER PRIMARY KEY,
    source       TEXT NOT NULL,
    app_id       BIGINT NOT NULL,
    body         BLOB NOT NULL,
    received_at  BIGINT NOT NULL,
    processed_at BIGINT
);
CREATE INDEX inbox_processed ON inbox (processed_at) WHERE processed_at IS NOT NULL;

CREATE TRIGGER inbox_enqueue AFTER INSERT ON inbox
BEGIN
    INSERT INTO jobs (kind, payload, attempts, run_at, created_at, updated_at)
    VALUES ('inbox.process', '{"inbox_id":' || NEW.id || '}', 0, NEW.received_at, NEW.received_at, NEW.received_at);
END;

-- Effects of webhooks, each keyed so a duplicate delivery is a no-op.
CREATE TABLE contacts (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    phone_id         BIGINT NOT NULL REFERENCES phones (id),
    contact_key      TEXT NOT NULL,
    wa_id            TEXT,
    user_id          TEXT,
    profile_name     TEXT,
    last_inbound_at  BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    UNIQUE (phone_id, contact_key)
);

CREATE TABLE messages (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    wamid          TEXT NOT NULL UNIQUE,
    phone_id       BIGINT NOT NULL REFERENCES phones (id),
    contact_id     BIGINT REFERENCES contacts (id),
    direction      TEXT NOT NULL,
    msg_type       TEXT NOT NULL,
    body           TEXT,
    context_wamid  TEXT,
    raw            TEXT,
    status         TEXT,
    status_rank    BIGINT NOT NULL DEFAULT 0,
    status_at      BIGINT,
    error_code     BIGINT,
    error_text     TEXT,
    crm_chat_id    TEXT,
    crm_message_id TEXT,
    sent_at        BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);
CREATE INDEX messages_phone ON messages (phone_id, contact_id);

CREATE TABLE message_statuses (
    wamid        TEXT NOT NULL,
    status       TEXT NOT NULL,
    occurred_at  BIGINT NOT NULL,
    recipient    TEXT,
    error_code   BIGINT,
    error_text   TEXT,
    pricing      TEXT,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (wamid, status)
);

CREATE TABLE templates (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    waba_id      BIGINT NOT NULL REFERENCES wabas (id),
    template_id  TEXT,
    name         TEXT NOT NULL,
    language     TEXT NOT NULL,
    category     TEXT,
    status       TEXT NOT NULL,
    reason       TEXT,
    components   TEXT,
    updated_at   BIGINT NOT NULL,
    UNIQUE (waba_id, name, language)
);

CREATE TABLE template_events (
    waba_id      BIGINT NOT NULL,
    template_id  TEXT NOT NULL,
    event        TEXT NOT NULL,
    occurred_at  BIGINT NOT NULL,
    name         TEXT NOT NULL,
    language     TEXT NOT NULL,
    reason       TEXT,
    PRIMARY KEY (template_id, event, occurred_at)
);

CREATE TABLE account_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    dedup_key    TEXT NOT NULL UNIQUE,
    waba_id      TEXT NOT NULL,
    field        TEXT NOT NULL,
    event        TEXT,
    raw          TEXT NOT NULL,
    occurred_at  BIGINT NOT NULL
);
