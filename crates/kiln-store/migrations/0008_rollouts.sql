-- Rollouts: a challenger proven on live traffic before it takes it (shadow: it scores a copy of
-- the traffic, its answers are logged, never returned; canary: it answers a share of the
-- requests). Portable SQL, as in 0001; ids come from id_counters, as in 0004.
--
-- A rollout ends by removing its alias, so an alias move may now have no target: the history
-- is rebuilt with a nullable `to_version` (SQLite cannot drop a NOT NULL in place), and the
-- retrains' states gain `deployed` (the candidate passed the gates and went to a rollout,
-- whose own row says how it ended).

CREATE TABLE alias_history_v2 (
    model         TEXT NOT NULL,
    alias         TEXT NOT NULL,
    revision      BIGINT NOT NULL,
    from_version  BIGINT,           -- NULL for the first assignment
    to_version    BIGINT,           -- NULL when the alias was removed
    reason        TEXT NOT NULL,
    actor         TEXT NOT NULL,
    at            BIGINT NOT NULL,
    PRIMARY KEY (model, alias, revision)
);
INSERT INTO alias_history_v2 (model, alias, revision, from_version, to_version, reason, actor, at)
    SELECT model, alias, revision, from_version, to_version, reason, actor, at FROM alias_history;
DROP TABLE alias_history;
ALTER TABLE alias_history_v2 RENAME TO alias_history;

CREATE TABLE retrains_v2 (
    id                BIGINT PRIMARY KEY,
    model             TEXT NOT NULL,
    trigger           TEXT NOT NULL,      -- schedule, alert:RULE or manual
    event_time        BIGINT NOT NULL,    -- the serving clock (event time) when it started
    started_at        BIGINT NOT NULL,    -- wall clock, microseconds since the epoch
    finished_at       BIGINT,             -- wall clock; NULL while running
    state             TEXT NOT NULL,      -- running, promoted, deployed, rejected or failed
    labelled_rows     BIGINT NOT NULL,    -- new labelled production rows it added to the data
    feedback_cursor   BIGINT NOT NULL,    -- the last feedback id those rows came from
    dataset_version   BIGINT,             -- the snapshot it trained on
    run_id            BIGINT,
    candidate_version BIGINT,
    champion_version  BIGINT,
    gates             TEXT,               -- JSON: each gate with its numbers
    message           TEXT,               -- the outcome, in words
    CHECK (state IN ('running', 'promoted', 'deployed', 'rejected', 'failed'))
);
INSERT INTO retrains_v2 SELECT id, model, trigger, event_time, started_at, finished_at, state,
    labelled_rows, feedback_cursor, dataset_version, run_id, candidate_version, champion_version,
    gates, message FROM retrains;
DROP TABLE retrains;
ALTER TABLE retrains_v2 RENAME TO retrains;
CREATE UNIQUE INDEX retrains_one_running ON retrains (model) WHERE state = 'running';
CREATE INDEX retrains_model ON retrains (model, id);

INSERT INTO id_counters (name, last_id) VALUES ('rollouts', 0);

CREATE TABLE rollouts (
    id                 BIGINT PRIMARY KEY,
    model              TEXT NOT NULL,
    strategy           TEXT NOT NULL,     -- shadow or canary
    alias              TEXT NOT NULL,     -- the alias that routes the challenger
    challenger_version BIGINT NOT NULL,
    champion_alias     TEXT NOT NULL,     -- the alias it would replace (production)
    champion_version   BIGINT NOT NULL,
    champion_revision  BIGINT NOT NULL,   -- the champion alias's revision at the start
    share              DOUBLE PRECISION,  -- canary: the share of requests it answers
    retrain_id         BIGINT,            -- the retraining that produced it, if one did
    event_time         BIGINT NOT NULL,   -- the serving clock when it started
    started_at         BIGINT NOT NULL,   -- wall clock, microseconds since the epoch
    finished_at        BIGINT,
    state              TEXT NOT NULL,     -- running, promoted, rolled_back, discarded or stopped
    decision           TEXT,              -- JSON: the numbers the last decision read
    message            TEXT,              -- the outcome, in words
    CHECK (strategy IN ('shadow', 'canary')),
    CHECK (state IN ('running', 'promoted', 'rolled_back', 'discarded', 'stopped'))
);

-- One rollout per model at a time.
CREATE UNIQUE INDEX rollouts_one_running ON rollouts (model) WHERE state = 'running';
CREATE INDEX rollouts_model ON rollouts (model, id);
