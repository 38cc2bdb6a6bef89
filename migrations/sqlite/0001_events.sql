-- The event store: one row per event, append-only.
--
-- Ids are hyphenated lowercase UUID text. Times are RFC 3339 UTC with exactly six
-- fractional digits and a `Z` (2024-05-01T09:30:00.123456Z): fixed width, so text
-- order is time order.

CREATE TABLE events (
    -- The global position: 1, 2, 3 ... in commit order. The append assigns
    -- max(position) + 1 inside its IMMEDIATE transaction, which holds the one
    -- write lock, so positions are gap-free (AUTOINCREMENT would not promise that).
    position       INTEGER PRIMARY KEY CHECK (position >= 1),
    event_id       TEXT    NOT NULL UNIQUE CHECK (length(event_id) = 36),
    ticket_id      TEXT    NOT NULL CHECK (length(ticket_id) = 36),
    -- The per-ticket version: 1 for the first event, then gap-free. The unique
    -- key is the optimistic-concurrency guard of last resort.
    version        INTEGER NOT NULL CHECK (version >= 1),
    event_type     TEXT    NOT NULL CHECK (event_type <> ''),
    schema_version INTEGER NOT NULL CHECK (schema_version >= 1),
    occurred_at    TEXT    NOT NULL CHECK (occurred_at LIKE '____-__-__T__:__:__.______Z'),
    -- The payload (a JSON object) and the metadata, as JSON text.
    data           TEXT    NOT NULL CHECK (json_valid(data)),
    metadata       TEXT    NOT NULL CHECK (json_valid(metadata)),
    UNIQUE (ticket_id, version)
) STRICT;

-- Events are facts: once written, never changed or removed.
CREATE TRIGGER events_are_immutable_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are immutable');
END;

CREATE TRIGGER events_are_immutable_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are immutable');
END;
