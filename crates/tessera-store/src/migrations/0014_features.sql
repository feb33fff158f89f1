-- Feature store definitions (F1): a tenant's entities, feature views and
-- feature services, each a JSON spec with a version that grows on every change.
CREATE TABLE feature_defs (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    spec TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, kind, name)
);
