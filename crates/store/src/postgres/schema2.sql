-- Version 2: incoming-webhook sources, payload filters on endpoints, and what
-- an ingested message passes on besides its body (SQLite's version 3).
ALTER TABLE endpoints ADD COLUMN payload_filter TEXT;
ALTER TABLE messages ADD COLUMN forward TEXT;

CREATE TABLE sources (
    id                TEXT COLLATE "C" PRIMARY KEY,
    uid               TEXT COLLATE "C" UNIQUE,
    name              TEXT NOT NULL,
    kind              TEXT NOT NULL,
    config            TEXT NOT NULL,
    settings          TEXT NOT NULL,
    metadata          TEXT NOT NULL,
    app_id            TEXT COLLATE "C" NOT NULL,
    token             TEXT COLLATE "C" NOT NULL UNIQUE,
    retired_tokens    TEXT NOT NULL,
    accepted          BIGINT NOT NULL DEFAULT 0,
    duplicates        BIGINT NOT NULL DEFAULT 0,
    rejected          BIGINT NOT NULL DEFAULT 0,
    last_rejection    TEXT,
    last_rejection_at BIGINT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
