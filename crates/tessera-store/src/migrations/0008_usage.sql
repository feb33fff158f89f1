-- Usage metering: one row per request (written in batches), and the price
-- table the platform edits. Cost is in micro-dollars.
CREATE TABLE usage_records (
    -- Made by the server: a retried batch is stored once; request ids come
    -- from clients and are not trusted to be unique.
    id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    ts_ms BIGINT NOT NULL,
    tenant_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    tier TEXT NOT NULL,
    route TEXT NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    compute_us BIGINT NOT NULL,
    cache TEXT NOT NULL,
    status INTEGER NOT NULL,
    cost_micros BIGINT NOT NULL
);
CREATE INDEX usage_by_tenant_time ON usage_records (tenant_id, ts_ms);
CREATE INDEX usage_by_time ON usage_records (ts_ms);

CREATE TABLE prices (
    model TEXT NOT NULL,
    plan TEXT NOT NULL,
    prompt_per_1k_usd DOUBLE PRECISION NOT NULL,
    completion_per_1k_usd DOUBLE PRECISION NOT NULL,
    per_request_usd DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (model, plan)
);
