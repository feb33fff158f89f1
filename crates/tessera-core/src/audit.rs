//! The audit log (T5): an append-only, hash-chained record of every mutation.
//!
//! Each entry's hash covers its own fields and the previous entry's hash, so
//! editing any row breaks that row's hash and deleting one breaks the next
//! row's link (or, for the newest row, disagrees with the stored chain head).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::ids::TenantId;
use crate::time::Timestamp;

/// `prev_hash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Who made a change and under which request; passed with every mutation.
#[derive(Debug, Clone, Default)]
pub struct AuditActor {
    /// The acting key's id, or `jwt:<subject>` for a token.
    pub key_id: Option<String>,
    pub request_id: Option<String>,
}

/// What changed; the store fills in sequence, time and hashes.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub tenant_id: Option<TenantId>,
    /// Dotted verb, e.g. `tenant.create`, `key.revoke`.
    pub action: String,
    /// The changed object's id or name.
    pub target: String,
}

/// One row of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// Position in the chain, from 1 without gaps.
    pub id: i64,
    pub ts: Timestamp,
    pub actor_key_id: Option<String>,
    pub tenant_id: Option<String>,
    pub action: String,
    pub target: String,
    pub request_id: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditEntry {
    /// Builds the entry that follows `prev_hash` at position `id`.
    pub fn seal(
        id: i64,
        ts: Timestamp,
        event: &AuditEvent,
        actor: &AuditActor,
        prev_hash: &str,
    ) -> AuditEntry {
        let mut e = AuditEntry {
            id,
            ts,
            actor_key_id: actor.key_id.clone(),
            tenant_id: event.tenant_id.as_ref().map(|t| t.to_string()),
            action: event.action.clone(),
            target: event.target.clone(),
            request_id: actor.request_id.clone(),
            prev_hash: prev_hash.to_owned(),
            hash: String::new(),
        };
        e.hash = e.compute_hash();
        e
    }

    /// The hash this entry should carry given its fields.
    pub fn compute_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"tessera-audit-v1\0");
        let mut field = |s: &[u8]| {
            h.update((s.len() as u64).to_le_bytes());
            h.update(s);
        };
        field(self.prev_hash.as_bytes());
        field(&self.id.to_le_bytes());
        field(&self.ts.millis().to_le_bytes());
        for opt in [&self.actor_key_id, &self.tenant_id, &self.request_id] {
            match opt {
                Some(v) => field(format!("s{v}").as_bytes()),
                None => field(b"n"),
            }
        }
        field(self.action.as_bytes());
        field(self.target.as_bytes());
        hex::encode(h.finalize())
    }
}

/// Where and why the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BrokenLink {
    /// The first entry that does not verify (for a missing tail, the id that
    /// should exist).
    pub id: i64,
    pub reason: String,
}

/// The outcome of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VerifyReport {
    pub ok: bool,
    /// Entries checked.
    pub checked: u64,
    pub first_broken: Option<BrokenLink>,
}

/// Checks entries fed in chain order, one at a time, so a long log can be
/// streamed in pages.
#[derive(Debug)]
pub struct ChainVerifier {
    expected_id: i64,
    prev_hash: String,
    checked: u64,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self { expected_id: 1, prev_hash: GENESIS_HASH.to_owned(), checked: 0 }
    }
}

impl ChainVerifier {
    /// The id of the last entry accepted so far (0 before any).
    pub fn last_id(&self) -> i64 {
        self.expected_id - 1
    }

    pub fn feed(&mut self, e: &AuditEntry) -> Result<(), BrokenLink> {
        if e.id != self.expected_id {
            return Err(BrokenLink {
                id: self.expected_id,
                reason: format!(
                    "entry {} is missing (next entry found is {})",
                    self.expected_id, e.id
                ),
            });
        }
        if e.prev_hash != self.prev_hash {
            return Err(BrokenLink {
                id: e.id,
                reason: format!("entry {} does not link to the entry before it", e.id),
            });
        }
        if e.compute_hash() != e.hash {
            return Err(BrokenLink {
                id: e.id,
                reason: format!("entry {} was altered: its hash does not match its contents", e.id),
            });
        }
        self.prev_hash.clone_from(&e.hash);
        self.expected_id += 1;
        self.checked += 1;
        Ok(())
    }

    /// Closes the walk against the stored chain head (last id and hash),
    /// which catches deletion of the newest entries.
    pub fn finish(self, head: Option<(i64, String)>) -> VerifyReport {
        let (head_id, head_hash) = head.unwrap_or((0, GENESIS_HASH.to_owned()));
        let last = self.last_id();
        let broken = if head_id != last {
            Some(BrokenLink {
                id: last + 1,
                reason: format!("chain head says {head_id} entries but only {last} were found"),
            })
        } else if head_hash != self.prev_hash {
            Some(BrokenLink {
                id: last,
                reason: format!("entry {last} does not match the chain head"),
            })
        } else {
            None
        };
        VerifyReport { ok: broken.is_none(), checked: self.checked, first_broken: broken }
    }

    /// A report for a walk that stopped at `broken`.
    pub fn failed(self, broken: BrokenLink) -> VerifyReport {
        VerifyReport { ok: false, checked: self.checked, first_broken: Some(broken) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<AuditEntry> {
        let mut prev = GENESIS_HASH.to_owned();
        (1..=n)
            .map(|i| {
                let ev = AuditEvent {
                    tenant_id: None,
                    action: "tenant.create".into(),
                    target: format!("t{i}"),
                };
                let e = AuditEntry::seal(
                    i,
                    Timestamp::from_millis(i),
                    &ev,
                    &AuditActor::default(),
                    &prev,
                );
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    fn verify(entries: &[AuditEntry], head: Option<(i64, String)>) -> VerifyReport {
        let mut v = ChainVerifier::default();
        for e in entries {
            if let Err(b) = v.feed(e) {
                return v.failed(b);
            }
        }
        v.finish(head)
    }

    #[test]
    fn intact_chain_verifies() {
        let c = chain(5);
        let head = Some((5, c[4].hash.clone()));
        assert!(verify(&c, head).ok);
    }

    #[test]
    fn edited_row_is_found() {
        let mut c = chain(5);
        c[2].target = "evil".into();
        let r = verify(&c, Some((5, c[4].hash.clone())));
        assert_eq!(r.first_broken.map(|b| b.id), Some(3));
    }

    #[test]
    fn deleted_middle_row_is_found() {
        let mut c = chain(5);
        let head = Some((5, c[4].hash.clone()));
        c.remove(1);
        assert_eq!(verify(&c, head).first_broken.map(|b| b.id), Some(2));
    }

    #[test]
    fn deleted_tail_is_found_through_the_head() {
        let mut c = chain(5);
        let head = Some((5, c[4].hash.clone()));
        c.pop();
        assert_eq!(verify(&c, head).first_broken.map(|b| b.id), Some(5));
    }

    #[test]
    fn rehashed_edit_still_breaks_the_next_link() {
        let mut c = chain(5);
        c[2].target = "evil".into();
        c[2].hash = c[2].compute_hash();
        assert_eq!(verify(&c, Some((5, c[4].hash.clone()))).first_broken.map(|b| b.id), Some(4));
    }
}
