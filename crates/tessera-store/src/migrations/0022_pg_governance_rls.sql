-- PostgreSQL only: tenants read their own and shared models' aliases, write their own.
ALTER TABLE model_aliases ENABLE ROW LEVEL SECURITY;
CREATE POLICY read_shared ON model_aliases FOR SELECT
    USING (current_setting('tessera.scope', true) = 'system'
           OR tenant_id = current_setting('tessera.tenant_id', true)
           OR tenant_id IS NULL);
CREATE POLICY write_own ON model_aliases FOR ALL
    USING (current_setting('tessera.scope', true) = 'system'
           OR tenant_id = current_setting('tessera.tenant_id', true));
