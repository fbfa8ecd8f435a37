-- A phone with history (messages, sends, calls) cannot be deleted: it is archived instead. An archived phone is
-- unbound from its portal, offers no SMS service and is left out of the phone list unless asked for; its
-- history stays. `archived_at` is the time it was archived (Unix milliseconds), NULL for a phone in use.
ALTER TABLE phones ADD COLUMN archived_at BIGINT;
