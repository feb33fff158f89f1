-- PostgreSQL only: a tenant sees and writes its own rollouts.
ALTER TABLE rollouts ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON rollouts FOR ALL
    USING (current_setting('tessera.scope', true) = 'system'
           OR tenant_id = current_setting('tessera.tenant_id', true));
