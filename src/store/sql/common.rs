//! What every aggregate's SQL shares, compiled once per backend like the
//! aggregates themselves: the audit append that ends each write
//! transaction, and the names and errors they all use.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::Db;
use crate::audit::{GENESIS, chain_hash, digest_chain_hash, payload_digest};
use crate::domain::FindingId;
use crate::store::AuditKeySlot;
use crate::store::{StoreError, timestamp};

/// Appends one event to the hash chain inside `tx`: a v3 event (keyed,
/// its payload digested apart so that it can be tombstoned later) when the
/// store's audit key is installed, a plain one before (see [`crate::audit`]). The caller's
/// transaction holds the backend's write lock (`begin_write`), so reading the
/// chain's head and appending after it cannot interleave with another writer.
pub(crate) async fn append_audit(
    key: &AuditKeySlot,
    tx: &mut sqlx::Transaction<'_, Db>,
    actor: &str,
    action: &str,
    subject: &str,
    details: &Value,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let prev: Option<String> =
        sqlx::query_scalar("SELECT hash FROM audit_events ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut **tx)
            .await?;
    let prev = prev.unwrap_or_else(|| GENESIS.to_owned());
    let at = timestamp(at);
    // Hashed exactly as stored.
    let (actor, subject) = (text(actor), text(subject));
    let key = key.get();
    let (hash, digest) = match key {
        Some(key) => {
            let digest = payload_digest(key, &actor, details);
            let hash = digest_chain_hash(key, &prev, &at, action, &subject, &digest);
            (hash, Some(digest))
        }
        None => (
            chain_hash(&prev, &at, &actor, action, &subject, details),
            None,
        ),
    };
    sqlx::query(
        "INSERT INTO audit_events (at, actor, action, subject, details, prev_hash, hash, keyed, payload_digest) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(at)
    .bind(actor)
    .bind(action.to_owned())
    .bind(subject)
    .bind(details.to_string())
    .bind(prev)
    .bind(hash)
    .bind(key.is_some())
    .bind(digest)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Text from outside (a review body, a mail form's reason, an SMS, a
/// provider's error) as stored: PostgreSQL's `text` cannot hold U+0000
/// (SQLite's can), so it becomes U+FFFD on both backends, and one NUL in a
/// webhook cannot fail its delivery for ever on one of them.
pub(crate) fn text(raw: &str) -> String {
    raw.replace('\0', "\u{FFFD}")
}

pub(crate) fn finding_subject(id: FindingId) -> String {
    format!("finding:{id}")
}

pub(crate) fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

/// `Ok` when every migration `migrator` knows has been applied, and no
/// other: the backend's readiness. Errors: [`StoreError::Database`] when the
/// database does not answer, [`StoreError::Migrate`] when its schema is
/// behind or ahead of this build.
pub(crate) async fn migrations_current(
    pool: &sqlx::Pool<Db>,
    migrator: &sqlx::migrate::Migrator,
) -> Result<(), StoreError> {
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(pool)
            .await?;
    let known: Vec<i64> = migrator.iter().map(|m| m.version).collect();
    if applied == known {
        Ok(())
    } else {
        Err(StoreError::Migrate(format!(
            "schema at migrations {applied:?}, this build expects {known:?}"
        )))
    }
}
