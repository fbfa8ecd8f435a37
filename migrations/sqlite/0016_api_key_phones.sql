-- An API key may be limited to some phones (`api_key_phones`): it then sends from, reads the history of and gets
-- the events of those phones only. A key without rows here keeps its WABA scope (`api_keys.waba_id`) or none.
CREATE TABLE api_key_phones (
    key_id   BIGINT NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    phone_id BIGINT NOT NULL REFERENCES phones (id) ON DELETE CASCADE,
    PRIMARY KEY (key_id, phone_id)
);
CREATE INDEX api_key_phones_phone ON api_key_phones (phone_id);
