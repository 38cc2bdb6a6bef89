-- The detail slots' `notes` no longer parsed by a CHECK on every write.
--
-- A note rewrites its ticket's whole `notes` array, and `json_valid(notes)`
-- parsed all of it again: on a ticket with 700 notes of 5,000 bytes the check
-- was a fifth of the projector's CPU per note, and it grows with the thread.
-- The array is written only by the projector (serialised by serde) and decoded
-- on every read, where a malformed one is reported as corrupt, naming its
-- ticket. The check kept is the array's first character, which costs nothing.
--
-- Rows and checkpoints are copied as they are: no projection replays.
CREATE TABLE detail_a_new (
    id         TEXT    PRIMARY KEY CHECK (length(id) = 36),
    customer   TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    message    TEXT    NOT NULL,
    status     TEXT    NOT NULL CHECK (status IN ('open', 'triaged', 'closed')),
    agent      TEXT,
    -- A JSON array of {"text": ..., "added_at": ...}, oldest first.
    notes      TEXT    NOT NULL DEFAULT '[]' CHECK (notes LIKE '[%'),
    created_at TEXT    NOT NULL CHECK (created_at LIKE '____-__-__T__:__:__.______Z'),
    updated_at TEXT    NOT NULL CHECK (updated_at LIKE '____-__-__T__:__:__.______Z'),
    version    INTEGER NOT NULL CHECK (version >= 1)
) STRICT;
INSERT INTO detail_a_new SELECT id, customer, subject, message, status, agent, notes,
    created_at, updated_at, version FROM detail_a ORDER BY id;
DROP TABLE detail_a;
ALTER TABLE detail_a_new RENAME TO detail_a;

CREATE TABLE detail_b_new (
    id         TEXT    PRIMARY KEY CHECK (length(id) = 36),
    customer   TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    message    TEXT    NOT NULL,
    status     TEXT    NOT NULL CHECK (status IN ('open', 'triaged', 'closed')),
    agent      TEXT,
    notes      TEXT    NOT NULL DEFAULT '[]' CHECK (notes LIKE '[%'),
    created_at TEXT    NOT NULL CHECK (created_at LIKE '____-__-__T__:__:__.______Z'),
    updated_at TEXT    NOT NULL CHECK (updated_at LIKE '____-__-__T__:__:__.______Z'),
    version    INTEGER NOT NULL CHECK (version >= 1)
) STRICT;
INSERT INTO detail_b_new SELECT id, customer, subject, message, status, agent, notes,
    created_at, updated_at, version FROM detail_b ORDER BY id;
DROP TABLE detail_b;
ALTER TABLE detail_b_new RENAME TO detail_b;
