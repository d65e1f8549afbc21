//! The audit log's hash chain. Each event's hash covers the previous hash and
//! the event itself, so a changed, removed or reordered row breaks every hash
//! after it.
//!
//! Events are keyed: their hash is an HMAC-SHA256 under the audit key,
//! which the database holds only sealed under the master key. Someone who
//! can write to the database but has not the master key can drop the
//! triggers and edit rows, but cannot compute hashes that verify. Events
//! written before keying existed (`keyed = false`, plain SHA-256) still
//! verify, but only before the first keyed one: an unkeyed event after it
//! is a forgery. A truncated tail is caught by the anchor (the head's
//! sequence number and hash, kept outside the database).
//!
//! Three versions of an event coexist in one log, oldest first:
//! - v1, plain: SHA-256 over (prev_hash, at, actor, action, subject, details);
//! - v2, keyed: the same parts under HMAC-SHA256 with the audit key;
//! - v3, keyed with a payload digest (migration 0010, PostgreSQL 0005):
//!   the payload (actor and details, where personal data sits) is digested
//!   on its own ([`payload_digest`], HMAC-SHA256 under the audit key with
//!   its own domain tag, stored in `payload_digest`), and the chain hash
//!   covers (prev_hash, at, action, subject, payload_digest). So the payload
//!   can later be replaced by a tombstone ([`TOMBSTONE_ACTOR`],
//!   `{"purged": "<purged_at>"}`) by retention or `draco purge`, and the
//!   chain still verifies: the digest is checked against the payload only
//!   while the event is not tombstoned. Someone without the key who
//!   tombstones an event that was not purged loses its payload (that is
//!   what a tombstone is) but can change nothing else unnoticed: time,
//!   action, subject and order stay under the chain hash, and a
//!   tombstone's text is fixed. v1 and v2 events cannot be tombstoned
//!   (their hash covers the payload itself): purge and retention leave
//!   their payload and count them.

use hmac::Mac;
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
    /// Hashed under the audit key (every event since keying began).
    pub keyed: bool,
    /// v3 events: the keyed digest of the payload (actor and details),
    /// hex; the chain hash covers it instead of the payload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_digest: Option<String>,
    /// When the payload was replaced by a tombstone (retention or purge),
    /// as stored (RFC 3339); `None` while it is intact.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purged_at: Option<String>,
}

/// The actor of a tombstoned event.
pub const TOMBSTONE_ACTOR: &str = "purged";

/// The details of an event tombstoned at `purged_at` (the stored text):
/// `{"purged": "<purged_at>"}`. The triggers that keep the log append-only
/// accept exactly this text as the one update they allow.
pub fn tombstone_details(purged_at: &str) -> Value {
    serde_json::json!({ "purged": purged_at })
}

/// Keyed digest of an event's payload (v3): HMAC-SHA256 under `key` of its
/// own domain tag, then the length-prefixed actor and details, hex.
pub fn payload_digest(key: &AuditKey, actor: &str, details: &Value) -> String {
    keyed_hex(
        key,
        b"draco audit payload v3",
        &[actor, &details.to_string()],
    )
}

/// HMAC-SHA256 under `key` of `tag`, then each part as its length (u64,
/// big-endian) and its bytes, in hex: what every keyed hash here is.
fn keyed_hex(key: &AuditKey, tag: &[u8], parts: &[&str]) -> String {
    let mut mac = <hmac::Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&key.0)
        .expect("HMAC takes a key of any length");
    mac.update(tag);
    for part in parts {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part.as_bytes());
    }
    hex::encode(mac.finalize().into_bytes())
}

/// Keyed hash of one v3 event: HMAC-SHA256 under `key` of its domain tag,
/// then the length-prefixed previous hash, time, action, subject and the
/// payload's digest ([`payload_digest`]), never the payload itself.
pub fn digest_chain_hash(
    key: &AuditKey,
    prev_hash: &str,
    at: &str,
    action: &str,
    subject: &str,
    payload_digest: &str,
) -> String {
    keyed_hex(
        key,
        b"draco audit chain v3",
        &[prev_hash, at, action, subject, payload_digest],
    )
}

/// The key the chain's hashes are HMACs under. Never printed.
pub struct AuditKey([u8; 32]);

