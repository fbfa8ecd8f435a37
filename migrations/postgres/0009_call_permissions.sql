-- A customer's last answer to a call permission request (interactive `call_permission_reply`), for business-
-- initiated calls: one row per phone and customer, moved only by a newer reply. `expires_at` (ms) is Meta's
-- `expiration_timestamp`; NULL with `permanent = 1` is a permanent permission. A `reject` (also the automatic
-- revoke after unanswered calls, response_source = 'automatic') means no permission.
CREATE TABLE call_permissions (
    phone_id        BIGINT NOT NULL REFERENCES phones (id),
    contact_key     TEXT NOT NULL,
    wa_id           TEXT,
    response        TEXT NOT NULL,
    permanent       BIGINT NOT NULL DEFAULT 0,
    expires_at      BIGINT,
    response_source TEXT,
    wamid           TEXT NOT NULL,
    replied_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (phone_id, contact_key)
);
