-- The ingest tables (as the first SQLite store made them; IF NOT EXISTS adopts such a file).
CREATE TABLE IF NOT EXISTS keys (device_id TEXT NOT NULL, key_id TEXT NOT NULL, secret BYTEA NOT NULL,
  not_before BIGINT NOT NULL, expires BIGINT NOT NULL, PRIMARY KEY (device_id, key_id));
CREATE TABLE IF NOT EXISTS batches (device_id TEXT NOT NULL, batch_id TEXT NOT NULL, outbox_id TEXT NOT NULL,
  seq BIGINT NOT NULL, n INTEGER NOT NULL, received DOUBLE PRECISION NOT NULL, PRIMARY KEY (device_id, batch_id));
CREATE TABLE IF NOT EXISTS records (device_id TEXT NOT NULL, outbox_id TEXT NOT NULL, seq BIGINT NOT NULL,
  schema TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (device_id, outbox_id, seq));
CREATE TABLE IF NOT EXISTS nonces (nonce TEXT PRIMARY KEY, t BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, n BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS authorizations (device_id TEXT NOT NULL, token_id TEXT NOT NULL, token TEXT,
  revoked INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (device_id, token_id));
CREATE INDEX IF NOT EXISTS nonces_t ON nonces (t);
