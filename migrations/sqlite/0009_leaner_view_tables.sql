-- Fewer and leaner B-trees per list row and per dashboard ticket, in both
-- slots of each.
--
-- Every event rewrites its ticket's list row, and each B-tree a row lives in
-- is one more page to find, change and log per event. So:
--
-- - the slots become WITHOUT ROWID tables keyed by `id`: the row lives in
--   its primary key's B-tree, not in a rowid table plus a separate index on
--   `id` (ticket ids are UUIDv7, so new tickets append at the key's end);
-- - `newest` and `status_newest` are ascending, like the other indexes:
--   SQLite walks any index in either direction, and a descending index on a
--   time that only grows takes every insert at its far left, where page
--   splits leave pages half full (it was 1.8 times its ascending twin);
-- - every filter × sort keeps its own index: a customer's tickets sorted by
--   `updated_at` through `customer_created` and a sort step took 3.3 ms a
--   page for a customer with a thousand tickets, past the list's 1 ms.
--
-- The dashboard's per-ticket statuses become WITHOUT ROWID too: two B-trees
-- (rowid table, index on `id`) for three short columns were one too many.
--
-- Rows and checkpoints are copied as they are: no projection replays.
CREATE TABLE list_a_new (
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
) STRICT, WITHOUT ROWID;
INSERT INTO list_a_new SELECT id, customer, subject, status, agent, preview, has_note,
    last_note_preview, created_at, updated_at, version FROM list_a ORDER BY id;
DROP TABLE list_a;
ALTER TABLE list_a_new RENAME TO list_a;

CREATE TABLE list_b_new (
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
) STRICT, WITHOUT ROWID;
INSERT INTO list_b_new SELECT id, customer, subject, status, agent, preview, has_note,
    last_note_preview, created_at, updated_at, version FROM list_b ORDER BY id;
DROP TABLE list_b;
ALTER TABLE list_b_new RENAME TO list_b;

-- A rebuild may have set a slot's indexes aside (0006); the tables they
-- belonged to are gone, and every index is made here.
DELETE FROM deferred_indexes WHERE table_name IN ('list_a', 'list_b');

CREATE INDEX list_a_newest          ON list_a (created_at, id);
CREATE INDEX list_a_status_newest   ON list_a (status, created_at, id);
CREATE INDEX list_a_updated         ON list_a (updated_at, id);
CREATE INDEX list_a_status_updated  ON list_a (status, updated_at, id);
CREATE INDEX list_a_agent_created   ON list_a (agent, created_at, id);
CREATE INDEX list_a_agent_updated   ON list_a (agent, updated_at, id);
CREATE INDEX list_a_customer_created ON list_a (customer, created_at, id);
CREATE INDEX list_a_customer_updated ON list_a (customer, updated_at, id);

CREATE INDEX list_b_newest          ON list_b (created_at, id);
CREATE INDEX list_b_status_newest   ON list_b (status, created_at, id);
CREATE INDEX list_b_updated         ON list_b (updated_at, id);
CREATE INDEX list_b_status_updated  ON list_b (status, updated_at, id);
CREATE INDEX list_b_agent_created   ON list_b (agent, created_at, id);
CREATE INDEX list_b_agent_updated   ON list_b (agent, updated_at, id);
CREATE INDEX list_b_customer_created ON list_b (customer, created_at, id);
CREATE INDEX list_b_customer_updated ON list_b (customer, updated_at, id);

CREATE TABLE dashboard_tickets_a_new (
    id      TEXT    PRIMARY KEY CHECK (length(id) = 36),
    status  TEXT    NOT NULL CHECK (status IN ('open', 'triaged', 'closed')),
    version INTEGER NOT NULL CHECK (version >= 1)
) STRICT, WITHOUT ROWID;
INSERT INTO dashboard_tickets_a_new SELECT id, status, version FROM dashboard_tickets_a ORDER BY id;
DROP TABLE dashboard_tickets_a;
ALTER TABLE dashboard_tickets_a_new RENAME TO dashboard_tickets_a;

CREATE TABLE dashboard_tickets_b_new (
    id      TEXT    PRIMARY KEY CHECK (length(id) = 36),
    status  TEXT    NOT NULL CHECK (status IN ('open', 'triaged', 'closed')),
    version INTEGER NOT NULL CHECK (version >= 1)
) STRICT, WITHOUT ROWID;
INSERT INTO dashboard_tickets_b_new SELECT id, status, version FROM dashboard_tickets_b ORDER BY id;
DROP TABLE dashboard_tickets_b;
ALTER TABLE dashboard_tickets_b_new RENAME TO dashboard_tickets_b;
