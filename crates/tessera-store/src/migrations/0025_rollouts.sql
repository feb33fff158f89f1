-- Rollouts (L4): one row per rollout, its state as JSON (`body`: steps,
-- checks, the current step, the history) beside the columns the controller
-- claims by. A replica claims a due rollout by taking its lease
-- (`owner`, `lease_until`); every write names the revision it read, so a
-- person's pause and the controller's step never overwrite each other.
CREATE TABLE rollouts (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    model_id TEXT NOT NULL,
    state TEXT NOT NULL,
    body TEXT NOT NULL,
    baseline TEXT,
    next_at BIGINT NOT NULL,
    owner TEXT,
    lease_until BIGINT NOT NULL DEFAULT 0,
    revision BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX rollouts_due ON rollouts (state, next_at);
CREATE INDEX rollouts_by_tenant ON rollouts (tenant_id, created_at);
-- At most one running or paused rollout per model.
CREATE UNIQUE INDEX rollouts_one_active ON rollouts (model_id) WHERE state IN ('running', 'paused');
