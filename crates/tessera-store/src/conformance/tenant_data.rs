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
