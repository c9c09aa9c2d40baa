-- Training runs: what was trained, on which snapshot, with which parameters and code, and what
-- came out. A run is written when it starts (status 'running') and completed in place, so a
-- crash leaves a visible 'running' row rather than nothing. Portable SQL, as in 0001.

CREATE TABLE runs (
    id            BIGINT PRIMARY KEY,   -- 1, 2, 3, ... per store
    status        TEXT NOT NULL,        -- running | finished | failed
    dataset       TEXT NOT NULL,
    dataset_version BIGINT NOT NULL,
    snapshot_id   TEXT NOT NULL,
    params        TEXT NOT NULL,        -- JSON: the resolved training parameters
    seed          BIGINT NOT NULL,
    code_version  TEXT,                 -- git commit (+dirty) when trained inside a checkout
    kiln_version  TEXT NOT NULL,
    metrics       TEXT,                 -- JSON: validation metrics of the model and baselines
    importance    TEXT,                 -- JSON: [[feature, share], ...]
    timings       TEXT,                 -- JSON: seconds per step
    artifact_id   TEXT,                 -- the model file, when finished
    error         TEXT,                 -- why it failed
    started_at    BIGINT NOT NULL,
    finished_at   BIGINT
);
