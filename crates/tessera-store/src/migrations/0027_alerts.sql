-- Alerts (O4): rules (a tenant's, or the platform's when tenant_id is
-- NULL) with their state per subject as JSON (`body`), claimed for
-- evaluation like rollouts (`owner`, `lease_until`, `revision`); and the
-- events each rule left (firing, resolved, deliveries), append-only.
CREATE TABLE alert_rules (
    id TEXT PRIMARY KEY,
    tenant_id TEXT REFERENCES tenants (id),
    body TEXT NOT NULL,
    secret TEXT NOT NULL,
    severity TEXT NOT NULL,
    firing BIGINT NOT NULL DEFAULT 0,
    next_at BIGINT NOT NULL,
    owner TEXT,
    lease_until BIGINT NOT NULL DEFAULT 0,
    revision BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX alert_rules_due ON alert_rules (next_at);
CREATE INDEX alert_rules_by_tenant ON alert_rules (tenant_id);
CREATE TABLE alert_events (
    rule_id TEXT NOT NULL,
    tenant_id TEXT,
    at BIGINT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX alert_events_by_rule ON alert_events (rule_id, at);
