//! The SQL shared by the SQLite and PostgreSQL stores, written once.
//!
//! Both dialects accept the same statements (`$N` placeholders, `BIGINT`
//! milliseconds, JSON in `TEXT`), so one macro expands the [`MetadataStore`]
//! implementation for each backend's concrete sqlx types. A backend provides
//! `begin(TxScope, write)`, which is where PostgreSQL arms row-level security,
//! and `ping()`; `$lock` is the row-lock suffix for the audit chain head.
//!
//! [`MetadataStore`]: crate::MetadataStore

/// What a transaction may see; PostgreSQL enforces it with row-level security.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TxScope<'a> {
    System,
    Tenant(&'a str),
}

pub(crate) fn to_i64(v: Option<u64>) -> Option<i64> {
    v.map(|x| i64::try_from(x).unwrap_or(i64::MAX))
}

pub(crate) fn to_u64(v: Option<i64>) -> Option<u64> {
    v.map(|x| u64::try_from(x).unwrap_or(0))
}

macro_rules! sql_metadata_store {
    ($store:ty, $db:ty, $backend:literal, lock = $lock:literal, skip_locked = $skip:literal, lock_of_t = $lock_of_t:literal) => {
        use async_trait::async_trait;
        use sqlx::Row as _;
        use tessera_core::apikey::KeyRecord;
        use tessera_core::audit::{AuditActor, AuditEntry, AuditEvent};
        use tessera_core::auth::{SystemCtx, TenantCtx};
        use tessera_core::event_type::EventType;
        use tessera_core::features::{Kind, StoredDefinition};
        use tessera_core::governance::{Alias, GateThresholds, Gate, Override, Report};
        use crate::FeatureDefWrite;
        use tessera_core::ids::{KeyId, TenantId};
        use tessera_core::role::{Role, Scopes};
        use tessera_core::tenant::{NewTenant, Plan, PlanPatch, Tenant, TenantPatch};
        use tessera_core::time::Timestamp;
        use tessera_core::ValidationError;

        use crate::sql_common::{to_i64, to_u64, TxScope};
        use crate::{AuditQuery, AuditScope, KeyOwner, MetadataStore, ModelScope, ModelView, StoreError, UsageScope};
        use tessera_core::usage::{GroupBy, Price, UsageGroup, UsageRecord};
        use tessera_core::model::{Model, ModelOwner, ModelVersion, NewModel};
        use tessera_core::model_features::FeatureBinding;
        use tessera_core::dataset::{Dataset, NewDataset};
        use tessera_core::training::{Job, JobSpec, JobStatus, Progress};
        use tessera_core::feedback::{JoinedFeedback, Predicted, QualityGroup, Truth};
        use tessera_core::rollout::{DeploymentChange, Rollout, RolloutWrite};
        use tessera_core::alert::{AlertEvent, AlertRule};
        use crate::JobUpdate;

        type Tx = sqlx::Transaction<'static, $db>;
        type DbRow = <$db as sqlx::Database>::Row;
        crate::sql_rows::sql_row_helpers!();

        /// Appends one entry to the audit chain inside the caller's transaction.
        async fn append_audit(
            tx: &mut Tx,
            tenant_id: Option<&TenantId>,
            action: &str,
            target: &str,
            actor: &AuditActor,
        ) -> Result<(), StoreError> {
            let head = sqlx::query(concat!(
                "SELECT last_id, last_hash FROM audit_head WHERE id = 1",
                $lock
            ))
            .fetch_one(&mut **tx)
            .await?;
            let last_id: i64 = head.try_get("last_id")?;
            let last_hash: String = head.try_get("last_hash")?;
            let event = AuditEvent {
                tenant_id: tenant_id.cloned(),
                action: action.to_owned(),
                target: target.to_owned(),
            };
            let e = AuditEntry::seal(last_id + 1, Timestamp::now(), &event, actor, &last_hash);
            sqlx::query(
                "INSERT INTO audit_log (id, ts, actor_key_id, tenant_id, action, target, request_id, prev_hash, hash) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(e.id)
            .bind(e.ts.millis())
            .bind(&e.actor_key_id)
            .bind(&e.tenant_id)
            .bind(&e.action)
            .bind(&e.target)
            .bind(&e.request_id)
            .bind(&e.prev_hash)
            .bind(&e.hash)
            .execute(&mut **tx)
            .await?;
            sqlx::query("UPDATE audit_head SET last_id = $1, last_hash = $2 WHERE id = 1")
                .bind(e.id)
                .bind(&e.hash)
                .execute(&mut **tx)
                .await?;
            Ok(())
        }

        async fn plan_exists(tx: &mut Tx, name: &str) -> Result<bool, StoreError> {
            Ok(sqlx::query("SELECT 1 AS one FROM plans WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut **tx)
                .await?
                .is_some())
        }

        async fn require_plan(tx: &mut Tx, name: &str) -> Result<(), StoreError> {
            if plan_exists(tx, name).await? {
                Ok(())
            } else {
                Err(ValidationError::new("plan", format!("unknown plan {name:?}")).into())
            }
        }

        async fn tenant_in_tx(tx: &mut Tx, id: &TenantId) -> Result<Tenant, StoreError> {
            let row = sqlx::query("SELECT id, name, plan, segment, created_at, prediction_sample_rate, store_inputs, gate_thresholds FROM tenants WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(&mut **tx)
                .await?
                .ok_or_else(|| StoreError::not_found("tenant", id))?;
            tenant_from_row(&row)
        }

        async fn insert_plan(tx: &mut Tx, p: &Plan) -> Result<(), StoreError> {
            let models = p.models.as_ref().map(to_json).transpose()?;
            sqlx::query(
                "INSERT INTO plans (name, rpm, tpm, concurrency, monthly_budget_usd, models, created_at, events_per_minute, dataset_max_mb, training_jobs) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(&p.name)
            .bind(to_i64(p.rpm))
            .bind(to_i64(p.tpm))
            .bind(to_i64(p.concurrency))
            .bind(p.monthly_budget_usd)
            .bind(models)
            .bind(Timestamp::now().millis())
            .bind(to_i64(p.events_per_minute))
            .bind(to_i64(p.dataset_max_mb))
            .bind(to_i64(p.training_jobs))
            .execute(&mut **tx)
            .await?;
            Ok(())
        }

        fn owner_scope<'a>(owner: &'a KeyOwner<'a>) -> (TxScope<'a>, Option<&'a TenantId>) {
            match owner {
                KeyOwner::Tenant(ctx) => (TxScope::Tenant(ctx.tenant_id().as_str()), Some(ctx.tenant_id())),
                KeyOwner::Platform(_) => (TxScope::System, None),
            }
        }

        async fn key_in_tx(tx: &mut Tx, id: &KeyId, tenant: Option<&TenantId>) -> Result<Option<KeyRecord>, StoreError> {
            let sql = match tenant {
                Some(_) => "SELECT id, tenant_id, name, role, scopes, hash, created_at, expires_at, revoked_at, created_by \
                            FROM api_keys WHERE id = $1 AND tenant_id = $2",
                None => "SELECT id, tenant_id, name, role, scopes, hash, created_at, expires_at, revoked_at, created_by \
                         FROM api_keys WHERE id = $1 AND tenant_id IS NULL",
            };
            let mut q = sqlx::query(sql).bind(id.as_str());
            if let Some(t) = tenant {
                q = q.bind(t.as_str());
            }
            q.fetch_optional(&mut **tx).await?.as_ref().map(key_from_row).transpose()
        }

        #[async_trait]
        impl MetadataStore for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn ping(&self) -> Result<(), StoreError> {
                self.ping_db().await
            }

            async fn ensure_default_plans(&self, _sys: &SystemCtx) -> Result<(), StoreError> {
                let mut tx = self.begin(TxScope::System, true).await?;
                for p in Plan::defaults() {
                    if !plan_exists(&mut tx, &p.name).await? {
                        insert_plan(&mut tx, &p).await?;
                        append_audit(&mut tx, None, "plan.create", &p.name, &AuditActor::default()).await?;
                    }
                }
                tx.commit().await?;
                Ok(())
            }

            async fn create_plan(&self, _sys: &SystemCtx, plan: &Plan, actor: &AuditActor) -> Result<Plan, StoreError> {
                let mut tx = self.begin(TxScope::System, true).await?;
                if plan_exists(&mut tx, &plan.name).await? {
                    return Err(StoreError::Conflict(format!("plan {:?} already exists", plan.name)));
                }
                insert_plan(&mut tx, plan).await?;
                append_audit(&mut tx, None, "plan.create", &plan.name, actor).await?;
                tx.commit().await?;
                Ok(plan.clone())
            }

            async fn list_plans(&self) -> Result<Vec<Plan>, StoreError> {
                let mut tx = self.begin(TxScope::System, false).await?;
                let rows = sqlx::query(
                    "SELECT name, rpm, tpm, concurrency, monthly_budget_usd, models, events_per_minute, dataset_max_mb, training_jobs FROM plans ORDER BY name",
                )
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                rows.iter().map(plan_from_row).collect()
            }

            async fn get_plan(&self, name: &str) -> Result<Plan, StoreError> {
                let mut tx = self.begin(TxScope::System, false).await?;
                let row = sqlx::query(
                    "SELECT name, rpm, tpm, concurrency, monthly_budget_usd, models, events_per_minute, dataset_max_mb, training_jobs FROM plans WHERE name = $1",
                )
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
                tx.commit().await?;
                plan_from_row(&row.ok_or_else(|| StoreError::not_found("plan", name))?)
            }

            async fn update_plan(
                &self,
                _sys: &SystemCtx,
                name: &str,
                patch: PlanPatch,
                actor: &AuditActor,
            ) -> Result<Plan, StoreError> {
                let mut tx = self.begin(TxScope::System, true).await?;
                let row = sqlx::query(
                    "SELECT name, rpm, tpm, concurrency, monthly_budget_usd, models, events_per_minute, dataset_max_mb, training_jobs FROM plans WHERE name = $1",
                )
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::not_found("plan", name))?;
                let mut plan = plan_from_row(&row)?;
                plan.apply(patch);
                let models = plan.models.as_ref().map(to_json).transpose()?;
                sqlx::query(
                    "UPDATE plans SET rpm = $1, tpm = $2, concurrency = $3, monthly_budget_usd = $4, models = $5, \
                     events_per_minute = $7, dataset_max_mb = $8, training_jobs = $9 WHERE name = $6",
                )
                .bind(to_i64(plan.rpm))
                .bind(to_i64(plan.tpm))
                .bind(to_i64(plan.concurrency))
                .bind(plan.monthly_budget_usd)
                .bind(models)
                .bind(name)
                .bind(to_i64(plan.events_per_minute))
                .bind(to_i64(plan.dataset_max_mb))
                .bind(to_i64(plan.training_jobs))
                .execute(&mut *tx)
                .await?;
                append_audit(&mut tx, None, "plan.update", name, actor).await?;
                tx.commit().await?;
                Ok(plan)
            }

            async fn create_tenant(&self, _sys: &SystemCtx, new: &NewTenant, actor: &AuditActor) -> Result<Tenant, StoreError> {
                let tenant = Tenant {
                    id: TenantId::generate(),
                    name: new.name.clone(),
                    plan: new.plan.clone().unwrap_or_else(|| "free".to_owned()),
                    segment: new.segment.clone(),
                    created_at: Timestamp::now(),
                    prediction_sample_rate: new.prediction_sample_rate.unwrap_or(1.0),
                    store_inputs: new.store_inputs.unwrap_or(false),
                    gate_thresholds: GateThresholds::default(),
                };
                let mut tx = self.begin(TxScope::System, true).await?;
                require_plan(&mut tx, &tenant.plan).await?;
                let taken = sqlx::query("SELECT 1 AS one FROM tenants WHERE name = $1")
                    .bind(&tenant.name)
                    .fetch_optional(&mut *tx)
                    .await?;
                if taken.is_some() {
                    return Err(StoreError::Conflict(format!("tenant name {:?} is taken", tenant.name)));
                }
                sqlx::query(
                    "INSERT INTO tenants (id, name, plan, segment, created_at, prediction_sample_rate, store_inputs) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                    .bind(tenant.id.as_str())
                    .bind(&tenant.name)
                    .bind(&tenant.plan)
                    .bind(&tenant.segment)
                    .bind(tenant.created_at.millis())
                    .bind(tenant.prediction_sample_rate)
                    .bind(tenant.store_inputs)
                    .execute(&mut *tx)
                    .await?;
                append_audit(&mut tx, Some(&tenant.id), "tenant.create", tenant.id.as_str(), actor).await?;
                tx.commit().await?;
                Ok(tenant)
            }

            async fn list_tenants(&self, _sys: &SystemCtx) -> Result<Vec<Tenant>, StoreError> {
                let mut tx = self.begin(TxScope::System, false).await?;
                let rows = sqlx::query("SELECT id, name, plan, segment, created_at, prediction_sample_rate, store_inputs, gate_thresholds FROM tenants ORDER BY created_at, id")
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                rows.iter().map(tenant_from_row).collect()
            }

            async fn get_tenant(&self, ctx: &TenantCtx) -> Result<Tenant, StoreError> {
                let mut tx = self.begin(TxScope::Tenant(ctx.tenant_id().as_str()), false).await?;
                let t = tenant_in_tx(&mut tx, ctx.tenant_id()).await?;
                tx.commit().await?;
                Ok(t)
            }

            async fn update_tenant(
                &self,
                _sys: &SystemCtx,
                ctx: &TenantCtx,
                patch: &TenantPatch,
                actor: &AuditActor,
            ) -> Result<Tenant, StoreError> {
                let mut tx = self.begin(TxScope::System, true).await?;
                let mut t = tenant_in_tx(&mut tx, ctx.tenant_id()).await?;
                if let Some(plan) = &patch.plan {
                    require_plan(&mut tx, plan).await?;
                    t.plan = plan.clone();
                }
                if let Some(name) = &patch.name {
                    if *name != t.name {
                        let taken = sqlx::query("SELECT 1 AS one FROM tenants WHERE name = $1")
                            .bind(name)
                            .fetch_optional(&mut *tx)
                            .await?;
                        if taken.is_some() {
                            return Err(StoreError::Conflict(format!("tenant name {name:?} is taken")));
                        }
                    }
                    t.name = name.clone();
                }
                if let Some(segment) = &patch.segment {
                    t.segment = segment.clone();
                }
                if let Some(rate) = patch.prediction_sample_rate {
                    t.prediction_sample_rate = rate;
                }
                if let Some(keep) = patch.store_inputs {
                    t.store_inputs = keep;
                }
                if let Some(g) = &patch.gate_thresholds {
                    t.gate_thresholds = g.clone();
                }
                let gates = serde_json::to_string(&t.gate_thresholds).map_err(|e| StoreError::Internal(e.to_string()))?;
                sqlx::query(
                    "UPDATE tenants SET name = $1, plan = $2, segment = $3, prediction_sample_rate = $4, \
                     store_inputs = $5, gate_thresholds = $6 WHERE id = $7",
                )
                    .bind(&t.name)
                    .bind(&t.plan)
                    .bind(&t.segment)
                    .bind(t.prediction_sample_rate)
                    .bind(t.store_inputs)
                    .bind(gates)
                    .bind(t.id.as_str())
                    .execute(&mut *tx)
                    .await?;
                append_audit(&mut tx, Some(&t.id), "tenant.update", t.id.as_str(), actor).await?;
                tx.commit().await?;
                Ok(t)
            }

            async fn delete_tenant(&self, _sys: &SystemCtx, ctx: &TenantCtx, actor: &AuditActor) -> Result<(), StoreError> {
                let id = ctx.tenant_id();
                let mut tx = self.begin(TxScope::Tenant(id.as_str()), true).await?;
                tenant_in_tx(&mut tx, id).await?;
                sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE tenant_id = $2 AND revoked_at IS NULL")
                    .bind(Timestamp::now().millis())
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?;
                // What only the tenant defined goes with it.
                for table in ["event_types", "feature_defs", "datasets", "training_jobs", "model_aliases", "feedback", "rollouts", "alert_rules", "alert_events"] {
                    sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE tenant_id = $1")))
                        .bind(id.as_str())
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query("DELETE FROM tenants WHERE id = $1").bind(id.as_str()).execute(&mut *tx).await?;
                append_audit(&mut tx, Some(id), "tenant.delete", id.as_str(), actor).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn insert_key(&self, owner: KeyOwner<'_>, key: &KeyRecord, actor: &AuditActor) -> Result<(), StoreError> {
                let (scope, tenant) = owner_scope(&owner);
                if key.tenant_id.as_ref() != tenant {
                    return Err(StoreError::Internal("key owner does not match its record".into()));
                }
                let mut tx = self.begin(scope, true).await?;
                if let Some(t) = tenant {
                    tenant_in_tx(&mut tx, t).await?;
                }
                sqlx::query(
                    "INSERT INTO api_keys (id, tenant_id, name, role, scopes, hash, created_at, expires_at, revoked_at, created_by) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(key.id.as_str())
                .bind(key.tenant_id.as_ref().map(|t| t.as_str()))
                .bind(&key.name)
                .bind(key.role.as_str())
                .bind(to_json(&key.scopes)?)
                .bind(&key.hash)
                .bind(key.created_at.millis())
                .bind(key.expires_at.map(|t| t.millis()))
                .bind(key.revoked_at.map(|t| t.millis()))
                .bind(key.created_by.as_deref())
                .execute(&mut *tx)
                .await?;
                append_audit(&mut tx, tenant, "key.create", key.id.as_str(), actor).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn list_keys(&self, owner: KeyOwner<'_>) -> Result<Vec<KeyRecord>, StoreError> {
                let (scope, tenant) = owner_scope(&owner);
                let mut tx = self.begin(scope, false).await?;
                let rows = match tenant {
                    Some(t) => {
                        tenant_in_tx(&mut tx, t).await?;
                        sqlx::query(sqlx::AssertSqlSafe(format!(
                            "SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 ORDER BY created_at DESC, id"
                        )))
                        .bind(t.as_str())
                        .fetch_all(&mut *tx)
                        .await?
                    }
                    None => {
                        sqlx::query(sqlx::AssertSqlSafe(format!(
                            "SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id IS NULL ORDER BY created_at DESC, id"
                        )))
                        .fetch_all(&mut *tx)
                        .await?
                    }
                };
                tx.commit().await?;
                rows.iter().map(key_from_row).collect()
            }

            async fn revoke_key(&self, owner: KeyOwner<'_>, id: &KeyId, actor: &AuditActor) -> Result<KeyRecord, StoreError> {
                let (scope, tenant) = owner_scope(&owner);
                let mut tx = self.begin(scope, true).await?;
                let mut key = key_in_tx(&mut tx, id, tenant).await?.ok_or_else(|| StoreError::not_found("key", id))?;
                if key.revoked_at.is_none() {
                    let now = Timestamp::now();
                    sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2")
                        .bind(now.millis())
                        .bind(id.as_str())
                        .execute(&mut *tx)
                        .await?;
                    append_audit(&mut tx, tenant, "key.revoke", id.as_str(), actor).await?;
                    key.revoked_at = Some(now);
                }
                tx.commit().await?;
                Ok(key)
            }

            async fn key_for_auth(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
                let mut tx = self.begin(TxScope::System, false).await?;
                let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1")))
                    .bind(id.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
                tx.commit().await?;
                row.as_ref().map(key_from_row).transpose()
            }

            async fn count_active_platform_keys(&self, _sys: &SystemCtx) -> Result<u64, StoreError> {
                let mut tx = self.begin(TxScope::System, false).await?;
                let now = Timestamp::now().millis();
                let row = sqlx::query(
                    "SELECT COUNT(*) AS n FROM api_keys WHERE tenant_id IS NULL AND role = 'platform_admin' \
                     AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $1)",
                )
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                let n: i64 = row.try_get("n")?;
                Ok(u64::try_from(n).unwrap_or(0))
            }

            async fn create_model(
                &self,
                scope: ModelScope<'_>,
                new: &NewModel,
                first_version: Option<(&str, i64)>,
                actor: &AuditActor,
            ) -> Result<Model, StoreError> {
                self.sql_create_model(scope, new, first_version, actor).await
            }

            async fn list_models(&self, view: ModelView<'_>) -> Result<Vec<Model>, StoreError> {
                self.sql_list_models(view).await
            }

            async fn resolve_model(&self, view: ModelView<'_>, name: &str) -> Result<Model, StoreError> {
                self.sql_resolve_model(view, name).await
            }

            async fn get_model_by_id(&self, _sys: &SystemCtx, id: &str) -> Result<Model, StoreError> {
                self.sql_get_model_by_id(_sys, id).await
            }

            async fn add_model_version(
                &self,
                writer: KeyOwner<'_>,
                model: &Model,
                sha256: &str,
                size: i64,
                features: Option<&FeatureBinding>,
                actor: &AuditActor,
            ) -> Result<ModelVersion, StoreError> {
                self.sql_add_model_version(writer, model, sha256, size, features, actor).await
            }

            async fn put_event_type(
                &self,
                ctx: &TenantCtx,
                name: &str,
                schema: &serde_json::Value,
                actor: &AuditActor,
            ) -> Result<EventType, StoreError> {
                let tenant = ctx.tenant_id();
                let now = Timestamp::now();
                let mut tx = self.begin(TxScope::Tenant(tenant.as_str()), true).await?;
                sqlx::query(
                    "INSERT INTO event_types (tenant_id, name, schema, updated_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (tenant_id, name) DO UPDATE SET schema = excluded.schema, updated_at = excluded.updated_at",
                )
                .bind(tenant.as_str())
                .bind(name)
                .bind(to_json(schema)?)
                .bind(now.millis())
                .execute(&mut *tx)
                .await?;
                append_audit(&mut tx, Some(tenant), "event_type.put", name, actor).await?;
                tx.commit().await?;
                Ok(EventType { name: name.to_owned(), schema: schema.clone(), updated_at: now })
            }

            async fn get_event_type(&self, ctx: &TenantCtx, name: &str) -> Result<EventType, StoreError> {
                let tenant = ctx.tenant_id();
                let mut tx = self.begin(TxScope::Tenant(tenant.as_str()), false).await?;
                let row = sqlx::query("SELECT name, schema, updated_at FROM event_types WHERE tenant_id = $1 AND name = $2")
                    .bind(tenant.as_str())
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await?;
                tx.commit().await?;
                event_type_from_row(&row.ok_or_else(|| StoreError::not_found("event type", name))?)
            }

            async fn list_event_types(&self, ctx: &TenantCtx) -> Result<Vec<EventType>, StoreError> {
                let tenant = ctx.tenant_id();
                let mut tx = self.begin(TxScope::Tenant(tenant.as_str()), false).await?;
                let rows = sqlx::query("SELECT name, schema, updated_at FROM event_types WHERE tenant_id = $1 ORDER BY name")
                    .bind(tenant.as_str())
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                rows.iter().map(event_type_from_row).collect()
            }

            async fn delete_event_type(&self, ctx: &TenantCtx, name: &str, actor: &AuditActor) -> Result<(), StoreError> {
                let tenant = ctx.tenant_id();
                let mut tx = self.begin(TxScope::Tenant(tenant.as_str()), true).await?;
                let gone = sqlx::query("DELETE FROM event_types WHERE tenant_id = $1 AND name = $2")
                    .bind(tenant.as_str())
                    .bind(name)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if gone == 0 {
                    return Err(StoreError::not_found("event type", name));
                }
                append_audit(&mut tx, Some(tenant), "event_type.delete", name, actor).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn put_feature_def(
                &self,
                ctx: &TenantCtx,
                def: &FeatureDefWrite<'_>,
                actor: &AuditActor,
            ) -> Result<StoredDefinition, StoreError> {
                self.sql_put_feature_def(ctx, def, actor).await
            }

            async fn list_feature_defs(&self, ctx: &TenantCtx, kind: Option<Kind>) -> Result<Vec<StoredDefinition>, StoreError> {
                self.sql_list_feature_defs(ctx, kind).await
            }

            async fn delete_feature_def(&self, ctx: &TenantCtx, kind: Kind, name: &str, actor: &AuditActor) -> Result<(), StoreError> {
                self.sql_delete_feature_def(ctx, kind, name, actor).await
            }

            async fn create_alert_rule(&self, owner: KeyOwner<'_>, rule: &AlertRule, actor: &AuditActor) -> Result<(), StoreError> {
                self.sql_create_alert_rule(owner, rule, actor).await
            }

            async fn list_alert_rules(&self, owner: KeyOwner<'_>) -> Result<Vec<AlertRule>, StoreError> {
                self.sql_list_alert_rules(owner).await
            }

            async fn get_alert_rule(&self, owner: KeyOwner<'_>, id: &str) -> Result<AlertRule, StoreError> {
                self.sql_get_alert_rule(owner, id).await
            }

            async fn delete_alert_rule(&self, owner: KeyOwner<'_>, id: &str, actor: &AuditActor) -> Result<(), StoreError> {
                self.sql_delete_alert_rule(owner, id, actor).await
            }

            async fn claim_alert_rules(&self, sys: &SystemCtx, owner: &str, now: Timestamp, lease_ms: i64) -> Result<Vec<AlertRule>, StoreError> {
                self.sql_claim_alert_rules(sys, owner, now, lease_ms).await
            }

            async fn save_alert_rule(&self, sys: &SystemCtx, rule: &AlertRule, events: &[AlertEvent], owner: &str) -> Result<bool, StoreError> {
                self.sql_save_alert_rule(sys, rule, events, owner).await
            }

            async fn append_alert_events(&self, sys: &SystemCtx, rule: &AlertRule, events: &[AlertEvent]) -> Result<(), StoreError> {
                self.sql_append_alert_events(sys, rule, events).await
            }

            async fn list_alert_events(&self, owner: KeyOwner<'_>, id: &str, limit: u32) -> Result<Vec<AlertEvent>, StoreError> {
                self.sql_list_alert_events(owner, id, limit).await
            }

            async fn firing_alerts(&self, sys: &SystemCtx) -> Result<Vec<(Option<TenantId>, String, u64)>, StoreError> {
                self.sql_firing_alerts(sys).await
            }

            async fn create_rollout(&self, ctx: &TenantCtx, write: &RolloutWrite, actor: &AuditActor) -> Result<(), StoreError> {
                self.sql_create_rollout(ctx, write, actor).await
            }

            async fn get_rollout(&self, ctx: &TenantCtx, id: &str) -> Result<Rollout, StoreError> {
                self.sql_get_rollout(ctx, id).await
            }

            async fn list_rollouts(&self, ctx: &TenantCtx, model_id: Option<&str>) -> Result<Vec<Rollout>, StoreError> {
                self.sql_list_rollouts(ctx, model_id).await
            }

            async fn claim_rollouts(&self, sys: &SystemCtx, owner: &str, now: Timestamp, lease_ms: i64) -> Result<Vec<(TenantId, Rollout)>, StoreError> {
                self.sql_claim_rollouts(sys, owner, now, lease_ms).await
            }

            async fn save_rollout(&self, ctx: &TenantCtx, write: &RolloutWrite, owner: Option<&str>, actor: &AuditActor) -> Result<bool, StoreError> {
                self.sql_save_rollout(ctx, write, owner, actor).await
            }

            async fn put_feedback(&self, ctx: &TenantCtx, rows: &[JoinedFeedback]) -> Result<Vec<bool>, StoreError> {
                self.sql_put_feedback(ctx, rows).await
            }

            async fn feedback_quality(&self, ctx: &TenantCtx, model: &str, version: Option<&str>, since: Timestamp) -> Result<Vec<QualityGroup>, StoreError> {
                self.sql_feedback_quality(ctx, model, version, since).await
            }

            async fn list_feedback(&self, ctx: &TenantCtx, model: &str, version: Option<&str>, since: Timestamp, limit: usize) -> Result<Vec<JoinedFeedback>, StoreError> {
                self.sql_list_feedback(ctx, model, version, since, limit).await
            }

            async fn create_training_job(&self, ctx: &TenantCtx, spec: &JobSpec, actor: &AuditActor) -> Result<Job, StoreError> {
                self.sql_create_training_job(ctx, spec, actor).await
            }

            async fn get_training_job(&self, ctx: &TenantCtx, id: &str) -> Result<Job, StoreError> {
                self.sql_get_training_job(ctx, id).await
            }

            async fn list_training_jobs(&self, ctx: &TenantCtx) -> Result<Vec<Job>, StoreError> {
                self.sql_list_training_jobs(ctx).await
            }

            async fn training_job_for_version(&self, ctx: &TenantCtx, model: &str, version: i64) -> Result<Option<Job>, StoreError> {
                self.sql_training_job_for_version(ctx, model, version).await
            }

            async fn cancel_training_job(&self, ctx: &TenantCtx, id: &str, actor: &AuditActor) -> Result<Job, StoreError> {
                self.sql_cancel_training_job(ctx, id, actor).await
            }

            async fn claim_training_job(&self, sys: &SystemCtx, owner: &str) -> Result<Option<(TenantId, Job)>, StoreError> {
                self.sql_claim_training_job(sys, owner).await
            }

            async fn update_training_job(&self, sys: &SystemCtx, id: &str, update: &JobUpdate<'_>) -> Result<bool, StoreError> {
                self.sql_update_training_job(sys, id, update).await
            }

            async fn fail_stale_training_jobs(&self, sys: &SystemCtx, before: Timestamp) -> Result<u64, StoreError> {
                self.sql_fail_stale_training_jobs(sys, before).await
            }

            async fn create_dataset(&self, ctx: &TenantCtx, new: &NewDataset<'_>, actor: &AuditActor) -> Result<Dataset, StoreError> {
                self.sql_create_dataset(ctx, new, actor).await
            }

            async fn update_dataset_schema(&self, ctx: &TenantCtx, id: &str, schema: &serde_json::Value, actor: &AuditActor) -> Result<Dataset, StoreError> {
                self.sql_update_dataset_schema(ctx, id, schema, actor).await
            }

            async fn list_datasets(&self, ctx: &TenantCtx) -> Result<Vec<Dataset>, StoreError> {
                self.sql_list_datasets(ctx).await
            }

            async fn get_dataset(&self, ctx: &TenantCtx, id: &str) -> Result<Dataset, StoreError> {
                self.sql_get_dataset(ctx, id).await
            }

            async fn put_deployment(
                &self,
                writer: KeyOwner<'_>,
                model: &Model,
                spec: &str,
                actor: &AuditActor,
            ) -> Result<(), StoreError> {
                self.sql_put_deployment(writer, model, spec, actor).await
            }

            async fn get_deployment(&self, view: ModelView<'_>, model: &Model) -> Result<Option<String>, StoreError> {
                self.sql_get_deployment(view, model).await
            }

            async fn delete_deployment(&self, writer: KeyOwner<'_>, model: &Model, actor: &AuditActor) -> Result<(), StoreError> {
                self.sql_delete_deployment(writer, model, actor).await
            }

            async fn list_model_versions(&self, view: ModelView<'_>, model: &Model) -> Result<Vec<ModelVersion>, StoreError> {
                self.sql_list_model_versions(view, model).await
            }

            async fn put_version_report(&self, writer: KeyOwner<'_>, model: &Model, version: i64, report: &Report, actor: &AuditActor) -> Result<(), StoreError> {
                self.sql_put_version_report(writer, model, version, report, actor).await
            }

            async fn get_version_report(&self, view: ModelView<'_>, model: &Model, version: i64) -> Result<Option<Report>, StoreError> {
                self.sql_get_version_report(view, model, version).await
            }

            async fn override_gate(&self, writer: KeyOwner<'_>, model: &Model, version: i64, reason: &str, actor: &AuditActor) -> Result<Report, StoreError> {
                self.sql_override_gate(writer, model, version, reason, actor).await
            }

            async fn put_alias(&self, writer: KeyOwner<'_>, model: &Model, alias: &str, version: i64, actor: &AuditActor) -> Result<Alias, StoreError> {
                self.sql_put_alias(writer, model, alias, version, actor).await
            }

            async fn delete_alias(&self, writer: KeyOwner<'_>, model: &Model, alias: &str, actor: &AuditActor) -> Result<(), StoreError> {
                self.sql_delete_alias(writer, model, alias, actor).await
            }

            async fn list_aliases(&self, view: ModelView<'_>, model: &Model) -> Result<Vec<Alias>, StoreError> {
                self.sql_list_aliases(view, model).await
            }

            async fn list_audit(&self, scope: AuditScope<'_>, q: AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
                let (tx_scope, tenant) = match scope {
                    AuditScope::Tenant(ctx) => (TxScope::Tenant(ctx.tenant_id().as_str()), Some(ctx.tenant_id())),
                    AuditScope::System(_, filter) => (TxScope::System, filter),
                };
                let mut tx = self.begin(tx_scope, false).await?;
                let rows = sqlx::query(
                    "SELECT id, ts, actor_key_id, tenant_id, action, target, request_id, prev_hash, hash FROM audit_log \
                     WHERE ($1 IS NULL OR tenant_id = $1) AND ts >= $2 ORDER BY id DESC LIMIT $3",
                )
                .bind(tenant.map(|t| t.as_str()))
                .bind(q.since.map_or(i64::MIN, |t| t.millis()))
                .bind(i64::from(q.limit))
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                rows.iter().map(audit_from_row).collect()
            }

            async fn audit_page(&self, _sys: &SystemCtx, after: i64, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
                let mut tx = self.begin(TxScope::System, false).await?;
                let rows = sqlx::query(
                    "SELECT id, ts, actor_key_id, tenant_id, action, target, request_id, prev_hash, hash FROM audit_log \
                     WHERE id > $1 ORDER BY id LIMIT $2",
                )
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                rows.iter().map(audit_from_row).collect()
            }

            async fn audit_head(&self, _sys: &SystemCtx) -> Result<Option<(i64, String)>, StoreError> {
                let mut tx = self.begin(TxScope::System, false).await?;
                let row = sqlx::query("SELECT last_id, last_hash FROM audit_head WHERE id = 1")
                    .fetch_optional(&mut *tx)
                    .await?;
                tx.commit().await?;
                match row {
                    Some(r) => Ok(Some((r.try_get("last_id")?, r.try_get("last_hash")?))),
                    None => Ok(None),
                }
            }

            async fn insert_usage(&self, _sys: &SystemCtx, records: &[UsageRecord]) -> Result<u64, StoreError> {
                self.sql_insert_usage(_sys, records).await
            }

            async fn list_usage(
                &self,
                scope: UsageScope<'_>,
                from_ms: i64,
                to_ms: i64,
                limit: u32,
            ) -> Result<Vec<UsageRecord>, StoreError> {
                self.sql_list_usage(scope, from_ms, to_ms, limit).await
            }

            async fn usage_totals(
                &self,
                scope: UsageScope<'_>,
                from_ms: i64,
                to_ms: i64,
                group_by: GroupBy,
            ) -> Result<Vec<UsageGroup>, StoreError> {
                self.sql_usage_totals(scope, from_ms, to_ms, group_by).await
            }

            async fn spend_since(&self, _sys: &SystemCtx, tenant: &TenantId, from_ms: i64) -> Result<i64, StoreError> {
                self.sql_spend_since(_sys, tenant, from_ms).await
            }

            async fn put_price(&self, _sys: &SystemCtx, p: &Price, actor: &AuditActor) -> Result<(), StoreError> {
                self.sql_put_price(_sys, p, actor).await
            }

            async fn list_prices(&self) -> Result<Vec<Price>, StoreError> {
                self.sql_list_prices().await
            }

            async fn delete_price(&self, _sys: &SystemCtx, model: &str, plan: &str, actor: &AuditActor) -> Result<(), StoreError> {
                self.sql_delete_price(_sys, model, plan, actor).await
            }
        }

        crate::sql_usage::sql_usage_store!($store, $db);
        crate::sql_features::sql_features_store!($store, $db);
        crate::sql_datasets::sql_datasets_store!($store, $db);
        crate::sql_feedback::sql_feedback_store!($store, $db);
        crate::sql_rollouts::sql_rollouts_store!($store, $db);
        crate::sql_alerts::sql_alerts_store!($store, $db);
        crate::sql_training::sql_training_store!($store, $db, $skip, $lock_of_t);
        crate::sql_registry::sql_registry_store!($store, $db, $lock);
        crate::sql_governance::sql_governance_store!($store, $db, $lock);
    };
}

pub(crate) use sql_metadata_store;
