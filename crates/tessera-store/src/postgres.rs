//! The scale-out metadata store on PostgreSQL. Every transaction first sets
//! its role to `tessera_rls` and its scope (`system`, or `tenant` with the
//! tenant id) locally, so row-level security backs up the tenant filters in
//! every query. Migrations take an advisory lock, so replicas can start together.

use std::str::FromStr as _;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::migrate::{COMMON, CREATE_TABLE, POSTGRES_ONLY, check_not_newer};

/// Arbitrary constant naming Tessera's migration advisory lock.
const MIGRATION_LOCK: i64 = 0x7e55_e4a0;

pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to `url`, optionally pinning `search_path` to `schema` (tests
    /// use one schema per run), and migrates.
    pub async fn connect(url: &str, schema: Option<&str>) -> Result<PgStore, StoreError> {
        let mut opts = PgConnectOptions::from_str(url)?;
        if let Some(s) = schema {
            opts = opts.options([("search_path", s)]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(opts)
            .await?;
        migrate(&pool).await?;
        Ok(PgStore { pool })
    }

    async fn begin(&self, scope: TxScope<'_>, _write: bool) -> Result<Tx, StoreError> {
        let mut tx = self.pool.begin().await?;
        let (scope_name, tenant) = match scope {
            TxScope::System => ("system", ""),
            TxScope::Tenant(t) => ("tenant", t),
        };
        sqlx::query(
            "SELECT set_config('role', 'tessera_rls', true), set_config('tessera.scope', $1, true), \
             set_config('tessera.tenant_id', $2, true)",
        )
        .bind(scope_name)
        .bind(tenant)
        .execute(&mut *tx)
        .await?;
        Ok(tx)
    }

    /// The artifact store of this database, with a verified local copy of
    /// each blob under `cache_dir`.
    pub fn artifacts(&self, cache_dir: impl Into<std::path::PathBuf>) -> PgArtifacts {
        PgArtifacts {
            pool: self.pool.clone(),
            local: crate::artifacts::DirArtifacts::new(cache_dir),
        }
    }

    async fn ping_db(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Counts the keys visible in a tenant-scoped transaction with no tenant
    /// filter in the query: row-level security alone decides. Exists to test
    /// the policies.
    pub async fn count_keys_visible_to(&self, ctx: &TenantCtx) -> Result<i64, StoreError> {
        let mut tx = self.begin(TxScope::Tenant(ctx.tenant_id().as_str()), false).await?;
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM api_keys")
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        tx.commit().await?;
        Ok(n)
    }
}

/// Artifacts shared by every replica: the database holds each blob, and
/// each replica reads through a local copy (checked against its sha256 on
/// every read, fetched again from the database when missing or damaged).
pub struct PgArtifacts {
    pool: PgPool,
    local: crate::artifacts::DirArtifacts,
}

#[async_trait::async_trait]
impl crate::artifacts::ArtifactStore for PgArtifacts {
    async fn put(&self, bytes: Vec<u8>) -> Result<(String, u64), StoreError> {
        let sha = crate::artifacts::sha256_hex(&bytes);
        let size = bytes.len() as u64;
        // The database first: once it answers, every replica can read the blob.
        sqlx::query(
            "INSERT INTO artifacts (sha256, size, bytes, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (sha256) DO UPDATE SET bytes = EXCLUDED.bytes, size = EXCLUDED.size",
        )
        .bind(&sha)
        .bind(i64::try_from(size).unwrap_or(i64::MAX))
        .bind(&bytes)
        .bind(tessera_core::time::Timestamp::now().millis())
        .execute(&self.pool)
        .await?;
        // The local copy is a cache; failing to write it costs a later read.
        if let Err(e) = self.local.put(bytes).await {
            tracing::warn!(artifact = %sha, error = %e, "cannot keep a local copy of an artifact");
        }
        Ok((sha, size))
    }

    async fn get(&self, sha256: &str) -> Result<Vec<u8>, StoreError> {
        match self.local.get(sha256).await {
            Ok(b) => return Ok(b),
            Err(StoreError::NotFound { .. } | StoreError::Corrupt(_)) => {}
            Err(e) => {
                tracing::warn!(artifact = %sha256, error = %e, "local artifact copy unreadable")
            }
        }
        let row = sqlx::query("SELECT bytes FROM artifacts WHERE sha256 = $1")
            .bind(sha256)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Err(StoreError::not_found("artifact", sha256)) };
        let bytes: Vec<u8> = row.try_get("bytes")?;
        let got = crate::artifacts::sha256_hex(&bytes);
        if got != sha256 {
            return Err(StoreError::Corrupt(format!(
                "artifact {sha256} is corrupt in the database: its content hashes to {got}"
            )));
        }
        if let Err(e) = self.local.put(bytes.clone()).await {
            tracing::warn!(artifact = %sha256, error = %e, "cannot keep a local copy of an artifact");
        }
        Ok(bytes)
    }
}

async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(MIGRATION_LOCK).execute(&mut *tx).await?;
    sqlx::query(CREATE_TABLE).execute(&mut *tx).await?;
    let applied: Option<i64> = sqlx::query("SELECT MAX(version) AS v FROM tessera_migrations")
        .fetch_one(&mut *tx)
        .await?
        .try_get("v")?;
    let mut all: Vec<_> = COMMON.iter().chain(POSTGRES_ONLY).collect();
    all.sort_by_key(|m| m.version);
    check_not_newer(applied, all.iter().map(|m| m.version).max().unwrap_or(0))?;
    for m in all.into_iter().filter(|m| Some(m.version) > applied) {
        sqlx::raw_sql(m.sql).execute(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO tessera_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
        )
        .bind(m.version)
        .bind(m.name)
        .bind(Timestamp::now().millis())
        .execute(&mut *tx)
        .await?;
    }
    // Grants follow the schema in use, so they are renewed on every start.
    sqlx::raw_sql(GRANTS).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

const GRANTS: &str = r#"
DO $$
BEGIN
    IF NOT pg_has_role(current_user, 'tessera_rls', 'MEMBER') THEN
        BEGIN
            EXECUTE format('GRANT tessera_rls TO %I', current_user);
        EXCEPTION WHEN OTHERS THEN NULL;
        END;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO tessera_rls', current_schema());
END $$;
GRANT SELECT, INSERT, UPDATE, DELETE ON plans, tenants, api_keys, audit_head, models, model_versions, deployments, usage_records, prices, event_types, feature_defs, datasets, training_jobs, model_aliases, feedback, rollouts, alert_rules, alert_events TO tessera_rls;
GRANT SELECT, INSERT ON audit_log TO tessera_rls;
"#;

crate::sql_common::sql_metadata_store!(
    PgStore,
    sqlx::Postgres,
    "postgres",
    lock = " FOR UPDATE",
    skip_locked = " FOR UPDATE OF j SKIP LOCKED",
    lock_of_t = " FOR UPDATE OF t"
);
