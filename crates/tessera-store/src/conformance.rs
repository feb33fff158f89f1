//! The conformance suite every [`MetadataStore`] implementation must pass.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test suite: a failed step is a failed test"
)]
//!
//! A backend's test file implements [`Harness`] and invokes
//! [`metadata_conformance!`](crate::metadata_conformance), which expands one
//! `#[tokio::test]` per check below.

use std::sync::Arc;

use async_trait::async_trait;
use tessera_core::apikey::{KeyRecord, NewKey, mint};
use tessera_core::audit::AuditActor;
use tessera_core::auth::{SystemCtx, TenantCtx};
use tessera_core::role::Role;
use tessera_core::tenant::{NewTenant, Plan, PlanPatch, Tenant, TenantPatch};
use tessera_core::time::Timestamp;

use crate::{
    AuditQuery, AuditScope, JobUpdate, KeyOwner, MetadataStore, StoreError, verify_audit_chain,
};

mod tenant_data;
pub use tenant_data::{
    alerts, datasets, feature_definitions, feedback, governance, rollouts, training_jobs,
};

/// A fresh, empty store plus raw SQL access to its database (to tamper with it).
#[async_trait]
pub trait Harness: Send + Sync {
    fn store(&self) -> Arc<dyn MetadataStore>;
    /// Runs `sql` on a separate connection that bypasses the store (and RLS).
    async fn exec_raw(&self, sql: &str);
}

/// The URL of a test service from `var`, or `None` to skip. With
/// `TESSERA_REQUIRE_SERVICES=1` a missing URL fails instead of skipping.
pub fn service_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            assert!(
                std::env::var("TESSERA_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "{var} is not set but TESSERA_REQUIRE_SERVICES=1"
            );
            eprintln!("skipped: {var} is not set");
            None
        }
    }
}

/// Creates a fresh schema `tessera_test_<unix secs>_<random>` for one test and
/// returns its name; schemas of runs older than an hour are dropped on the way.
pub async fn fresh_pg_schema(url: &str) -> String {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let now = Timestamp::now().millis() / 1000;
    let old: Vec<(String,)> = sqlx::query_as(
        "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'tessera_test_%'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for (name,) in old {
        let created = name.split('_').nth(2).and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
        if created + 3600 < now {
            let drop = format!("DROP SCHEMA IF EXISTS {name} CASCADE");
            // Another run may drop it at the same moment; either way it is gone.
            sqlx::raw_sql(sqlx::AssertSqlSafe(drop)).execute(&pool).await.ok();
        }
    }
    let schema = format!("tessera_test_{now}_{}", tessera_core::ids::random_lower(8));
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    schema
}

fn actor() -> AuditActor {
    AuditActor { key_id: Some("key_test".into()), request_id: Some("req-1".into()) }
}

fn sys() -> SystemCtx {
    SystemCtx::bootstrap()
}

async fn tenant(store: &dyn MetadataStore, name: &str) -> (Tenant, TenantCtx) {
    store.ensure_default_plans(&sys()).await.unwrap();
    let t = store
        .create_tenant(
            &sys(),
            &NewTenant { name: name.into(), plan: None, segment: None, ..Default::default() },
            &actor(),
        )
        .await
        .unwrap();
    let ctx = sys().tenant(t.id.clone());
    (t, ctx)
}

fn new_key(ctx: Option<&TenantCtx>, role: Role) -> KeyRecord {
    let req = NewKey { name: "k".into(), role, scopes: None, expires_at: None };
    mint(ctx.map(|c| c.tenant_id().clone()), req, None, Timestamp::now()).record
}

