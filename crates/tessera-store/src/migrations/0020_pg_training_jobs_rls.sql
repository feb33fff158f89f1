-- PostgreSQL only: a tenant sees and writes its own training jobs.
ALTER TABLE training_jobs ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON training_jobs FOR ALL
    USING (current_setting('tessera.scope', true) = 'system'
           OR tenant_id = current_setting('tessera.tenant_id', true));
