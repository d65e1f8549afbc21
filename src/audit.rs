//! The audit log's hash chain. Each event's hash covers the previous hash and
//! the event itself, so a changed, removed or reordered row breaks every hash
//! after it.

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The hash the first event chains from.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEvent {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub details: Value,
    pub prev_hash: String,
    pub hash: String,
}

/// Hash of one event. `details` is serialised with sorted keys (serde_json's
/// default map), so the same event always hashes the same.
pub fn chain_hash(
    prev_hash: &str,
    at: &str,
    actor: &str,
    action: &str,
    subject: &str,
    details: &Value,
) -> String {
    let mut hasher = Sha256::new();
    for part in [prev_hash, at, actor, action, subject, &details.to_string()] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ChainError {
    #[error("audit event {seq}: previous hash does not match event {prev_seq}")]
    Broken { seq: i64, prev_seq: i64 },
    #[error("audit event {seq}: content does not match its hash (edited?)")]
    Tampered { seq: i64 },
}

/// Checks a whole log, oldest first.
pub fn verify(events: &[AuditEvent]) -> Result<(), ChainError> {
    let mut prev = (0, GENESIS.to_owned());
    for e in events {
        if e.prev_hash != prev.1 {
            return Err(ChainError::Broken {
                seq: e.seq,
                prev_seq: prev.0,
            });
        }
        if chain_hash(
            &e.prev_hash,
            &e.at,
            &e.actor,
            &e.action,
            &e.subject,
            &e.details,
        ) != e.hash
        {
            return Err(ChainError::Tampered { seq: e.seq });
        }
        prev = (e.seq, e.hash.clone());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(seq: i64, prev: &str, action: &str) -> AuditEvent {
        let at = "2026-11-25T00:00:00Z";
        let details = json!({"n": seq});
        AuditEvent {
            seq,
            at: at.into(),
            actor: "draco".into(),
            action: action.into(),
            subject: "finding:1".into(),
            hash: chain_hash(prev, at, "draco", action, "finding:1", &details),
            details,
            prev_hash: prev.into(),
        }
    }

    #[test]
    fn an_edited_event_breaks_the_chain() {
        let a = event(1, GENESIS, "finding.detected");
        let b = event(2, &a.hash, "change_request.opened");
        assert_eq!(verify(&[a.clone(), b.clone()]), Ok(()));
        let mut edited = b.clone();
        edited.action = "change_request.merged".into();
        assert_eq!(
            verify(&[a.clone(), edited]),
            Err(ChainError::Tampered { seq: 2 })
        );
        assert_eq!(
            verify(&[b]),
            Err(ChainError::Broken {
                seq: 2,
                prev_seq: 0
            })
        );
    }
}
