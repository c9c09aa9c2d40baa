-- The retrain controller's record: one row per retraining it started, with what triggered it,
-- what it learned from, the candidate it produced, the gates' numbers and the outcome.
-- Portable SQL, as in 0001; ids come from id_counters, as in 0004.

INSERT INTO id_counters (name, last_id) VALUES ('retrains', 0);

CREATE TABLE retrains (
    id                BIGINT PRIMARY KEY,
    model             TEXT NOT NULL,
    trigger           TEXT NOT NULL,      -- schedule, alert:RULE or manual
    event_time        BIGINT NOT NULL,    -- the serving clock (event time) when it started
    started_at        BIGINT NOT NULL,    -- wall clock, microseconds since the epoch
    finished_at       BIGINT,             -- wall clock; NULL while running
    state             TEXT NOT NULL,      -- running, promoted, rejected or failed
    labelled_rows     BIGINT NOT NULL,    -- new labelled production rows it added to the data
    feedback_cursor   BIGINT NOT NULL,    -- the last feedback id those rows came from
    dataset_version   BIGINT,             -- the snapshot it trained on
    run_id            BIGINT,
    candidate_version BIGINT,
    champion_version  BIGINT,
    gates             TEXT,               -- JSON: each gate with its numbers
    message           TEXT,               -- the outcome, in words
    CHECK (state IN ('running', 'promoted', 'rejected', 'failed'))
);

-- One retraining per model at a time, whichever controller (or replica) started first.
CREATE UNIQUE INDEX retrains_one_running ON retrains (model) WHERE state = 'running';
CREATE INDEX retrains_model ON retrains (model, id);
