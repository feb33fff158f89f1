//! JWT bearer tokens (T2): HS256 with a shared secret for development, RS256 and
//! ES256 with keys from an OIDC provider's JWKS. Signature, `exp`, `nbf`, `iss`
//! and `aud` are checked here; fetching the JWKS is the gateway's job.

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::{Map, Value};

use crate::auth::{AuthError, Principal, principal_from_token};
use crate::ids::TenantId;
use crate::role::Role;

/// What a valid token must say, and where it says it.
#[derive(Debug, Clone)]
pub struct JwtRules {
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required `aud`, when set.
    pub audience: Option<String>,
    /// Claim holding the tenant id.
    pub tenant_claim: String,
    /// Claim holding the role.
    pub role_claim: String,
    /// Clock skew tolerated on `exp`/`nbf`, in seconds.
    pub leeway_secs: u64,
}

impl Default for JwtRules {
    fn default() -> Self {
        Self {
            issuer: None,
            audience: None,
            tenant_claim: "tenant_id".into(),
            role_claim: "role".into(),
            leeway_secs: 30,
        }
    }
}

/// The signing family a token asks for, and its key id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenKind {
    Hs256,
    /// RS256 or ES256, with the header's `kid`.
    Asymmetric {
        alg: Algorithm,
        kid: Option<String>,
    },
}

/// Whether `bearer` looks like a JWT at all (three base64url parts).
pub fn looks_like_jwt(bearer: &str) -> bool {
    bearer.split('.').count() == 3 && bearer.starts_with("ey")
}

/// Reads the header to decide which key verifies the token.
pub fn token_kind(token: &str) -> Result<TokenKind, AuthError> {
    let header = decode_header(token).map_err(|e| AuthError::InvalidToken(e.to_string()))?;
    match header.alg {
        Algorithm::HS256 => Ok(TokenKind::Hs256),
        alg @ (Algorithm::RS256 | Algorithm::ES256) => {
            Ok(TokenKind::Asymmetric { alg, kid: header.kid })
        }
        other => Err(AuthError::InvalidToken(format!(
            "unsupported algorithm {other:?}; use HS256, RS256 or ES256"
        ))),
    }
}

/// Verifies `token` with `key` and maps its claims to a principal.
pub fn verify(
    token: &str,
    alg: Algorithm,
    key: &DecodingKey,
    rules: &JwtRules,
) -> Result<Principal, AuthError> {
    let mut v = Validation::new(alg);
    v.leeway = rules.leeway_secs;
    v.validate_nbf = true;
    v.validate_exp = true;
    v.set_required_spec_claims(&["exp"]);
    match &rules.issuer {
        Some(iss) => v.set_issuer(&[iss]),
        None => v.iss = None,
    }
    match &rules.audience {
        Some(aud) => v.set_audience(&[aud]),
        None => v.validate_aud = false,
    }
    let data = decode::<Map<String, Value>>(token, key, &v)
        .map_err(|e| AuthError::InvalidToken(e.to_string()))?;
    principal_from_claims(&data.claims, rules)
}

fn principal_from_claims(
    claims: &Map<String, Value>,
    rules: &JwtRules,
) -> Result<Principal, AuthError> {
    let string_claim = |name: &str| -> Result<&str, AuthError> {
        claims.get(name).and_then(Value::as_str).ok_or_else(|| {
            AuthError::InvalidToken(format!("claim {name:?} is missing or not a string"))
        })
    };
    let tenant = TenantId::parse(string_claim(&rules.tenant_claim)?)
        .map_err(|e| AuthError::InvalidToken(e.message))?;
    let role = Role::parse(string_claim(&rules.role_claim)?)
        .map_err(|e| AuthError::InvalidToken(e.message))?;
    if role == Role::PlatformAdmin {
        return Err(AuthError::InvalidToken(
            "tokens cannot carry platform_admin; use a platform key".into(),
        ));
    }
    let subject = claims.get("sub").and_then(Value::as_str).unwrap_or("anonymous").to_owned();
    Ok(principal_from_token(subject, tenant, role))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    fn now() -> u64 {
        crate::time::Timestamp::now().millis() as u64 / 1000
    }

    fn hs(claims: Value) -> String {
        encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(b"dev-secret"))
            .unwrap()
    }

    fn check(token: &str, rules: &JwtRules) -> Result<Principal, AuthError> {
        verify(token, Algorithm::HS256, &DecodingKey::from_secret(b"dev-secret"), rules)
    }

    #[test]
    fn hs256_token_maps_claims_to_a_principal() {
        let t = TenantId::generate();
        let tok = hs(
            json!({"sub": "u1", "tenant_id": t.as_str(), "role": "developer", "exp": now() + 60}),
        );
        assert_eq!(token_kind(&tok), Ok(TokenKind::Hs256));
        let p = check(&tok, &JwtRules::default()).unwrap();
        assert_eq!(p.tenant_id(), Some(&t));
        assert_eq!(p.role(), Role::Developer);
        assert_eq!(p.actor(), "jwt:u1");
    }

    #[test]
    fn expired_not_yet_valid_and_wrong_issuer_fail() {
        let t = TenantId::generate();
        let base = json!({"tenant_id": t.as_str(), "role": "viewer"});
        let with = |extra: Value| {
            let mut c = base.clone();
            c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            hs(c)
        };
        let rules =
            JwtRules { leeway_secs: 0, issuer: Some("https://idp".into()), ..JwtRules::default() };
        assert!(check(&with(json!({"exp": now() - 10, "iss": "https://idp"})), &rules).is_err());
        assert!(
            check(
                &with(json!({"exp": now() + 60, "nbf": now() + 60, "iss": "https://idp"})),
                &rules
            )
            .is_err()
        );
        assert!(check(&with(json!({"exp": now() + 60, "iss": "https://other"})), &rules).is_err());
        assert!(check(&with(json!({"exp": now() + 60, "iss": "https://idp"})), &rules).is_ok());
        assert!(check(&with(json!({"iss": "https://idp"})), &rules).is_err(), "exp is required");
    }

    #[test]
    fn audience_is_enforced_when_configured() {
        let t = TenantId::generate();
        let tok =
            hs(json!({"tenant_id": t.as_str(), "role": "viewer", "exp": now() + 60, "aud": "a"}));
        let rules = JwtRules { audience: Some("b".into()), ..JwtRules::default() };
        assert!(check(&tok, &rules).is_err());
        let rules = JwtRules { audience: Some("a".into()), ..JwtRules::default() };
        assert!(check(&tok, &rules).is_ok());
    }

    #[test]
    fn platform_admin_and_bad_tenant_claims_are_refused() {
        let t = TenantId::generate();
        let tok = hs(json!({"tenant_id": t.as_str(), "role": "platform_admin", "exp": now() + 60}));
        assert!(check(&tok, &JwtRules::default()).is_err());
        let tok = hs(json!({"tenant_id": "acme", "role": "viewer", "exp": now() + 60}));
        assert!(check(&tok, &JwtRules::default()).is_err());
    }

    #[test]
    fn wrong_secret_fails() {
        let t = TenantId::generate();
        let tok = hs(json!({"tenant_id": t.as_str(), "role": "viewer", "exp": now() + 60}));
        let r = verify(
            &tok,
            Algorithm::HS256,
            &DecodingKey::from_secret(b"other"),
            &JwtRules::default(),
        );
        assert!(r.is_err());
    }
}
