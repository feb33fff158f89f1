-- PostgreSQL only: a tenant sees and writes its own feature definitions.
ALTER TABLE feature_defs ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON feature_defs FOR ALL
    USING (current_setting('tessera.scope', true) = 'system'
           OR tenant_id = current_setting('tessera.tenant_id', true));
