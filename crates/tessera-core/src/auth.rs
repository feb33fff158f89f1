//! Principals and the contexts that carry tenant safety in the types.
//!
//! A [`Principal`] comes only out of this module's verification functions (or
//! [`crate::jwt`]); a [`TenantCtx`] only out of a principal or a [`SystemCtx`];
//! a [`SystemCtx`] only out of a platform admin principal or the explicit,
//! greppable [`SystemCtx::bootstrap`]. Every store call that touches tenant data
//! takes one of the two contexts, so it cannot be made without having passed
//! authentication (Qdrant's `VerificationPass` idea).

use crate::apikey::{KeyRecord, hash_secret, secret_matches};
use crate::ids::TenantId;
use crate::role::{Operation, Role, Scopes};
use crate::time::Timestamp;
use subtle::ConstantTimeEq;

/// Actor id recorded for requests made with the configured `TESSERA_ADMIN_KEY`.
pub const CONFIGURED_ADMIN_ACTOR: &str = "key_configured";

/// Why a request was not let through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing credentials: send Authorization: Bearer <key>")]
    Missing,
    #[error("invalid api key")]
    InvalidKey,
    #[error("api key expired")]
    Expired,
    #[error("api key revoked")]
    Revoked,
    #[error("invalid token: {0}")]
    InvalidToken(String),
    #[error("permission denied: role {role} may not perform {operation}")]
    RoleForbids { role: Role, operation: &'static str },
    #[error("permission denied: this key's scopes do not include {operation}")]
    ScopeForbids { operation: &'static str },
    #[error("permission denied: {0}")]
    Forbidden(String),
}

/// How the principal proved itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    ApiKey,
    ConfiguredAdminKey,
    Jwt,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    actor: String,
    tenant_id: Option<TenantId>,
    role: Role,
    scopes: Scopes,
    method: AuthMethod,
}

impl Principal {
    /// Key id, or `jwt:<subject>`.
    pub fn actor(&self) -> &str {
        &self.actor
    }
    pub fn tenant_id(&self) -> Option<&TenantId> {
        self.tenant_id.as_ref()
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn scopes(&self) -> &Scopes {
        &self.scopes
    }
    pub fn method(&self) -> AuthMethod {
        self.method
    }

    /// Checks the role table and the key's scopes for `op`.
    pub fn authorize(&self, op: Operation) -> Result<(), AuthError> {
        let name = operation_name(op);
        if !self.role.allows(op) {
            return Err(AuthError::RoleForbids { role: self.role, operation: name });
        }
        if !self.scopes.allows_operation(op) {
            return Err(AuthError::ScopeForbids { operation: name });
        }
        Ok(())
    }

    /// The tenant this principal acts for, if it belongs to one.
    pub fn tenant_ctx(&self) -> Option<TenantCtx> {
        self.tenant_id.clone().map(|tenant_id| TenantCtx { tenant_id })
    }

    /// Platform-wide access, for platform admins only.
    pub fn system_ctx(&self) -> Option<SystemCtx> {
        (self.role == Role::PlatformAdmin && self.scopes.allows_operation(Operation::PlatformAdmin))
            .then_some(SystemCtx { _seal: () })
    }
}

/// The stable name of an operation, as used in scopes.
pub fn operation_name(op: Operation) -> &'static str {
    match op {
        Operation::PlatformAdmin => "platform.admin",
        Operation::TenantRead => "tenant.read",
        Operation::KeysRead => "keys.read",
        Operation::KeysWrite => "keys.write",
        Operation::AuditRead => "audit.read",
        Operation::ModelsRead => "models.read",
        Operation::ModelsWrite => "models.write",
        Operation::Inference => "inference",
        Operation::EventsWrite => "events.write",
        Operation::EventsRead => "events.read",
        Operation::EventsAdmin => "events.admin",
        Operation::FeaturesRead => "features.read",
        Operation::FeaturesWrite => "features.write",
        Operation::FeaturesAdmin => "features.admin",
        Operation::DatasetsRead => "datasets.read",
        Operation::DatasetsWrite => "datasets.write",
        Operation::FeedbackWrite => "feedback.write",
    }
}

/// Proof that the holder may touch one tenant's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantCtx {
    tenant_id: TenantId,
}

impl TenantCtx {
    pub fn tenant_id(&self) -> &TenantId {
        &self.tenant_id
    }
}

/// Proof that the holder may touch platform-wide data and any tenant's.
#[derive(Debug, Clone)]
pub struct SystemCtx {
    _seal: (),
}

impl SystemCtx {
    /// For start-up (migrations, default plans, the first admin key) and for
    /// offline operator commands that open the database directly. Request
    /// handling must use [`Principal::system_ctx`] instead.
    pub fn bootstrap() -> SystemCtx {
        SystemCtx { _seal: () }
    }

