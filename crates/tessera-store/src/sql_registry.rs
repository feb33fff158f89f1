//! The model registry in SQL (models, versions, deployments), shared by the
//! SQLite and PostgreSQL stores: expanded inside `sql_metadata_store!`
//! (which supplies `Tx`, `DbRow`, `append_audit`, the scope helpers, the
//! row-lock suffix and the imports); its trait methods delegate here.

macro_rules! sql_registry_store {
    ($store:ty, $db:ty, $lock:literal) => {
        /// Sets a model's deployment and audits it, inside the caller's
        /// transaction (a rollout step writes it with its own state).
        async fn put_deployment_in_tx(
            tx: &mut Tx,
            model_id: &str,
            tenant: Option<&TenantId>,
            spec: &str,
            actor: &AuditActor,
        ) -> Result<(), StoreError> {
            sqlx::query(
                "INSERT INTO deployments (model_id, tenant_id, spec, updated_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (model_id) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at",
            )
            .bind(model_id)
            .bind(tenant.map(|t| t.as_str()))
            .bind(spec)
            .bind(Timestamp::now().millis())
            .execute(&mut **tx)
            .await?;
            append_audit(tx, tenant, "deployment.put", model_id, actor).await
        }

        impl $store {
            pub(crate) async fn sql_create_model(
                &self,
                scope: ModelScope<'_>,
                new: &NewModel,
                first_version: Option<(&str, i64)>,
                actor: &AuditActor,
            ) -> Result<Model, StoreError> {
                let (tx_scope, owner, tenant, segment, scope_key) = match scope {
                    ModelScope::Tenant(ctx) => (
                        TxScope::Tenant(ctx.tenant_id().as_str()),
                        ModelOwner::Tenant,
                        Some(ctx.tenant_id().clone()),
                        None,
                        format!("tenant:{}", ctx.tenant_id()),
                    ),
                    ModelScope::Segment(_, seg) => {
                        (TxScope::System, ModelOwner::Segment, None, Some(seg.to_owned()), format!("segment:{seg}"))
                    }
                    ModelScope::Platform(_) => (TxScope::System, ModelOwner::Platform, None, None, "platform".to_owned()),
                };
                let model = Model {
                    id: tessera_core::model::new_model_id(),
                    name: new.name.clone(),
                    owner,
                    tenant_id: tenant,
                    segment,
                    task: new.task.clone(),
                    runtime: new.runtime.clone(),
                    base_model: new.base_model.clone(),
                    created_at: Timestamp::now(),
                };
                let mut tx = self.begin(tx_scope, true).await?;
                if let Some(t) = &model.tenant_id {
                    tenant_in_tx(&mut tx, t).await?;
                }
                let taken = sqlx::query("SELECT 1 AS one FROM models WHERE scope_key = $1 AND name = $2")
                    .bind(&scope_key)
                    .bind(&model.name)
                    .fetch_optional(&mut *tx)
                    .await?;
                if taken.is_some() {
                    return Err(StoreError::Conflict(format!("model {:?} already exists", model.name)));
                }
                sqlx::query(
                    "INSERT INTO models (id, owner, tenant_id, segment, scope_key, name, task, runtime, base_model, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(&model.id)
                .bind(model.owner.as_str())
                .bind(model.tenant_id.as_ref().map(|t| t.as_str()))
                .bind(&model.segment)
                .bind(&scope_key)
                .bind(&model.name)
                .bind(&model.task)
                .bind(&model.runtime)
                .bind(&model.base_model)
                .bind(model.created_at.millis())
                .execute(&mut *tx)
                .await?;
                append_audit(&mut tx, model.tenant_id.as_ref(), "model.create", &model.id, actor).await?;
                if let Some((sha256, size)) = first_version {
                    sqlx::query(
                        "INSERT INTO model_versions (model_id, version, tenant_id, sha256, size, created_at) \
                         VALUES ($1, 1, $2, $3, $4, $5)",
                    )
                    .bind(&model.id)
                    .bind(model.tenant_id.as_ref().map(|t| t.as_str()))
                    .bind(sha256)
                    .bind(size)
                    .bind(model.created_at.millis())
                    .execute(&mut *tx)
                    .await?;
                    append_audit(&mut tx, model.tenant_id.as_ref(), "model_version.create", &format!("{}@1", model.id), actor).await?;
                }
                tx.commit().await?;
                Ok(model)
            }

            pub(crate) async fn sql_list_models(&self, view: ModelView<'_>) -> Result<Vec<Model>, StoreError> {
                let (tx_scope, keys) = view_keys(&view);
                let mut tx = self.begin(tx_scope, false).await?;
                let rows = match &keys {
                    Some((tenant_key, segment_key)) => {
                        sqlx::query(sqlx::AssertSqlSafe(format!(
                            "SELECT {MODEL_COLUMNS} FROM models WHERE scope_key IN ($1, $2, 'platform') \
                             ORDER BY name, CASE owner WHEN 'tenant' THEN 0 WHEN 'segment' THEN 1 ELSE 2 END"
                        )))
                        .bind(tenant_key)
                        .bind(segment_key)
                        .fetch_all(&mut *tx)
                        .await?
                    }
                    None => {
                        sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {MODEL_COLUMNS} FROM models ORDER BY name, owner, id")))
                            .fetch_all(&mut *tx)
                            .await?
                    }
                };
                tx.commit().await?;
                let mut models: Vec<Model> = rows.iter().map(model_from_row).collect::<Result<_, _>>()?;
                if keys.is_some() {
                    // Tenant view: the nearest owner of each name hides the others.
                    models.dedup_by(|later, first| later.name == first.name);
                }
                Ok(models)
            }

            pub(crate) async fn sql_resolve_model(&self, view: ModelView<'_>, name: &str) -> Result<Model, StoreError> {
                let (tx_scope, keys) = view_keys(&view);
                let Some((tenant_key, segment_key)) = keys else {
                    return Err(StoreError::Internal("resolve_model needs a tenant view".into()));
                };
                let mut tx = self.begin(tx_scope, false).await?;
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {MODEL_COLUMNS} FROM models WHERE name = $1 AND scope_key IN ($2, $3, 'platform') \
                     ORDER BY CASE owner WHEN 'tenant' THEN 0 WHEN 'segment' THEN 1 ELSE 2 END LIMIT 1"
                )))
                .bind(name)
                .bind(&tenant_key)
                .bind(&segment_key)
                .fetch_optional(&mut *tx)
                .await?;
                tx.commit().await?;
                model_from_row(&row.ok_or_else(|| StoreError::not_found("model", name))?)
            }

            pub(crate) async fn sql_get_model_by_id(&self, _sys: &SystemCtx, id: &str) -> Result<Model, StoreError> {
                let mut tx = self.begin(TxScope::System, false).await?;
                let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {MODEL_COLUMNS} FROM models WHERE id = $1")))
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
                tx.commit().await?;
                model_from_row(&row.ok_or_else(|| StoreError::not_found("model", id))?)
            }

            pub(crate) async fn sql_add_model_version(
                &self,
                writer: KeyOwner<'_>,
                model: &Model,
                sha256: &str,
                size: i64,
                features: Option<&FeatureBinding>,
                actor: &AuditActor,
            ) -> Result<ModelVersion, StoreError> {
                let (tx_scope, tenant) = owner_scope(&writer);
                if model.tenant_id.as_ref() != tenant {
                    // A tenant may only version its own models.
                    return Err(StoreError::not_found("model", &model.name));
                }
                let mut tx = self.begin(tx_scope, true).await?;
                let locked = sqlx::query(concat!("SELECT id FROM models WHERE id = $1", $lock))
                    .bind(&model.id)
                    .fetch_optional(&mut *tx)
                    .await?;
                if locked.is_none() {
                    return Err(StoreError::not_found("model", &model.name));
                }
                let next: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) + 1 AS v FROM model_versions WHERE model_id = $1")
                    .bind(&model.id)
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get("v")?;
                let v = ModelVersion {
                    model_id: model.id.clone(),
                    version: next,
                    sha256: sha256.to_owned(),
                    size,
                    created_at: Timestamp::now(),
                    features: features.cloned(),
                    gate: None,
                };
                let features_json = features
                    .map(serde_json::to_string)
                    .transpose()
                    .map_err(|e| StoreError::Internal(e.to_string()))?;
                sqlx::query(
                    "INSERT INTO model_versions (model_id, version, tenant_id, sha256, size, created_at, features) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&v.model_id)
                .bind(v.version)
                .bind(tenant.map(|t| t.as_str()))
                .bind(&v.sha256)
                .bind(v.size)
                .bind(v.created_at.millis())
                .bind(features_json)
                .execute(&mut *tx)
                .await?;
                append_audit(&mut tx, tenant, "model_version.create", &format!("{}@{}", model.id, v.version), actor).await?;
                tx.commit().await?;
                Ok(v)
            }

            pub(crate) async fn sql_put_deployment(
                &self,
                writer: KeyOwner<'_>,
                model: &Model,
                spec: &str,
                actor: &AuditActor,
            ) -> Result<(), StoreError> {
                let (tx_scope, tenant) = owner_scope(&writer);
                if model.tenant_id.as_ref() != tenant {
                    return Err(StoreError::not_found("model", &model.name));
                }
                let mut tx = self.begin(tx_scope, true).await?;
                put_deployment_in_tx(&mut tx, &model.id, tenant, spec, actor).await?;
                tx.commit().await?;
                Ok(())
            }

            pub(crate) async fn sql_get_deployment(&self, view: ModelView<'_>, model: &Model) -> Result<Option<String>, StoreError> {
                let (tx_scope, _) = view_keys(&view);
                let mut tx = self.begin(tx_scope, false).await?;
                let row = sqlx::query("SELECT spec FROM deployments WHERE model_id = $1")
                    .bind(&model.id)
                    .fetch_optional(&mut *tx)
                    .await?;
                tx.commit().await?;
                row.map(|r| r.try_get::<String, _>("spec")).transpose().map_err(Into::into)
            }

            pub(crate) async fn sql_delete_deployment(&self, writer: KeyOwner<'_>, model: &Model, actor: &AuditActor) -> Result<(), StoreError> {
                let (tx_scope, tenant) = owner_scope(&writer);
                if model.tenant_id.as_ref() != tenant {
                    return Err(StoreError::not_found("model", &model.name));
                }
                let mut tx = self.begin(tx_scope, true).await?;
                let gone = sqlx::query("DELETE FROM deployments WHERE model_id = $1")
                    .bind(&model.id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if gone == 0 {
                    return Err(StoreError::not_found("deployment", &model.name));
                }
                append_audit(&mut tx, tenant, "deployment.delete", &model.id, actor).await?;
                tx.commit().await?;
                Ok(())
            }

            pub(crate) async fn sql_list_model_versions(&self, view: ModelView<'_>, model: &Model) -> Result<Vec<ModelVersion>, StoreError> {
                let (tx_scope, _) = view_keys(&view);
                let mut tx = self.begin(tx_scope, false).await?;
                let rows = sqlx::query(
                    "SELECT model_id, version, sha256, size, created_at, features, gate FROM model_versions WHERE model_id = $1 ORDER BY version",
                )
                .bind(&model.id)
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                rows.iter().map(version_from_row).collect()
            }
        }
    };
}

pub(crate) use sql_registry_store;
