//! The suite's cases for what a tenant defines and keeps beside its models:
//! feature definitions, datasets and training jobs.

use super::*;

/// Feature definitions: created at version 1, changed only from the version
/// read (a stale writer conflicts), an unchanged spec keeps its version,
/// listed per kind, a tenant's own, deleted with an audit entry.
pub async fn feature_definitions(store: &dyn MetadataStore) {
    use tessera_core::features::Kind;

    use crate::FeatureDefWrite;
    let (_, a) = tenant(store, "acme").await;
    let (_, b) = tenant(store, "globex").await;
    let spec = serde_json::json!({"join_keys": ["customer_id"]});
    let write =
        |expected, spec| FeatureDefWrite { kind: Kind::Entity, name: "customer", spec, expected };
    let d = store.put_feature_def(&a, &write(None, &spec), &actor()).await.unwrap();
    assert_eq!((d.version, &d.spec, d.kind), (1, &spec, Kind::Entity));
    let again = store.put_feature_def(&a, &write(None, &spec), &actor()).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "creating twice: {again:?}");
    let same = store.put_feature_def(&a, &write(Some(1), &spec), &actor()).await.unwrap();
    assert_eq!(same.version, 1, "an unchanged spec is no new version");
    let v2 = serde_json::json!({"join_keys": ["customer_id"], "description": "a buyer"});
    let d2 = store.put_feature_def(&a, &write(Some(1), &v2), &actor()).await.unwrap();
    assert_eq!((d2.version, d2.created_at), (2, d.created_at));
    let stale = store.put_feature_def(&a, &write(Some(1), &spec), &actor()).await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "a stale writer: {stale:?}");
    let view = serde_json::json!({"entities": ["customer"]});
    store
        .put_feature_def(
            &a,
            &FeatureDefWrite { kind: Kind::View, name: "customer", spec: &view, expected: None },
            &actor(),
        )
        .await
        .unwrap();
    store.put_feature_def(&b, &write(None, &spec), &actor()).await.unwrap();
    let entities = store.list_feature_defs(&a, Some(Kind::Entity)).await.unwrap();
    assert_eq!(
        entities.iter().map(|d| (d.name.as_str(), d.version)).collect::<Vec<_>>(),
        [("customer", 2)]
    );
    assert_eq!(store.list_feature_defs(&a, None).await.unwrap().len(), 2);
    store.delete_feature_def(&a, Kind::Entity, "customer", &actor()).await.unwrap();
    assert!(matches!(
        store.delete_feature_def(&a, Kind::Entity, "customer", &actor()).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.list_feature_defs(&a, None).await.unwrap().len(), 1, "the view stays");
    assert_eq!(store.list_feature_defs(&b, None).await.unwrap()[0].version, 1, "b's is its own");
    let audit = store
        .list_audit(AuditScope::Tenant(&a), AuditQuery { since: None, limit: 100 })
        .await
        .unwrap();
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    for a in [
        "feature_entity.create",
        "feature_entity.update",
        "feature_view.create",
        "feature_entity.delete",
    ] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
}

