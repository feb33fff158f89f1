-- Feedback (L5): ground truth joined to a recorded prediction, one row per
-- prediction (a later feedback for it replaces the earlier). The prediction's
-- model, version and answer are copied from its record, so online quality
-- per version is one grouped scan of a window.
CREATE TABLE feedback (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    prediction_id TEXT NOT NULL,
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    kind TEXT NOT NULL,
    predicted_label TEXT,
    predicted_value DOUBLE PRECISION,
    true_label TEXT,
    true_value DOUBLE PRECISION,
    predicted_at BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    input TEXT,
    entity TEXT,
    PRIMARY KEY (tenant_id, prediction_id)
);
CREATE INDEX feedback_by_model ON feedback (tenant_id, model, received_at);
