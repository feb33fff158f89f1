//! The metadata store trait: tenants, plans, API keys and the audit log.
//!
//! Every method that touches tenant data takes a [`TenantCtx`] or a
//! [`SystemCtx`]; every mutation takes the [`AuditActor`] and appends its audit
//! entry in the same transaction as the change.

use async_trait::async_trait;
use tessera_core::apikey::KeyRecord;
use tessera_core::audit::{AuditActor, AuditEntry};
use tessera_core::auth::{SystemCtx, TenantCtx};
use tessera_core::event_type::EventType;
use tessera_core::features::{Kind, StoredDefinition};
use tessera_core::governance::{Alias, Report};
use tessera_core::ids::{KeyId, TenantId};
use tessera_core::model::{Model, ModelVersion, NewModel};
use tessera_core::tenant::{NewTenant, Plan, PlanPatch, Tenant, TenantPatch};
use tessera_core::time::Timestamp;
use tessera_core::usage::{GroupBy, Price, UsageGroup, UsageRecord};

use crate::StoreError;

/// Whose key is being stored or revoked.
#[derive(Debug, Clone, Copy)]
pub enum KeyOwner<'a> {
    Tenant(&'a TenantCtx),
    Platform(&'a SystemCtx),
}

impl<'a> KeyOwner<'a> {
    /// The platform acting for `tenant` when there is one, else the platform itself.
    pub fn of(sys: &'a SystemCtx, tenant: Option<&'a TenantCtx>) -> Self {
        match tenant {
            Some(ctx) => KeyOwner::Tenant(ctx),
            None => KeyOwner::Platform(sys),
        }
    }
}

/// Which audit entries a reader may see.
#[derive(Debug, Clone, Copy)]
pub enum AuditScope<'a> {
    /// One tenant's own entries.
    Tenant(&'a TenantCtx),
    /// Everything, optionally filtered to one tenant.
    System(&'a SystemCtx, Option<&'a TenantId>),
}

/// Who a new model belongs to.
#[derive(Debug, Clone, Copy)]
pub enum ModelScope<'a> {
    Tenant(&'a TenantCtx),
    Segment(&'a SystemCtx, &'a str),
    Platform(&'a SystemCtx),
}

/// Which models a reader sees: a tenant sees its own, its segment's and the
/// platform's; the system sees all.
#[derive(Debug, Clone, Copy)]
pub enum ModelView<'a> {
    Tenant { ctx: &'a TenantCtx, segment: Option<&'a str> },
    System(&'a SystemCtx),
}

/// Filters for listing audit entries (newest first).
#[derive(Debug, Clone, Copy)]
pub struct AuditQuery {
    pub since: Option<Timestamp>,
    pub limit: u32,
}

#[async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    /// `sqlite` or `postgres`, for logs and metrics.
    fn backend(&self) -> &'static str;

    /// Succeeds when the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Creates the default plans that do not exist yet.
    async fn ensure_default_plans(&self, sys: &SystemCtx) -> Result<(), StoreError>;
    async fn create_plan(
        &self,
        sys: &SystemCtx,
        plan: &Plan,
        actor: &AuditActor,
    ) -> Result<Plan, StoreError>;
    async fn list_plans(&self) -> Result<Vec<Plan>, StoreError>;
    /// Plans are a public catalogue: any authenticated caller may read one.
    async fn get_plan(&self, name: &str) -> Result<Plan, StoreError>;
    async fn update_plan(
        &self,
        sys: &SystemCtx,
        name: &str,
        patch: PlanPatch,
        actor: &AuditActor,
    ) -> Result<Plan, StoreError>;

    async fn create_tenant(
        &self,
        sys: &SystemCtx,
        new: &NewTenant,
        actor: &AuditActor,
    ) -> Result<Tenant, StoreError>;
    async fn list_tenants(&self, sys: &SystemCtx) -> Result<Vec<Tenant>, StoreError>;
    async fn get_tenant(&self, ctx: &TenantCtx) -> Result<Tenant, StoreError>;
    async fn update_tenant(
        &self,
        sys: &SystemCtx,
        ctx: &TenantCtx,
        patch: &TenantPatch,
        actor: &AuditActor,
    ) -> Result<Tenant, StoreError>;
    /// Deletes the tenant and revokes all its keys.
    async fn delete_tenant(
        &self,
        sys: &SystemCtx,
        ctx: &TenantCtx,
        actor: &AuditActor,
    ) -> Result<(), StoreError>;

    async fn insert_key(
        &self,
        owner: KeyOwner<'_>,
        key: &KeyRecord,
        actor: &AuditActor,
    ) -> Result<(), StoreError>;
    /// Keys of one tenant, or the platform's keys, newest first.
    async fn list_keys(&self, owner: KeyOwner<'_>) -> Result<Vec<KeyRecord>, StoreError>;
    /// Marks a key revoked; revoking twice is not an error.
    async fn revoke_key(
        &self,
        owner: KeyOwner<'_>,
        id: &KeyId,
        actor: &AuditActor,
    ) -> Result<KeyRecord, StoreError>;
    /// Looks a key up for authentication, before any tenant is known.
    async fn key_for_auth(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError>;
    /// Active platform keys (to decide whether to mint the first admin key).
    async fn count_active_platform_keys(&self, sys: &SystemCtx) -> Result<u64, StoreError>;

    /// Registers a model; `first_version` (an artifact's sha256 and size)
    /// becomes its version 1 in the same transaction.
    async fn create_model(
        &self,
        scope: ModelScope<'_>,
        new: &NewModel,
        first_version: Option<(&str, i64)>,
        actor: &AuditActor,
    ) -> Result<Model, StoreError>;
    /// Models visible in `view`, by name; for a tenant, a name its own model
    /// shares with a segment or platform model shows only its own.
    async fn list_models(&self, view: ModelView<'_>) -> Result<Vec<Model>, StoreError>;
    /// Resolves a name tenant -> segment -> platform.
    async fn resolve_model(&self, view: ModelView<'_>, name: &str) -> Result<Model, StoreError>;
    async fn get_model_by_id(&self, sys: &SystemCtx, id: &str) -> Result<Model, StoreError>;
    /// Adds the next version of `model`, reading `features` if given. A
    /// tenant can only version its own models; segment and platform models
    /// need the platform owner.
    async fn add_model_version(
        &self,
        writer: KeyOwner<'_>,
        model: &Model,
        sha256: &str,
        size: i64,
        features: Option<&tessera_core::model_features::FeatureBinding>,
        actor: &AuditActor,
    ) -> Result<ModelVersion, StoreError>;
    /// Creates or replaces the tenant's schema for event type `name`.
    async fn put_event_type(
        &self,
        ctx: &TenantCtx,
        name: &str,
        schema: &serde_json::Value,
        actor: &AuditActor,
    ) -> Result<EventType, StoreError>;
    async fn get_event_type(&self, ctx: &TenantCtx, name: &str) -> Result<EventType, StoreError>;
    async fn list_event_types(&self, ctx: &TenantCtx) -> Result<Vec<EventType>, StoreError>;
    async fn delete_event_type(
        &self,
        ctx: &TenantCtx,
        name: &str,
        actor: &AuditActor,
    ) -> Result<(), StoreError>;
    /// Creates (`expected` none) or changes (`expected` the stored version)
    /// a feature store definition, audited; its version grows by one on a
    /// change (an unchanged spec is no change). A version that moved meanwhile
    /// is a conflict, so two writers never overwrite each other unseen.
    async fn put_feature_def(
        &self,
        ctx: &TenantCtx,
        def: &FeatureDefWrite<'_>,
        actor: &AuditActor,
    ) -> Result<StoredDefinition, StoreError>;
    /// The tenant's definitions (of one kind, or all), by kind and name.
    async fn list_feature_defs(
        &self,
        ctx: &TenantCtx,
        kind: Option<Kind>,
    ) -> Result<Vec<StoredDefinition>, StoreError>;
    async fn delete_feature_def(
        &self,
        ctx: &TenantCtx,
        kind: Kind,
        name: &str,
        actor: &AuditActor,
    ) -> Result<(), StoreError>;
    /// Stores the next version of the tenant's dataset `new.name` (audited).
    async fn create_dataset(
        &self,
        ctx: &TenantCtx,
        new: &tessera_core::dataset::NewDataset<'_>,
        actor: &AuditActor,
    ) -> Result<tessera_core::dataset::Dataset, StoreError>;
    /// The tenant's datasets, every version, by name and version.
    async fn list_datasets(
        &self,
        ctx: &TenantCtx,
    ) -> Result<Vec<tessera_core::dataset::Dataset>, StoreError>;
    /// Replaces a dataset version's schema (the types a job reads its
    /// columns as; the file stays as it is), audited.
    async fn update_dataset_schema(
        &self,
        ctx: &TenantCtx,
        id: &str,
        schema: &serde_json::Value,
        actor: &AuditActor,
    ) -> Result<tessera_core::dataset::Dataset, StoreError>;
    /// One of the tenant's dataset versions by id.
    async fn get_dataset(
        &self,
        ctx: &TenantCtx,
        id: &str,
    ) -> Result<tessera_core::dataset::Dataset, StoreError>;
    /// Stores feedback joined to its predictions, one row per prediction (a
    /// later truth replaces an earlier); per row, whether it was new.
    async fn put_feedback(
        &self,
        ctx: &TenantCtx,
        rows: &[tessera_core::feedback::JoinedFeedback],
    ) -> Result<Vec<bool>, StoreError>;
    /// The tenant's feedback for `model` given since `since`, grouped for
    /// [`tessera_core::feedback::quality`]; `version`: only that one.
    async fn feedback_quality(
        &self,
        ctx: &TenantCtx,
        model: &str,
        version: Option<&str>,
        since: Timestamp,
    ) -> Result<Vec<tessera_core::feedback::QualityGroup>, StoreError>;
    /// Up to `limit` of the tenant's joined feedback for `model` given since
    /// `since`, oldest prediction first.
    async fn list_feedback(
        &self,
        ctx: &TenantCtx,
        model: &str,
        version: Option<&str>,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<tessera_core::feedback::JoinedFeedback>, StoreError>;
    /// Starts a rollout: stores it and applies its first step's deployment
    /// in one transaction (audited); a model with an active rollout is a
    /// conflict.
    async fn create_rollout(
        &self,
        ctx: &TenantCtx,
        write: &tessera_core::rollout::RolloutWrite,
        actor: &AuditActor,
    ) -> Result<(), StoreError>;
    async fn get_rollout(
        &self,
        ctx: &TenantCtx,
        id: &str,
    ) -> Result<tessera_core::rollout::Rollout, StoreError>;
    /// The tenant's rollouts (of one model, by id), newest first (at most 200).
    async fn list_rollouts(
        &self,
        ctx: &TenantCtx,
        model_id: Option<&str>,
    ) -> Result<Vec<tessera_core::rollout::Rollout>, StoreError>;
    /// Takes the lease of every running rollout due at `now` whose lease is
    /// free (or `owner`'s already) until `now + lease_ms`; two replicas
    /// never hold one rollout's lease at once.
    async fn claim_rollouts(
        &self,
        sys: &SystemCtx,
        owner: &str,
        now: Timestamp,
        lease_ms: i64,
    ) -> Result<Vec<(TenantId, tessera_core::rollout::Rollout)>, StoreError>;
    /// Writes a rollout's new state with its deployment change, alias move
    /// and audit entries in one transaction, if its revision is still the
    /// one read (and, with `owner`, that replica still holds the lease,
    /// which the write hands back); `false` when it was not.
    async fn save_rollout(
        &self,
        ctx: &TenantCtx,
        write: &tessera_core::rollout::RolloutWrite,
        owner: Option<&str>,
        actor: &AuditActor,
    ) -> Result<bool, StoreError>;
    /// Stores a new alert rule of a tenant (or of the platform; audited).
    async fn create_alert_rule(
        &self,
        owner: KeyOwner<'_>,
        rule: &tessera_core::alert::AlertRule,
        actor: &AuditActor,
    ) -> Result<(), StoreError>;
    /// A tenant's rules, or the platform's (no tenant).
    async fn list_alert_rules(
        &self,
        owner: KeyOwner<'_>,
    ) -> Result<Vec<tessera_core::alert::AlertRule>, StoreError>;
    async fn get_alert_rule(
        &self,
        owner: KeyOwner<'_>,
        id: &str,
    ) -> Result<tessera_core::alert::AlertRule, StoreError>;
    /// Removes a rule and its events (audited).
    async fn delete_alert_rule(
        &self,
        owner: KeyOwner<'_>,
        id: &str,
        actor: &AuditActor,
    ) -> Result<(), StoreError>;
    /// Takes the lease of every rule due at `now` whose lease is free (or
    /// `owner`'s already), tenants' and the platform's.
    async fn claim_alert_rules(
        &self,
        sys: &SystemCtx,
        owner: &str,
        now: Timestamp,
        lease_ms: i64,
    ) -> Result<Vec<tessera_core::alert::AlertRule>, StoreError>;
    /// Writes an evaluated rule and the events it led to, if its revision
    /// is the one read and `owner` holds its lease (handed back); `false`
    /// when not.
    async fn save_alert_rule(
        &self,
        sys: &SystemCtx,
        rule: &tessera_core::alert::AlertRule,
        events: &[tessera_core::alert::AlertEvent],
        owner: &str,
    ) -> Result<bool, StoreError>;
    /// Adds events (deliveries) to a rule's history.
    async fn append_alert_events(
        &self,
        sys: &SystemCtx,
        rule: &tessera_core::alert::AlertRule,
        events: &[tessera_core::alert::AlertEvent],
    ) -> Result<(), StoreError>;
    /// A rule's events, newest first.
    async fn list_alert_events(
        &self,
        owner: KeyOwner<'_>,
        id: &str,
        limit: u32,
    ) -> Result<Vec<tessera_core::alert::AlertEvent>, StoreError>;
    /// Firing instances by tenant (none: platform rules) and severity.
    async fn firing_alerts(
        &self,
        sys: &SystemCtx,
    ) -> Result<Vec<(Option<TenantId>, String, u64)>, StoreError>;
    /// Queues a training job (audited).
    async fn create_training_job(
        &self,
        ctx: &TenantCtx,
        spec: &tessera_core::training::JobSpec,
        actor: &AuditActor,
    ) -> Result<tessera_core::training::Job, StoreError>;
    async fn get_training_job(
        &self,
        ctx: &TenantCtx,
        id: &str,
    ) -> Result<tessera_core::training::Job, StoreError>;
    /// The tenant's jobs, newest first (at most 200).
    async fn list_training_jobs(
        &self,
        ctx: &TenantCtx,
    ) -> Result<Vec<tessera_core::training::Job>, StoreError>;
    /// The job that made version `version` of the tenant's model `model`, if a job did.
    async fn training_job_for_version(
        &self,
        ctx: &TenantCtx,
        model: &str,
        version: i64,
    ) -> Result<Option<tessera_core::training::Job>, StoreError>;
    /// Cancels a queued or running job (audited); a finished one is a conflict.
    async fn cancel_training_job(
        &self,
        ctx: &TenantCtx,
        id: &str,
        actor: &AuditActor,
    ) -> Result<tessera_core::training::Job, StoreError>;
    /// Takes the oldest queued job of any tenant for `owner` (a replica),
    /// marking it running; two replicas never take the same one.
    async fn claim_training_job(
        &self,
        sys: &SystemCtx,
        owner: &str,
    ) -> Result<Option<(TenantId, tessera_core::training::Job)>, StoreError>;
    /// Updates a running job; `false` when it is no longer running
    /// (cancelled meanwhile, or marked failed), so its runner stops.
    async fn update_training_job(
        &self,
        sys: &SystemCtx,
        id: &str,
        update: &JobUpdate<'_>,
    ) -> Result<bool, StoreError>;
    /// Marks failed every running job not updated since `before` (its
    /// replica died); how many.
    async fn fail_stale_training_jobs(
        &self,
        sys: &SystemCtx,
        before: Timestamp,
    ) -> Result<u64, StoreError>;
    /// Sets `model`'s deployment (its spec as JSON); the writer must own the model.
    async fn put_deployment(
        &self,
        writer: KeyOwner<'_>,
        model: &Model,
        spec: &str,
        actor: &AuditActor,
    ) -> Result<(), StoreError>;
    /// `model`'s deployment spec, if it has one.
    async fn get_deployment(
        &self,
        view: ModelView<'_>,
        model: &Model,
    ) -> Result<Option<String>, StoreError>;
    async fn delete_deployment(
        &self,
        writer: KeyOwner<'_>,
        model: &Model,
        actor: &AuditActor,
    ) -> Result<(), StoreError>;
    async fn list_model_versions(
        &self,
        view: ModelView<'_>,
        model: &Model,
    ) -> Result<Vec<ModelVersion>, StoreError>;
    /// Stores a version's validation report and the gate state it implies (audited).
    async fn put_version_report(
        &self,
        writer: KeyOwner<'_>,
        model: &Model,
        version: i64,
        report: &Report,
        actor: &AuditActor,
    ) -> Result<(), StoreError>;
    /// A version's report; `None` when it was never validated.
    async fn get_version_report(
        &self,
        view: ModelView<'_>,
        model: &Model,
        version: i64,
    ) -> Result<Option<Report>, StoreError>;
    /// Lets a version that failed its gate take traffic, with a reason
    /// (audited as `model_version.gate_override`); a version that passed,
    /// or has no report, is a conflict.
    async fn override_gate(
        &self,
        writer: KeyOwner<'_>,
        model: &Model,
        version: i64,
        reason: &str,
        actor: &AuditActor,
    ) -> Result<Report, StoreError>;
    /// Points `alias` of `model` at `version` (created or moved; audited).
    async fn put_alias(
        &self,
        writer: KeyOwner<'_>,
        model: &Model,
        alias: &str,
        version: i64,
        actor: &AuditActor,
    ) -> Result<Alias, StoreError>;
    async fn delete_alias(
        &self,
        writer: KeyOwner<'_>,
        model: &Model,
        alias: &str,
        actor: &AuditActor,
    ) -> Result<(), StoreError>;
    /// A model's aliases, by name.
    async fn list_aliases(
        &self,
        view: ModelView<'_>,
        model: &Model,
    ) -> Result<Vec<Alias>, StoreError>;

    async fn list_audit(
        &self,
        scope: AuditScope<'_>,
        q: AuditQuery,
    ) -> Result<Vec<AuditEntry>, StoreError>;
    /// Entries with `id > after`, oldest first, for verifying the chain.
    async fn audit_page(
        &self,
        sys: &SystemCtx,
        after: i64,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError>;
    /// The chain head: last id and hash.
    async fn audit_head(&self, sys: &SystemCtx) -> Result<Option<(i64, String)>, StoreError>;

    /// Stores usage records in one transaction; a record whose request id is
    /// already stored is skipped. Returns how many were new.
    async fn insert_usage(
        &self,
        sys: &SystemCtx,
        records: &[UsageRecord],
    ) -> Result<u64, StoreError>;
    /// Usage records in `[from, to)` (ms), oldest first, at most `limit`.
    async fn list_usage(
        &self,
        scope: UsageScope<'_>,
        from_ms: i64,
        to_ms: i64,
        limit: u32,
    ) -> Result<Vec<UsageRecord>, StoreError>;
    /// Totals in `[from, to)` (ms) by `group_by`.
    async fn usage_totals(
        &self,
        scope: UsageScope<'_>,
        from_ms: i64,
        to_ms: i64,
        group_by: GroupBy,
    ) -> Result<Vec<UsageGroup>, StoreError>;
    /// A tenant's spend since `from_ms`, in micro-dollars.
    async fn spend_since(
        &self,
        sys: &SystemCtx,
        tenant: &TenantId,
        from_ms: i64,
    ) -> Result<i64, StoreError>;
    async fn put_price(
        &self,
        sys: &SystemCtx,
        price: &Price,
        actor: &AuditActor,
    ) -> Result<(), StoreError>;
    async fn list_prices(&self) -> Result<Vec<Price>, StoreError>;
    async fn delete_price(
        &self,
        sys: &SystemCtx,
        model: &str,
        plan: &str,
        actor: &AuditActor,
    ) -> Result<(), StoreError>;
}

/// Whose usage a reader may see.
#[derive(Debug, Clone, Copy)]
pub enum UsageScope<'a> {
    Tenant(&'a TenantCtx),
    /// Every tenant's, optionally one tenant's.
    System(&'a SystemCtx, Option<&'a TenantId>),
}

/// Walks the whole audit chain in pages and reports the first broken link.
pub async fn verify_audit_chain(
    store: &dyn MetadataStore,
    sys: &SystemCtx,
) -> Result<tessera_core::audit::VerifyReport, StoreError> {
    let mut v = tessera_core::audit::ChainVerifier::default();
    // Read the head first: entries appended during the walk are then beyond it
    // and are not mistaken for a broken tail.
    let head = store.audit_head(sys).await?;
    let head_id = head.as_ref().map_or(0, |h| h.0);
    loop {
        let page = store.audit_page(sys, v.last_id(), 1000).await?;
        if page.is_empty() {
            break;
        }
        for e in page.iter().filter(|e| e.id <= head_id) {
            if let Err(b) = v.feed(e) {
                return Ok(v.failed(b));
            }
        }
        if page.last().is_some_and(|e| e.id >= head_id) {
            break;
        }
    }
    Ok(v.finish(head))
}

/// A feature store definition to write (see [`MetadataStore::put_feature_def`]).
#[derive(Debug, Clone, Copy)]
pub struct FeatureDefWrite<'a> {
    pub kind: Kind,
    pub name: &'a str,
    pub spec: &'a serde_json::Value,
    /// The version it replaces; none to create it.
    pub expected: Option<u32>,
}

/// A running job's new state (see [`MetadataStore::update_training_job`]);
/// a field left `None` keeps what is stored.
#[derive(Debug, Clone, Copy)]
pub struct JobUpdate<'a> {
    pub status: tessera_core::training::JobStatus,
    pub progress: &'a tessera_core::training::Progress,
    pub model: Option<&'a str>,
    pub version: Option<i64>,
    pub metrics: Option<&'a serde_json::Value>,
    pub error: Option<&'a str>,
}
