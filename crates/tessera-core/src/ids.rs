//! Identifiers. Every id carries a short type prefix (`ten_`, `key_`) so a
//! value pasted in the wrong place is recognisable, and only lowercase
//! alphanumerics after it, so ids are safe in URLs, logs and SQL settings.

use serde::{Deserialize, Serialize};

use crate::ValidationError;

const ALNUM_LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// `len` random characters from `alphabet`, from the operating system's CSPRNG.
pub fn random_string(alphabet: &[u8], len: usize) -> String {
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    // Rejection sampling keeps the distribution uniform.
    let limit = 256 - (256 % alphabet.len());
    while out.len() < len {
        fill_random(&mut buf);
        for b in buf {
            if (b as usize) < limit && out.len() < len {
                out.push(alphabet[b as usize % alphabet.len()] as char);
            }
        }
    }
    out
}

/// Random lowercase alphanumerics (about 5.2 bits each).
pub fn random_lower(len: usize) -> String {
    random_string(ALNUM_LOWER, len)
}

/// Random mixed-case alphanumerics (about 5.95 bits each).
pub fn random_alnum(len: usize) -> String {
    random_string(ALNUM, len)
}

/// The schema of a name (tenants, plans, segments, models, keys): what
/// [`validate_name`] accepts. Documentation only; names travel as `String`.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
pub struct Name(pub String);

/// A new prediction id: `prd_`, the time in milliseconds as 12 hex digits
/// (so ids sort by creation time, as text too), then [`unique_suffix`].
/// Made on every inference answer, so no system call per id.
pub fn new_prediction_id() -> String {
    prediction_id_at(crate::time::Timestamp::now().millis())
}

/// The prediction id for a given creation time.
pub fn prediction_id_at(ms: i64) -> String {
    time_sortable_id("prd_", ms)
}

/// `prefix`, the time in milliseconds as 12 hex digits, then
/// [`unique_suffix`]: unique, and sorted by creation time as text.
pub fn time_sortable_id(prefix: &str, ms: i64) -> String {
    format!("{prefix}{:012x}{}", ms.max(0), unique_suffix())
}

/// 16 hex digits: a per-process counter run through SipHash under a key
/// drawn at random when the process starts. Unique in practice (a collision
/// needs two of the 2^64 values in the same millisecond) and unreadable: the
/// counter is hidden, so ids handed to one tenant say nothing about how many
/// requests others made in between.
pub fn unique_suffix() -> String {
    use std::hash::{BuildHasher as _, Hasher as _};
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static KEY: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut h = KEY.get_or_init(std::collections::hash_map::RandomState::new).build_hasher();
    h.write_u64(n);
    format!("{:016x}", h.finish())
}

fn fill_random(buf: &mut [u8]) {
    if getrandom::fill(buf).is_err() {
        // The OS RNG failing is unrecoverable; refusing to continue beats
        // issuing guessable secrets.
        std::process::abort();
    }
}

macro_rules! prefixed_id {
    ($name:ident, $prefix:literal, $len:literal, $what:literal) => {
        #[doc = concat!("Id of a ", $what, ": `", $prefix, "` followed by ", stringify!($len), " lowercase alphanumerics.")]
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, random_lower($len)))
            }

            /// Parses an id from user input.
            pub fn parse(s: &str) -> Result<Self, ValidationError> {
                let ok = s.strip_prefix($prefix).is_some_and(|rest| {
                    !rest.is_empty()
                        && rest.len() <= 64
                        && rest.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                });
                if ok {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(ValidationError::new("id", format!("invalid {} id {s:?}", $what)))
                }
            }

            /// Wraps a value read back from the store.
            pub fn from_stored(s: String) -> Self {
                Self(s)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

prefixed_id!(TenantId, "ten_", 16, "tenant");
prefixed_id!(KeyId, "key_", 12, "key");

/// Checks a human-chosen name (tenant, plan, segment, key name): 1-64
/// characters of letters, digits, `-`, `_`, `.`, starting with a letter or digit.
pub fn validate_name(param: &str, value: &str) -> Result<(), ValidationError> {
    let ok = (1..=64).contains(&value.len())
        && value.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            param,
            format!(
                "{param} {value:?} must be 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_back() {
        let id = TenantId::generate();
        assert_eq!(TenantId::parse(id.as_str()), Ok(id.clone()));
        assert!(id.as_str().starts_with("ten_"));
        assert_eq!(id.as_str().len(), 4 + 16);
    }

    #[test]
    fn ids_reject_wrong_prefix_and_characters() {
        assert!(TenantId::parse("key_abc").is_err());
        assert!(TenantId::parse("ten_").is_err());
        assert!(TenantId::parse("ten_ABC").is_err());
        assert!(TenantId::parse("ten_a'b").is_err());
    }

    #[test]
    fn random_strings_use_the_alphabet_and_differ() {
        let a = random_alnum(32);
        let b = random_alnum(32);
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn names_are_validated() {
        assert!(validate_name("name", "acme-corp_1.x").is_ok());
        assert!(validate_name("name", "").is_err());
        assert!(validate_name("name", "-acme").is_err());
        assert!(validate_name("name", "acme corp").is_err());
        assert!(validate_name("name", &"a".repeat(65)).is_err());
    }

    #[test]
    fn prediction_ids_sort_by_time_and_do_not_collide() {
        let a = prediction_id_at(1_700_000_000_000);
        let b = prediction_id_at(1_700_000_000_001);
        let c = prediction_id_at(1_700_000_000_001);
        assert!(a < b && a < c && b != c);
        assert_eq!(a.len(), 4 + 12 + 16);
        assert!(a.starts_with("prd_") && a[4..].bytes().all(|x| x.is_ascii_alphanumeric()));
        let same_ms: std::collections::HashSet<String> =
            (0..100_000).map(|_| prediction_id_at(1)).collect();
        assert_eq!(same_ms.len(), 100_000, "ids of one millisecond collided");
    }
}
