-- Sends get their own lane in the job engine: a wa.send job carries its phone's id in `lane`, and the send
-- dispatcher (src/outbound/dispatch.rs) leases per phone only what the phone can send in the next second, instead
-- of the generic workers leasing the whole backlog and putting most of it back (found by bench_sender). The
-- generic workers lease only jobs without a lane.
ALTER TABLE jobs ADD COLUMN lane BIGINT;
UPDATE jobs SET lane = (SELECT o.phone_id FROM outbound o WHERE 'wa.send:' || o.id = jobs.dedup_key)
 WHERE kind = 'wa.send';

DROP INDEX jobs_due;
CREATE INDEX jobs_due ON jobs (run_at, id) WHERE done_at IS NULL AND NOT dead AND lane IS NULL;
CREATE INDEX jobs_lane_due ON jobs (lane, run_at, id) WHERE done_at IS NULL AND NOT dead AND lane IS NOT NULL;

-- "Is an earlier message to this customer still pending?" for every leased send: only pending rows.
CREATE INDEX outbound_pending_pair ON outbound (phone_id, recipient, id) WHERE state IN ('queued', 'sending', 'unknown');

-- Which process paces a number's sends now. A process leases a number's sends only while it holds the number's
-- claim (taken or renewed with every lease, expiring a few seconds later), so several processes on one database
-- together stay within the number's throughput.
CREATE TABLE lane_claims (
    lane        BIGINT PRIMARY KEY,
    owner       TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);

-- Attempts started: the dispatcher marks a send (in batches, a fraction of a second ahead) before its request
-- may go out. A send whose started attempts outnumber its recorded outcomes may have reached Meta (the process
-- died while it was out) and is reconciled from status webhooks; a send that was only leased is simply sent.
ALTER TABLE outbound ADD COLUMN started BIGINT NOT NULL DEFAULT 0;
UPDATE outbound SET started = attempts;
