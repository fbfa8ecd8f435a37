-- `sending` (a request in flight) has not been written since the send dispatcher: a send whose request is out
-- stays `queued`, its attempt marked in `started`. A row an older version left in `sending` had a request out
-- when that process stopped: it is `unknown` (waiting for a status webhook), as the sender already treated it.
UPDATE outbound SET state = 'unknown', unknown_since = COALESCE(unknown_since, updated_at) WHERE state = 'sending';

-- The partial indexes of sends that are not over, with the states that remain (a query must name an index's own
-- condition for SQLite to use it).
DROP INDEX outbound_pending;
CREATE INDEX outbound_pending ON outbound (state) WHERE state IN ('queued', 'unknown');
DROP INDEX outbound_pending_pair;
CREATE INDEX outbound_pending_pair ON outbound (phone_id, recipient, id) WHERE state IN ('queued', 'unknown');
