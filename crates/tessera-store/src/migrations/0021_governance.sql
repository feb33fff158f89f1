-- Governance (L1, L3): a version's validation report and its gate state
-- ('passed', 'failed', 'overridden'; NULL: never validated), the
-- thresholds a tenant's versions are held to (JSON; NULL: the defaults),
-- and aliases: named, mutable pointers to a model's versions.
ALTER TABLE model_versions ADD COLUMN gate TEXT;
ALTER TABLE model_versions ADD COLUMN report TEXT;
ALTER TABLE tenants ADD COLUMN gate_thresholds TEXT;
CREATE TABLE model_aliases (
    model_id TEXT NOT NULL REFERENCES models (id),
    alias TEXT NOT NULL,
    tenant_id TEXT,
    version BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT,
    PRIMARY KEY (model_id, alias)
);
-- Training jobs a tenant may have running at once (NULL: no bound).
ALTER TABLE plans ADD COLUMN training_jobs BIGINT;
