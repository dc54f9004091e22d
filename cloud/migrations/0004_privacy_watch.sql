-- The cloud's privacy watch (cloud/privacy_watch.py), kept in the cloud database so that every worker sees the
-- same audit heads and epsilon ledger and a restart forgets nothing. Epsilon is kept exact, as a fraction's text.
CREATE TABLE watch_heads (device_id TEXT PRIMARY KEY, counter BIGINT NOT NULL, seq BIGINT NOT NULL,
  hash TEXT NOT NULL, t DOUBLE PRECISION NOT NULL);
CREATE TABLE watch_releases (device_id TEXT NOT NULL, metric TEXT NOT NULL, zone TEXT NOT NULL,
  window_start BIGINT NOT NULL, window_s INTEGER NOT NULL, epsilon TEXT NOT NULL,
  PRIMARY KEY (device_id, metric, zone, window_start));
-- One charge per device, stream and window (as the device's accountant makes it), and each UTC day's total.
CREATE TABLE watch_windows (device_id TEXT NOT NULL, metric TEXT NOT NULL, window_start BIGINT NOT NULL,
  window_s INTEGER NOT NULL, epsilon TEXT NOT NULL, PRIMARY KEY (device_id, metric, window_start));
CREATE TABLE watch_days (device_id TEXT NOT NULL, metric TEXT NOT NULL, day BIGINT NOT NULL, spent TEXT NOT NULL,
  implied TEXT NOT NULL, PRIMARY KEY (device_id, metric, day));
CREATE TABLE watch_flags (device_id TEXT NOT NULL, t DOUBLE PRECISION NOT NULL, kind TEXT NOT NULL,
  detail TEXT NOT NULL);
CREATE INDEX watch_flags_device ON watch_flags (device_id, t);