impl AuditKey {
    pub fn from_bytes(key: [u8; 32]) -> Self {
        Self(key)
    }
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(…)")
    }
}

/// The audit key's name among the sealed secrets.
pub const SEALED_NAME: &str = "audit_key";

/// Keyed hash of one event: HMAC-SHA256 under `key` of a domain tag, then
/// the same length-prefixed parts as [`chain_hash`].
pub fn keyed_chain_hash(
    key: &AuditKey,
    prev_hash: &str,
    at: &str,
    actor: &str,
    action: &str,
    subject: &str,
    details: &Value,
) -> String {
    keyed_hex(
        key,
        b"draco audit chain v2",
        &[prev_hash, at, actor, action, subject, &details.to_string()],
    )
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
    #[error(
        "audit event {seq} is not keyed but follows keyed events: written without the audit key (forged?)"
    )]
    Unkeyed { seq: i64 },
    #[error("audit event {seq} is keyed, and no audit key was given to check it")]
    NoKey { seq: i64 },
    #[error(
        "the audit log ends before the anchored event {seq} (its tail was cut, or the anchored event was changed)"
    )]
    Truncated { seq: i64 },
}

/// The head of the chain as last seen: kept outside the database (the
/// file `audit.head` in the data directory), so that deleting the newest
/// events is noticed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub seq: i64,
    pub hash: String,
}

/// The git trailer key under which merge commits carry the audit head
/// (`Draco-Audit-Head: <seq> <hash>`, git-interpret-trailers(1) syntax).
pub const MERGE_TRAILER: &str = "Draco-Audit-Head";

impl Anchor {
    /// The merge-commit trailer line for this head, without a newline.
    pub fn to_trailer(&self) -> String {
        format!("{MERGE_TRAILER}: {} {}", self.seq, self.hash)
    }

    /// Every head a commit message's trailers name.
    pub fn from_trailers(message: &str) -> Vec<Self> {
        message
            .lines()
            .filter_map(|line| line.strip_prefix(MERGE_TRAILER)?.strip_prefix(':'))
            .filter_map(Self::parse)
            .collect()
    }

    /// `"<seq> <hash>\n"`.
    pub fn to_line(&self) -> String {
        format!("{} {}\n", self.seq, self.hash)
    }

    /// The text [`Anchor::to_line`] wrote; `None` when it is not one.
    pub fn parse(text: &str) -> Option<Self> {
        let (seq, hash) = text.trim().split_once(' ')?;
        Some(Self {
            seq: seq.parse().ok()?,
            hash: hash.to_owned(),
        })
    }
}

