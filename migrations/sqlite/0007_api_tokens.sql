-- API tokens (crate `auth`): one row per token, revoked ones included. Same
-- text conventions as 0001_events.sql.
--
-- The secret is never stored, only its SHA-256 in lower-case hex (`hash`),
-- which is how a request's bearer token is looked up: hence its unique index.
-- The name is the principal's name, which events record as their actor, so
-- a name is never reused: revoking sets `revoked_at` and keeps the row, and
-- rows are never deleted (the triggers below).
CREATE TABLE api_tokens (
    name       TEXT PRIMARY KEY CHECK (name <> ''),
    role       TEXT NOT NULL CHECK (role IN ('customer', 'agent', 'admin', 'metrics')),
    -- The customer a customer token speaks for; NULL for every other role
    -- (the table's CHECK below).
    customer   TEXT,
    hash       TEXT NOT NULL UNIQUE
               CHECK (length(hash) = 64 AND hash NOT GLOB '*[^0-9a-f]*'),
    created_at TEXT NOT NULL CHECK (created_at LIKE '____-__-__T__:__:__.______Z'),
    -- NULL until the token is revoked.
    revoked_at TEXT CHECK (revoked_at IS NULL OR revoked_at LIKE '____-__-__T__:__:__.______Z'),
    CHECK (CASE role
               WHEN 'customer' THEN customer IS NOT NULL AND customer <> ''
               ELSE customer IS NULL
           END)
) STRICT;

-- A token is never deleted (its name would become free) and, once stored,
-- changes only by being revoked, once.
CREATE TRIGGER api_tokens_are_kept BEFORE DELETE ON api_tokens
BEGIN
    SELECT RAISE(ABORT, 'api tokens are never deleted: revoke them');
END;

CREATE TRIGGER api_tokens_only_revoke BEFORE UPDATE ON api_tokens
WHEN OLD.revoked_at IS NOT NULL
    OR NEW.revoked_at IS NULL
    OR NEW.name IS NOT OLD.name
    OR NEW.role IS NOT OLD.role
    OR NEW.customer IS NOT OLD.customer
    OR NEW.hash IS NOT OLD.hash
    OR NEW.created_at IS NOT OLD.created_at
BEGIN
    SELECT RAISE(ABORT, 'an api token changes only by being revoked, once');
END;
