-- PostgreSQL only: a tenant sees and writes its own feedback.
ALTER TABLE feedback ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON feedback FOR ALL
    USING (current_setting('tessera.scope', true) = 'system'
           OR tenant_id = current_setting('tessera.tenant_id', true));
