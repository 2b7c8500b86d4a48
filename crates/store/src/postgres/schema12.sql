-- Version 12: broker sources (their broker configuration is sealed JSON;
-- `reads` names what they read, so two sources cannot read the same), the
-- counts the nodes reading them add up, and the rejected log: broker
-- messages that could never be messages, with why. SQLite has it as
-- version 12.
CREATE TABLE broker_sources (
    id          TEXT PRIMARY KEY,
    uid         TEXT UNIQUE,
    name        TEXT NOT NULL,
    app         TEXT,
    batch_size  BIGINT NOT NULL,
    paused      BOOLEAN NOT NULL DEFAULT FALSE,
    broker      TEXT NOT NULL,
    reads       TEXT NOT NULL UNIQUE,
    metadata    TEXT NOT NULL DEFAULT '{}',
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    received    BIGINT NOT NULL DEFAULT 0,
    accepted    BIGINT NOT NULL DEFAULT 0,
    duplicates  BIGINT NOT NULL DEFAULT 0,
    rejected    BIGINT NOT NULL DEFAULT 0,
    deferred    BIGINT NOT NULL DEFAULT 0,
    backlog     BIGINT,
    backlog_at  BIGINT,
    last_error  TEXT,
    last_error_at BIGINT
);
CREATE TABLE broker_rejections (
    id          TEXT PRIMARY KEY,
    source_id   TEXT NOT NULL,
    at          BIGINT NOT NULL,
    code        TEXT NOT NULL,
    reason      TEXT NOT NULL,
    body        BYTEA NOT NULL,
    body_size   BIGINT NOT NULL,
    headers     TEXT NOT NULL
);
CREATE INDEX broker_rejections_by_source ON broker_rejections (source_id, id);
