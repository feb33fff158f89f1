-- PostgreSQL only: a tenant sees and writes its own datasets.
ALTER TABLE datasets ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON datasets FOR ALL
    USING (current_setting('tessera.scope', true) = 'system'
           OR tenant_id = current_setting('tessera.tenant_id', true));
