//! Draco's state, one trait per aggregate (as atuin's server keeps its
//! storage behind traits a backend implements), so that each consumer sees
//! only what it needs and a second backend (PostgreSQL) implements the same
//! traits. SQLite is the embedded default.
//!
//! - [`ScanStore`]: scans, cost points, findings (the pipeline, the listing commands);
//! - [`ChangeRequestStore`]: proposals and change requests (the pipeline, `draco show`);
//! - [`DecisionStore`]: claim, complete, fail a decision (the approval state machine only);
//! - [`ApprovalStore`]: votes toward a quorum, asks (codes, links), lockouts, opt-outs;
//! - [`AuditLog`]: free-standing events and reading the chain (`draco audit verify`);
//! - [`ModelLedger`]: model usage and the advice cache (`advice`: the model budget, the cache);
//! - [`Readiness`]: the database answers and is migrated (`/readyz`).
//!
//! [`Store`] is all five, for the composition root. Every state change
//! appends an audit event in the same transaction.

pub mod approvals;
mod audit_log;
mod change_requests;
mod decisions;
pub mod deliveries;
mod model_ledger;
mod scans;
pub mod sqlite;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};

pub use approvals::ApprovalStore;
pub use audit_log::AuditLog;
pub use change_requests::{
    ChangeRequestStore, OutsideChange, OutsideChangeKind, StoredChangeRequest,
};
pub use decisions::{DecisionStore, DecisionSubject};
pub use deliveries::{Delivery, DeliveryStore, Recorded};
pub use model_ledger::ModelLedger;
pub use scans::{Coverage, RecordOutcome, ScanRecord, ScanStatus, ScanStore, StoredFinding};
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path} cannot be opened: {message}")]
    Open { path: String, message: String },
    #[error(
        "database {path} is not a Draco database or is damaged ({message}); Draco did not write to it — move it aside or restore a backup"
    )]
    Unusable { path: String, message: String },
    #[error("database migration failed: {0}")]
    Migrate(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error(
        "another scan is running on this database; gave up after waiting {waited_secs} s (scan.lock_wait_secs)"
    )]
    ScanBusy { waited_secs: u64 },
    #[error("cannot take the scan lock {path}: {message}")]
    ScanLock { path: String, message: String },
}

/// Timestamps are stored as RFC 3339 UTC with microseconds: sortable as text
/// and hashed byte-for-byte by the audit chain.
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Reads a stored [`timestamp`] back (any RFC 3339 text, converted to UTC).
/// Errors: [`StoreError::Corrupt`] naming `what` when it is not one.
pub fn parse_timestamp(what: &str, raw: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// `serialize_with` helpers that write a timestamp as [`timestamp`] stores
/// it, so the JSON output (`draco findings --json`, a public contract) keeps
/// the stored text byte for byte (chrono's own format drops zero microseconds).
pub mod stored_time {
    use chrono::{DateTime, Utc};
    use serde::Serializer;

    pub fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::timestamp(*at))
    }

    pub fn serialize_option<S: Serializer>(
        at: &Option<DateTime<Utc>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) => serialize(at, s),
            None => s.serialize_none(),
        }
    }
}

/// Every aggregate of one backend, for the composition root. Consumers take
/// the narrow trait they need instead.
pub trait Store:
    ScanStore + ChangeRequestStore + DecisionStore + ApprovalStore + AuditLog + ModelLedger
{
}

impl<
    T: ScanStore
        + ChangeRequestStore
        + DecisionStore
        + ApprovalStore
        + AuditLog
        + ModelLedger
        + ?Sized,
> Store for T
{
}

/// Whether the backend can serve: reachable, and its schema is the one this
/// build expects. Errors: [`StoreError::Migrate`] when the schema is behind
/// or ahead, any other error when the database cannot be reached.
#[async_trait]
pub trait Readiness: Send + Sync {
    async fn check_ready(&self) -> Result<(), StoreError>;
}
