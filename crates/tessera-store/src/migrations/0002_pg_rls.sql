-- PostgreSQL only: row-level security as defence in depth. Every transaction
-- runs as role tessera_rls with tessera.scope = 'system' or 'tenant' and
-- tessera.tenant_id set locally; a query that forgets its tenant filter still
-- sees only that tenant's rows. The audit log is insert-only for that role.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tessera_rls') THEN
        BEGIN
            CREATE ROLE tessera_rls NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END IF;
END $$;

ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants
    USING (current_setting('tessera.scope', true) = 'system'
           OR id = current_setting('tessera.tenant_id', true));

ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api_keys
    USING (current_setting('tessera.scope', true) = 'system'
           OR tenant_id = current_setting('tessera.tenant_id', true));

ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_log
    USING (current_setting('tessera.scope', true) = 'system'
           OR tenant_id = current_setting('tessera.tenant_id', true));
