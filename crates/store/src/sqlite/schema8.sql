-- Version 8: since when an endpoint has failed without a success (NULL while
-- it succeeds), for auto-disabling, and why it was disabled when Switchyard
-- disabled it.
ALTER TABLE endpoints ADD COLUMN failing_since INTEGER;
ALTER TABLE endpoints ADD COLUMN disabled_reason TEXT;
-- Deliveries a per-endpoint control put back in the queue (held = 1), so a
-- change of the endpoint's limits can make them due again at once.
ALTER TABLE deliveries ADD COLUMN held INTEGER NOT NULL DEFAULT 0;
