-- Version 10: API tokens and app-portal sessions. Only a token's SHA-256 is
-- kept; `censored` is its first characters, for telling tokens apart.
CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    name         TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    censored     TEXT NOT NULL,
    app_id       TEXT,
    read_only    INTEGER NOT NULL,
    capabilities TEXT,
    session_id   TEXT,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER
);
CREATE INDEX api_tokens_app ON api_tokens (app_id) WHERE app_id IS NOT NULL;
CREATE INDEX api_tokens_expiry ON api_tokens (expires_at) WHERE expires_at IS NOT NULL;
