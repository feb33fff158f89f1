-- PostgreSQL only: a tenant sees and writes its own event types.
ALTER TABLE event_types ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON event_types FOR ALL
    USING (current_setting('tessera.scope', true) = 'system'
           OR tenant_id = current_setting('tessera.tenant_id', true));
