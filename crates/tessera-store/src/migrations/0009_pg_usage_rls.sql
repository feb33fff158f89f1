-- PostgreSQL only: a tenant reads its own usage; prices are the platform's.
ALTER TABLE usage_records ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_usage ON usage_records FOR ALL
    USING (current_setting('tessera.scope', true) = 'system'
           OR tenant_id = current_setting('tessera.tenant_id', true));
ALTER TABLE prices ENABLE ROW LEVEL SECURITY;
CREATE POLICY read_prices ON prices FOR SELECT USING (true);
CREATE POLICY write_prices ON prices FOR ALL
    USING (current_setting('tessera.scope', true) = 'system');
