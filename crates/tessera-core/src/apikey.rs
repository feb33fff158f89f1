//! API keys (T2): `tsk_<public id>_<secret>`. The public id locates the
//! record; only a SHA-256 digest of the whole key is stored, and presented keys
//! are compared against it in constant time. The secret carries about 190 bits
//! of entropy, so a fast hash is enough (password hashing buys nothing here).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

use crate::ValidationError;
use crate::ids::{KeyId, TenantId, random_alnum, random_lower, validate_name};
use crate::role::{Role, Scopes};
use crate::time::Timestamp;

const PUBLIC_LEN: usize = 12;
const SECRET_LEN: usize = 32;

/// A key as stored: everything but the secret.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    pub id: KeyId,
    /// `None` for platform keys.
    pub tenant_id: Option<TenantId>,
    pub name: String,
    pub role: Role,
    pub scopes: Scopes,
    /// Hex SHA-256 of the full key.
    pub hash: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    /// Actor that created this one (a key id or `jwt:<subject>`; `None` for
    /// the bootstrap key).
    pub created_by: Option<String>,
}

impl KeyRecord {
    /// The part of the key that is safe to show: `tsk_<public id>`.
    pub fn prefix(&self) -> String {
        format!("tsk_{}", self.id.as_str().trim_start_matches(KeyId::PREFIX))
    }

    pub fn is_active(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| e > now)
    }

    pub fn view(&self) -> KeyView {
        KeyView {
            id: self.id.clone(),
            tenant_id: self.tenant_id.clone(),
            name: self.name.clone(),
            prefix: self.prefix(),
            role: self.role,
            scopes: self.scopes.clone(),
            created_at: self.created_at,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
        }
    }
}

/// A key as listed: never the secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct KeyView {
    #[schema(value_type = String, example = "key_0123456789ab")]
    pub id: KeyId,
    #[schema(value_type = Option<String>)]
    pub tenant_id: Option<TenantId>,
    pub name: String,
    /// The key's first characters, to recognise it: `tsk_<public id>`.
    pub prefix: String,
    pub role: Role,
    pub scopes: Scopes,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

/// The answer to a key creation: the only time the full key is shown.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub view: KeyView,
    /// The full key. Store it now: it cannot be shown again.
    pub key: String,
}

/// Body of a key creation request.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub scopes: Option<Scopes>,
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
}

impl NewKey {
    pub fn validate(&self, now: Timestamp) -> Result<(), ValidationError> {
        validate_name("name", &self.name)?;
        if let Some(scopes) = &self.scopes {
            scopes.validate()?;
        }
        if let Some(exp) = self.expires_at
            && exp <= now
        {
            return Err(ValidationError::new(
                "expires_at",
                format!("expires_at {} is in the past", exp.to_rfc3339()),
            ));
        }
        Ok(())
    }
}

/// A freshly minted key: the record to store and the plaintext to hand out once.
pub struct MintedKey {
    pub record: KeyRecord,
    pub plaintext: String,
}

impl std::fmt::Debug for MintedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MintedKey")
            .field("record", &self.record)
            .field("plaintext", &"<redacted>")
            .finish()
    }
}

/// Mints a new key for `tenant_id` (`None`: a platform key).
pub fn mint(
    tenant_id: Option<TenantId>,
    req: NewKey,
    created_by: Option<String>,
    now: Timestamp,
) -> MintedKey {
    let public = random_lower(PUBLIC_LEN);
    let plaintext = format!("tsk_{public}_{}", random_alnum(SECRET_LEN));
    let record = KeyRecord {
        id: KeyId::from_stored(format!("{}{public}", KeyId::PREFIX)),
        tenant_id,
        name: req.name,
        role: req.role,
        scopes: req.scopes.unwrap_or_default(),
        hash: hash_secret(&plaintext),
        created_at: now,
        expires_at: req.expires_at,
        revoked_at: None,
        created_by,
    };
    MintedKey { record, plaintext }
}

/// Hex SHA-256 of a presented secret, with a domain-separation prefix.
pub fn hash_secret(secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"tessera-key-v1\0");
    h.update(secret.as_bytes());
    hex::encode(h.finalize())
}

/// Constant-time comparison of a presented secret with a stored hash.
pub fn secret_matches(presented: &str, stored_hash: &str) -> bool {
    let got = hash_secret(presented);
    got.as_bytes().ct_eq(stored_hash.as_bytes()).into()
}

/// Extracts the key id from a presented `tsk_<public>_<secret>` key, or
/// `None` when the string does not have that shape.
pub fn parse_key_id(presented: &str) -> Option<KeyId> {
    let rest = presented.strip_prefix("tsk_")?;
    let (public, secret) = rest.split_once('_')?;
    let ok = public.len() == PUBLIC_LEN
        && public.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && secret.len() == SECRET_LEN
        && secret.bytes().all(|b| b.is_ascii_alphanumeric());
    ok.then(|| KeyId::from_stored(format!("{}{public}", KeyId::PREFIX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(role: Role) -> NewKey {
        NewKey { name: "ci".into(), role, scopes: None, expires_at: None }
    }

    #[test]
    fn minted_key_parses_back_to_its_id_and_matches_its_hash() {
        let m = mint(None, req(Role::Viewer), None, Timestamp::now());
        assert_eq!(parse_key_id(&m.plaintext), Some(m.record.id.clone()));
        assert!(secret_matches(&m.plaintext, &m.record.hash));
        assert!(m.plaintext.starts_with(&m.record.prefix()));
        assert!(!m.record.hash.contains(&m.plaintext));
    }

    #[test]
    fn altered_secret_does_not_match() {
        let m = mint(None, req(Role::Viewer), None, Timestamp::now());
        let mut other = m.plaintext.clone();
        let last = other.pop().unwrap_or('a');
        other.push(if last == 'a' { 'b' } else { 'a' });
        assert!(!secret_matches(&other, &m.record.hash));
    }

    #[test]
    fn malformed_keys_have_no_id() {
        assert_eq!(parse_key_id("tsk_short_secret"), None);
        assert_eq!(parse_key_id("Bearer abc"), None);
        assert_eq!(parse_key_id(&format!("tsk_{}_{}", "A".repeat(12), "a".repeat(32))), None);
    }

    #[test]
    fn expiry_and_revocation_end_activity() {
        let now = Timestamp::now();
        let mut m = mint(None, req(Role::Viewer), None, now).record;
        assert!(m.is_active(now));
        m.expires_at = Some(now);
        assert!(!m.is_active(now));
        m.expires_at = None;
        m.revoked_at = Some(now);
        assert!(!m.is_active(now));
    }

    #[test]
    fn debug_output_hides_the_plaintext() {
        let m = mint(None, req(Role::Viewer), None, Timestamp::now());
        assert!(!format!("{m:?}").contains(&m.plaintext));
    }
}
