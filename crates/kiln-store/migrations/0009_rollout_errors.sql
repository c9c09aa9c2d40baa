-- A rollout's challenger failures: requests its version could not answer (a canary) or score
-- (a shadow's copy) where production could, added by the servers that routed them. The
-- controller rolls back on their rate. Portable SQL, as in 0001.

ALTER TABLE rollouts ADD COLUMN errors BIGINT NOT NULL DEFAULT 0;
