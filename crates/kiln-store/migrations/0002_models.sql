-- The model registry: named models, their immutable versions, and aliases (production,
-- staging, ...) whose every move is recorded. Portable SQL, as in 0001.

CREATE TABLE models (
    name        TEXT PRIMARY KEY,
    created_at  BIGINT NOT NULL
);

CREATE TABLE model_versions (
    model        TEXT NOT NULL REFERENCES models(name),
    version      BIGINT NOT NULL,
    artifact_id  TEXT NOT NULL,     -- the one-file model, content-addressed
    run_id       TEXT,              -- the training run, when Kiln trained it
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (model, version)
);

-- The current target of each alias. `revision` counts its moves: a writer states the revision
-- it saw, and the move succeeds only if nobody moved the alias in between (compare-and-set).
CREATE TABLE aliases (
    model       TEXT NOT NULL REFERENCES models(name),
    alias       TEXT NOT NULL,
    version     BIGINT NOT NULL,
    revision    BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (model, alias)
);

CREATE TABLE alias_history (
    model         TEXT NOT NULL,
    alias         TEXT NOT NULL,
    revision      BIGINT NOT NULL,
    from_version  BIGINT,           -- NULL for the first assignment
    to_version    BIGINT NOT NULL,
    reason        TEXT NOT NULL,
    actor         TEXT NOT NULL,
    at            BIGINT NOT NULL,
    PRIMARY KEY (model, alias, revision)
);
