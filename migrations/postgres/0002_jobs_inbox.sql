-- The job engine and the webhook inbox (PostgreSQL dialect).
CREATE TABLE jobs (
    id               BIGSERIAL PRIMARY KEY,
    kind             TEXT NOT NULL,
    payload          TEXT NOT NULL DEFAULT '{}',
    dedup_key        TEXT,
    attempts         BIGINT NOT NULL DEFAULT 0,
    max_attempts     BIGINT,
    run_at           BIGINT NOT NULL,
    lease_owner      TEXT,
    lease_expires_at BIGINT,
    last_error       TEXT,
    dead             BOOLEAN NOT NULL DEFAULT FALSE,
    done_at          BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
-- Only periodic work has a dedup key; NULLs stay out of the index.
CREATE UNIQUE INDEX jobs_dedup ON jobs (dedup_key) WHERE dedup_key IS NOT NULL;
CREATE INDEX jobs_due ON jobs (run_at) WHERE done_at IS NULL AND NOT dead;
CREATE INDEX jobs_done ON jobs (done_at) WHERE done_at IS NOT NULL;
CREATE INDEX jobs_dead ON jobs (id) WHERE dead;

-- Raw verified webhook bodies, exactly as received. The trigger below gives every row its processing job in
-- the same statement, so intake is one multi-row INSERT: atomic, one round trip, one commit.
CREATE TABLE inbox (
    id           BIGSERIAL PRIMARY KEY,
    source       TEXT NOT NULL,
    app_id       BIGINT NOT NULL,
    body         BYTEA NOT NULL,
    received_at  BIGINT NOT NULL,
    processed_at BIGINT
);
CREATE INDEX inbox_processed ON inbox (processed_at) WHERE processed_at IS NOT NULL;

CREATE FUNCTION inbox_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO jobs (kind, payload, attempts, run_at, created_at, updated_at)
    VALUES ('inbox.process', '{"inbox_id":' || NEW.id || '}', 0, NEW.received_at, NEW.received_at, NEW.received_at);
    RETURN NULL;
END
$$;
CREATE TRIGGER inbox_enqueue AFTER INSERT ON inbox FOR EACH ROW EXECUTE FUNCTION inbox_enqueue();

-- Effects of webhooks, each keyed so a duplicate delivery is a no-op.
CREATE TABLE contacts (
    id               BIGSERIAL PRIMARY KEY,
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
    id             BIGSERIAL PRIMARY KEY,
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
    id           BIGSERIAL PRIMARY KEY,
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
    id           BIGSERIAL PRIMARY KEY,
    dedup_key    TEXT NOT NULL UNIQUE,
    waba_id      TEXT NOT NULL,
    field        TEXT NOT NULL,
    event        TEXT,
    raw          TEXT NOT NULL,
    occurred_at  BIGINT NOT NULL
);
