-- Datasets and their immutable versions. Portable SQL: runs unchanged on SQLite and PostgreSQL.
-- Times are microseconds since the Unix epoch (BIGINT); JSON documents are TEXT.

CREATE TABLE artifacts (
    id          TEXT PRIMARY KEY,      -- BLAKE3 content id
    kind        TEXT NOT NULL,         -- snapshot-part | profile | quarantine | ...
    size        BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE datasets (
    name         TEXT PRIMARY KEY,
    created_at   BIGINT NOT NULL,
    time_column  TEXT,
    target       TEXT
);

CREATE TABLE dataset_versions (
    dataset           TEXT NOT NULL REFERENCES datasets(name),
    version           BIGINT NOT NULL,
    snapshot_id       TEXT NOT NULL,   -- hash of the manifest: schema + ordered part ids
    parent_version    BIGINT,
    mode              TEXT NOT NULL,   -- add | append
    row_count         BIGINT NOT NULL,
    schema_json       TEXT NOT NULL,
    parts_json        TEXT NOT NULL,   -- [{id, rows, profile_id}], in order
    profile_id        TEXT NOT NULL,   -- merged profile of all parts
    time_min          TEXT,
    time_max          TEXT,
    source            TEXT NOT NULL,   -- file name as given
    source_hash       TEXT NOT NULL,   -- BLAKE3 of the input file's bytes
    quarantine_id     TEXT,
    quarantined_rows  BIGINT NOT NULL,
    created_at        BIGINT NOT NULL,
    kiln_version      TEXT NOT NULL,
    PRIMARY KEY (dataset, version)
);

CREATE INDEX dataset_versions_snapshot ON dataset_versions (snapshot_id);