/// Checks a whole log, oldest first: every link, every hash (keyed ones
/// under `key`), no unkeyed event after a keyed one, and, with an
/// `anchor`, that the anchored event is there unchanged. Returns the head.
pub fn verify(
    events: &[AuditEvent],
    key: Option<&AuditKey>,
    anchor: Option<&Anchor>,
) -> Result<Option<Anchor>, ChainError> {
    let mut prev = (0, GENESIS.to_owned());
    let mut keyed_seen = false;
    for e in events {
        if e.prev_hash != prev.1 {
            return Err(ChainError::Broken {
                seq: e.seq,
                prev_seq: prev.0,
            });
        }
        let expected = if e.keyed {
            keyed_seen = true;
            let Some(key) = key else {
                return Err(ChainError::NoKey { seq: e.seq });
            };
            match &e.payload_digest {
                Some(digest) => {
                    let payload_holds = match &e.purged_at {
                        // A tombstone has one fixed text: nothing can be
                        // said in it unverified.
                        Some(purged_at) => {
                            e.actor == TOMBSTONE_ACTOR && e.details == tombstone_details(purged_at)
                        }
                        None => *digest == payload_digest(key, &e.actor, &e.details),
                    };
                    if !payload_holds {
                        return Err(ChainError::Tampered { seq: e.seq });
                    }
                    digest_chain_hash(key, &e.prev_hash, &e.at, &e.action, &e.subject, digest)
                }
                // A tombstone needs a digest to stand in for the payload.
                None if e.purged_at.is_some() => return Err(ChainError::Tampered { seq: e.seq }),
                None => keyed_chain_hash(
                    key,
                    &e.prev_hash,
                    &e.at,
                    &e.actor,
                    &e.action,
                    &e.subject,
                    &e.details,
                ),
            }
        } else if keyed_seen {
            return Err(ChainError::Unkeyed { seq: e.seq });
        } else if e.payload_digest.is_some() || e.purged_at.is_some() {
            // Digests and tombstones exist only under the key.
            return Err(ChainError::Tampered { seq: e.seq });
        } else {
            chain_hash(
                &e.prev_hash,
                &e.at,
                &e.actor,
                &e.action,
                &e.subject,
                &e.details,
            )
        };
        if expected != e.hash {
            return Err(ChainError::Tampered { seq: e.seq });
        }
        prev = (e.seq, e.hash.clone());
    }
    if let Some(anchor) = anchor {
        let present = events
            .iter()
            .any(|e| e.seq == anchor.seq && e.hash == anchor.hash);
        if !present {
            return Err(ChainError::Truncated { seq: anchor.seq });
        }
    }
    Ok(events.last().map(|e| Anchor {
        seq: e.seq,
        hash: e.hash.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(seq: i64, prev: &str, action: &str, key: Option<&AuditKey>) -> AuditEvent {
        let at = "2026-11-25T00:00:00Z";
        let details = json!({"n": seq});
        let hash = match key {
            Some(key) => keyed_chain_hash(key, prev, at, "draco", action, "finding:1", &details),
            None => chain_hash(prev, at, "draco", action, "finding:1", &details),
        };
        AuditEvent {
            seq,
            at: at.into(),
            actor: "draco".into(),
            action: action.into(),
            subject: "finding:1".into(),
            hash,
            details,
            prev_hash: prev.into(),
            keyed: key.is_some(),
            payload_digest: None,
            purged_at: None,
        }
    }

    /// A v3 event: the chain hash covers the payload's digest.
    fn event_v3(seq: i64, prev: &str, action: &str, key: &AuditKey) -> AuditEvent {
        let at = "2026-11-25T00:00:00Z";
        let details = json!({"n": seq, "phone": "+15550100"});
        let digest = payload_digest(key, "ada@example.com", &details);
        AuditEvent {
            seq,
            at: at.into(),
            actor: "ada@example.com".into(),
            action: action.into(),
            subject: "finding:1".into(),
            hash: digest_chain_hash(key, prev, at, action, "finding:1", &digest),
            details,
            prev_hash: prev.into(),
            keyed: true,
            payload_digest: Some(digest),
            purged_at: None,
        }
    }

    fn tombstoned(mut e: AuditEvent) -> AuditEvent {
        let purged_at = "2026-12-01T00:00:00.000000Z";
        e.actor = TOMBSTONE_ACTOR.into();
        e.details = tombstone_details(purged_at);
        e.purged_at = Some(purged_at.into());
        e
    }

    #[test]
    fn a_tombstoned_v3_event_keeps_the_chain_verifying_after_v1_and_v2_events() {
        let key = AuditKey::from_bytes([7; 32]);
        let a = event(1, GENESIS, "scan.started", None);
        let b = event(2, &a.hash, "finding.detected", Some(&key));
        let c = event_v3(3, &b.hash, "change_request.opened", &key);
        let d = event_v3(4, &c.hash, "approval.counted", &key);
        let log = vec![a, b, c, d];
        assert!(verify(&log, Some(&key), None).is_ok());
        let mut purged = log.clone();
        purged[2] = tombstoned(purged[2].clone());
        let head = verify(&purged, Some(&key), None)
            .expect("a tombstone verifies")
            .expect("a head");
        assert_eq!(head.seq, 4);
        // Without the key: no.
        assert_eq!(
            verify(&purged, None, None),
            Err(ChainError::NoKey { seq: 2 })
        );
    }

    #[test]
    fn a_hand_edited_tombstone_or_payload_does_not_verify() {
        let key = AuditKey::from_bytes([7; 32]);
        let a = event_v3(1, GENESIS, "finding.detected", &key);
        let b = event_v3(2, &a.hash, "change_request.merged", &key);
        let good = vec![a.clone(), tombstoned(b.clone())];
        assert!(verify(&good, Some(&key), None).is_ok());
        // The subject, action or time of a tombstone changed.
        for edit in [
            |e: &mut AuditEvent| e.subject = "finding:2".into(),
            |e: &mut AuditEvent| e.action = "change_request.closed".into(),
            |e: &mut AuditEvent| e.at = "2026-11-26T00:00:00Z".into(),
            // A "tombstone" that still says something.
            |e: &mut AuditEvent| e.details = json!({"purged": "x", "note": "forged"}),
            |e: &mut AuditEvent| e.actor = "mallory".into(),
            // A digest swapped in.
            |e: &mut AuditEvent| e.payload_digest = Some("00".repeat(32)),
        ] {
            let mut edited = good.clone();
            edit(&mut edited[1]);
            assert_eq!(
                verify(&edited, Some(&key), None),
                Err(ChainError::Tampered { seq: 2 }),
                "{:?}",
                edited[1]
            );
        }
        // An intact v3 payload edited (its digest no longer matches).
        let mut edited = vec![a.clone(), b.clone()];
        edited[1].details = json!({"n": 2, "phone": "+15550199"});
        assert_eq!(
            verify(&edited, Some(&key), None),
            Err(ChainError::Tampered { seq: 2 })
        );
        // A tombstone claimed on a v2 event (no digest to stand in).
        let v2 = event(2, &a.hash, "change_request.merged", Some(&key));
        assert_eq!(
            verify(&[a.clone(), tombstoned(v2)], Some(&key), None),
            Err(ChainError::Tampered { seq: 2 })
        );
        // Deleted, reordered: as before.
        assert_eq!(
            verify(&[tombstoned(b.clone())], Some(&key), None),
            Err(ChainError::Broken {
                seq: 2,
                prev_seq: 0
            })
        );
        assert!(matches!(
            verify(&[tombstoned(b), a], Some(&key), None),
            Err(ChainError::Broken { .. })
        ));
    }

    #[test]
    fn an_edited_event_breaks_the_chain() {
        let a = event(1, GENESIS, "finding.detected", None);
        let b = event(2, &a.hash, "change_request.opened", None);
        assert!(verify(&[a.clone(), b.clone()], None, None).is_ok());
        let mut edited = b.clone();
        edited.action = "change_request.merged".into();
        assert_eq!(
            verify(&[a.clone(), edited], None, None),
            Err(ChainError::Tampered { seq: 2 })
        );
        assert_eq!(
            verify(&[b], None, None),
            Err(ChainError::Broken {
                seq: 2,
                prev_seq: 0
            })
        );
    }

    #[test]
    fn keyed_events_verify_only_under_their_key_and_cannot_be_rewritten_without_it() {
        let key = AuditKey::from_bytes([9; 32]);
        let a = event(1, GENESIS, "scan.started", None);
        let b = event(2, &a.hash, "finding.detected", Some(&key));
        let c = event(3, &b.hash, "change_request.opened", Some(&key));
        let head = verify(&[a.clone(), b.clone(), c.clone()], Some(&key), None)
            .expect("verifies")
            .expect("a head");
        assert_eq!(head.seq, 3);
        // Without the key, or under another one: no.
        assert_eq!(
            verify(&[a.clone(), b.clone()], None, None),
            Err(ChainError::NoKey { seq: 2 })
        );
        let other = AuditKey::from_bytes([1; 32]);
        assert_eq!(
            verify(&[a.clone(), b.clone()], Some(&other), None),
            Err(ChainError::Tampered { seq: 2 })
        );
        // An attacker without the key rewrites event 3 and re-chains it
        // the only way they can: unkeyed.
        let forged = event(3, &b.hash, "change_request.merged", None);
        assert_eq!(
            verify(&[a.clone(), b.clone(), forged], Some(&key), None),
            Err(ChainError::Unkeyed { seq: 3 })
        );
        // The newest event deleted: the anchor notices.
        let anchor = Anchor::parse(&head.to_line()).expect("parses");
        assert_eq!(
            verify(&[a.clone(), b.clone()], Some(&key), Some(&anchor)),
            Err(ChainError::Truncated { seq: 3 })
        );
        assert!(verify(&[a, b, c], Some(&key), Some(&anchor)).is_ok());
    }
}
