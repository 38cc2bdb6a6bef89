-- The read models the projector writes and the query side reads, and the
-- checkpoint committed with them. Same text conventions as 0001_events.sql.
--
-- Every ticket row carries the version of the last event folded into it; the
-- projector's upserts never replace a row with a lower version.

-- Everything a ticket's detail page shows.
CREATE TABLE ticket_details (
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

-- One row per ticket for the list page: previews instead of full texts.
CREATE TABLE ticket_list (
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

-- The list's two access paths: newest first, optionally for one status, with
-- keyset paging on (created_at, id). Each query is one index range scan with no
-- sort step.
CREATE INDEX ticket_list_newest ON ticket_list (created_at DESC, id DESC);
CREATE INDEX ticket_list_status_newest ON ticket_list (status, created_at DESC, id DESC);

-- Ticket counts per status, moved by each batch's delta.
CREATE TABLE dashboard (
    status TEXT    PRIMARY KEY CHECK (status IN ('open', 'triaged', 'closed')),
    count  INTEGER NOT NULL CHECK (count >= 0)
) STRICT;

INSERT INTO dashboard (status, count) VALUES ('open', 0), ('triaged', 0), ('closed', 0);

-- How far each projection has read: the position of the last event it
-- reflects. Written in the same transaction as the views it describes.
-- The view store's checkpoint is the row named 'views'; a missing row means 0.
CREATE TABLE checkpoints (
    projection TEXT    PRIMARY KEY,
    position   INTEGER NOT NULL CHECK (position >= 0),
    updated_at TEXT    NOT NULL
) STRICT;
