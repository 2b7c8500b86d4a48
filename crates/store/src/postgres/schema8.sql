-- Version 8: since when an endpoint has failed without a success (NULL while
-- it succeeds), for auto-disabling, and why it was disabled when Switchyard
-- disabled it. SQLite has it as version 8.
ALTER TABLE endpoints ADD COLUMN failing_since BIGINT;
ALTER TABLE endpoints ADD COLUMN disabled_reason TEXT;
-- Deliveries a per-endpoint control put back in the queue (held), so a
-- change of the endpoint's limits can make them due again at once.
ALTER TABLE deliveries ADD COLUMN held BOOLEAN NOT NULL DEFAULT FALSE;
