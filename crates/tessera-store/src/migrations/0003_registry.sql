-- The model registry: models owned by a tenant, a segment or the platform,
-- and their numbered versions with content-addressed artifacts.
CREATE TABLE models (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    tenant_id TEXT,
    segment TEXT,
    scope_key TEXT NOT NULL,
    name TEXT NOT NULL,
    task TEXT NOT NULL,
    runtime TEXT NOT NULL,
    base_model TEXT,
    created_at BIGINT NOT NULL
);
-- One name per tenant, per segment and on the platform.
CREATE UNIQUE INDEX models_scope_name ON models (scope_key, name);
CREATE INDEX models_tenant ON models (tenant_id);

CREATE TABLE model_versions (
    model_id TEXT NOT NULL REFERENCES models (id),
    version BIGINT NOT NULL,
    tenant_id TEXT,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (model_id, version)
);
