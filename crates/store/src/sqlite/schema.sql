-- Version 1 of the SQLite schema. Times are Unix milliseconds; JSON columns hold text.
CREATE TABLE applications (
    id          TEXT PRIMARY KEY,
    uid         TEXT UNIQUE,
    name        TEXT NOT NULL,
    rate_limit  INTEGER,
    metadata    TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE event_types (
    name          TEXT PRIMARY KEY,
    description   TEXT NOT NULL,
    archived      INTEGER NOT NULL,
    deprecated    INTEGER NOT NULL,
    schemas       TEXT,
    feature_flags TEXT,
    group_name    TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

CREATE TABLE endpoints (
    id              TEXT PRIMARY KEY,
    app_id          TEXT NOT NULL,
    uid             TEXT,
    url             TEXT NOT NULL,
    description     TEXT NOT NULL,
    disabled        INTEGER NOT NULL,
    filter_types    TEXT,
    channels        TEXT,
    rate_limit      INTEGER,
    metadata        TEXT NOT NULL,
    headers         TEXT NOT NULL,
    secret          TEXT NOT NULL,
    retired_secrets TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    UNIQUE (app_id, uid)
);
CREATE INDEX endpoints_app ON endpoints (app_id, id);

-- No declared primary key: the (app_id, id) index serves every lookup, and a
-- TEXT primary key would add one more b-tree to each insert.
CREATE TABLE messages (
    id          TEXT NOT NULL,
    app_id      TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    event_id    TEXT,
    idem_key    TEXT,
    channels    TEXT,
    tags        TEXT,
    payload     TEXT,
    created_at  INTEGER NOT NULL
);
CREATE UNIQUE INDEX messages_app ON messages (app_id, id);
CREATE UNIQUE INDEX messages_event_id ON messages (app_id, event_id) WHERE event_id IS NOT NULL;
CREATE UNIQUE INDEX messages_idem_key ON messages (app_id, idem_key) WHERE idem_key IS NOT NULL;

-- The hot queue: one narrow row per (message, endpoint).
CREATE TABLE deliveries (
    msg_id          TEXT NOT NULL,
    endpoint_id     TEXT NOT NULL,
    app_id          TEXT NOT NULL,
    status          INTEGER NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_at INTEGER,
    partition       INTEGER NOT NULL,
    manual          INTEGER NOT NULL DEFAULT 0,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (msg_id, endpoint_id)
) WITHOUT ROWID;
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 1;
CREATE INDEX deliveries_endpoint ON deliveries (endpoint_id, msg_id);

CREATE TABLE attempts (
    id                   TEXT NOT NULL,
    app_id               TEXT NOT NULL,
    msg_id               TEXT NOT NULL,
    endpoint_id          TEXT NOT NULL,
    url                  TEXT NOT NULL,
    status               INTEGER NOT NULL,
    response_status_code INTEGER NOT NULL,
    response             TEXT NOT NULL,
    response_duration_ms INTEGER NOT NULL,
    manual               INTEGER NOT NULL,
    created_at           INTEGER NOT NULL
);
CREATE INDEX attempts_endpoint ON attempts (endpoint_id, id);
CREATE INDEX attempts_msg ON attempts (msg_id, id);

CREATE TABLE idempotency (
    key         TEXT PRIMARY KEY,
    status      INTEGER NOT NULL,
    body        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
