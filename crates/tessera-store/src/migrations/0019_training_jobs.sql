-- Training jobs (L2): a tenant's spec, where the job is, its progress and
-- result. A replica claims a queued job (owner) and keeps updated_at fresh
-- while it runs; a running job whose updated_at went stale lost its replica.
CREATE TABLE training_jobs (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    status TEXT NOT NULL,
    spec TEXT NOT NULL,
    progress TEXT NOT NULL,
    model TEXT,
    version BIGINT,
    metrics TEXT,
    error TEXT,
    owner TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    created_by TEXT
);
CREATE INDEX training_jobs_by_status ON training_jobs (status, created_at);
CREATE INDEX training_jobs_by_tenant ON training_jobs (tenant_id, created_at);
