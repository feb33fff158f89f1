//! Cache invalidation in one place: [`InvalidatingStore`] wraps the
//! metadata store, and after each successful change it tells the
//! per-replica caches what changed ([`Change`]), so no handler has to
//! remember which cache to drop. Other replicas see changes within the
//! caches' TTL (at most 5 s).

use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use tessera_core::apikey::KeyRecord;
use tessera_core::audit::{AuditActor, AuditEntry};
use tessera_core::auth::{SystemCtx, TenantCtx};
use tessera_core::event_type::EventType;
use tessera_core::governance::{Alias, Report};
use tessera_core::ids::{KeyId, TenantId};
use tessera_core::model::{Model, ModelVersion, NewModel};
use tessera_core::tenant::{NewTenant, Plan, PlanPatch, Tenant, TenantPatch};
use tessera_core::usage::{GroupBy, Price, UsageGroup, UsageRecord};
use tessera_store::{
    AuditQuery, AuditScope, KeyOwner, MetadataStore, ModelScope, ModelView, StoreError, UsageScope,
};

/// What a write changed.
#[derive(Debug, Clone, Copy)]
pub enum Change<'a> {
    /// A plan (every tenant on it sees new limits).
    Plan,
    Tenant(&'a TenantId),
    Key(&'a KeyId),
    /// Models or versions (what names resolve to).
    Registry,
    /// A model's deployment, by model id.
    Deployment(&'a str),
    Prices,
    /// A tenant's event type schemas.
    EventTypes(&'a TenantId),
    /// A tenant's feature store definitions.
    Features(&'a TenantId),
}

type Subscriber = Box<dyn Fn(Change<'_>) + Send + Sync>;

/// Who hears about changes.
#[derive(Default)]
pub struct Changes {
    subscribers: RwLock<Vec<Subscriber>>,
}

impl Changes {
    pub fn subscribe(&self, f: impl Fn(Change<'_>) + Send + Sync + 'static) {
        if let Ok(mut s) = self.subscribers.write() {
            s.push(Box::new(f));
        }
    }

    pub fn publish(&self, change: Change<'_>) {
        if let Ok(s) = self.subscribers.read() {
            for f in s.iter() {
                f(change);
            }
        }
    }
}

/// The metadata store, announcing its changes.
pub struct InvalidatingStore {
    inner: Arc<dyn MetadataStore>,
    changes: Arc<Changes>,
}

impl InvalidatingStore {
    pub fn new(inner: Arc<dyn MetadataStore>, changes: Arc<Changes>) -> Self {
        Self { inner, changes }
    }

    /// A rollout write moves the deployment and maybe the alias.
    fn rollout_changed<T>(
        &self,
        r: Result<T, StoreError>,
        write: &tessera_core::rollout::RolloutWrite,
    ) -> Result<T, StoreError> {
        if r.is_ok() {
            if write.deployment != tessera_core::rollout::DeploymentChange::Keep {
                self.changes.publish(Change::Deployment(&write.rollout.model_id));
            }
            if write.promote {
                self.changes.publish(Change::Registry);
            }
        }
        r
    }

    fn after<T>(&self, r: Result<T, StoreError>, change: Change<'_>) -> Result<T, StoreError> {
        if r.is_ok() {
            self.changes.publish(change);
        }
        r
    }
}

#[async_trait]
impl MetadataStore for InvalidatingStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn ensure_default_plans(&self, sys: &SystemCtx) -> Result<(), StoreError> {
        let r = self.inner.ensure_default_plans(sys).await;
        self.after(r, Change::Plan)
    }
    async fn create_plan(
        &self,
        sys: &SystemCtx,
        plan: &Plan,
        actor: &AuditActor,
    ) -> Result<Plan, StoreError> {
        let r = self.inner.create_plan(sys, plan, actor).await;
        self.after(r, Change::Plan)
    }
    async fn list_plans(&self) -> Result<Vec<Plan>, StoreError> {
        self.inner.list_plans().await
    }
    async fn get_plan(&self, name: &str) -> Result<Plan, StoreError> {
        self.inner.get_plan(name).await
    }
    async fn update_plan(
        &self,
        sys: &SystemCtx,
        name: &str,
        patch: PlanPatch,
        actor: &AuditActor,
    ) -> Result<Plan, StoreError> {
        let r = self.inner.update_plan(sys, name, patch, actor).await;
        self.after(r, Change::Plan)
    }
    async fn create_tenant(
        &self,
        sys: &SystemCtx,
        new: &NewTenant,
        actor: &AuditActor,
    ) -> Result<Tenant, StoreError> {
        self.inner.create_tenant(sys, new, actor).await
    }
    async fn list_tenants(&self, sys: &SystemCtx) -> Result<Vec<Tenant>, StoreError> {
        self.inner.list_tenants(sys).await
    }
    async fn get_tenant(&self, ctx: &TenantCtx) -> Result<Tenant, StoreError> {
        self.inner.get_tenant(ctx).await
    }
    async fn update_tenant(
        &self,
        sys: &SystemCtx,
        ctx: &TenantCtx,
        patch: &TenantPatch,
        actor: &AuditActor,
    ) -> Result<Tenant, StoreError> {
        let r = self.inner.update_tenant(sys, ctx, patch, actor).await;
        // A new segment changes what model names resolve to as well.
        self.after(r, Change::Tenant(ctx.tenant_id())).inspect(|_| {
            self.changes.publish(Change::Registry);
        })
    }
    async fn delete_tenant(
        &self,
        sys: &SystemCtx,
        ctx: &TenantCtx,
        actor: &AuditActor,
    ) -> Result<(), StoreError> {
        let r = self.inner.delete_tenant(sys, ctx, actor).await;
        self.after(r, Change::Tenant(ctx.tenant_id()))
    }
    async fn insert_key(
        &self,
        owner: KeyOwner<'_>,
        key: &KeyRecord,
        actor: &AuditActor,
    ) -> Result<(), StoreError> {
        self.inner.insert_key(owner, key, actor).await
    }
    async fn list_keys(&self, owner: KeyOwner<'_>) -> Result<Vec<KeyRecord>, StoreError> {
        self.inner.list_keys(owner).await
    }
    async fn revoke_key(
        &self,
        owner: KeyOwner<'_>,
        id: &KeyId,
        actor: &AuditActor,
    ) -> Result<KeyRecord, StoreError> {
        let r = self.inner.revoke_key(owner, id, actor).await;
        self.after(r, Change::Key(id))
    }
    async fn key_for_auth(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        self.inner.key_for_auth(id).await
    }
    async fn count_active_platform_keys(&self, sys: &SystemCtx) -> Result<u64, StoreError> {
        self.inner.count_active_platform_keys(sys).await
    }
    async fn create_model(
        &self,
        scope: ModelScope<'_>,
        new: &NewModel,
        first_version: Option<(&str, i64)>,
        actor: &AuditActor,
    ) -> Result<Model, StoreError> {
        let r = self.inner.create_model(scope, new, first_version, actor).await;
        self.after(r, Change::Registry)
    }
    async fn list_models(&self, view: ModelView<'_>) -> Result<Vec<Model>, StoreError> {
        self.inner.list_models(view).await
    }
    async fn resolve_model(&self, view: ModelView<'_>, name: &str) -> Result<Model, StoreError> {
        self.inner.resolve_model(view, name).await
    }
    async fn get_model_by_id(&self, sys: &SystemCtx, id: &str) -> Result<Model, StoreError> {
        self.inner.get_model_by_id(sys, id).await
    }
    async fn add_model_version(
        &self,
        writer: KeyOwner<'_>,
        model: &Model,
        sha256: &str,
        size: i64,
        features: Option<&tessera_core::model_features::FeatureBinding>,
        actor: &AuditActor,
    ) -> Result<ModelVersion, StoreError> {
        let r = self.inner.add_model_version(writer, model, sha256, size, features, actor).await;
        self.after(r, Change::Registry)
    }
    async fn put_event_type(
        &self,
        ctx: &TenantCtx,
        name: &str,
        schema: &serde_json::Value,
        actor: &AuditActor,
    ) -> Result<EventType, StoreError> {
        let r = self.inner.put_event_type(ctx, name, schema, actor).await;
        self.after(r, Change::EventTypes(ctx.tenant_id()))
    }
    async fn get_event_type(&self, ctx: &TenantCtx, name: &str) -> Result<EventType, StoreError> {
        self.inner.get_event_type(ctx, name).await
    }
    async fn list_event_types(&self, ctx: &TenantCtx) -> Result<Vec<EventType>, StoreError> {
        self.inner.list_event_types(ctx).await
    }
    async fn delete_event_type(
        &self,
        ctx: &TenantCtx,
        name: &str,
        actor: &AuditActor,
    ) -> Result<(), StoreError> {
        let r = self.inner.delete_event_type(ctx, name, actor).await;
        self.after(r, Change::EventTypes(ctx.tenant_id()))
    }
    async fn put_feature_def(
        &self,
        ctx: &TenantCtx,
        def: &tessera_store::FeatureDefWrite<'_>,
        actor: &AuditActor,
    ) -> Result<tessera_core::features::StoredDefinition, StoreError> {
        let r = self.inner.put_feature_def(ctx, def, actor).await;
        self.after(r, Change::Features(ctx.tenant_id()))
    }
    async fn create_alert_rule(
        &self,
        owner: KeyOwner<'_>,
        rule: &tessera_core::alert::AlertRule,
        actor: &AuditActor,
    ) -> Result<(), StoreError> {
        self.inner.create_alert_rule(owner, rule, actor).await
    }
    async fn list_alert_rules(
        &self,
        owner: KeyOwner<'_>,
    ) -> Result<Vec<tessera_core::alert::AlertRule>, StoreError> {
        self.inner.list_alert_rules(owner).await
    }
    async fn get_alert_rule(
        &self,
        owner: KeyOwner<'_>,
        id: &str,
    ) -> Result<tessera_core::alert::AlertRule, StoreError> {
        self.inner.get_alert_rule(owner, id).await
    }
    async fn delete_alert_rule(
        &self,
        owner: KeyOwner<'_>,
        id: &str,
        actor: &AuditActor,
    ) -> Result<(), StoreError> {
        self.inner.delete_alert_rule(owner, id, actor).await
    }
    async fn claim_alert_rules(
        &self,
        sys: &SystemCtx,
        owner: &str,
        now: tessera_core::time::Timestamp,
        lease_ms: i64,
    ) -> Result<Vec<tessera_core::alert::AlertRule>, StoreError> {
        self.inner.claim_alert_rules(sys, owner, now, lease_ms).await
    }
    async fn save_alert_rule(
        &self,
        sys: &SystemCtx,
        rule: &tessera_core::alert::AlertRule,
        events: &[tessera_core::alert::AlertEvent],
        owner: &str,
    ) -> Result<bool, StoreError> {
        self.inner.save_alert_rule(sys, rule, events, owner).await
    }
    async fn append_alert_events(
        &self,
        sys: &SystemCtx,
        rule: &tessera_core::alert::AlertRule,
        events: &[tessera_core::alert::AlertEvent],
    ) -> Result<(), StoreError> {
        self.inner.append_alert_events(sys, rule, events).await
    }
    async fn list_alert_events(
        &self,
        owner: KeyOwner<'_>,
        id: &str,
        limit: u32,
    ) -> Result<Vec<tessera_core::alert::AlertEvent>, StoreError> {
        self.inner.list_alert_events(owner, id, limit).await
    }
    async fn firing_alerts(
        &self,
        sys: &SystemCtx,
    ) -> Result<Vec<(Option<TenantId>, String, u64)>, StoreError> {
        self.inner.firing_alerts(sys).await
    }
    async fn create_rollout(
        &self,
        ctx: &TenantCtx,
        write: &tessera_core::rollout::RolloutWrite,
        actor: &AuditActor,
    ) -> Result<(), StoreError> {
        let r = self.inner.create_rollout(ctx, write, actor).await;
        self.rollout_changed(r, write)
    }
    async fn get_rollout(
        &self,
        ctx: &TenantCtx,
        id: &str,
    ) -> Result<tessera_core::rollout::Rollout, StoreError> {
        self.inner.get_rollout(ctx, id).await
    }
    async fn list_rollouts(
        &self,
        ctx: &TenantCtx,
        model_id: Option<&str>,
    ) -> Result<Vec<tessera_core::rollout::Rollout>, StoreError> {
        self.inner.list_rollouts(ctx, model_id).await
    }
    async fn claim_rollouts(
        &self,
        sys: &SystemCtx,
        owner: &str,
        now: tessera_core::time::Timestamp,
        lease_ms: i64,
    ) -> Result<Vec<(TenantId, tessera_core::rollout::Rollout)>, StoreError> {
        self.inner.claim_rollouts(sys, owner, now, lease_ms).await
    }
    async fn save_rollout(
        &self,
        ctx: &TenantCtx,
        write: &tessera_core::rollout::RolloutWrite,
        owner: Option<&str>,
        actor: &AuditActor,
    ) -> Result<bool, StoreError> {
        let r = self.inner.save_rollout(ctx, write, owner, actor).await;
        self.rollout_changed(r, write)
    }
    async fn put_feedback(
        &self,
        ctx: &TenantCtx,
        rows: &[tessera_core::feedback::JoinedFeedback],
    ) -> Result<Vec<bool>, StoreError> {
        self.inner.put_feedback(ctx, rows).await
    }
    async fn feedback_quality(
        &self,
        ctx: &TenantCtx,
        model: &str,
        version: Option<&str>,
        since: tessera_core::time::Timestamp,
    ) -> Result<Vec<tessera_core::feedback::QualityGroup>, StoreError> {
        self.inner.feedback_quality(ctx, model, version, since).await
    }
    async fn list_feedback(
        &self,
        ctx: &TenantCtx,
        model: &str,
        version: Option<&str>,
        since: tessera_core::time::Timestamp,
        limit: usize,
    ) -> Result<Vec<tessera_core::feedback::JoinedFeedback>, StoreError> {
        self.inner.list_feedback(ctx, model, version, since, limit).await
    }
    async fn create_training_job(
        &self,
        ctx: &TenantCtx,
        spec: &tessera_core::training::JobSpec,
        actor: &AuditActor,
    ) -> Result<tessera_core::training::Job, StoreError> {
        self.inner.create_training_job(ctx, spec, actor).await
    }
    async fn get_training_job(
        &self,
        ctx: &TenantCtx,
        id: &str,
    ) -> Result<tessera_core::training::Job, StoreError> {
        self.inner.get_training_job(ctx, id).await
    }
    async fn list_training_jobs(
        &self,
        ctx: &TenantCtx,
    ) -> Result<Vec<tessera_core::training::Job>, StoreError> {
        self.inner.list_training_jobs(ctx).await
    }
    async fn training_job_for_version(
        &self,
        ctx: &TenantCtx,
        model: &str,
        version: i64,
    ) -> Result<Option<tessera_core::training::Job>, StoreError> {
        self.inner.training_job_for_version(ctx, model, version).await
    }
    async fn cancel_training_job(
        &self,
        ctx: &TenantCtx,
        id: &str,
        actor: &AuditActor,
    ) -> Result<tessera_core::training::Job, StoreError> {
        self.inner.cancel_training_job(ctx, id, actor).await
    }
    async fn claim_training_job(
        &self,
        sys: &SystemCtx,
        owner: &str,
    ) -> Result<Option<(TenantId, tessera_core::training::Job)>, StoreError> {
        self.inner.claim_training_job(sys, owner).await
    }
    async fn update_training_job(
        &self,
        sys: &SystemCtx,
        id: &str,
        update: &tessera_store::JobUpdate<'_>,
    ) -> Result<bool, StoreError> {
        self.inner.update_training_job(sys, id, update).await
    }
    async fn fail_stale_training_jobs(
        &self,
        sys: &SystemCtx,
        before: tessera_core::time::Timestamp,
    ) -> Result<u64, StoreError> {
        self.inner.fail_stale_training_jobs(sys, before).await
    }
    async fn create_dataset(
        &self,
        ctx: &TenantCtx,
        new: &tessera_core::dataset::NewDataset<'_>,
        actor: &AuditActor,
    ) -> Result<tessera_core::dataset::Dataset, StoreError> {
        self.inner.create_dataset(ctx, new, actor).await
    }
    async fn update_dataset_schema(
        &self,
        ctx: &TenantCtx,
        id: &str,
        schema: &serde_json::Value,
        actor: &AuditActor,
    ) -> Result<tessera_core::dataset::Dataset, StoreError> {
        self.inner.update_dataset_schema(ctx, id, schema, actor).await
    }
    async fn list_datasets(
        &self,
        ctx: &TenantCtx,
    ) -> Result<Vec<tessera_core::dataset::Dataset>, StoreError> {
        self.inner.list_datasets(ctx).await
    }
    async fn get_dataset(
        &self,
        ctx: &TenantCtx,
        id: &str,
    ) -> Result<tessera_core::dataset::Dataset, StoreError> {
        self.inner.get_dataset(ctx, id).await
    }
    async fn list_feature_defs(
        &self,
        ctx: &TenantCtx,
        kind: Option<tessera_core::features::Kind>,
    ) -> Result<Vec<tessera_core::features::StoredDefinition>, StoreError> {
        self.inner.list_feature_defs(ctx, kind).await
    }
    async fn delete_feature_def(
        &self,
        ctx: &TenantCtx,
        kind: tessera_core::features::Kind,
        name: &str,
        actor: &AuditActor,
    ) -> Result<(), StoreError> {
        let r = self.inner.delete_feature_def(ctx, kind, name, actor).await;
        self.after(r, Change::Features(ctx.tenant_id()))
    }
    async fn put_deployment(
        &self,
        writer: KeyOwner<'_>,
        model: &Model,
        spec: &str,
        actor: &AuditActor,
    ) -> Result<(), StoreError> {
        let r = self.inner.put_deployment(writer, model, spec, actor).await;
        self.after(r, Change::Deployment(&model.id))
    }
    async fn get_deployment(
        &self,
        view: ModelView<'_>,
        model: &Model,
    ) -> Result<Option<String>, StoreError> {
        self.inner.get_deployment(view, model).await
    }
    async fn delete_deployment(
        &self,
        writer: KeyOwner<'_>,
        model: &Model,
        actor: &AuditActor,
    ) -> Result<(), StoreError> {
        let r = self.inner.delete_deployment(writer, model, actor).await;
        self.after(r, Change::Deployment(&model.id))
    }
    async fn list_model_versions(
        &self,
        view: ModelView<'_>,
        model: &Model,
    ) -> Result<Vec<ModelVersion>, StoreError> {
        self.inner.list_model_versions(view, model).await
    }
    async fn put_version_report(
        &self,
        writer: KeyOwner<'_>,
        model: &Model,
        version: i64,
        report: &Report,
        actor: &AuditActor,
    ) -> Result<(), StoreError> {
        let r = self.inner.put_version_report(writer, model, version, report, actor).await;
        self.after(r, Change::Registry)
    }
    async fn get_version_report(
        &self,
        view: ModelView<'_>,
        model: &Model,
        version: i64,
    ) -> Result<Option<Report>, StoreError> {
        self.inner.get_version_report(view, model, version).await
    }
    async fn override_gate(
        &self,
        writer: KeyOwner<'_>,
        model: &Model,
        version: i64,
        reason: &str,
        actor: &AuditActor,
    ) -> Result<Report, StoreError> {
        let r = self.inner.override_gate(writer, model, version, reason, actor).await;
        self.after(r, Change::Registry)
    }
    async fn put_alias(
        &self,
        writer: KeyOwner<'_>,
        model: &Model,
        alias: &str,
        version: i64,
        actor: &AuditActor,
    ) -> Result<Alias, StoreError> {
        let r = self.inner.put_alias(writer, model, alias, version, actor).await;
        self.after(r, Change::Registry)
    }
    async fn delete_alias(
        &self,
        writer: KeyOwner<'_>,
        model: &Model,
        alias: &str,
        actor: &AuditActor,
    ) -> Result<(), StoreError> {
        let r = self.inner.delete_alias(writer, model, alias, actor).await;
        self.after(r, Change::Registry)
    }
    async fn list_aliases(
        &self,
        view: ModelView<'_>,
        model: &Model,
    ) -> Result<Vec<Alias>, StoreError> {
        self.inner.list_aliases(view, model).await
    }
    async fn list_audit(
        &self,
        scope: AuditScope<'_>,
        q: AuditQuery,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.inner.list_audit(scope, q).await
    }
    async fn audit_page(
        &self,
        sys: &SystemCtx,
        after: i64,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.inner.audit_page(sys, after, limit).await
    }
    async fn audit_head(&self, sys: &SystemCtx) -> Result<Option<(i64, String)>, StoreError> {
        self.inner.audit_head(sys).await
    }
    async fn insert_usage(
        &self,
        sys: &SystemCtx,
        records: &[UsageRecord],
    ) -> Result<u64, StoreError> {
        self.inner.insert_usage(sys, records).await
    }
    async fn list_usage(
        &self,
        scope: UsageScope<'_>,
        from_ms: i64,
        to_ms: i64,
        limit: u32,
    ) -> Result<Vec<UsageRecord>, StoreError> {
        self.inner.list_usage(scope, from_ms, to_ms, limit).await
    }
    async fn usage_totals(
        &self,
        scope: UsageScope<'_>,
        from_ms: i64,
        to_ms: i64,
        group_by: GroupBy,
    ) -> Result<Vec<UsageGroup>, StoreError> {
        self.inner.usage_totals(scope, from_ms, to_ms, group_by).await
    }
    async fn spend_since(
        &self,
        sys: &SystemCtx,
        tenant: &TenantId,
        from_ms: i64,
    ) -> Result<i64, StoreError> {
        self.inner.spend_since(sys, tenant, from_ms).await
    }
    async fn put_price(
        &self,
        sys: &SystemCtx,
        price: &Price,
        actor: &AuditActor,
    ) -> Result<(), StoreError> {
        let r = self.inner.put_price(sys, price, actor).await;
        self.after(r, Change::Prices)
    }
    async fn list_prices(&self) -> Result<Vec<Price>, StoreError> {
        self.inner.list_prices().await
    }
    async fn delete_price(
        &self,
        sys: &SystemCtx,
        model: &str,
        plan: &str,
        actor: &AuditActor,
    ) -> Result<(), StoreError> {
        let r = self.inner.delete_price(sys, model, plan, actor).await;
        self.after(r, Change::Prices)
    }
}
