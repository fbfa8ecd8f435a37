-- Registry of Meta apps, WABAs, phones and CRM portals (PostgreSQL dialect).
-- Timestamps are unix milliseconds; booleans are BOOLEAN; secrets are sealed text ("v1:...").
CREATE TABLE settings (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE meta_apps (
    id                BIGSERIAL PRIMARY KEY,
    meta_app_id       TEXT NOT NULL UNIQUE,
    name              TEXT NOT NULL DEFAULT '',
    domain            TEXT NOT NULL,
    app_secret        TEXT NOT NULL,
    access_token      TEXT,
    verify_token      TEXT NOT NULL,
    keep_raw_events   BOOLEAN NOT NULL DEFAULT FALSE,
    verify_signatures BOOLEAN NOT NULL DEFAULT TRUE,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX meta_apps_domain ON meta_apps (domain);

CREATE TABLE wabas (
    id           BIGSERIAL PRIMARY KEY,
    waba_id      TEXT NOT NULL UNIQUE,
    app_id       BIGINT NOT NULL REFERENCES meta_apps (id),
    name         TEXT NOT NULL DEFAULT '',
    access_token TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

CREATE TABLE portals (
    id                BIGSERIAL PRIMARY KEY,
    kind              TEXT NOT NULL DEFAULT 'bitrix24',
    member_id         TEXT NOT NULL UNIQUE,
    domain            TEXT NOT NULL,
    client_endpoint   TEXT NOT NULL,
    access_token      TEXT,
    refresh_token     TEXT,
    token_expires_at  BIGINT,
    application_token TEXT,
    active            BOOLEAN NOT NULL DEFAULT TRUE,
    uninstalled_at    BIGINT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);

CREATE TABLE phones (
    id                 BIGSERIAL PRIMARY KEY,
    number             TEXT NOT NULL UNIQUE,
    phone_number_id    TEXT NOT NULL UNIQUE,
    waba_id            BIGINT NOT NULL REFERENCES wabas (id),
    portal_id          BIGINT REFERENCES portals (id),
    channel            TEXT NOT NULL DEFAULT 'meta',
    sms_service        BOOLEAN NOT NULL DEFAULT FALSE,
    file_proxy         BOOLEAN NOT NULL DEFAULT FALSE,
    line_id            TEXT,
    calling_enabled    BOOLEAN NOT NULL DEFAULT FALSE,
    calling_status     TEXT,
    sip_host           TEXT,
    sip_port           BIGINT,
    srtp_key_exchange  TEXT,
    calling_last_error TEXT,
    sip_password       TEXT,
    asterisk_target    TEXT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
CREATE INDEX phones_waba ON phones (waba_id);
CREATE INDEX phones_portal ON phones (portal_id);
