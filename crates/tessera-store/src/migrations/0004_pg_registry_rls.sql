-- PostgreSQL only: tenants read their own, their segment's and the platform's
-- models (rows without a tenant) but write only their own.
ALTER TABLE models ENABLE ROW LEVEL SECURITY;
CREATE POLICY read_shared ON models FOR SELECT
    USING (current_setting('tessera.scope', true) = 'system'
           OR tenant_id = current_setting('tessera.tenant_id', true)
           OR tenant_id IS NULL);
CREATE POLICY write_own ON models FOR ALL
    USING (current_setting('tessera.scope', true) = 'system'
           OR tenant_id = current_setting('tessera.tenant_id', true));

ALTER TABLE model_versions ENABLE ROW LEVEL SECURITY;
CREATE POLICY read_shared ON model_versions FOR SELECT
    USING (current_setting('tessera.scope', true) = 'system'
           OR tenant_id = current_setting('tessera.tenant_id', true)
           OR tenant_id IS NULL);
CREATE POLICY write_own ON model_versions FOR ALL
    USING (current_setting('tessera.scope', true) = 'system'
           OR tenant_id = current_setting('tessera.tenant_id', true));
