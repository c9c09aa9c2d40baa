-- Leases: which process holds a role that only one may hold at a time (the retrain controller
-- of a model, when several `kiln serve` replicas share one database). A holder renews its
-- lease before it expires; a lease whose holder stopped renewing can be taken over once it
-- has expired. Times are wall-clock microseconds. Portable SQL, as in 0001.

CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    acquired_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
