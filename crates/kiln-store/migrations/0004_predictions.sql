-- The serving layer's prediction log and the labels that come back for it. Portable SQL, as in
-- 0001. No foreign keys to models: a prediction must be appendable without a lookup, and
-- feedback may arrive for a request that another replica has served but not flushed yet.
--
-- Ids are assigned by the store, as for runs (0003), because no auto-increment syntax is
-- shared: SQLite's is `INTEGER PRIMARY KEY` (a 32-bit `integer` on PostgreSQL), PostgreSQL's
-- is `BIGSERIAL` or an identity column (neither understood by SQLite). A writer reserves a
-- block of ids by bumping its row in `id_counters` inside its write transaction. That row
-- lock also queues concurrent writers on PostgreSQL, so ids become visible in commit order
-- and a reader paging with `id > last seen` never skips a row committed late with a lower
-- id (which a sequence allows); a rolled-back batch gives its ids back.

CREATE TABLE id_counters (
    name     TEXT PRIMARY KEY,      -- the table whose ids it hands out
    last_id  BIGINT NOT NULL        -- the highest id handed out so far
);

INSERT INTO id_counters (name, last_id) VALUES ('predictions', 0);
INSERT INTO id_counters (name, last_id) VALUES ('feedback', 0);

CREATE TABLE predictions (
    id          BIGINT PRIMARY KEY,   -- 1, 2, 3, ... in commit order
    request_id  TEXT NOT NULL,        -- one request may score several rows
    key         TEXT,                 -- the caller's join key for feedback, if given
    model       TEXT NOT NULL,
    version     BIGINT NOT NULL,
    alias       TEXT,                 -- the alias the request was routed through (production, ...)
    time        BIGINT NOT NULL,      -- event time, normally the server's clock when scored
    features    TEXT NOT NULL,        -- JSON object: the row as received, compact
    output      TEXT NOT NULL,        -- JSON: what the model returned
    latency_us  BIGINT NOT NULL,
    flags       TEXT                  -- JSON array of strings, e.g. unknown_category:season; or NULL
);

CREATE INDEX predictions_request ON predictions (request_id);
CREATE INDEX predictions_model_time ON predictions (model, time);
-- Partial: most rows have no key, and an index entry per NULL would cost every insert.
CREATE INDEX predictions_key ON predictions (key) WHERE key IS NOT NULL;

CREATE TABLE feedback (
    id           BIGINT PRIMARY KEY,  -- 1, 2, 3, ... in commit order
    request_id   TEXT,
    key          TEXT,
    time         BIGINT,              -- event time sent with a key (a key may recur over time)
    label        TEXT NOT NULL,       -- JSON scalar: the observed outcome
    received_at  BIGINT NOT NULL,
    CHECK (request_id IS NOT NULL OR key IS NOT NULL)
);

CREATE INDEX feedback_request ON feedback (request_id) WHERE request_id IS NOT NULL;
CREATE INDEX feedback_key ON feedback (key) WHERE key IS NOT NULL;