/// Datasets: versions count up per name, each with its own id; a tenant
/// lists and reads only its own; every upload is audited.
pub async fn datasets(store: &dyn MetadataStore) {
    use tessera_core::dataset::NewDataset;
    let (_, a) = tenant(store, "ds-a").await;
    let (_, b) = tenant(store, "ds-b").await;
    let schema = serde_json::json!([{"name": "text", "dtype": "string", "nulls": 0}]);
    let preview = vec![serde_json::json!({"text": "hello"}).as_object().unwrap().clone()];
    let new = |name| NewDataset {
        name,
        format: "csv",
        sha256: "ab12",
        size: 10,
        rows: 1,
        schema: &schema,
        preview: &preview,
    };
    let v1 = store.create_dataset(&a, &new("reviews"), &actor()).await.unwrap();
    let v2 = store.create_dataset(&a, &new("reviews"), &actor()).await.unwrap();
    let other = store.create_dataset(&a, &new("other"), &actor()).await.unwrap();
    let theirs = store.create_dataset(&b, &new("reviews"), &actor()).await.unwrap();
    assert_eq!((v1.version, v2.version, other.version, theirs.version), (1, 2, 1, 1));
    assert!(v1.id.starts_with("ds_") && v1.id != v2.id);
    let got = store.get_dataset(&a, &v2.id).await.unwrap();
    assert_eq!(got, v2);
    assert_eq!((got.preview.clone(), got.schema.clone()), (preview.clone(), schema.clone()));
    assert!(matches!(store.get_dataset(&a, &theirs.id).await, Err(StoreError::NotFound { .. })));
    let listed: Vec<(String, u32)> =
        store.list_datasets(&a).await.unwrap().into_iter().map(|d| (d.name, d.version)).collect();
    assert_eq!(
        listed,
        [("other".to_owned(), 1), ("reviews".to_owned(), 1), ("reviews".to_owned(), 2)]
    );
    let audit = store
        .list_audit(AuditScope::Tenant(&a), AuditQuery { since: None, limit: 100 })
        .await
        .unwrap();
    assert_eq!(audit.iter().filter(|e| e.action == "dataset.create").count(), 3);
    // A schema edit changes the types a job reads, on that version only.
    let edited =
        serde_json::json!([{"name": "text", "dtype": "string", "nulls": 0, "edited": true}]);
    let e = store.update_dataset_schema(&a, &v1.id, &edited, &actor()).await.unwrap();
    assert_eq!((e.schema.clone(), e.sha256.clone()), (edited.clone(), v1.sha256.clone()));
    assert_eq!(store.get_dataset(&a, &v2.id).await.unwrap().schema, schema);
    let denied = store.update_dataset_schema(&b, &v1.id, &edited, &actor()).await;
    assert!(matches!(denied, Err(StoreError::NotFound { .. })), "{denied:?}");
}

