-- PostgreSQL only: a tenant sees and writes its own alert rules and events;
-- platform rules (no tenant) only in the system scope.
ALTER TABLE alert_rules ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON alert_rules FOR ALL
    USING (current_setting('tessera.scope', true) = 'system'
           OR tenant_id = current_setting('tessera.tenant_id', true));
ALTER TABLE alert_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON alert_events FOR ALL
    USING (current_setting('tessera.scope', true) = 'system'
           OR tenant_id = current_setting('tessera.tenant_id', true));
