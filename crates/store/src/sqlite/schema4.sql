-- When the holder took each partition: `sending` rows older than that were
-- written by a node that had lost it (see Store::lease).
ALTER TABLE leases ADD COLUMN acquired_at INTEGER NOT NULL DEFAULT 0;
