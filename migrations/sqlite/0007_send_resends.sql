-- How many times a send was sent again after its answer never came and no status webhook said within
-- send_reconcile_seconds whether Meta had it: each such resend may have reached the customer twice. Shown with
-- the send in the APIs and counted in /metrics (sends_resent_unconfirmed_total).
ALTER TABLE outbound ADD COLUMN resent_unconfirmed BIGINT NOT NULL DEFAULT 0;
