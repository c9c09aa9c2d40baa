-- Archives of the prediction log: old days of one model's predictions, moved out of the
-- database into one Parquet file each in the artifact store (`kiln log compact`). A row is
-- written in the same transaction that deletes the archived predictions, so every prediction
-- is in exactly one place: the table or one archive. Portable SQL, as in 0001.
--
-- Labels are joined into the file when it is written, from feedback up to
-- `feedback_watermark`; feedback that arrives later stays in `feedback` and is joined to the
-- archive's rows when it is read.

INSERT INTO id_counters (name, last_id) VALUES ('log_archives', 0);

CREATE TABLE log_archives (
    id                  BIGINT PRIMARY KEY,  -- 1, 2, 3, ... (id_counters)
    model               TEXT NOT NULL,
    day                 BIGINT NOT NULL,     -- the partition: UTC day of the rows' event time (days since 1970-01-01)
    first_id            BIGINT NOT NULL,     -- the lowest and highest prediction id inside
    last_id             BIGINT NOT NULL,
    time_from           BIGINT NOT NULL,     -- the earliest and latest event time inside
    time_to             BIGINT NOT NULL,
    rows                BIGINT NOT NULL,
    labelled            BIGINT NOT NULL,     -- rows with a label joined in the file
    artifact            TEXT NOT NULL,       -- content id of the Parquet file
    bytes               BIGINT NOT NULL,
    feedback_watermark  BIGINT NOT NULL,     -- feedback ids up to this one are joined in the file
    created_at          BIGINT NOT NULL
);

CREATE INDEX log_archives_model_time ON log_archives (model, time_from);
