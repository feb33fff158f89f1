-- Datasets (L2): a tenant's named files, a row per version; the bytes are an
-- artifact (content-addressed by sha256), the schema and preview JSON read
-- from them at upload.
CREATE TABLE datasets (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    format TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    rows BIGINT NOT NULL,
    schema TEXT NOT NULL,
    preview TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT,
    UNIQUE (tenant_id, name, version)
);

-- The largest dataset upload a plan allows, in MiB (NULL: the server's cap).
ALTER TABLE plans ADD COLUMN dataset_max_mb BIGINT;