/// Training jobs: queued, claimed once, updated while running, cancelled
/// (its runner then sees it is no longer running), marked failed when its
/// replica went quiet; a tenant sees only its own.
pub async fn training_jobs(store: &dyn MetadataStore) {
    use tessera_core::training::{JobSpec, JobStatus, Progress};
    let (_, a) = tenant(store, "jobs-a").await;
    let (_, b) = tenant(store, "jobs-b").await;
    // a runs up to four jobs at once (pro); b one (free).
    let pro = tessera_core::tenant::TenantPatch { plan: Some("pro".into()), ..Default::default() };
    store.update_tenant(&sys(), &a, &pro, &actor()).await.unwrap();
    let spec: JobSpec = serde_json::from_value(serde_json::json!({
        "dataset": "ds_x", "task": "classification", "label": "y", "text": "t", "model": "m"}))
    .unwrap();
    let j1 = store.create_training_job(&a, &spec, &actor()).await.unwrap();
    let j2 = store.create_training_job(&a, &spec, &actor()).await.unwrap();
    assert_eq!((j1.status, j1.spec.clone()), (JobStatus::Queued, spec.clone()));
    assert!(matches!(store.get_training_job(&b, &j1.id).await, Err(StoreError::NotFound { .. })));
    assert!(store.list_training_jobs(&b).await.unwrap().is_empty());
    let (t, claimed) = store.claim_training_job(&sys(), "replica-1").await.unwrap().unwrap();
    assert_eq!((&t, claimed.status), (a.tenant_id(), JobStatus::Running));
    let (_, second) = store.claim_training_job(&sys(), "replica-2").await.unwrap().unwrap();
    // Oldest first (the two may share a millisecond): each claimed once.
    let mut ids = [claimed.id.clone(), second.id.clone()];
    ids.sort();
    let mut want = [j1.id.clone(), j2.id.clone()];
    want.sort();
    assert_eq!(ids, want, "a claimed job is not claimed again");
    let (j1, j2) = (claimed, second);
    assert!(store.claim_training_job(&sys(), "replica-3").await.unwrap().is_none());
    let progress =
        Progress { phase: "training".into(), fraction: 0.5, epoch: Some(3), ..Progress::default() };
    let update = JobUpdate {
        status: JobStatus::Running,
        progress: &progress,
        model: None,
        version: None,
        metrics: None,
        error: None,
    };
    assert!(store.update_training_job(&sys(), &j1.id, &update).await.unwrap());
    let done = serde_json::json!({"accuracy": 0.9});
    let finish = JobUpdate {
        status: JobStatus::Succeeded,
        model: Some("m"),
        version: Some(2),
        metrics: Some(&done),
        ..update
    };
    assert!(store.update_training_job(&sys(), &j1.id, &finish).await.unwrap());
    let got = store.get_training_job(&a, &j1.id).await.unwrap();
    assert_eq!(
        (got.status, got.version, got.metrics, got.progress.epoch),
        (JobStatus::Succeeded, Some(2), Some(done), Some(3))
    );
    assert!(
        !store.update_training_job(&sys(), &j1.id, &update).await.unwrap(),
        "a finished job takes no update"
    );
    let made = store.training_job_for_version(&a, "m", 2).await.unwrap().unwrap();
    assert_eq!(made.id, j1.id);
    assert!(store.training_job_for_version(&a, "m", 1).await.unwrap().is_none());
    assert!(store.training_job_for_version(&b, "m", 2).await.unwrap().is_none());
    assert!(matches!(
        store.cancel_training_job(&a, &j1.id, &actor()).await,
        Err(StoreError::Conflict(_))
    ));
    let cancelled = store.cancel_training_job(&a, &j2.id, &actor()).await.unwrap();
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    assert!(!store.update_training_job(&sys(), &j2.id, &update).await.unwrap(), "its runner stops");
    let j3 = store.create_training_job(&a, &spec, &actor()).await.unwrap();
    store.claim_training_job(&sys(), "replica-1").await.unwrap().unwrap();
    let later = Timestamp::from_millis(Timestamp::now().millis() + 60_000);
    assert_eq!(store.fail_stale_training_jobs(&sys(), later).await.unwrap(), 1);
    let failed = store.get_training_job(&a, &j3.id).await.unwrap();
    assert_eq!(failed.status, JobStatus::Failed);
    assert!(failed.error.unwrap().contains("start the job again"));
    assert_eq!(store.list_training_jobs(&a).await.unwrap().len(), 3);
    // The plan's bound: b's second job waits until its first is done.
    let b1 = store.create_training_job(&b, &spec, &actor()).await.unwrap();
    // Jobs queue by creation time (ms), then id: two made in one millisecond
    // would be ordered by their random ids.
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    let b2 = store.create_training_job(&b, &spec, &actor()).await.unwrap();
    let (_, first) = store.claim_training_job(&sys(), "replica-1").await.unwrap().unwrap();
    assert_eq!(first.id, b1.id);
    assert!(
        store.claim_training_job(&sys(), "replica-2").await.unwrap().is_none(),
        "b is at its bound"
    );
    let end = JobUpdate {
        status: JobStatus::Succeeded,
        progress: &progress,
        model: None,
        version: None,
        metrics: None,
        error: None,
    };
    assert!(store.update_training_job(&sys(), &b1.id, &end).await.unwrap());
    let (_, next) = store.claim_training_job(&sys(), "replica-2").await.unwrap().unwrap();
    assert_eq!(next.id, b2.id);
}

