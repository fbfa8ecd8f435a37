-- Jobs that must take effect in order within a key (an operator's replies in one chat: `crm.reply`) carry the key;
-- a job of a key waits while an earlier job of the same key is neither done nor dead (`jobs::earlier_in_order`),
-- so jobs that run concurrently (several workers or processes) still take effect in queue order.
ALTER TABLE jobs ADD COLUMN order_key TEXT;
CREATE INDEX jobs_order_pending ON jobs (order_key, id) WHERE order_key IS NOT NULL AND done_at IS NULL AND NOT dead;