pub async fn plans(store: &dyn MetadataStore) {
    store.ensure_default_plans(&sys()).await.unwrap();
    store.ensure_default_plans(&sys()).await.unwrap();
    let names: Vec<_> = store.list_plans().await.unwrap().into_iter().map(|p| p.name).collect();
    assert_eq!(names, vec!["free", "pro"]);
    let mut p = Plan::defaults().remove(0);
    p.name = "team".into();
    p.models = Some(vec!["all-minilm-l6-v2".into()]);
    store.create_plan(&sys(), &p, &actor()).await.unwrap();
    assert_eq!(store.get_plan("team").await.unwrap(), p);
    assert!(matches!(store.create_plan(&sys(), &p, &actor()).await, Err(StoreError::Conflict(_))));
    let patch: PlanPatch =
        serde_json::from_str(r#"{"rpm": null, "tpm": 7, "events_per_minute": 90}"#).unwrap();
    let updated = store.update_plan(&sys(), "team", patch, &actor()).await.unwrap();
    assert_eq!((updated.rpm, updated.tpm, updated.events_per_minute), (None, Some(7), Some(90)));
    assert_eq!(store.get_plan("team").await.unwrap(), updated);
    assert!(matches!(store.get_plan("nope").await, Err(StoreError::NotFound { .. })));
}

pub async fn tenants(store: &dyn MetadataStore) {
    let (t, ctx) = tenant(store, "acme").await;
    assert_eq!(t.plan, "free");
    assert_eq!(
        (t.prediction_sample_rate, t.store_inputs),
        (1.0, false),
        "records for all, no inputs"
    );
    assert_eq!(store.get_tenant(&ctx).await.unwrap(), t);
    let dup = store
        .create_tenant(
            &sys(),
            &NewTenant { name: "acme".into(), plan: None, segment: None, ..Default::default() },
            &actor(),
        )
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    let bad_plan =
        NewTenant { name: "other".into(), plan: Some("gold".into()), ..Default::default() };
    match store.create_tenant(&sys(), &bad_plan, &actor()).await {
        Err(StoreError::Invalid(e)) => assert_eq!(e.param.as_deref(), Some("plan")),
        other => panic!("expected invalid plan, got {other:?}"),
    }
    let patch = TenantPatch {
        plan: Some("pro".into()),
        segment: Some(Some("retail".into())),
        prediction_sample_rate: Some(0.25),
        store_inputs: Some(true),
        ..Default::default()
    };
    let moved = store.update_tenant(&sys(), &ctx, &patch, &actor()).await.unwrap();
    assert_eq!((moved.plan.as_str(), moved.segment.as_deref()), ("pro", Some("retail")));
    assert_eq!(store.get_tenant(&ctx).await.unwrap(), moved, "settings are stored");
    assert_eq!((moved.prediction_sample_rate, moved.store_inputs), (0.25, true));
    let clear = TenantPatch { segment: Some(None), ..Default::default() };
    assert_eq!(store.update_tenant(&sys(), &ctx, &clear, &actor()).await.unwrap().segment, None);
    let (_, ctx2) = tenant(store, "globex").await;
    let rename = TenantPatch { name: Some("acme".into()), ..Default::default() };
    assert!(matches!(
        store.update_tenant(&sys(), &ctx2, &rename, &actor()).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.list_tenants(&sys()).await.unwrap().len(), 2);
    store.delete_tenant(&sys(), &ctx, &actor()).await.unwrap();
    assert!(matches!(store.get_tenant(&ctx).await, Err(StoreError::NotFound { .. })));
    assert!(matches!(
        store.delete_tenant(&sys(), &ctx, &actor()).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.list_tenants(&sys()).await.unwrap().len(), 1);
}

pub async fn keys(store: &dyn MetadataStore) {
    let (_, a) = tenant(store, "a").await;
    let (_, b) = tenant(store, "b").await;
    let ka = new_key(Some(&a), Role::Developer);
    let kb = new_key(Some(&b), Role::Viewer);
    store.insert_key(KeyOwner::Tenant(&a), &ka, &actor()).await.unwrap();
    store.insert_key(KeyOwner::Tenant(&b), &kb, &actor()).await.unwrap();
    let listed: Vec<_> =
        store.list_keys(KeyOwner::Tenant(&a)).await.unwrap().into_iter().map(|k| k.id).collect();
    assert_eq!(listed, vec![ka.id.clone()]);
    assert_eq!(store.key_for_auth(&ka.id).await.unwrap().as_ref(), Some(&ka));
    // A tenant cannot revoke another tenant's key: it does not exist for it.
    let cross = store.revoke_key(KeyOwner::Tenant(&b), &ka.id, &actor()).await;
    assert!(matches!(cross, Err(StoreError::NotFound { .. })), "{cross:?}");
    assert!(store.key_for_auth(&ka.id).await.unwrap().is_some_and(|k| k.revoked_at.is_none()));
    let revoked = store.revoke_key(KeyOwner::Tenant(&a), &ka.id, &actor()).await.unwrap();
    assert!(revoked.revoked_at.is_some());
    let again = store.revoke_key(KeyOwner::Tenant(&a), &ka.id, &actor()).await.unwrap();
    assert_eq!(again.revoked_at, revoked.revoked_at);
    // Platform keys live apart from tenant keys.
    let kp = new_key(None, Role::PlatformAdmin);
    assert_eq!(store.count_active_platform_keys(&sys()).await.unwrap(), 0);
    store.insert_key(KeyOwner::Platform(&sys()), &kp, &actor()).await.unwrap();
    assert_eq!(store.count_active_platform_keys(&sys()).await.unwrap(), 1);
    let platform: Vec<_> = store
        .list_keys(KeyOwner::Platform(&sys()))
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(platform, vec![kp.id.clone()]);
    assert!(matches!(
        store.revoke_key(KeyOwner::Platform(&sys()), &kb.id, &actor()).await,
        Err(StoreError::NotFound { .. })
    ));
    // Deleting a tenant revokes its keys.
    store.delete_tenant(&sys(), &b, &actor()).await.unwrap();
    assert!(store.key_for_auth(&kb.id).await.unwrap().is_some_and(|k| k.revoked_at.is_some()));
    // Keys cannot be added to a tenant that does not exist.
    let orphan = new_key(Some(&b), Role::Viewer);
    assert!(matches!(
        store.insert_key(KeyOwner::Tenant(&b), &orphan, &actor()).await,
        Err(StoreError::NotFound { .. })
    ));
}

pub async fn audit_records_every_mutation(store: &dyn MetadataStore) {
    let (_, a) = tenant(store, "a").await;
    let (_, b) = tenant(store, "b").await;
    store
        .insert_key(KeyOwner::Tenant(&a), &new_key(Some(&a), Role::Viewer), &actor())
        .await
        .unwrap();
    let all = store
        .list_audit(AuditScope::System(&sys(), None), AuditQuery { since: None, limit: 100 })
        .await
        .unwrap();
    let actions: Vec<_> = all.iter().map(|e| e.action.as_str()).collect();
    // Newest first: key, tenant b, tenant a, then the default plans.
    assert_eq!(&actions[..3], &["key.create", "tenant.create", "tenant.create"]);
    assert!(all.iter().all(|e| e.id > 0 && e.hash.len() == 64));
    assert_eq!(all[0].actor_key_id.as_deref(), Some("key_test"));
    assert_eq!(all[0].request_id.as_deref(), Some("req-1"));
    let mine = store
        .list_audit(AuditScope::Tenant(&a), AuditQuery { since: None, limit: 100 })
        .await
        .unwrap();
    assert_eq!(mine.len(), 2);
    assert!(mine.iter().all(|e| e.tenant_id.as_deref() == Some(a.tenant_id().as_str())));
    let filtered = store
        .list_audit(
            AuditScope::System(&sys(), Some(b.tenant_id())),
            AuditQuery { since: None, limit: 100 },
        )
        .await
        .unwrap();
    assert_eq!(filtered.len(), 1);
    let future = Timestamp::now().plus_millis(60_000);
    let none = store
        .list_audit(AuditScope::Tenant(&a), AuditQuery { since: Some(future), limit: 100 })
        .await
        .unwrap();
    assert!(none.is_empty());
    let one = store
        .list_audit(AuditScope::Tenant(&a), AuditQuery { since: None, limit: 1 })
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    let report = verify_audit_chain(store, &sys()).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.checked, all.len() as u64);
}

pub async fn audit_chain_survives_concurrent_writers(store: Arc<dyn MetadataStore>) {
    store.ensure_default_plans(&sys()).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = store.clone();
        #[expect(clippy::disallowed_methods, reason = "test code awaiting its own tasks")]
        tasks.push(tokio::spawn(async move {
            let new = NewTenant {
                name: format!("t{i}"),
                plan: None,
                segment: None,
                ..Default::default()
            };
            s.create_tenant(&sys(), &new, &actor()).await.map(|_| ())
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let report = verify_audit_chain(&*store, &sys()).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.checked, 2 + 16);
}

pub async fn audit_tampering_is_detected(h: &dyn Harness) {
    let store = h.store();
    for name in ["a", "b", "c"] {
        tenant(&*store, name).await;
    }
    assert!(verify_audit_chain(&*store, &sys()).await.unwrap().ok);
    h.exec_raw("UPDATE audit_log SET target = 'forged' WHERE id = 3").await;
    let r = verify_audit_chain(&*store, &sys()).await.unwrap();
    assert_eq!(r.first_broken.map(|b| b.id), Some(3), "edited row must be reported");
    h.exec_raw("DELETE FROM audit_log WHERE id = 3").await;
    let r = verify_audit_chain(&*store, &sys()).await.unwrap();
    assert_eq!(r.first_broken.map(|b| b.id), Some(3), "deleted row must be reported");
}

pub async fn model_registry(store: &dyn MetadataStore) {
    use tessera_core::model::{ModelOwner, NewModel};

    use crate::{ModelScope, ModelView};
    let (a_t, a) = tenant(store, "a").await;
    let (_, b) = tenant(store, "b").await;
    let nm = |name: &str, runtime: &str| NewModel {
        name: name.into(),
        task: "classification".into(),
        runtime: runtime.into(),
        base_model: None,
        segment: None,
        scope: None,
        config: None,
    };
    let platform = store
        .create_model(ModelScope::Platform(&sys()), &nm("shared", "bert"), None, &actor())
        .await
        .unwrap();
    assert_eq!(platform.owner, ModelOwner::Platform);
    let seg = store
        .create_model(
            ModelScope::Segment(&sys(), "retail"),
            &nm("seg-only", "onnx"),
            None,
            &actor(),
        )
        .await
        .unwrap();
    let mine = store
        .create_model(ModelScope::Tenant(&a), &nm("mine", "onnx"), None, &actor())
        .await
        .unwrap();
    assert_eq!(mine.tenant_id.as_ref(), Some(&a_t.id));
    // A tenant's own model of the same name shadows the platform's.
    let shadow = store
        .create_model(ModelScope::Tenant(&a), &nm("shared", "onnx"), None, &actor())
        .await
        .unwrap();
    let dup = store.create_model(ModelScope::Tenant(&a), &nm("mine", "onnx"), None, &actor()).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    // b may use the same name in its own namespace.
    store.create_model(ModelScope::Tenant(&b), &nm("mine", "onnx"), None, &actor()).await.unwrap();

    let a_view = ModelView::Tenant { ctx: &a, segment: Some("retail") };
    let b_view = ModelView::Tenant { ctx: &b, segment: None };
    let names = |ms: Vec<tessera_core::model::Model>| {
        ms.into_iter().map(|m| (m.name, m.owner)).collect::<Vec<_>>()
    };
    assert_eq!(
        names(store.list_models(a_view).await.unwrap()),
        vec![
            ("mine".into(), ModelOwner::Tenant),
            ("seg-only".into(), ModelOwner::Segment),
            ("shared".into(), ModelOwner::Tenant)
        ]
    );
    assert_eq!(
        names(store.list_models(b_view).await.unwrap()),
        vec![("mine".into(), ModelOwner::Tenant), ("shared".into(), ModelOwner::Platform)]
    );
    assert_eq!(store.resolve_model(a_view, "shared").await.unwrap().id, shadow.id);
    assert_eq!(store.resolve_model(b_view, "shared").await.unwrap().id, platform.id);
    assert_eq!(store.resolve_model(a_view, "seg-only").await.unwrap().id, seg.id);
    assert!(matches!(
        store.resolve_model(b_view, "seg-only").await,
        Err(StoreError::NotFound { .. })
    ));
    assert_ne!(store.resolve_model(b_view, "mine").await.unwrap().id, mine.id);

    // Versions count up per model; tenants version only their own models.
    let sha = "a".repeat(64);
    let v1 = store
        .add_model_version(KeyOwner::Tenant(&a), &mine, &sha, 10, None, &actor())
        .await
        .unwrap();
    // A version that reads features keeps its binding.
    let binding = tessera_core::model_features::FeatureBinding {
        service: "churn".into(),
        features: vec!["stats:orders".into(), "stats:spend".into()],
        entity: vec!["customer_id".into()],
        on_missing: tessera_core::model_features::OnMissing::Default,
        defaults: [("stats:spend".to_owned(), serde_json::json!(1.5))].into(),
    };
    let v2 = store
        .add_model_version(KeyOwner::Tenant(&a), &mine, &sha, 10, Some(&binding), &actor())
        .await
        .unwrap();
    assert_eq!((v1.version, v2.version), (1, 2));
    assert_eq!(v2.features.as_ref(), Some(&binding));
    let denied =
        store.add_model_version(KeyOwner::Tenant(&b), &mine, &sha, 10, None, &actor()).await;
    assert!(matches!(denied, Err(StoreError::NotFound { .. })), "{denied:?}");
    let denied =
        store.add_model_version(KeyOwner::Tenant(&a), &platform, &sha, 10, None, &actor()).await;
    assert!(matches!(denied, Err(StoreError::NotFound { .. })), "{denied:?}");
    let pv = store
        .add_model_version(KeyOwner::Platform(&sys()), &platform, &sha, 3, None, &actor())
        .await
        .unwrap();
    assert_eq!(pv.version, 1);
    let listed = store.list_model_versions(a_view, &mine).await.unwrap();
    assert_eq!(listed.iter().map(|v| v.version).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!((listed[0].features.as_ref(), listed[1].features.as_ref()), (None, Some(&binding)));
    assert_eq!(store.list_model_versions(b_view, &platform).await.unwrap().len(), 1);
    assert_eq!(store.get_model_by_id(&sys(), &mine.id).await.unwrap(), mine);
    let audit = store
        .list_audit(AuditScope::Tenant(&a), AuditQuery { since: None, limit: 100 })
        .await
        .unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == "model_version.create" && e.target == format!("{}@2", mine.id))
    );
    // A model can arrive with its version 1 (remote models do), in one step.
    let remote = store
        .create_model(
            ModelScope::Tenant(&b),
            &nm("arrives-with-v1", "onnx"),
            Some((&"ab".repeat(32), 42)),
            &actor(),
        )
        .await
        .unwrap();
    let rv = store
        .list_model_versions(ModelView::Tenant { ctx: &b, segment: None }, &remote)
        .await
        .unwrap();
    assert_eq!(rv.len(), 1);
    assert_eq!((rv[0].version, rv[0].size), (1, 42));
}

pub async fn missing_tenant_is_not_found(store: &dyn MetadataStore) {
    let ghost = sys().tenant(tessera_core::ids::TenantId::generate());
    assert!(matches!(store.get_tenant(&ghost).await, Err(StoreError::NotFound { .. })));
    assert!(matches!(
        store.list_keys(KeyOwner::Tenant(&ghost)).await,
        Err(StoreError::NotFound { .. })
    ));
}

/// Usage records are stored once per request id, read per tenant only,
/// totalled by model, day and key; prices are kept and audited.
pub async fn usage_metering(store: &dyn MetadataStore) {
    use crate::UsageScope;
    use tessera_core::usage::{GroupBy, Price, UsageRecord};
    let (a_t, a) = tenant(store, "a").await;
    let (b_t, b) = tenant(store, "b").await;
    let rec = |id: &str, t: &Tenant, model: &str, day: i64, cost: i64| UsageRecord {
        id: format!("u-{id}"),
        request_id: id.into(),
        ts_ms: day * 86_400_000 + 1000,
        tenant_id: t.id.clone(),
        key_id: "key_x".into(),
        model: model.into(),
        version: format!("{model}@1"),
        tier: "tenant".into(),
        route: "/v1/embeddings".into(),
        prompt_tokens: 10,
        completion_tokens: 5,
        compute_us: 100,
        cache: if id.ends_with("hit") { "hit".into() } else { "miss".into() },
        status: if id.ends_with("err") { 502 } else { 200 },
        cost_micros: cost,
        prediction_id: format!("prd_{id}"),
    };
    let day = 20_000;
    let batch = vec![
        rec("r1", &a_t, "m1", day, 1_000),
        rec("r2-hit", &a_t, "m1", day, 0),
        rec("r3", &a_t, "m2", day + 1, 2_500),
        rec("r4-err", &b_t, "m1", day, 7),
    ];
    assert_eq!(store.insert_usage(&sys(), &batch).await.unwrap(), 4);
    // Written twice (a retried flush): stored once.
    assert_eq!(store.insert_usage(&sys(), &batch[..2]).await.unwrap(), 0);
    let all = (0, i64::MAX);
    let mine = store.list_usage(UsageScope::Tenant(&a), all.0, all.1, 100).await.unwrap();
    assert_eq!(
        mine.iter().map(|r| r.request_id.as_str()).collect::<Vec<_>>(),
        ["r1", "r2-hit", "r3"]
    );
    assert_eq!(mine[0], batch[0]);
    let by_model =
        store.usage_totals(UsageScope::Tenant(&a), all.0, all.1, GroupBy::Model).await.unwrap();
    assert_eq!(by_model.len(), 2);
    assert_eq!(
        (by_model[0].group.as_str(), by_model[0].requests, by_model[0].cache_hits),
        ("m1", 2, 1)
    );
    assert_eq!((by_model[0].prompt_tokens, by_model[0].completion_tokens), (20, 10));
    assert!((by_model[0].cost_usd - 0.001).abs() < 1e-12);
    let by_day =
        store.usage_totals(UsageScope::Tenant(&a), all.0, all.1, GroupBy::Day).await.unwrap();
    assert_eq!(
        by_day.iter().map(|g| g.group.as_str()).collect::<Vec<_>>(),
        ["2024-10-04", "2024-10-05"]
    );
    let b_only =
        store.usage_totals(UsageScope::Tenant(&b), all.0, all.1, GroupBy::Key).await.unwrap();
    assert_eq!((b_only.len(), b_only[0].errors), (1, 1));
    let everyone = store
        .usage_totals(UsageScope::System(&sys(), None), all.0, all.1, GroupBy::Tenant)
        .await
        .unwrap();
    assert_eq!(everyone.len(), 2);
    let window = store
        .list_usage(UsageScope::System(&sys(), Some(&a_t.id)), (day + 1) * 86_400_000, all.1, 100)
        .await
        .unwrap();
    assert_eq!(window.len(), 1);
    assert_eq!(store.spend_since(&sys(), &a_t.id, 0).await.unwrap(), 3_500);
    assert_eq!(store.spend_since(&sys(), &a_t.id, (day + 1) * 86_400_000).await.unwrap(), 2_500);

    let price = Price {
        model: "m1".into(),
        plan: "*".into(),
        prompt_per_1k_usd: 0.1,
        completion_per_1k_usd: 0.2,
        per_request_usd: 0.0,
    };
    store.put_price(&sys(), &price, &actor()).await.unwrap();
    store
        .put_price(&sys(), &Price { prompt_per_1k_usd: 0.3, ..price.clone() }, &actor())
        .await
        .unwrap();
    let prices = store.list_prices().await.unwrap();
    assert_eq!(prices.len(), 1);
    assert!((prices[0].prompt_per_1k_usd - 0.3).abs() < 1e-12);
    store.delete_price(&sys(), "m1", "*", &actor()).await.unwrap();
    assert!(store.list_prices().await.unwrap().is_empty());
    assert!(matches!(
        store.delete_price(&sys(), "m1", "*", &actor()).await,
        Err(StoreError::NotFound { .. })
    ));
}

/// Event types: a tenant's schemas, put, read and deleted, its own only.
pub async fn event_types(store: &dyn MetadataStore) {
    let (_, a) = tenant(store, "acme").await;
    let (_, b) = tenant(store, "globex").await;
    let schema = serde_json::json!({"type": "object", "required": ["total"]});
    let put = store.put_event_type(&a, "order", &schema, &actor()).await.unwrap();
    assert_eq!((put.name.as_str(), &put.schema), ("order", &schema));
    assert_eq!(store.get_event_type(&a, "order").await.unwrap(), put);
    // Replacing keeps one row; another tenant's same name is its own.
    let v2 = serde_json::json!({"type": "object"});
    store.put_event_type(&a, "order", &v2, &actor()).await.unwrap();
    store.put_event_type(&b, "order", &schema, &actor()).await.unwrap();
    let listed = store.list_event_types(&a).await.unwrap();
    assert_eq!(listed.iter().map(|t| (&*t.name, &t.schema)).collect::<Vec<_>>(), [("order", &v2)]);
    assert_eq!(store.get_event_type(&b, "order").await.unwrap().schema, schema);
    store.delete_event_type(&a, "order", &actor()).await.unwrap();
    assert!(matches!(store.get_event_type(&a, "order").await, Err(StoreError::NotFound { .. })));
    assert!(matches!(
        store.delete_event_type(&a, "order", &actor()).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.list_event_types(&b).await.unwrap().len(), 1, "b's type is untouched");
    let audit = store
        .list_audit(AuditScope::Tenant(&a), AuditQuery { since: None, limit: 100 })
        .await
        .unwrap();
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    assert!(
        actions.contains(&"event_type.put") && actions.contains(&"event_type.delete"),
        "{actions:?}"
    );
}

/// Deployments: the owner puts, replaces, reads and deletes one, audited;
/// nobody else can write it; a missing one reads as none and deletes as
/// not found.
pub async fn deployments(store: &dyn MetadataStore) {
    use tessera_core::model::NewModel;

    use crate::{ModelScope, ModelView};
    let (_, a) = tenant(store, "a").await;
    let (_, b) = tenant(store, "b").await;
    let new = NewModel {
        name: "price".into(),
        task: "regression".into(),
        runtime: "linear".into(),
        base_model: None,
        segment: None,
        scope: None,
        config: None,
    };
    let model = store.create_model(ModelScope::Tenant(&a), &new, None, &actor()).await.unwrap();
    let view = ModelView::Tenant { ctx: &a, segment: None };
    assert_eq!(store.get_deployment(view, &model).await.unwrap(), None);
    let v1 = r#"{"targets":[{"version":1,"weight":100}]}"#;
    let v2 = r#"{"targets":[{"version":1,"weight":50},{"version":2,"weight":50}]}"#;
    store.put_deployment(KeyOwner::Tenant(&a), &model, v1, &actor()).await.unwrap();
    assert_eq!(store.get_deployment(view, &model).await.unwrap().as_deref(), Some(v1));
    store.put_deployment(KeyOwner::Tenant(&a), &model, v2, &actor()).await.unwrap();
    assert_eq!(store.get_deployment(view, &model).await.unwrap().as_deref(), Some(v2));
    // Another tenant, or the platform, cannot write a tenant's deployment.
    for writer in [KeyOwner::Tenant(&b), KeyOwner::Platform(&sys())] {
        let r = store.put_deployment(writer, &model, v1, &actor()).await;
        assert!(matches!(r, Err(StoreError::NotFound { .. })), "{r:?}");
        let r = store.delete_deployment(writer, &model, &actor()).await;
        assert!(matches!(r, Err(StoreError::NotFound { .. })), "{r:?}");
    }
    assert_eq!(store.get_deployment(view, &model).await.unwrap().as_deref(), Some(v2));
    store.delete_deployment(KeyOwner::Tenant(&a), &model, &actor()).await.unwrap();
    assert_eq!(store.get_deployment(view, &model).await.unwrap(), None);
    let again = store.delete_deployment(KeyOwner::Tenant(&a), &model, &actor()).await;
    assert!(matches!(again, Err(StoreError::NotFound { .. })), "{again:?}");
    let audit = store
        .list_audit(AuditScope::Tenant(&a), AuditQuery { since: None, limit: 100 })
        .await
        .unwrap();
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions.iter().filter(|a| **a == "deployment.put").count(), 2, "{actions:?}");
    assert_eq!(actions.iter().filter(|a| **a == "deployment.delete").count(), 1, "{actions:?}");
}

/// Expands the suite into `#[tokio::test]`s; `$make` is an async expression
/// giving `Option<impl Harness>` (`None` skips).
#[macro_export]
macro_rules! metadata_conformance {
    ($make:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn conformance_governance() {
            if let Some(h) = $make {
                $crate::conformance::governance(&*$crate::conformance::Harness::store(&h)).await
            }
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn conformance_alerts() {
            if let Some(h) = $make {
                $crate::conformance::alerts(&*$crate::conformance::Harness::store(&h)).await
            }
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn conformance_rollouts() {
            if let Some(h) = $make {
                $crate::conformance::rollouts(&*$crate::conformance::Harness::store(&h)).await
            }
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn conformance_feedback() {
            if let Some(h) = $make {
                $crate::conformance::feedback(&*$crate::conformance::Harness::store(&h)).await
            }
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn conformance_training_jobs() {
            if let Some(h) = $make {
                $crate::conformance::training_jobs(&*$crate::conformance::Harness::store(&h)).await
            }
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn conformance_datasets() {
            if let Some(h) = $make {
                $crate::conformance::datasets(&*$crate::conformance::Harness::store(&h)).await
            }
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn conformance_feature_definitions() {
            if let Some(h) = $make {
                $crate::conformance::feature_definitions(&*$crate::conformance::Harness::store(&h))
                    .await
            }
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn conformance_usage_metering() {
            if let Some(h) = $make {
                $crate::conformance::usage_metering(&*$crate::conformance::Harness::store(&h)).await
            }
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn conformance_plans() {
            if let Some(h) = $make {
                $crate::conformance::plans(&*$crate::conformance::Harness::store(&h)).await
            }
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn conformance_tenants() {
            if let Some(h) = $make {
                $crate::conformance::tenants(&*$crate::conformance::Harness::store(&h)).await
            }
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn conformance_event_types() {
            if let Some(h) = $make {
                $crate::conformance::event_types(&*$crate::conformance::Harness::store(&h)).await
            }
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn conformance_keys() {
            if let Some(h) = $make {
                $crate::conformance::keys(&*$crate::conformance::Harness::store(&h)).await
            }
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn conformance_audit_records_every_mutation() {
            if let Some(h) = $make {
                $crate::conformance::audit_records_every_mutation(
                    &*$crate::conformance::Harness::store(&h),
                )
                .await
            }
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn conformance_audit_chain_survives_concurrent_writers() {
            if let Some(h) = $make {
                $crate::conformance::audit_chain_survives_concurrent_writers(
                    $crate::conformance::Harness::store(&h),
                )
                .await
            }
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn conformance_audit_tampering_is_detected() {
            if let Some(h) = $make {
                $crate::conformance::audit_tampering_is_detected(&h).await
            }
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn conformance_model_registry() {
            if let Some(h) = $make {
                $crate::conformance::model_registry(&*$crate::conformance::Harness::store(&h)).await
            }
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn conformance_deployments() {
            if let Some(h) = $make {
                $crate::conformance::deployments(&*$crate::conformance::Harness::store(&h)).await
            }
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn conformance_missing_tenant_is_not_found() {
            if let Some(h) = $make {
                $crate::conformance::missing_tenant_is_not_found(
                    &*$crate::conformance::Harness::store(&h),
                )
                .await
            }
        }
    };
}
