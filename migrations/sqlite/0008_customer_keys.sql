-- Customers' data keys (crate `sealing`) and the one exception to the
-- events' immutability: erasing words stored in clear before sealing.
--
-- A customer's personal fields (an opening's customer, subject and message,
-- a note's text) are sealed with a key of its own before they are stored;
-- the key is kept here, apart from the events, with the customer's name to
-- find it by. Erasing the customer deletes the row: every value sealed with
-- the key is unreadable from then on. `material` is the 32-byte key, or 60
-- bytes when a master key wraps it (nonce, wrapped key, tag).
CREATE TABLE customer_keys (
    key_id     TEXT PRIMARY KEY CHECK (length(key_id) = 36),
    customer   TEXT NOT NULL UNIQUE CHECK (customer <> ''),
    material   BLOB NOT NULL CHECK (length(material) IN (32, 60)),
    created_at TEXT NOT NULL CHECK (created_at LIKE '____-__-__T__:__:__.______Z')
) STRICT;

-- Events stored in clear before sealing existed cannot be forgotten by
-- destroying a key: an erasure rewrites their personal fields in place. Each
-- such rewrite is recorded here first, in the same transaction, and the
-- immutability trigger lets through exactly that: a change of `data` alone,
-- of an event with a redaction recorded.
CREATE TABLE redactions (
    position    INTEGER PRIMARY KEY CHECK (position >= 1),
    redacted_at TEXT NOT NULL CHECK (redacted_at LIKE '____-__-__T__:__:__.______Z')
) STRICT;

DROP TRIGGER events_are_immutable_update;

CREATE TRIGGER events_are_immutable_update BEFORE UPDATE ON events
WHEN NOT (
    NEW.position = OLD.position
    AND NEW.event_id = OLD.event_id
    AND NEW.ticket_id = OLD.ticket_id
    AND NEW.version = OLD.version
    AND NEW.event_type = OLD.event_type
    AND NEW.schema_version = OLD.schema_version
    AND NEW.occurred_at = OLD.occurred_at
    AND NEW.metadata = OLD.metadata
    AND NEW.idempotency_key IS OLD.idempotency_key
    AND EXISTS (SELECT 1 FROM redactions WHERE position = OLD.position)
)
BEGIN
    SELECT RAISE(ABORT, 'events are immutable');
END;
