//! Governance in SQL (validation reports and gate states on versions,
//! aliases), shared by the SQLite and PostgreSQL stores: expanded inside
//! `sql_metadata_store!` (which supplies `Tx`, `DbRow`, `append_audit`, the
//! scope helpers, the row-lock suffix and the imports); its trait methods
//! delegate here.

macro_rules! sql_governance_store {
    ($store:ty, $db:ty, $lock:literal) => {
        /// Points `alias` of a model at `version` and audits it, inside the
        /// caller's transaction (a rollout's promotion writes it too).
        async fn put_alias_in_tx(
            tx: &mut Tx,
            model_id: &str,
            tenant: Option<&TenantId>,
            alias: &str,
            version: i64,
            actor: &AuditActor,
        ) -> Result<Alias, StoreError> {
            let a = Alias { alias: alias.to_owned(), version, updated_at: Timestamp::now(), updated_by: actor.key_id.clone() };
            sqlx::query(
                "INSERT INTO model_aliases (model_id, alias, tenant_id, version, updated_at, updated_by) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (model_id, alias) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at, updated_by = excluded.updated_by",
            )
            .bind(model_id)
            .bind(alias)
            .bind(tenant.map(|t| t.as_str()))
            .bind(version)
            .bind(a.updated_at.millis())
            .bind(&a.updated_by)
            .execute(&mut **tx)
            .await?;
            append_audit(tx, tenant, "model_alias.put", &format!("{model_id}@{alias}={version}"), actor).await?;
            Ok(a)
        }

        fn alias_from_row(r: &DbRow) -> Result<Alias, StoreError> {
            Ok(Alias {
                alias: r.try_get("alias")?,
                version: r.try_get("version")?,
                updated_at: Timestamp::from_millis(r.try_get("updated_at")?),
                updated_by: r.try_get("updated_by")?,
            })
        }

        fn report_from_text(text: &str) -> Result<Report, StoreError> {
            serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("a version's report: {e}")))
        }

        impl $store {
            /// Checks that `writer` owns `model` and opens its write transaction.
            async fn governance_tx<'w>(&self, writer: &'w KeyOwner<'w>, model: &Model) -> Result<(Tx, Option<&'w TenantId>), StoreError> {
                let (tx_scope, tenant) = owner_scope(writer);
                if model.tenant_id.as_ref() != tenant {
                    return Err(StoreError::not_found("model", &model.name));
                }
                Ok((self.begin(tx_scope, true).await?, tenant))
            }

            pub(crate) async fn sql_put_version_report(
                &self,
                writer: KeyOwner<'_>,
                model: &Model,
                version: i64,
                report: &Report,
                actor: &AuditActor,
            ) -> Result<(), StoreError> {
                let (mut tx, tenant) = self.governance_tx(&writer, model).await?;
                let text = serde_json::to_string(report).map_err(|e| StoreError::Internal(e.to_string()))?;
                let n = sqlx::query("UPDATE model_versions SET report = $1, gate = $2 WHERE model_id = $3 AND version = $4")
                    .bind(text)
                    .bind(report.gate().as_str())
                    .bind(&model.id)
                    .bind(version)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if n == 0 {
                    return Err(StoreError::not_found("model version", &format!("{}@{version}", model.name)));
                }
                append_audit(&mut tx, tenant, "model_version.report", &format!("{}@{version}", model.id), actor).await?;
                tx.commit().await?;
                Ok(())
            }

            pub(crate) async fn sql_get_version_report(
                &self,
                view: ModelView<'_>,
                model: &Model,
                version: i64,
            ) -> Result<Option<Report>, StoreError> {
                let (tx_scope, _) = view_keys(&view);
                let mut tx = self.begin(tx_scope, false).await?;
                let row = sqlx::query("SELECT report FROM model_versions WHERE model_id = $1 AND version = $2")
                    .bind(&model.id)
                    .bind(version)
                    .fetch_optional(&mut *tx)
                    .await?;
                tx.commit().await?;
                let row = row.ok_or_else(|| StoreError::not_found("model version", &format!("{}@{version}", model.name)))?;
                row.try_get::<Option<String>, _>("report")?.as_deref().map(report_from_text).transpose()
            }

            pub(crate) async fn sql_override_gate(
                &self,
                writer: KeyOwner<'_>,
                model: &Model,
                version: i64,
                reason: &str,
                actor: &AuditActor,
            ) -> Result<Report, StoreError> {
                let (mut tx, tenant) = self.governance_tx(&writer, model).await?;
                let row = sqlx::query(concat!("SELECT report FROM model_versions WHERE model_id = $1 AND version = $2", $lock))
                    .bind(&model.id)
                    .bind(version)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| StoreError::not_found("model version", &format!("{}@{version}", model.name)))?;
                let Some(text) = row.try_get::<Option<String>, _>("report")? else {
                    return Err(StoreError::Conflict(format!("{}@{version} has no report; there is no gate to override", model.name)));
                };
                let mut report = report_from_text(&text)?;
                if report.passed {
                    return Err(StoreError::Conflict(format!("{}@{version} passed its gate; there is nothing to override", model.name)));
                }
                report.r#override = Some(Override { reason: reason.to_owned(), by: actor.key_id.clone(), at: Timestamp::now() });
                let text = serde_json::to_string(&report).map_err(|e| StoreError::Internal(e.to_string()))?;
                sqlx::query("UPDATE model_versions SET report = $1, gate = $2 WHERE model_id = $3 AND version = $4")
                    .bind(text)
                    .bind(report.gate().as_str())
                    .bind(&model.id)
                    .bind(version)
                    .execute(&mut *tx)
                    .await?;
                append_audit(&mut tx, tenant, "model_version.gate_override", &format!("{}@{version}", model.id), actor).await?;
                tx.commit().await?;
                Ok(report)
            }

            pub(crate) async fn sql_put_alias(
                &self,
                writer: KeyOwner<'_>,
                model: &Model,
                alias: &str,
                version: i64,
                actor: &AuditActor,
            ) -> Result<Alias, StoreError> {
                let (mut tx, tenant) = self.governance_tx(&writer, model).await?;
                let exists = sqlx::query("SELECT 1 AS one FROM model_versions WHERE model_id = $1 AND version = $2")
                    .bind(&model.id)
                    .bind(version)
                    .fetch_optional(&mut *tx)
                    .await?;
                if exists.is_none() {
                    return Err(StoreError::not_found("model version", &format!("{}@{version}", model.name)));
                }
                let a = put_alias_in_tx(&mut tx, &model.id, tenant, alias, version, actor).await?;
                tx.commit().await?;
                Ok(a)
            }

            pub(crate) async fn sql_delete_alias(
                &self,
                writer: KeyOwner<'_>,
                model: &Model,
                alias: &str,
                actor: &AuditActor,
            ) -> Result<(), StoreError> {
                let (mut tx, tenant) = self.governance_tx(&writer, model).await?;
                let gone = sqlx::query("DELETE FROM model_aliases WHERE model_id = $1 AND alias = $2")
                    .bind(&model.id)
                    .bind(alias)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if gone == 0 {
                    return Err(StoreError::not_found("alias", alias));
                }
                append_audit(&mut tx, tenant, "model_alias.delete", &format!("{}@{alias}", model.id), actor).await?;
                tx.commit().await?;
                Ok(())
            }

            pub(crate) async fn sql_list_aliases(&self, view: ModelView<'_>, model: &Model) -> Result<Vec<Alias>, StoreError> {
                let (tx_scope, _) = view_keys(&view);
                let mut tx = self.begin(tx_scope, false).await?;
                let rows = sqlx::query("SELECT alias, version, updated_at, updated_by FROM model_aliases WHERE model_id = $1 ORDER BY alias")
                    .bind(&model.id)
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                rows.iter().map(alias_from_row).collect()
            }
        }
    };
}

pub(crate) use sql_governance_store;
