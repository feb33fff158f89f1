//! Roles, the operations they permit, and the scopes that narrow a key further.
//!
//! The permission table lives in one `match` ([`Role::allows`]) so that adding an
//! operation forces a decision for every role. It is reproduced in
//! `docs/permissions.md`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ValidationError;

/// What a principal may be. Ordered from most to least privileged for
/// [`Role::can_grant`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Operates the platform: tenants, plans, every tenant's keys and audit.
    PlatformAdmin,
    /// Administers one tenant: its keys, models and settings.
    TenantAdmin,
    /// Builds on one tenant: models, inference, reads.
    Developer,
    /// A workload: inference only.
    Service,
    /// Reads a tenant's state and audit; changes nothing.
    Viewer,
}

impl Role {
    pub const ALL: [Role; 5] =
        [Role::PlatformAdmin, Role::TenantAdmin, Role::Developer, Role::Service, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::PlatformAdmin => "platform_admin",
            Role::TenantAdmin => "tenant_admin",
            Role::Developer => "developer",
            Role::Service => "service",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Result<Role, ValidationError> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| {
            ValidationError::new(
                "role",
                format!(
                    "unknown role {s:?}; expected one of platform_admin, tenant_admin, developer, service, viewer"
                ),
            )
        })
    }

    fn rank(self) -> u8 {
        match self {
            Role::PlatformAdmin => 4,
            Role::TenantAdmin => 3,
            Role::Developer => 2,
            Role::Service => 1,
            Role::Viewer => 0,
        }
    }

    /// Whether a holder of `self` may mint a key with role `other`: never one
    /// above its own.
    pub fn can_grant(self, other: Role) -> bool {
        self.allows(Operation::KeysWrite) && other.rank() <= self.rank()
    }

    /// The permission table.
    pub fn allows(self, op: Operation) -> bool {
        use Operation as O;
        use Role as R;
        match op {
            O::PlatformAdmin => matches!(self, R::PlatformAdmin),
            O::TenantRead => true,
            O::KeysRead | O::KeysWrite => matches!(self, R::PlatformAdmin | R::TenantAdmin),
            O::AuditRead => matches!(self, R::PlatformAdmin | R::TenantAdmin | R::Viewer),
            O::ModelsRead => !matches!(self, R::Service),
            O::ModelsWrite | O::EventsAdmin | O::FeaturesAdmin | O::DatasetsWrite => {
                matches!(self, R::PlatformAdmin | R::TenantAdmin | R::Developer)
            }
            O::Inference | O::EventsWrite | O::FeaturesWrite | O::FeedbackWrite => {
                matches!(self, R::PlatformAdmin | R::TenantAdmin | R::Developer | R::Service)
            }
            // Events and datasets may hold personal data: services do not read them.
            O::EventsRead | O::DatasetsRead => !matches!(self, R::Service),
            // Services read features online to serve with them.
            O::FeaturesRead => true,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An operation a route performs; the unit of both the role table and key scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum Operation {
    /// Manage tenants, plans and platform keys; read every tenant's audit.
    #[serde(rename = "platform.admin")]
    PlatformAdmin,
    /// Read one's own tenant and key (`GET /v1/me`).
    #[serde(rename = "tenant.read")]
    TenantRead,
    #[serde(rename = "keys.read")]
    KeysRead,
    #[serde(rename = "keys.write")]
    KeysWrite,
    #[serde(rename = "audit.read")]
    AuditRead,
    #[serde(rename = "models.read")]
    ModelsRead,
    #[serde(rename = "models.write")]
    ModelsWrite,
    /// Embeddings, chat, predict and infer calls.
    #[serde(rename = "inference")]
    Inference,
    /// Send events (`POST /v1/events`).
    #[serde(rename = "events.write")]
    EventsWrite,
    /// Read and tail events, prediction records included.
    #[serde(rename = "events.read")]
    EventsRead,
    /// Set and remove event type schemas.
    #[serde(rename = "events.admin")]
    EventsAdmin,
    /// Read feature definitions and online values.
    #[serde(rename = "features.read")]
    FeaturesRead,
    /// Push feature rows.
    #[serde(rename = "features.write")]
    FeaturesWrite,
    /// Define entities, feature views and services.
    #[serde(rename = "features.admin")]
    FeaturesAdmin,
    /// Read datasets: their schemas and previews.
    #[serde(rename = "datasets.read")]
    DatasetsRead,
    /// Upload datasets.
    #[serde(rename = "datasets.write")]
    DatasetsWrite,
    /// Send ground truth for predictions (`POST /v1/feedback`).
    #[serde(rename = "feedback.write")]
    FeedbackWrite,
}

impl Operation {
    pub const ALL: [Operation; 17] = [
        Operation::PlatformAdmin,
        Operation::TenantRead,
        Operation::KeysRead,
        Operation::KeysWrite,
        Operation::AuditRead,
        Operation::ModelsRead,
        Operation::ModelsWrite,
        Operation::Inference,
        Operation::EventsWrite,
        Operation::EventsRead,
        Operation::EventsAdmin,
        Operation::FeaturesRead,
        Operation::FeaturesWrite,
        Operation::FeaturesAdmin,
        Operation::DatasetsRead,
        Operation::DatasetsWrite,
        Operation::FeedbackWrite,
    ];
}

/// Narrows what a key may do below what its role allows. `None` means
/// "whatever the role allows".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Scopes {
    /// Operations this key may perform (intersected with its role's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operations: Option<Vec<Operation>>,
    /// Model names this key may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    /// This key's own requests per minute on inference routes (beside its
    /// tenant's plan and the model's limits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    /// This key's own tokens per minute on inference routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
}

impl Scopes {
    pub fn allows_operation(&self, op: Operation) -> bool {
        self.operations.as_ref().is_none_or(|ops| ops.contains(&op))
    }

    pub fn allows_model(&self, model: &str) -> bool {
        self.models.as_ref().is_none_or(|m| m.iter().any(|x| x == model))
    }

    /// Whether these scopes grant nothing beyond `parent`'s (a key may not
    /// mint a key broader than itself).
    pub fn is_within(&self, parent: &Scopes) -> bool {
        fn subset<T: PartialEq>(child: Option<&Vec<T>>, parent: Option<&Vec<T>>) -> bool {
            match (child, parent) {
                (_, None) => true,
                (None, Some(_)) => false,
                (Some(c), Some(p)) => c.iter().all(|x| p.contains(x)),
            }
        }
        // A limit may only be as tight as the parent's, or tighter.
        fn tighter(child: Option<u64>, parent: Option<u64>) -> bool {
            match (child, parent) {
                (_, None) => true,
                (None, Some(_)) => false,
                (Some(c), Some(p)) => c <= p,
            }
        }
        subset(self.operations.as_ref(), parent.operations.as_ref())
            && subset(self.models.as_ref(), parent.models.as_ref())
            && tighter(self.rpm, parent.rpm)
            && tighter(self.tpm, parent.tpm)
    }

    pub fn validate(&self) -> Result<(), ValidationError> {
        if let Some(models) = &self.models {
            for m in models {
                crate::ids::validate_name("scopes.models", m)?;
            }
        }
        for (name, v) in [("scopes.rpm", self.rpm), ("scopes.tpm", self.tpm)] {
            if v == Some(0) {
                return Err(ValidationError::new(name, format!("{name} must be at least 1")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viewer_cannot_write_keys_or_run_inference() {
        assert!(!Role::Viewer.allows(Operation::KeysWrite));
        assert!(!Role::Viewer.allows(Operation::Inference));
        assert!(Role::Viewer.allows(Operation::AuditRead));
    }

    #[test]
    fn service_can_only_infer_send_events_and_feedback_use_features_and_read_itself() {
        let allowed: Vec<_> =
            Operation::ALL.into_iter().filter(|op| Role::Service.allows(*op)).collect();
        assert_eq!(
            allowed,
            vec![
                Operation::TenantRead,
                Operation::Inference,
                Operation::EventsWrite,
                Operation::FeaturesRead,
                Operation::FeaturesWrite,
                Operation::FeedbackWrite
            ]
        );
    }

    #[test]
    fn only_platform_admin_administers_the_platform() {
        for role in Role::ALL {
            assert_eq!(role.allows(Operation::PlatformAdmin), role == Role::PlatformAdmin);
        }
    }

    #[test]
    fn tenant_admin_cannot_grant_platform_admin() {
        assert!(Role::TenantAdmin.can_grant(Role::TenantAdmin));
        assert!(Role::TenantAdmin.can_grant(Role::Viewer));
        assert!(!Role::TenantAdmin.can_grant(Role::PlatformAdmin));
        assert!(!Role::Developer.can_grant(Role::Viewer));
    }

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Ok(role));
        }
        assert!(Role::parse("root").is_err());
    }

    #[test]
    fn scopes_narrow_operations_and_models() {
        let s = Scopes {
            operations: Some(vec![Operation::Inference]),
            models: Some(vec!["m1".into()]),
            ..Default::default()
        };
        assert!(s.allows_operation(Operation::Inference));
        assert!(!s.allows_operation(Operation::KeysRead));
        assert!(s.allows_model("m1"));
        assert!(!s.allows_model("m2"));
        assert!(Scopes::default().allows_operation(Operation::KeysWrite));
    }

    #[test]
    fn child_scopes_must_stay_within_the_parent() {
        let parent = Scopes {
            operations: Some(vec![Operation::Inference, Operation::TenantRead]),
            rpm: Some(100),
            ..Default::default()
        };
        let narrower = Scopes {
            operations: Some(vec![Operation::Inference]),
            models: Some(vec!["m".into()]),
            rpm: Some(10),
            ..Default::default()
        };
        assert!(narrower.is_within(&parent));
        assert!(!Scopes::default().is_within(&parent));
        let broader = Scopes { operations: Some(vec![Operation::KeysWrite]), ..Default::default() };
        assert!(!broader.is_within(&parent));
        assert!(broader.is_within(&Scopes::default()));
        let looser = Scopes { rpm: Some(1000), ..narrower.clone() };
        assert!(!looser.is_within(&parent), "a child key may not allow more requests");
        let unlimited = Scopes { rpm: None, ..narrower };
        assert!(!unlimited.is_within(&parent));
    }
}