    /// Acts on one tenant's data with platform authority.
    pub fn tenant(&self, tenant_id: TenantId) -> TenantCtx {
        TenantCtx { tenant_id }
    }
}

/// Verifies a presented `tsk_` key against its stored record.
pub fn verify_api_key(
    presented: &str,
    record: Option<&KeyRecord>,
    now: Timestamp,
) -> Result<Principal, AuthError> {
    let record = record.ok_or(AuthError::InvalidKey)?;
    if !secret_matches(presented, &record.hash) {
        return Err(AuthError::InvalidKey);
    }
    if record.revoked_at.is_some() {
        return Err(AuthError::Revoked);
    }
    if record.expires_at.is_some_and(|e| e <= now) {
        return Err(AuthError::Expired);
    }
    Ok(Principal {
        actor: record.id.to_string(),
        tenant_id: record.tenant_id.clone(),
        role: record.role,
        scopes: record.scopes.clone(),
        method: AuthMethod::ApiKey,
    })
}

/// The configured platform admin key (`TESSERA_ADMIN_KEY`), kept as a hash.
#[derive(Clone)]
pub struct ConfiguredAdminKey {
    hash: String,
}

impl std::fmt::Debug for ConfiguredAdminKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConfiguredAdminKey(<redacted>)")
    }
}

impl ConfiguredAdminKey {
    pub fn new(plaintext: &str) -> Self {
        Self { hash: hash_secret(plaintext) }
    }

    /// A platform admin principal when `presented` is the configured key.
    pub fn verify(&self, presented: &str) -> Option<Principal> {
        let matches: bool = hash_secret(presented).as_bytes().ct_eq(self.hash.as_bytes()).into();
        matches.then(|| Principal {
            actor: CONFIGURED_ADMIN_ACTOR.to_owned(),
            tenant_id: None,
            role: Role::PlatformAdmin,
            scopes: Scopes::default(),
            method: AuthMethod::ConfiguredAdminKey,
        })
    }
}

/// Builds a principal from verified token claims; used by [`crate::jwt`].
pub(crate) fn principal_from_token(subject: String, tenant_id: TenantId, role: Role) -> Principal {
    Principal {
        actor: format!("jwt:{subject}"),
        tenant_id: Some(tenant_id),
        role,
        scopes: Scopes::default(),
        method: AuthMethod::Jwt,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apikey::{NewKey, mint};

    fn key(role: Role, tenant: Option<TenantId>) -> (String, KeyRecord) {
        let m = mint(
            tenant,
            NewKey { name: "k".into(), role, scopes: None, expires_at: None },
            None,
            Timestamp::now(),
        );
        (m.plaintext, m.record)
    }

    #[test]
    fn valid_key_yields_its_tenant_context() {
        let t = TenantId::generate();
        let (plain, rec) = key(Role::Developer, Some(t.clone()));
        let p = verify_api_key(&plain, Some(&rec), Timestamp::now()).unwrap();
        assert_eq!(p.tenant_ctx().map(|c| c.tenant_id().clone()), Some(t));
        assert!(p.system_ctx().is_none());
    }

    #[test]
    fn revoked_and_expired_keys_fail() {
        let (plain, mut rec) = key(Role::Developer, None);
        let now = Timestamp::now();
        rec.revoked_at = Some(now);
        assert_eq!(verify_api_key(&plain, Some(&rec), now), Err(AuthError::Revoked));
        rec.revoked_at = None;
        rec.expires_at = Some(now.plus_millis(-1));
        assert_eq!(verify_api_key(&plain, Some(&rec), now), Err(AuthError::Expired));
    }

    #[test]
    fn wrong_secret_is_invalid_even_when_revoked() {
        let (_, mut rec) = key(Role::Developer, None);
        rec.revoked_at = Some(Timestamp::now());
        let (other, _) = key(Role::Developer, None);
        assert_eq!(
            verify_api_key(&other, Some(&rec), Timestamp::now()),
            Err(AuthError::InvalidKey)
        );
    }

    #[test]
    fn scopes_can_deny_what_the_role_allows() {
        let (plain, mut rec) = key(Role::TenantAdmin, Some(TenantId::generate()));
        rec.scopes.operations = Some(vec![Operation::TenantRead]);
        let p = verify_api_key(&plain, Some(&rec), Timestamp::now()).unwrap();
        assert!(p.authorize(Operation::TenantRead).is_ok());
        assert!(matches!(p.authorize(Operation::KeysWrite), Err(AuthError::ScopeForbids { .. })));
    }

    #[test]
    fn configured_admin_key_matches_only_itself() {
        let k = ConfiguredAdminKey::new("s3cret-admin");
        assert!(k.verify("s3cret-admin").is_some_and(|p| p.system_ctx().is_some()));
        assert!(k.verify("s3cret-admin ").is_none());
        assert!(!format!("{k:?}").contains("s3cret"));
    }
}
