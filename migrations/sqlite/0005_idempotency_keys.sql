-- Idempotency keys, stored with the events they caused.
--
-- A command sent with an `Idempotency-Key` header records the key on the first
-- event it appends, in the append's own transaction; every event of the
-- command also carries the key (and the request's digest) in its metadata.
-- The partial unique index makes a key usable once across every process and
-- instance sharing the file: a second append with the key fails as a whole,
-- and the write side answers it with what the first one did.
--
-- Adding a column is not an UPDATE, so the immutability triggers do not fire;
-- existing events keep NULL (no key).
ALTER TABLE events ADD COLUMN idempotency_key TEXT
    CHECK (idempotency_key IS NULL OR length(idempotency_key) BETWEEN 1 AND 255);

CREATE UNIQUE INDEX events_idempotency_key ON events (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
