-- The list's filters (status, agent, customer: exact match) and sorts
-- (created_at or updated_at, ascending or descending), in both list slots.
-- Together with 0003's `<slot>_newest` (created_at, id) and
-- `<slot>_status_newest` (status, created_at, id), every filter and sort is
-- one index range seek in index order, keyset paging on (sort key, id), with
-- no sort step: SQLite walks an index backwards for the other direction.
--
-- A request with two or three filters uses the index of one of them (the
-- store picks customer, else agent, else status, the most selective first,
-- with INDEXED BY) and checks the others on the rows that index yields: one
-- index per combination would be eight more indexes per slot for little gain.
CREATE INDEX list_a_updated          ON list_a (updated_at, id);
CREATE INDEX list_a_status_updated   ON list_a (status, updated_at, id);
CREATE INDEX list_a_agent_created    ON list_a (agent, created_at, id);
CREATE INDEX list_a_agent_updated    ON list_a (agent, updated_at, id);
CREATE INDEX list_a_customer_created ON list_a (customer, created_at, id);
CREATE INDEX list_a_customer_updated ON list_a (customer, updated_at, id);

CREATE INDEX list_b_updated          ON list_b (updated_at, id);
CREATE INDEX list_b_status_updated   ON list_b (status, updated_at, id);
CREATE INDEX list_b_agent_created    ON list_b (agent, created_at, id);
CREATE INDEX list_b_agent_updated    ON list_b (agent, updated_at, id);
CREATE INDEX list_b_customer_created ON list_b (customer, created_at, id);
CREATE INDEX list_b_customer_updated ON list_b (customer, updated_at, id);
