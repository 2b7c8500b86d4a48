-- Version 11: how an endpoint authenticates deliveries besides the signature
-- (basic, bearer, OAuth 2.0 client credentials, mTLS identity), as sealed
-- JSON; '{}' is none.
ALTER TABLE endpoints ADD COLUMN auth TEXT NOT NULL DEFAULT '{}';