/// Governance: a report stored with a version sets its gate (listed with
/// the versions), an override needs a failed report and keeps its reason,
/// aliases are created, moved, listed and deleted, all audited, and
/// another tenant reaches none of it.
pub async fn governance(store: &dyn MetadataStore) {
    use crate::{ModelScope, ModelView};
    use tessera_core::governance::{Check, Comparison, Gate, GateThresholds, Report};
    use tessera_core::model::NewModel;
    let (_, a) = tenant(store, "gov-a").await;
    let (_, b) = tenant(store, "gov-b").await;
    let new = NewModel {
        name: "gated".into(),
        task: "classification".into(),
        runtime: "linear".into(),
        base_model: None,
        segment: None,
        scope: None,
        config: None,
    };
    let model =
        store.create_model(ModelScope::Tenant(&a), &new, Some(("ab", 2)), &actor()).await.unwrap();
    store.add_model_version(KeyOwner::Tenant(&a), &model, "cd", 2, None, &actor()).await.unwrap();
    let view = ModelView::Tenant { ctx: &a, segment: None };
    let t = GateThresholds::default();
    let report = |value: f64| {
        Report::new(
            vec![Check::new("accuracy", Some(value), t.accuracy, Comparison::AtLeast)],
            serde_json::json!({"holdout": {"accuracy": value}}),
            t.clone(),
            None,
        )
    };
    let failed = report(0.5);
    assert_eq!(store.get_version_report(view, &model, 1).await.unwrap(), None);
    store
        .put_version_report(KeyOwner::Tenant(&a), &model, 1, &report(0.9), &actor())
        .await
        .unwrap();
    store.put_version_report(KeyOwner::Tenant(&a), &model, 2, &failed, &actor()).await.unwrap();
    let gates: Vec<Option<Gate>> =
        store.list_model_versions(view, &model).await.unwrap().iter().map(|v| v.gate).collect();
    assert_eq!(gates, vec![Some(Gate::Passed), Some(Gate::Failed)]);
    assert_eq!(store.get_version_report(view, &model, 2).await.unwrap(), Some(failed));
    let missing =
        store.put_version_report(KeyOwner::Tenant(&a), &model, 9, &report(0.9), &actor()).await;
    assert!(matches!(missing, Err(StoreError::NotFound { .. })), "{missing:?}");
    let theirs =
        store.put_version_report(KeyOwner::Tenant(&b), &model, 1, &report(0.1), &actor()).await;
    assert!(matches!(theirs, Err(StoreError::NotFound { .. })), "{theirs:?}");
    // Overrides: only of a failed report.
    let passed = store.override_gate(KeyOwner::Tenant(&a), &model, 1, "why", &actor()).await;
    assert!(matches!(passed, Err(StoreError::Conflict(_))), "{passed:?}");
    let o =
        store.override_gate(KeyOwner::Tenant(&a), &model, 2, "reviewed", &actor()).await.unwrap();
    assert_eq!(
        (o.gate(), o.r#override.as_ref().map(|o| o.reason.as_str())),
        (Gate::Overridden, Some("reviewed"))
    );
    assert_eq!(
        store.list_model_versions(view, &model).await.unwrap()[1].gate,
        Some(Gate::Overridden)
    );
    // Aliases.
    let a1 = store.put_alias(KeyOwner::Tenant(&a), &model, "champion", 1, &actor()).await.unwrap();
    assert_eq!((a1.alias.as_str(), a1.version), ("champion", 1));
    store.put_alias(KeyOwner::Tenant(&a), &model, "champion", 2, &actor()).await.unwrap();
    store.put_alias(KeyOwner::Tenant(&a), &model, "challenger", 1, &actor()).await.unwrap();
    let listed: Vec<(String, i64)> = store
        .list_aliases(view, &model)
        .await
        .unwrap()
        .into_iter()
        .map(|x| (x.alias, x.version))
        .collect();
    assert_eq!(listed, vec![("challenger".into(), 1), ("champion".into(), 2)]);
    let nowhere = store.put_alias(KeyOwner::Tenant(&a), &model, "next", 7, &actor()).await;
    assert!(matches!(nowhere, Err(StoreError::NotFound { .. })), "{nowhere:?}");
    let theirs = store.put_alias(KeyOwner::Tenant(&b), &model, "mine", 1, &actor()).await;
    assert!(matches!(theirs, Err(StoreError::NotFound { .. })), "{theirs:?}");
    let theirs = store.delete_alias(KeyOwner::Tenant(&b), &model, "champion", &actor()).await;
    assert!(matches!(theirs, Err(StoreError::NotFound { .. })), "{theirs:?}");
    store.delete_alias(KeyOwner::Tenant(&a), &model, "challenger", &actor()).await.unwrap();
    let gone = store.delete_alias(KeyOwner::Tenant(&a), &model, "challenger", &actor()).await;
    assert!(matches!(gone, Err(StoreError::NotFound { .. })), "{gone:?}");
    assert_eq!(store.list_aliases(view, &model).await.unwrap().len(), 1);
    let audit = store
        .list_audit(AuditScope::Tenant(&a), AuditQuery { since: None, limit: 100 })
        .await
        .unwrap();
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    for want in [
        "model_version.report",
        "model_version.gate_override",
        "model_alias.put",
        "model_alias.delete",
    ] {
        assert!(actions.contains(&want), "{want} not audited: {actions:?}");
    }
}

/// Feedback: one row per prediction (a later truth replaces the earlier),
/// grouped per version for quality, listed for datasets, the tenant's own.
pub async fn feedback(store: &dyn MetadataStore) {
    use tessera_core::feedback::{JoinedFeedback, Predicted, Truth, quality};
    let (_, a) = tenant(store, "fb-a").await;
    let (_, b) = tenant(store, "fb-b").await;
    let at = |ms: i64| Timestamp::from_millis(1_700_000_000_000 + ms);
    let row = |id: &str, version: &str, predicted: Option<Predicted>, truth: Truth, ms: i64| {
        JoinedFeedback {
            prediction_id: id.into(),
            model: "m".into(),
            version: version.into(),
            predicted,
            truth,
            predicted_at: at(ms - 10),
            received_at: at(ms),
            input: Some(format!("text of {id}")),
            entity: None,
        }
    };
    let label = |l: &str| Truth::Label(l.into());
    let said = |l: &str| Some(Predicted::Label(l.into()));
    let rows = [
        row("p1", "1", said("pos"), label("pos"), 100),
        row("p2", "1", said("pos"), label("neg"), 200),
        row("p3", "2", said("neg"), label("neg"), 300),
        row("p4", "2", None, label("neg"), 400),
    ];
    assert_eq!(store.put_feedback(&a, &rows).await.unwrap(), [true; 4]);
    // p2 corrected: now right.
    let fix = [row("p2", "1", said("pos"), label("pos"), 500)];
    assert_eq!(store.put_feedback(&a, &fix).await.unwrap(), [false]);
    let values = [
        JoinedFeedback {
            entity: serde_json::json!({"customer_id": "c1"}).as_object().cloned(),
            input: None,
            ..row("v1", "3", Some(Predicted::Value(2.0)), Truth::Value(3.5), 600)
        },
        row("v2", "3", None, Truth::Value(1.0), 700),
        row("s1", "3", None, Truth::Score(0.25), 800),
    ];
    store.put_feedback(&a, &values).await.unwrap();

    let groups = store.feedback_quality(&a, "m", None, at(0)).await.unwrap();
    let q = quality(&groups);
    assert_eq!(q.iter().map(|v| v.version.as_str()).collect::<Vec<_>>(), ["1", "2", "3"]);
    let v1 = q[0].classification.as_ref().unwrap();
    assert_eq!((q[0].samples, v1.samples, v1.accuracy), (2, 2, 1.0));
    let v2 = q[1].classification.as_ref().unwrap();
    assert_eq!((q[1].samples, v2.samples), (2, 1), "a label without a prediction is not judged");
    let v3 = &q[2];
    assert_eq!(v3.samples, 3);
    let r = v3.regression.as_ref().unwrap();
    assert_eq!((r.samples, r.mae, r.rmse), (1, 1.5, 1.5));
    assert_eq!(v3.score.as_ref().map(|s| (s.samples, s.mean)), Some((1, 0.25)));
    // The window is by when feedback was given; a version alone.
    let late = store.feedback_quality(&a, "m", None, at(450)).await.unwrap();
    let late = quality(&late);
    assert_eq!(
        late.iter().map(|v| (v.version.as_str(), v.samples)).collect::<Vec<_>>(),
        [("1", 1), ("3", 3)]
    );
    let only = store.feedback_quality(&a, "m", Some("2"), at(0)).await.unwrap();
    assert!(only.iter().all(|g| g.version == "2") && !only.is_empty());

    let listed = store.list_feedback(&a, "m", None, at(0), 100).await.unwrap();
    let ids: Vec<&str> = listed.iter().map(|f| f.prediction_id.as_str()).collect();
    assert_eq!(ids, ["p1", "p2", "p3", "p4", "v1", "v2", "s1"], "oldest prediction first");
    assert_eq!(listed[1].received_at, at(500));
    assert_eq!(listed[1].truth, label("pos"));
    assert_eq!(listed[4].entity.as_ref().unwrap()["customer_id"], "c1");
    assert_eq!(listed[4].predicted, Some(Predicted::Value(2.0)));
    assert_eq!(listed[6].truth, Truth::Score(0.25));
    assert_eq!(store.list_feedback(&a, "m", Some("3"), at(0), 2).await.unwrap().len(), 2);

    // Another tenant sees none of it.
    assert!(store.feedback_quality(&b, "m", None, at(0)).await.unwrap().is_empty());
    assert!(store.list_feedback(&b, "m", None, at(0), 100).await.unwrap().is_empty());
    // The same prediction id is another tenant's own row.
    assert_eq!(store.put_feedback(&b, &rows[..1]).await.unwrap(), [true]);
}

/// Rollouts: started with their first step's deployment in one write, one
/// active per model, leases taken by one owner at a time, writes refused
/// on a stale revision, promotion moving `champion`, the tenant's own.
pub async fn rollouts(store: &dyn MetadataStore) {
    use crate::{ModelScope, ModelView};
    use tessera_core::model::{Deployment, NewModel, VersionSel};
    use tessera_core::rollout::{
        Checks, DeploymentChange, Rollout, RolloutState, Step, check, new_rollout_id,
    };
    let (_, a) = tenant(store, "rol-a").await;
    let (_, b) = tenant(store, "rol-b").await;
    let new = NewModel {
        name: "ranked".into(),
        task: "classification".into(),
        runtime: "linear".into(),
        base_model: None,
        segment: None,
        scope: None,
        config: None,
    };
    let model =
        store.create_model(ModelScope::Tenant(&a), &new, Some(("ab", 2)), &actor()).await.unwrap();
    store.add_model_version(KeyOwner::Tenant(&a), &model, "cd", 2, None, &actor()).await.unwrap();
    let view = ModelView::Tenant { ctx: &a, segment: None };
    let baseline = r#"{"targets":[{"version":1,"weight":100}],"timeout_ms":900}"#;
    store.put_deployment(KeyOwner::Tenant(&a), &model, baseline, &actor()).await.unwrap();
    let t0 = Timestamp::from_millis(1_700_000_000_000);
    let rollout = Rollout {
        id: new_rollout_id(),
        model: model.name.clone(),
        model_id: model.id.clone(),
        candidate: 2,
        primary: VersionSel::Number(1),
        steps: vec![Step::Shadow, Step::Weight(100)],
        interval: "2s".into(),
        interval_ms: 2000,
        checks: Checks::default(),
        failures_before_rollback: 1,
        state: RolloutState::Running,
        step: 0,
        failures: 0,
        step_started_at: t0,
        evaluated_at: t0,
        next_evaluation_at: t0,
        last_checks: Vec::new(),
        history: Vec::new(),
        baseline: Some(baseline.into()),
        created_at: t0,
        updated_at: t0,
        created_by: None,
        revision: 0,
    };
    let start = rollout.clone().start(t0);
    store.create_rollout(&a, &start, &actor()).await.unwrap();
    let deployment = |spec: Option<String>| -> Option<Deployment> {
        spec.map(|s| serde_json::from_str(&s).unwrap())
    };
    let d = deployment(store.get_deployment(view, &model).await.unwrap()).unwrap();
    assert_eq!((d.shadow.len(), d.timeout_ms), (1, Some(900)), "{d:?}");
    let again = Rollout { id: new_rollout_id(), ..rollout.clone() }.start(t0);
    let e = store.create_rollout(&a, &again, &actor()).await.unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)), "{e:?}");

    let stored = store.get_rollout(&a, &rollout.id).await.unwrap();
    assert_eq!(
        (stored.state, stored.interval_ms, stored.revision),
        (RolloutState::Running, 2000, 1)
    );
    assert_eq!(stored.baseline.as_deref(), Some(baseline));
    assert_eq!(stored.history.len(), 1);
    // Another tenant sees nothing of it.
    assert!(matches!(store.get_rollout(&b, &rollout.id).await, Err(StoreError::NotFound { .. })));
    assert!(store.list_rollouts(&b, None).await.unwrap().is_empty());
    assert_eq!(store.list_rollouts(&a, Some(&model.id)).await.unwrap().len(), 1);

    // Not due before its next evaluation; then one owner holds the lease.
    let due = t0.plus_millis(2000);
    assert!(store.claim_rollouts(&sys(), "r1", t0, 5000).await.unwrap().is_empty());
    let claimed = store.claim_rollouts(&sys(), "r1", due, 5000).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(&claimed[0].0, a.tenant_id());
    assert!(
        store.claim_rollouts(&sys(), "r2", due.plus_millis(100), 5000).await.unwrap().is_empty()
    );
    // The lease runs out: another replica takes over.
    let taken = store.claim_rollouts(&sys(), "r2", due.plus_millis(5001), 5000).await.unwrap();
    assert_eq!(taken.len(), 1);
    let r = taken[0].1.clone();
    let pass = vec![check("error_rate", Some(0.0), 0.01, true, 10)];
    let step = r.clone().evaluate(pass.clone(), due);
    // The replica that lost the lease cannot write.
    assert!(!store.save_rollout(&a, &step, Some("r1"), &actor()).await.unwrap());
    assert!(store.save_rollout(&a, &step, Some("r2"), &actor()).await.unwrap());
    // A write on the revision read before is refused.
    assert!(!store.save_rollout(&a, &step, None, &actor()).await.unwrap());
    let d = deployment(store.get_deployment(view, &model).await.unwrap()).unwrap();
    assert_eq!(d.targets.len(), 1);
    assert_eq!(d.targets[0].version, VersionSel::Number(2));
    assert!(d.shadow.is_empty());

    // The last step holds: promoted, champion moved, lease free again.
    let r = store.get_rollout(&a, &rollout.id).await.unwrap();
    assert_eq!((r.step, r.revision), (1, 2));
    let promoted = r.evaluate(pass, due.plus_millis(2000));
    assert!(promoted.promote);
    assert!(store.save_rollout(&a, &promoted, None, &actor()).await.unwrap());
    let aliases = store.list_aliases(view, &model).await.unwrap();
    assert_eq!(
        aliases.iter().map(|x| (x.alias.as_str(), x.version)).collect::<Vec<_>>(),
        [("champion", 2)]
    );
    let r = store.get_rollout(&a, &rollout.id).await.unwrap();
    assert_eq!(r.state, RolloutState::Promoted);
    assert!(
        store.claim_rollouts(&sys(), "r1", due.plus_millis(60_000), 5000).await.unwrap().is_empty()
    );

    // A new rollout may start now; aborting it restores the baseline it saw.
    let second = Rollout { id: new_rollout_id(), ..rollout.clone() }.start(t0);
    store.create_rollout(&a, &second, &actor()).await.unwrap();
    let r = store.get_rollout(&a, &second.rollout.id).await.unwrap();
    let abort = r.control("abort", t0).unwrap();
    assert!(matches!(abort.deployment, DeploymentChange::Put(_)));
    assert!(store.save_rollout(&a, &abort, None, &actor()).await.unwrap());
    let restored = store.get_deployment(view, &model).await.unwrap().unwrap();
    assert_eq!(
        serde_json::from_str::<Deployment>(&restored).unwrap(),
        serde_json::from_str::<Deployment>(baseline).unwrap()
    );
    let actions: Vec<String> = store
        .list_audit(crate::AuditScope::Tenant(&a), crate::AuditQuery { since: None, limit: 1000 })
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .filter(|a| a.starts_with("rollout."))
        .collect();
    for want in ["rollout.start", "rollout.step", "rollout.promote", "rollout.abort"] {
        assert!(actions.iter().any(|a| a == want), "{want} in {actions:?}");
    }
}

