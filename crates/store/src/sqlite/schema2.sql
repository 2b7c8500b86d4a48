-- Version 2: cluster membership and partition leases (a single node holds
-- them all on SQLite, but the lease logic is the same as on PostgreSQL).
CREATE TABLE nodes (
    node_id      TEXT PRIMARY KEY,
    address      TEXT NOT NULL,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL
);

CREATE TABLE leases (
    partition  INTEGER PRIMARY KEY,
    node_id    TEXT,
    expires_at INTEGER NOT NULL
);
WITH RECURSIVE p(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM p WHERE n < 255)
INSERT INTO leases (partition, node_id, expires_at) SELECT n, NULL, 0 FROM p;

CREATE INDEX deliveries_sending ON deliveries (partition) WHERE status = 3;
