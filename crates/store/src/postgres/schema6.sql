-- Version 6: an endpoint's concurrency limit (deliveries in flight at once;
-- NULL is unlimited within the per-host connection cap). SQLite has it as
-- version 6.
ALTER TABLE endpoints ADD COLUMN concurrency_limit BIGINT;
