-- Each sensor's zone plan (zone polygons and count lines in ground metres), from the first umbra.status/1 record
-- it sends after starting; the newest by the record's time is kept.
CREATE TABLE zone_plans (device_id TEXT PRIMARY KEY, t BIGINT NOT NULL, plan TEXT NOT NULL);
