-- Version 12: broker sources (their broker configuration is sealed JSON;
-- `reads` names what they read, so two sources cannot read the same), the
-- counts the nodes reading them add up, and the rejected log: broker
-- messages that could never be messages, with why.
CREATE TABLE broker_sources (
    id          TEXT PRIMARY KEY,
    uid         TEXT UNIQUE,
    name        TEXT NOT NULL,
    app         TEXT,
    batch_size  INTEGER NOT NULL,
    paused      INTEGER NOT NULL DEFAULT 0,
    broker      TEXT NOT NULL,
    reads       TEXT NOT NULL UNIQUE,
    metadata    TEXT NOT NULL DEFAULT '{}',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    received    INTEGER NOT NULL DEFAULT 0,
    accepted    INTEGER NOT NULL DEFAULT 0,
    duplicates  INTEGER NOT NULL DEFAULT 0,
    rejected    INTEGER NOT NULL DEFAULT 0,
    deferred    INTEGER NOT NULL DEFAULT 0,
    backlog     INTEGER,
    backlog_at  INTEGER,
    last_error  TEXT,
    last_error_at INTEGER
);
CREATE TABLE broker_rejections (
    id          TEXT PRIMARY KEY,
    source_id   TEXT NOT NULL,
    at          INTEGER NOT NULL,
    code        TEXT NOT NULL,
    reason      TEXT NOT NULL,
    body        BLOB NOT NULL,
    body_size   INTEGER NOT NULL,
    headers     TEXT NOT NULL
);
CREATE INDEX broker_rejections_by_source ON broker_rejections (source_id, id);
