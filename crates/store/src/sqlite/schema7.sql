-- Version 7: an endpoint's circuit-breaker settings (JSON, NULL for none),
-- and each breaker's state, written when it changes so that it survives a
-- restart.
ALTER TABLE endpoints ADD COLUMN circuit_breaker TEXT;
CREATE TABLE endpoint_circuits (
    endpoint_id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL,
    state TEXT NOT NULL,
    since INTEGER NOT NULL,
    last_error TEXT,
    consecutive_failures INTEGER NOT NULL
);
CREATE INDEX endpoint_circuits_app ON endpoint_circuits (app_id);
