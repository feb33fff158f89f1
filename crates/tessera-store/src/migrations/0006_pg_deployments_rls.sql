-- PostgreSQL only: tenants read their own and shared deployments, write their own.
ALTER TABLE deployments ENABLE ROW LEVEL SECURITY;
CREATE POLICY read_shared ON deployments FOR SELECT
    USING (current_setting('tessera.scope', true) = 'system'
           OR tenant_id = current_setting('tessera.tenant_id', true)
           OR tenant_id IS NULL);
CREATE POLICY write_own ON deployments FOR ALL
    USING (current_setting('tessera.scope', true) = 'system'
           OR tenant_id = current_setting('tessera.tenant_id', true));
