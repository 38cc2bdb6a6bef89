-- Projector operations: each projection (detail, list, dashboard) in two slots
-- (a live one the query side reads, a shadow one a rebuild fills), leases that
-- fence the writers of each slot, and dead letters. Same text conventions as
-- 0001_events.sql. See docs/projection-store-semantics.md.
--
-- The view tables of 0002_views.sql are dropped, not copied: views are derived
-- data, and every projection's live slot starts at checkpoint 0 below, so the
-- projector replays all events into it. Events are untouched.
DROP TABLE ticket_details;
DROP TABLE ticket_list;
DROP TABLE dashboard;
DROP TABLE checkpoints;

-- Which slot of each projection is live, and how far each slot has read.
-- The row tables of both slots exist from here on: the store picks a slot's
-- tables by name from a closed set and never creates schema at run time.
CREATE TABLE projection_slots (
    projection TEXT    NOT NULL CHECK (projection IN ('detail', 'list', 'dashboard')),
    slot       TEXT    NOT NULL CHECK (slot IN ('a', 'b')),
    state      TEXT    NOT NULL CHECK (state IN ('live', 'building', 'retired')),
    -- The position of the last event reflected in the slot's rows.
    checkpoint INTEGER NOT NULL CHECK (checkpoint >= 0),
    -- The projection version the slot was (or is being) built with; 0: never built.
    version    INTEGER NOT NULL CHECK (version >= 0),
    PRIMARY KEY (projection, slot)
) STRICT;

-- At most one live slot per projection: a swap retires the old live slot
-- before it makes the shadow live, in one transaction.
CREATE UNIQUE INDEX projection_slots_one_live ON projection_slots (projection)
    WHERE state = 'live';

-- Slot a is live at version 1 (the folds' version when slots were introduced),
-- to be filled from position 0; slot b has never been built.
INSERT INTO projection_slots (projection, slot, state, checkpoint, version) VALUES
    ('detail',    'a', 'live',    0, 1),
    ('detail',    'b', 'retired', 0, 0),
    ('list',      'a', 'live',    0, 1),
    ('list',      'b', 'retired', 0, 0),
    ('dashboard', 'a', 'live',    0, 1),
    ('dashboard', 'b', 'retired', 0, 0);

-- The detail projection: everything a ticket's detail page shows. Every row
-- carries the version of the last event folded into it; upserts never replace
-- a row with a lower version.
CREATE TABLE detail_a (
    id         TEXT    PRIMARY KEY CHECK (length(id) = 36),
    customer   TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    message    TEXT    NOT NULL,
    status     TEXT    NOT NULL CHECK (status IN ('open', 'triaged', 'closed')),
    agent      TEXT,
    -- A JSON array of {"text": ..., "added_at": ...}, oldest first.
    notes      TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(notes)),
    created_at TEXT    NOT NULL CHECK (created_at LIKE '____-__-__T__:__:__.______Z'),
    updated_at TEXT    NOT NULL CHECK (updated_at LIKE '____-__-__T__:__:__.______Z'),
    version    INTEGER NOT NULL CHECK (version >= 1)
) STRICT;

CREATE TABLE detail_b (
    id         TEXT    PRIMARY KEY CHECK (length(id) = 36),
    customer   TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    message    TEXT    NOT NULL,
    status     TEXT    NOT NULL CHECK (status IN ('open', 'triaged', 'closed')),
    agent      TEXT,
    notes      TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(notes)),
    created_at TEXT    NOT NULL CHECK (created_at LIKE '____-__-__T__:__:__.______Z'),
    updated_at TEXT    NOT NULL CHECK (updated_at LIKE '____-__-__T__:__:__.______Z'),
    version    INTEGER NOT NULL CHECK (version >= 1)
) STRICT;

-- The list projection: one row per ticket, previews instead of full texts.
CREATE TABLE list_a (
    id                TEXT    PRIMARY KEY CHECK (length(id) = 36),
    customer          TEXT    NOT NULL,
    subject           TEXT    NOT NULL,
    status            TEXT    NOT NULL CHECK (status IN ('open', 'triaged', 'closed')),
    agent             TEXT,
    preview           TEXT    NOT NULL,
    has_note          INTEGER NOT NULL CHECK (has_note IN (0, 1)),
    last_note_preview TEXT,
    created_at        TEXT    NOT NULL CHECK (created_at LIKE '____-__-__T__:__:__.______Z'),
    updated_at        TEXT    NOT NULL CHECK (updated_at LIKE '____-__-__T__:__:__.______Z'),
    version           INTEGER NOT NULL CHECK (version >= 1)
) STRICT;

