//! Runs the metadata conformance suite against SQLite (always) and PostgreSQL
//! (when `TESSERA_TEST_POSTGRES_URL` is set; each test gets its own schema).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use async_trait::async_trait;
use tessera_store::MetadataStore;
use tessera_store::conformance::Harness;

mod sqlite {
    use super::*;
    use tessera_store::sqlite::SqliteStore;

    pub struct SqliteHarness {
        store: Arc<dyn MetadataStore>,
        path: std::path::PathBuf,
        _dir: tempfile::TempDir,
    }

    pub async fn make() -> Option<SqliteHarness> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let store = Arc::new(SqliteStore::open(&path).await.unwrap());
        Some(SqliteHarness { store, path, _dir: dir })
    }

    #[async_trait]
    impl Harness for SqliteHarness {
        fn store(&self) -> Arc<dyn MetadataStore> {
            self.store.clone()
        }
        async fn exec_raw(&self, sql: &str) {
            let url = format!("sqlite://{}", self.path.display());
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(&pool).await.unwrap();
            pool.close().await;
        }
    }

    tessera_store::metadata_conformance!(make().await);
}

mod postgres {
    use super::*;
    use tessera_core::auth::SystemCtx;
    use tessera_core::tenant::NewTenant;
    use tessera_store::KeyOwner;
    use tessera_store::conformance::service_url;
    use tessera_store::postgres::PgStore;

    pub struct PgHarness {
        store: Arc<dyn MetadataStore>,
        pg: Arc<PgStore>,
        url: String,
        schema: String,
    }

    /// A fresh schema per test.
    pub async fn make() -> Option<PgHarness> {
        let url = service_url("TESSERA_TEST_POSTGRES_URL")?;
        let schema = tessera_store::conformance::fresh_pg_schema(&url).await;
        let pg = Arc::new(PgStore::connect(&url, Some(&schema)).await.unwrap());
        Some(PgHarness { store: pg.clone(), pg, url, schema })
    }

    #[async_trait]
    impl Harness for PgHarness {
        fn store(&self) -> Arc<dyn MetadataStore> {
            self.store.clone()
        }
        async fn exec_raw(&self, sql: &str) {
            let pool = sqlx::PgPool::connect(&self.url).await.unwrap();
            let sql = format!("SET search_path TO {}; {sql}", self.schema);
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&pool).await.unwrap();
            pool.close().await;
        }
    }

    tessera_store::metadata_conformance!(make().await);

    /// Artifacts put through one replica are read by another with its own
    /// local copy; a damaged local copy is fetched again from the database.
    #[tokio::test]
    async fn artifacts_are_shared_by_replicas() {
        use tessera_store::artifacts::ArtifactStore;
        let Some(h) = make().await else { return };
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let other = PgStore::connect(&h.url, Some(&h.schema)).await.unwrap();
        let (a, b) = (h.pg.artifacts(d1.path()), other.artifacts(d2.path()));
        let (sha, size) = a.put(b"weights v1".to_vec()).await.unwrap();
        assert_eq!(size, 10);
        assert_eq!(b.get(&sha).await.unwrap(), b"weights v1");
        let local = d2.path().join("sha256").join(&sha[..2]).join(&sha);
        assert!(local.exists(), "the reader kept a local copy");
        std::fs::write(&local, b"tampered").unwrap();
        assert_eq!(b.get(&sha).await.unwrap(), b"weights v1", "repaired from the database");
        assert!(matches!(
            b.get(&"0".repeat(64)).await,
            Err(tessera_store::StoreError::NotFound { .. })
        ));
    }

    /// Row-level security alone hides other tenants' rows from an unfiltered query.
    #[tokio::test]
    async fn row_level_security_hides_other_tenants() {
        let Some(h) = make().await else { return };
        let sys = SystemCtx::bootstrap();
        let actor = Default::default();
        h.pg.ensure_default_plans(&sys).await.unwrap();
        let mut ctxs = Vec::new();
        for (name, n) in [("a", 2), ("b", 3)] {
            let t = h
                .pg
                .create_tenant(&sys, &NewTenant { name: name.into(), ..Default::default() }, &actor)
                .await
                .unwrap();
            let ctx = sys.tenant(t.id);
            for _ in 0..n {
                let req = tessera_core::apikey::NewKey {
                    name: "k".into(),
                    role: tessera_core::role::Role::Viewer,
                    scopes: None,
                    expires_at: None,
                };
                let key = tessera_core::apikey::mint(
                    Some(ctx.tenant_id().clone()),
                    req,
                    None,
                    tessera_core::time::Timestamp::now(),
                );
                h.pg.insert_key(KeyOwner::Tenant(&ctx), &key.record, &actor).await.unwrap();
            }
            ctxs.push(ctx);
        }
        assert_eq!(h.pg.count_keys_visible_to(&ctxs[0]).await.unwrap(), 2);
        assert_eq!(h.pg.count_keys_visible_to(&ctxs[1]).await.unwrap(), 3);
    }
}
