-- Pipelines (`kiln pipeline run`): one row per run, one row per stage of a run with its cache
-- key, what it read (inputs), what it produced (outputs), how long it took and how it ended.
-- A stage row is written as 'running' before its work starts and completed in place, so a
-- crash leaves a visible 'running' row, which never counts as a cached result.
-- Portable SQL, as in 0001; run ids come from id_counters, as in 0004.

INSERT INTO id_counters (name, last_id) VALUES ('pipeline_runs', 0);

CREATE TABLE pipeline_runs (
    id            BIGINT PRIMARY KEY,
    pipeline      TEXT NOT NULL,
    started_at    BIGINT NOT NULL,    -- wall clock, microseconds since the epoch
    finished_at   BIGINT,             -- NULL while running
    state         TEXT NOT NULL,      -- running, succeeded or failed
    code_version  TEXT,               -- git commit (+dirty) of the project, when in a checkout
    kiln_version  TEXT NOT NULL,
    message       TEXT,               -- why it failed
    CHECK (state IN ('running', 'succeeded', 'failed'))
);

CREATE TABLE pipeline_stages (
    run_id        BIGINT NOT NULL REFERENCES pipeline_runs (id),
    stage         TEXT NOT NULL,
    pipeline      TEXT NOT NULL,      -- the run's pipeline (for the cache lookup)
    position      BIGINT NOT NULL,    -- the stage's place in the pipeline, from 0
    kind          TEXT NOT NULL,      -- ingest, validate, train, import, gate, deploy, command
    cache_key     TEXT NOT NULL,      -- BLAKE3 of the canonical inputs document
    state         TEXT NOT NULL,      -- running, ran, skipped or failed
    inputs        TEXT NOT NULL,      -- JSON: the inputs document the key hashes
    outputs       TEXT,               -- JSON: what it produced (or, skipped, reused)
    started_at    BIGINT NOT NULL,
    duration_ms   BIGINT,
    message       TEXT,
    PRIMARY KEY (run_id, stage),
    CHECK (state IN ('running', 'ran', 'skipped', 'failed'))
);

CREATE INDEX pipeline_runs_pipeline ON pipeline_runs (pipeline, id);
-- The cache lookup: the latest good record of one stage of one pipeline.
CREATE INDEX pipeline_stages_cache ON pipeline_stages (pipeline, stage, state, run_id);
