-- Version 1 of the PostgreSQL schema; the same tables as SQLite's versions
-- 1 and 2. Times are Unix milliseconds; JSON columns hold text. Keys use the
-- "C" collation so keyset pagination orders exactly as the ids sort.
CREATE TABLE applications (
    id          TEXT COLLATE "C" PRIMARY KEY,
    uid         TEXT COLLATE "C" UNIQUE,
    name        TEXT NOT NULL,
    rate_limit  BIGINT,
    metadata    TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE event_types (
    name          TEXT COLLATE "C" PRIMARY KEY,
    description   TEXT NOT NULL,
    archived      BOOLEAN NOT NULL,
    deprecated    BOOLEAN NOT NULL,
    schemas       TEXT,
    feature_flags TEXT,
    group_name    TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

CREATE TABLE endpoints (
    id              TEXT COLLATE "C" PRIMARY KEY,
    app_id          TEXT COLLATE "C" NOT NULL,
    uid             TEXT COLLATE "C",
    url             TEXT NOT NULL,
    description     TEXT NOT NULL,
    disabled        BOOLEAN NOT NULL,
    filter_types    TEXT,
    channels        TEXT,
    rate_limit      BIGINT,
    metadata        TEXT NOT NULL,
    headers         TEXT NOT NULL,
    secret          TEXT NOT NULL,
    retired_secrets TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    UNIQUE (app_id, uid)
);
CREATE INDEX endpoints_app ON endpoints (app_id, id);

CREATE TABLE messages (
    id          TEXT COLLATE "C" NOT NULL,
    app_id      TEXT COLLATE "C" NOT NULL,
    event_type  TEXT COLLATE "C" NOT NULL,
    event_id    TEXT COLLATE "C",
    idem_key    TEXT COLLATE "C",
    channels    TEXT,
    tags        TEXT,
    payload     TEXT,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (app_id, id)
);
CREATE UNIQUE INDEX messages_event_id ON messages (app_id, event_id) WHERE event_id IS NOT NULL;
CREATE UNIQUE INDEX messages_idem_key ON messages (app_id, idem_key) WHERE idem_key IS NOT NULL;

CREATE TABLE deliveries (
    msg_id          TEXT COLLATE "C" NOT NULL,
    endpoint_id     TEXT COLLATE "C" NOT NULL,
    app_id          TEXT COLLATE "C" NOT NULL,
    status          SMALLINT NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_at BIGINT,
    partition       INTEGER NOT NULL,
    manual          BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (msg_id, endpoint_id)
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 1;
CREATE INDEX deliveries_endpoint ON deliveries (endpoint_id, msg_id);
CREATE INDEX deliveries_sending ON deliveries (partition) WHERE status = 3;

CREATE TABLE attempts (
    id                   TEXT COLLATE "C" NOT NULL,
    app_id               TEXT COLLATE "C" NOT NULL,
    msg_id               TEXT COLLATE "C" NOT NULL,
    endpoint_id          TEXT COLLATE "C" NOT NULL,
    url                  TEXT NOT NULL,
    status               SMALLINT NOT NULL,
    response_status_code INTEGER NOT NULL,
    response             TEXT NOT NULL,
    response_duration_ms BIGINT NOT NULL,
    manual               BOOLEAN NOT NULL,
    created_at           BIGINT NOT NULL
);
CREATE INDEX attempts_endpoint ON attempts (endpoint_id, id);
CREATE INDEX attempts_msg ON attempts (msg_id, id);

CREATE TABLE idempotency (
    key         TEXT COLLATE "C" PRIMARY KEY,
    status      INTEGER NOT NULL,
    body        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE settings (
    key   TEXT COLLATE "C" PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE nodes (
    node_id      TEXT COLLATE "C" PRIMARY KEY,
    address      TEXT NOT NULL,
    started_at   BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);

CREATE TABLE leases (
    partition  INTEGER PRIMARY KEY,
    node_id    TEXT COLLATE "C",
    expires_at BIGINT NOT NULL
);
INSERT INTO leases (partition, node_id, expires_at) SELECT n, NULL, 0 FROM generate_series(0, 255) AS n;
