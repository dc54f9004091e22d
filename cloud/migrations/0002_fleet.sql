-- Fleet inventory: one row per device, kept up to date from its TLS certificate and umbra.status/1 records.
CREATE TABLE devices (device_id TEXT PRIMARY KEY, hardware_id TEXT, cert_serial TEXT, cert_expires BIGINT,
  firmware TEXT, slot TEXT, profile TEXT, last_seen DOUBLE PRECISION, status_t BIGINT, uptime_s DOUBLE PRECISION,
  fps DOUBLE PRECISION, overruns BIGINT, detector TEXT, outbox_records BIGINT, last_error TEXT);
CREATE INDEX devices_last_seen ON devices (last_seen);
-- Each device's latest outcome per release, from its umbra.ota/1 records.
CREATE TABLE ota_results (device_id TEXT NOT NULL, release TEXT NOT NULL, result TEXT NOT NULL, t BIGINT NOT NULL,
  PRIMARY KEY (device_id, release));
CREATE INDEX records_schema ON records (schema, device_id);
