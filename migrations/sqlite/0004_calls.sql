-- Call records of the SIP edge (SQLite dialect). One row per call, keyed by the WhatsApp call id
-- (x-wa-meta-wacid) or, when Meta does not send one, the SIP Call-ID.
CREATE TABLE calls (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    call_key         TEXT NOT NULL UNIQUE,
    sip_call_id      TEXT NOT NULL,
    phone_id         BIGINT REFERENCES phones (id),
    direction        TEXT NOT NULL,
    caller           TEXT,
    callee           TEXT,
    invited_at       BIGINT NOT NULL,
    answered_at      BIGINT,
    ended_at         BIGINT,
    duration_seconds BIGINT,
    final_status     BIGINT,
    hangup_by        TEXT,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX calls_phone_time ON calls (phone_id, invited_at);
CREATE INDEX calls_time ON calls (invited_at);