CREATE TABLE list_b (
    id                TEXT    PRIMARY KEY CHECK (length(id) = 36),
    customer          TEXT    NOT NULL,
    subject           TEXT    NOT NULL,
    status            TEXT    NOT NULL CHECK (status IN ('open', 'triaged', 'closed')),
    agent             TEXT,
    preview           TEXT    NOT NULL,
    has_note          INTEGER NOT NULL CHECK (has_note IN (0, 1)),
    last_note_preview TEXT,
    created_at        TEXT    NOT NULL CHECK (created_at LIKE '____-__-__T__:__:__.______Z'),
    updated_at        TEXT    NOT NULL CHECK (updated_at LIKE '____-__-__T__:__:__.______Z'),
    version           INTEGER NOT NULL CHECK (version >= 1)
) STRICT;

-- The list's two access paths, in each slot: newest first, optionally for one
-- status, with keyset paging on (created_at, id). Each query is one index range
-- scan with no sort step, whichever slot is live.
CREATE INDEX list_a_newest ON list_a (created_at DESC, id DESC);
CREATE INDEX list_a_status_newest ON list_a (status, created_at DESC, id DESC);
CREATE INDEX list_b_newest ON list_b (created_at DESC, id DESC);
CREATE INDEX list_b_status_newest ON list_b (status, created_at DESC, id DESC);

-- The dashboard projection: each ticket's status (what the counts move from)...
CREATE TABLE dashboard_tickets_a (
    id      TEXT    PRIMARY KEY CHECK (length(id) = 36),
    status  TEXT    NOT NULL CHECK (status IN ('open', 'triaged', 'closed')),
    version INTEGER NOT NULL CHECK (version >= 1)
) STRICT;

CREATE TABLE dashboard_tickets_b (
    id      TEXT    PRIMARY KEY CHECK (length(id) = 36),
    status  TEXT    NOT NULL CHECK (status IN ('open', 'triaged', 'closed')),
    version INTEGER NOT NULL CHECK (version >= 1)
) STRICT;

-- ... and the counts per status, moved by each batch's delta.
CREATE TABLE dashboard_counts_a (
    status TEXT    PRIMARY KEY CHECK (status IN ('open', 'triaged', 'closed')),
    count  INTEGER NOT NULL CHECK (count >= 0)
) STRICT;

CREATE TABLE dashboard_counts_b (
    status TEXT    PRIMARY KEY CHECK (status IN ('open', 'triaged', 'closed')),
    count  INTEGER NOT NULL CHECK (count >= 0)
) STRICT;

INSERT INTO dashboard_counts_a (status, count) VALUES ('open', 0), ('triaged', 0), ('closed', 0);
INSERT INTO dashboard_counts_b (status, count) VALUES ('open', 0), ('triaged', 0), ('closed', 0);

-- One lease per projection and target (the live slot's daemon, the shadow
-- slot's rebuild). Times are the database's clock, written by SQL, never by a
-- caller. The token grows by one whenever the lease changes hands; every write
-- to a slot checks it in its own transaction.
CREATE TABLE projection_leases (
    projection   TEXT    NOT NULL CHECK (projection IN ('detail', 'list', 'dashboard')),
    target       TEXT    NOT NULL CHECK (target IN ('live', 'shadow')),
    holder       TEXT    NOT NULL CHECK (holder <> ''),
    token        INTEGER NOT NULL CHECK (token >= 1),
    expires_at   TEXT    NOT NULL CHECK (expires_at LIKE '____-__-__T__:__:__.______Z'),
    heartbeat_at TEXT    NOT NULL CHECK (heartbeat_at LIKE '____-__-__T__:__:__.______Z'),
    -- What the holder last said it was doing (`RunState::name`).
    state        TEXT    NOT NULL
        CHECK (state IN ('running', 'idle', 'rebuilding', 'stopped on error')),
    last_error   TEXT,
    PRIMARY KEY (projection, target)
) STRICT;

-- Events a projection could not apply, one per projection and position.
CREATE TABLE dead_letters (
    projection  TEXT    NOT NULL CHECK (projection IN ('detail', 'list', 'dashboard')),
    position    INTEGER NOT NULL CHECK (position >= 1),
    ticket_id   TEXT    NOT NULL CHECK (length(ticket_id) = 36),
    version     INTEGER NOT NULL CHECK (version >= 1),
    event_type  TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    -- The whole stored event, so it can be inspected without the events table.
    event       TEXT    NOT NULL CHECK (json_valid(event)),
    state       TEXT    NOT NULL CHECK (state IN ('pending', 'retry', 'skipped', 'resolved')),
    recorded_at TEXT    NOT NULL CHECK (recorded_at LIKE '____-__-__T__:__:__.______Z'),
    PRIMARY KEY (projection, position)
) STRICT;
