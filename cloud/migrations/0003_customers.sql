-- Customers: API keys (only a hash of the secret is kept), which tenant owns which sensor, and the released
-- aggregates and flow groups the read API serves, derived from records at ingest.
CREATE TABLE api_keys (key_id TEXT PRIMARY KEY, secret_sha256 TEXT NOT NULL, tenant TEXT NOT NULL,
  role TEXT NOT NULL, created BIGINT NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE sensors (device_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, name TEXT NOT NULL);
CREATE INDEX sensors_tenant ON sensors (tenant);
CREATE TABLE aggregates (device_id TEXT NOT NULL, outbox_id TEXT NOT NULL, seq BIGINT NOT NULL, metric TEXT NOT NULL,
  zone TEXT NOT NULL, window_start BIGINT NOT NULL, window_s INTEGER NOT NULL, vals TEXT NOT NULL,
  PRIMARY KEY (device_id, outbox_id, seq));
CREATE INDEX aggregates_read ON aggregates (device_id, metric, window_start);
