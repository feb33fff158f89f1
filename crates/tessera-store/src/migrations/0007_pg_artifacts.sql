-- Artifacts shared by every replica on PostgreSQL: content-addressed blobs
-- (model files, remote model configs). Each replica keeps a verified local
-- copy in its data dir; this table is the source of truth. Not tenant data
-- by itself: a blob is reached only through a version row, which row-level
-- security guards.
CREATE TABLE artifacts (
    sha256 TEXT PRIMARY KEY,
    size BIGINT NOT NULL,
    bytes BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