/// Alert rules: a tenant's own and the platform's apart, claimed by one
/// replica at a time, written on the revision read, events kept per rule.
pub async fn alerts(store: &dyn MetadataStore) {
    use tessera_core::alert::{AlertEvent, AlertRule, AlertSpec, new_alert_id, new_secret};
    let (_, a) = tenant(store, "alr-a").await;
    let (_, b) = tenant(store, "alr-b").await;
    let t0 = Timestamp::from_millis(1_700_000_000_000);
    let rule = |tenant: Option<&TenantCtx>, v: serde_json::Value| {
        let spec: AlertSpec = serde_json::from_value(v).unwrap();
        let secret = new_secret();
        AlertRule {
            id: new_alert_id(),
            tenant_id: tenant.map(|t| t.tenant_id().clone()),
            spec,
            builtin: false,
            instances: Default::default(),
            last_evaluated_at: None,
            next_evaluation_at: t0,
            created_at: t0,
            secret_hint: tessera_core::alert::hint(&secret),
            secret,
            revision: 0,
        }
    };
    let mine = rule(
        Some(&a),
        serde_json::json!({"name": "slow", "metric": "latency_p99_ms", "model": "m",
        "op": ">", "threshold": 200, "severity": "warning"}),
    );
    let platform = rule(
        None,
        serde_json::json!({"name": "budget", "metric": "budget_used",
        "op": ">=", "threshold": 0.8, "severity": "critical"}),
    );
    store.create_alert_rule(KeyOwner::Tenant(&a), &mine, &actor()).await.unwrap();
    store.create_alert_rule(KeyOwner::Platform(&sys()), &platform, &actor()).await.unwrap();
    let listed = store.list_alert_rules(KeyOwner::Tenant(&a)).await.unwrap();
    assert_eq!(listed.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), [mine.id.as_str()]);
    assert_eq!(listed[0].secret, mine.secret, "the secret is kept to sign with");
    assert!(store.list_alert_rules(KeyOwner::Tenant(&b)).await.unwrap().is_empty());
    let ours = store.list_alert_rules(KeyOwner::Platform(&sys())).await.unwrap();
    assert_eq!(ours.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), [platform.id.as_str()]);
    for (owner, id) in [(KeyOwner::Tenant(&b), &mine.id), (KeyOwner::Tenant(&a), &platform.id)] {
        assert!(matches!(store.get_alert_rule(owner, id).await, Err(StoreError::NotFound { .. })));
    }
    assert!(matches!(
        store.delete_alert_rule(KeyOwner::Tenant(&b), &mine.id, &actor()).await,
        Err(StoreError::NotFound { .. })
    ));

    let claimed = store.claim_alert_rules(&sys(), "r1", t0, 5000).await.unwrap();
    assert_eq!(claimed.len(), 2);
    assert!(store.claim_alert_rules(&sys(), "r2", t0, 5000).await.unwrap().is_empty());
    let mut r = claimed.into_iter().find(|r| r.id == mine.id).unwrap();
    r.next_evaluation_at = t0.plus_millis(10_000);
    let fired = AlertEvent {
        at: t0,
        kind: "firing".into(),
        subject: "m".into(),
        value: Some(250.0),
        detail: None,
    };
    assert!(!store.save_alert_rule(&sys(), &r, std::slice::from_ref(&fired), "r2").await.unwrap());
    assert!(store.save_alert_rule(&sys(), &r, std::slice::from_ref(&fired), "r1").await.unwrap());
    assert!(!store.save_alert_rule(&sys(), &r, &[], "r1").await.unwrap(), "a stale revision");
    let delivered = AlertEvent { kind: "delivered".into(), ..fired.clone() };
    store.append_alert_events(&sys(), &r, std::slice::from_ref(&delivered)).await.unwrap();
    let events = store.list_alert_events(KeyOwner::Tenant(&a), &mine.id, 10).await.unwrap();
    assert_eq!(events.len(), 2);
    assert!(store.list_alert_events(KeyOwner::Tenant(&b), &mine.id, 10).await.unwrap().is_empty());
    // Not due again before its next evaluation.
    assert!(
        store
            .claim_alert_rules(&sys(), "r2", t0.plus_millis(6000), 5000)
            .await
            .unwrap()
            .iter()
            .all(|x| x.id != mine.id)
    );
    assert!(store.firing_alerts(&sys()).await.unwrap().iter().all(|(_, _, n)| *n == 0));
    store.delete_alert_rule(KeyOwner::Tenant(&a), &mine.id, &actor()).await.unwrap();
    assert!(store.list_alert_rules(KeyOwner::Tenant(&a)).await.unwrap().is_empty());
}
