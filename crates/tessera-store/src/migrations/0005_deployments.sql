-- Deployments: where a model's traffic goes (weighted versions, shadows,
-- fallbacks, timeout), one per model, as JSON.
CREATE TABLE deployments (
    model_id TEXT PRIMARY KEY REFERENCES models (id),
    tenant_id TEXT,
    spec TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
