-- Tenants, plans, API keys and the hash-chained audit log.
-- Shared by SQLite and PostgreSQL; PostgreSQL adds row-level security after it.
CREATE TABLE plans (
    name TEXT PRIMARY KEY,
    rpm BIGINT,
    tpm BIGINT,
    concurrency BIGINT,
    monthly_budget_usd DOUBLE PRECISION,
    models TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    plan TEXT NOT NULL REFERENCES plans (name),
    segment TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    tenant_id TEXT,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    scopes TEXT NOT NULL,
    hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT,
    created_by TEXT
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at);

CREATE TABLE audit_log (
    id BIGINT PRIMARY KEY,
    ts BIGINT NOT NULL,
    actor_key_id TEXT,
    tenant_id TEXT,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    request_id TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, id);

CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_id BIGINT NOT NULL,
    last_hash TEXT NOT NULL
);
INSERT INTO audit_head (id, last_id, last_hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
