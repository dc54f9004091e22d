-- The read API's per-key rate limit, shared by every worker: a token bucket kept as its theoretical arrival time
-- (GCRA): a request at `now` is let through when max(tat, now) + 1/rate - now <= burst/rate, and moves tat there.
CREATE TABLE rate_limits (key_id TEXT PRIMARY KEY, tat DOUBLE PRECISION NOT NULL);
