//! Datasets in SQL, shared by the SQLite and PostgreSQL stores: expanded
//! inside `sql_metadata_store!` (which supplies `Tx`, `DbRow`,
//! `append_audit` and the imports); its trait methods delegate here.

macro_rules! sql_datasets_store {
    ($store:ty, $db:ty) => {
        const DATASET_COLUMNS: &str =
            "id, name, version, format, sha256, size, rows, schema, preview, created_at, created_by";

        fn dataset_from_row(r: &DbRow) -> Result<Dataset, StoreError> {
            let schema: String = r.try_get("schema")?;
            let preview: String = r.try_get("preview")?;
            Ok(Dataset {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                version: u32::try_from(r.try_get::<i64, _>("version")?).map_err(|e| StoreError::Corrupt(format!("dataset version: {e}")))?,
                format: r.try_get("format")?,
                sha256: r.try_get("sha256")?,
                size: u64::try_from(r.try_get::<i64, _>("size")?).unwrap_or(0),
                rows: u64::try_from(r.try_get::<i64, _>("rows")?).unwrap_or(0),
                schema: serde_json::from_str(&schema).map_err(corrupt)?,
                preview: serde_json::from_str(&preview).map_err(corrupt)?,
                created_at: Timestamp::from_millis(r.try_get("created_at")?),
                created_by: r.try_get("created_by")?,
            })
        }

        impl $store {
            pub(crate) async fn sql_create_dataset(
                &self,
                ctx: &TenantCtx,
                new: &NewDataset<'_>,
                actor: &AuditActor,
            ) -> Result<Dataset, StoreError> {
                let tenant = ctx.tenant_id();
                let mut tx = self.begin(TxScope::Tenant(tenant.as_str()), true).await?;
                // Two uploads of one name at once: the unique key makes one
                // of them fail rather than share a version.
                let next: i64 = sqlx::query(
                    "SELECT COALESCE(MAX(version), 0) + 1 AS v FROM datasets WHERE tenant_id = $1 AND name = $2",
                )
                .bind(tenant.as_str())
                .bind(new.name)
                .fetch_one(&mut *tx)
                .await?
                .try_get("v")?;
                let d = Dataset {
                    id: tessera_core::dataset::new_dataset_id(),
                    name: new.name.to_owned(),
                    version: u32::try_from(next).map_err(|e| StoreError::Internal(e.to_string()))?,
                    format: new.format.to_owned(),
                    sha256: new.sha256.to_owned(),
                    size: new.size,
                    rows: new.rows,
                    schema: new.schema.clone(),
                    preview: new.preview.to_vec(),
                    created_at: Timestamp::now(),
                    created_by: actor.key_id.clone(),
                };
                let inserted = sqlx::query(
                    "INSERT INTO datasets (id, tenant_id, name, version, format, sha256, size, rows, schema, preview, created_at, created_by) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                )
                .bind(&d.id)
                .bind(tenant.as_str())
                .bind(&d.name)
                .bind(next)
                .bind(&d.format)
                .bind(&d.sha256)
                .bind(i64::try_from(d.size).unwrap_or(i64::MAX))
                .bind(i64::try_from(d.rows).unwrap_or(i64::MAX))
                .bind(to_json(&d.schema)?)
                .bind(serde_json::to_string(&d.preview).map_err(|e| StoreError::Internal(e.to_string()))?)
                .bind(d.created_at.millis())
                .bind(&d.created_by)
                .execute(&mut *tx)
                .await;
                if let Err(e) = inserted {
                    return Err(match StoreError::from(e) {
                        StoreError::Conflict(_) => StoreError::Conflict(format!(
                            "dataset {:?} got another version meanwhile; upload again", new.name
                        )),
                        other => other,
                    });
                }
                append_audit(&mut tx, Some(tenant), "dataset.create", &format!("{}@{} ({})", d.name, d.version, d.id), actor).await?;
                tx.commit().await?;
                Ok(d)
            }

            pub(crate) async fn sql_list_datasets(&self, ctx: &TenantCtx) -> Result<Vec<Dataset>, StoreError> {
                let tenant = ctx.tenant_id();
                let mut tx = self.begin(TxScope::Tenant(tenant.as_str()), false).await?;
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {DATASET_COLUMNS} FROM datasets WHERE tenant_id = $1 ORDER BY name, version"
                )))
                .bind(tenant.as_str())
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                rows.iter().map(dataset_from_row).collect()
            }

            pub(crate) async fn sql_update_dataset_schema(
                &self,
                ctx: &TenantCtx,
                id: &str,
                schema: &serde_json::Value,
                actor: &AuditActor,
            ) -> Result<Dataset, StoreError> {
                let tenant = ctx.tenant_id();
                let mut tx = self.begin(TxScope::Tenant(tenant.as_str()), true).await?;
                let n = sqlx::query("UPDATE datasets SET schema = $1 WHERE tenant_id = $2 AND id = $3")
                    .bind(to_json(schema)?)
                    .bind(tenant.as_str())
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if n == 0 {
                    return Err(StoreError::not_found("dataset", id));
                }
                append_audit(&mut tx, Some(tenant), "dataset.schema", id, actor).await?;
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {DATASET_COLUMNS} FROM datasets WHERE tenant_id = $1 AND id = $2"
                )))
                .bind(tenant.as_str())
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                dataset_from_row(&row)
            }

            pub(crate) async fn sql_get_dataset(&self, ctx: &TenantCtx, id: &str) -> Result<Dataset, StoreError> {
                let tenant = ctx.tenant_id();
                let mut tx = self.begin(TxScope::Tenant(tenant.as_str()), false).await?;
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {DATASET_COLUMNS} FROM datasets WHERE tenant_id = $1 AND id = $2"
                )))
                .bind(tenant.as_str())
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
                tx.commit().await?;
                dataset_from_row(&row.ok_or_else(|| StoreError::not_found("dataset", id))?)
            }
        }
    };
}

pub(crate) use sql_datasets_store;
