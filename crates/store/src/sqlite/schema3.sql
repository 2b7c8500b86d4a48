-- Version 3: incoming-webhook sources, payload filters on endpoints, and what
-- an ingested message passes on besides its body.
ALTER TABLE endpoints ADD COLUMN payload_filter TEXT;
ALTER TABLE messages ADD COLUMN forward TEXT;

CREATE TABLE sources (
    id                TEXT PRIMARY KEY,
    uid               TEXT UNIQUE,
    name              TEXT NOT NULL,
    kind              TEXT NOT NULL,
    config            TEXT NOT NULL,
    settings          TEXT NOT NULL,
    metadata          TEXT NOT NULL,
    app_id            TEXT NOT NULL,
    token             TEXT NOT NULL UNIQUE,
    retired_tokens    TEXT NOT NULL,
    accepted          INTEGER NOT NULL DEFAULT 0,
    duplicates        INTEGER NOT NULL DEFAULT 0,
    rejected          INTEGER NOT NULL DEFAULT 0,
    last_rejection    TEXT,
    last_rejection_at INTEGER,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);
