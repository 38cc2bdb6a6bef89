-- Secondary indexes of a shadow slot set aside during a rebuild's bulk load.
--
-- A fresh rebuild writes each row of the (empty) shadow slot once; keeping
-- the slot's secondary indexes while it does means inserting every row into
-- each of them in a random place, which was most of a list rebuild's time.
-- Instead the rebuild drops them first and creates them again at the end,
-- from the loaded rows: each index built once, from sorted input.
--
-- A dropped index's definition is kept here, in the transaction that drops
-- it, so that nothing is lost if the process dies before creating it again.
-- Emptying the shadow slot and swapping it in both create again whatever is
-- kept here for that slot's table first: a slot is never live without its
-- indexes.
CREATE TABLE deferred_indexes (
    name       TEXT PRIMARY KEY,
    table_name TEXT NOT NULL,
    sql        TEXT NOT NULL
) STRICT;
