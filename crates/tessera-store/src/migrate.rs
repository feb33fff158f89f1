//! Versioned schema migrations, embedded in the binary. Each applied version is
//! recorded in `tessera_migrations`; a database newer than the binary is refused.

/// One migration step.
pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

pub(crate) const COMMON: &[Migration] = &[
    Migration { version: 1, name: "init", sql: include_str!("migrations/0001_init.sql") },
    Migration { version: 3, name: "registry", sql: include_str!("migrations/0003_registry.sql") },
    Migration {
        version: 5,
        name: "deployments",
        sql: include_str!("migrations/0005_deployments.sql"),
    },
    Migration { version: 8, name: "usage", sql: include_str!("migrations/0008_usage.sql") },
    Migration {
        version: 10,
        name: "prediction_ids",
        sql: include_str!("migrations/0010_prediction_ids.sql"),
    },
    Migration { version: 11, name: "events", sql: include_str!("migrations/0011_events.sql") },
    Migration {
        version: 12,
        name: "event_types",
        sql: include_str!("migrations/0012_event_types.sql"),
    },
    Migration { version: 14, name: "features", sql: include_str!("migrations/0014_features.sql") },
    Migration {
        version: 16,
        name: "version_features",
        sql: include_str!("migrations/0016_version_features.sql"),
    },
    Migration { version: 17, name: "datasets", sql: include_str!("migrations/0017_datasets.sql") },
    Migration {
        version: 19,
        name: "training_jobs",
        sql: include_str!("migrations/0019_training_jobs.sql"),
    },
    Migration {
        version: 21,
        name: "governance",
        sql: include_str!("migrations/0021_governance.sql"),
    },
    Migration { version: 23, name: "feedback", sql: include_str!("migrations/0023_feedback.sql") },
    Migration { version: 25, name: "rollouts", sql: include_str!("migrations/0025_rollouts.sql") },
    Migration { version: 27, name: "alerts", sql: include_str!("migrations/0027_alerts.sql") },
];

pub(crate) const POSTGRES_ONLY: &[Migration] = &[
    Migration { version: 2, name: "pg_rls", sql: include_str!("migrations/0002_pg_rls.sql") },
    Migration {
        version: 4,
        name: "pg_registry_rls",
        sql: include_str!("migrations/0004_pg_registry_rls.sql"),
    },
    Migration {
        version: 6,
        name: "pg_deployments_rls",
        sql: include_str!("migrations/0006_pg_deployments_rls.sql"),
    },
    Migration {
        version: 7,
        name: "pg_artifacts",
        sql: include_str!("migrations/0007_pg_artifacts.sql"),
    },
    Migration {
        version: 9,
        name: "pg_usage_rls",
        sql: include_str!("migrations/0009_pg_usage_rls.sql"),
    },
    Migration {
        version: 13,
        name: "pg_event_types_rls",
        sql: include_str!("migrations/0013_pg_event_types_rls.sql"),
    },
    Migration {
        version: 15,
        name: "pg_features_rls",
        sql: include_str!("migrations/0015_pg_features_rls.sql"),
    },
    Migration {
        version: 18,
        name: "pg_datasets_rls",
        sql: include_str!("migrations/0018_pg_datasets_rls.sql"),
    },
    Migration {
        version: 20,
        name: "pg_training_jobs_rls",
        sql: include_str!("migrations/0020_pg_training_jobs_rls.sql"),
    },
    Migration {
        version: 22,
        name: "pg_governance_rls",
        sql: include_str!("migrations/0022_pg_governance_rls.sql"),
    },
    Migration {
        version: 24,
        name: "pg_feedback_rls",
        sql: include_str!("migrations/0024_pg_feedback_rls.sql"),
    },
    Migration {
        version: 26,
        name: "pg_rollouts_rls",
        sql: include_str!("migrations/0026_pg_rollouts_rls.sql"),
    },
    Migration {
        version: 28,
        name: "pg_alerts_rls",
        sql: include_str!("migrations/0028_pg_alerts_rls.sql"),
    },
];

pub(crate) const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS tessera_migrations \
     (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)";

/// Refuses to run against a schema written by a newer Tessera.
pub(crate) fn check_not_newer(
    applied_max: Option<i64>,
    known_max: i64,
) -> Result<(), crate::StoreError> {
    match applied_max {
        Some(v) if v > known_max => Err(crate::StoreError::Internal(format!(
            "database schema version {v} is newer than this binary supports ({known_max}); upgrade tessera"
        ))),
        _ => Ok(()),
    }
}
