-- Monitoring alerts: each row is one episode of a rule firing, from when it fired until it
-- resolved. Portable SQL, as in 0001; ids come from id_counters, as in 0004.

INSERT INTO id_counters (name, last_id) VALUES ('alerts', 0);

CREATE TABLE alerts (
    id            BIGINT PRIMARY KEY,
    model         TEXT NOT NULL,
    version       BIGINT NOT NULL,      -- the version whose window fired it
    rule          TEXT NOT NULL,        -- the rule's name in kiln.toml
    severity      TEXT NOT NULL,        -- info, warning or critical
    state         TEXT NOT NULL,        -- firing or resolved
    value         DOUBLE PRECISION,     -- what the rule measured when it fired
    threshold     DOUBLE PRECISION,     -- what it was compared with
    message       TEXT NOT NULL,        -- why, in words
    window_start  BIGINT NOT NULL,      -- event time of the window that fired it, [start, end)
    window_end    BIGINT NOT NULL,
    fired_at      BIGINT NOT NULL,      -- wall clock, microseconds since the epoch
    resolved_at   BIGINT,               -- wall clock; NULL while firing
    resolved_window_end BIGINT,         -- event time of the window that resolved it
    CHECK (state IN ('firing', 'resolved'))
);

-- At most one firing episode per model and rule, whichever replica noticed it first.
CREATE UNIQUE INDEX alerts_one_firing ON alerts (model, rule) WHERE state = 'firing';
CREATE INDEX alerts_model ON alerts (model, id);
