//! Row conversions shared by the SQL stores, expanded inside
//! `sql_metadata_store!` where `DbRow` names the backend's row type.

macro_rules! sql_row_helpers {
    () => {
        const KEY_COLUMNS: &str =
            "id, tenant_id, name, role, scopes, hash, created_at, expires_at, revoked_at, created_by";

        fn event_type_from_row(r: &DbRow) -> Result<EventType, StoreError> {
            let schema: String = r.try_get("schema")?;
            Ok(EventType {
                name: r.try_get("name")?,
                schema: serde_json::from_str(&schema).map_err(corrupt)?,
                updated_at: Timestamp::from_millis(r.try_get("updated_at")?),
            })
        }

        fn plan_from_row(r: &DbRow) -> Result<Plan, StoreError> {
            let models: Option<String> = r.try_get("models")?;
            Ok(Plan {
                name: r.try_get("name")?,
                rpm: to_u64(r.try_get("rpm")?),
                tpm: to_u64(r.try_get("tpm")?),
                concurrency: to_u64(r.try_get("concurrency")?),
                monthly_budget_usd: r.try_get("monthly_budget_usd")?,
                models: models.map(|m| serde_json::from_str(&m)).transpose().map_err(corrupt)?,
                events_per_minute: to_u64(r.try_get("events_per_minute")?),
                dataset_max_mb: to_u64(r.try_get("dataset_max_mb")?),
                training_jobs: to_u64(r.try_get("training_jobs")?),
            })
        }

        fn tenant_from_row(r: &DbRow) -> Result<Tenant, StoreError> {
            Ok(Tenant {
                id: TenantId::from_stored(r.try_get("id")?),
                name: r.try_get("name")?,
                plan: r.try_get("plan")?,
                segment: r.try_get("segment")?,
                created_at: Timestamp::from_millis(r.try_get("created_at")?),
                prediction_sample_rate: r.try_get("prediction_sample_rate")?,
                store_inputs: r.try_get("store_inputs")?,
                gate_thresholds: r
                    .try_get::<Option<String>, _>("gate_thresholds")?
                    .map(|t| serde_json::from_str(&t))
                    .transpose()
                    .map_err(|e| StoreError::Corrupt(format!("a tenant's gate thresholds: {e}")))?
                    .unwrap_or_default(),
            })
        }

        fn key_from_row(r: &DbRow) -> Result<KeyRecord, StoreError> {
            let role: String = r.try_get("role")?;
            let scopes: String = r.try_get("scopes")?;
            let tenant: Option<String> = r.try_get("tenant_id")?;
            let created_by: Option<String> = r.try_get("created_by")?;
            let expires_at: Option<i64> = r.try_get("expires_at")?;
            let revoked_at: Option<i64> = r.try_get("revoked_at")?;
            Ok(KeyRecord {
                id: KeyId::from_stored(r.try_get("id")?),
                tenant_id: tenant.map(TenantId::from_stored),
                name: r.try_get("name")?,
                role: Role::parse(&role).map_err(|e| StoreError::Internal(e.message))?,
                scopes: serde_json::from_str::<Scopes>(&scopes).map_err(corrupt)?,
                hash: r.try_get("hash")?,
                created_at: Timestamp::from_millis(r.try_get("created_at")?),
                expires_at: expires_at.map(Timestamp::from_millis),
                revoked_at: revoked_at.map(Timestamp::from_millis),
                created_by,
            })
        }

        fn audit_from_row(r: &DbRow) -> Result<AuditEntry, StoreError> {
            Ok(AuditEntry {
                id: r.try_get("id")?,
                ts: Timestamp::from_millis(r.try_get("ts")?),
                actor_key_id: r.try_get("actor_key_id")?,
                tenant_id: r.try_get("tenant_id")?,
                action: r.try_get("action")?,
                target: r.try_get("target")?,
                request_id: r.try_get("request_id")?,
                prev_hash: r.try_get("prev_hash")?,
                hash: r.try_get("hash")?,
            })
        }

        const MODEL_COLUMNS: &str = "id, owner, tenant_id, segment, name, task, runtime, base_model, created_at";

        fn model_from_row(r: &DbRow) -> Result<Model, StoreError> {
            let owner: String = r.try_get("owner")?;
            let tenant: Option<String> = r.try_get("tenant_id")?;
            Ok(Model {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                owner: ModelOwner::parse(&owner)
                    .ok_or_else(|| StoreError::Internal(format!("unknown model owner {owner:?}")))?,
                tenant_id: tenant.map(TenantId::from_stored),
                segment: r.try_get("segment")?,
                task: r.try_get("task")?,
                runtime: r.try_get("runtime")?,
                base_model: r.try_get("base_model")?,
                created_at: Timestamp::from_millis(r.try_get("created_at")?),
            })
        }

        fn version_from_row(r: &DbRow) -> Result<ModelVersion, StoreError> {
            Ok(ModelVersion {
                model_id: r.try_get("model_id")?,
                version: r.try_get("version")?,
                sha256: r.try_get("sha256")?,
                size: r.try_get("size")?,
                created_at: Timestamp::from_millis(r.try_get("created_at")?),
                features: r
                    .try_get::<Option<String>, _>("features")?
                    .map(|t| serde_json::from_str(&t))
                    .transpose()
                    .map_err(|e| StoreError::Corrupt(format!("a model version's features: {e}")))?,
                gate: r
                    .try_get::<Option<String>, _>("gate")?
                    .map(|g| Gate::parse(&g).ok_or_else(|| StoreError::Corrupt(format!("a model version's gate {g:?}"))))
                    .transpose()?,
            })
        }

        /// Transaction scope and the scope keys a view may read.
        fn view_keys<'a>(view: &ModelView<'a>) -> (TxScope<'a>, Option<(String, String)>) {
            match view {
                ModelView::Tenant { ctx, segment } => (
                    TxScope::Tenant(ctx.tenant_id().as_str()),
                    Some((
                        format!("tenant:{}", ctx.tenant_id()),
                        segment.map_or_else(String::new, |s| format!("segment:{s}")),
                    )),
                ),
                ModelView::System(_) => (TxScope::System, None),
            }
        }

        fn corrupt(e: serde_json::Error) -> StoreError {
            StoreError::Internal(format!("stored json is corrupt: {e}"))
        }

        fn to_json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
            serde_json::to_string(v).map_err(|e| StoreError::Internal(e.to_string()))
        }
    };
}

pub(crate) use sql_row_helpers;
