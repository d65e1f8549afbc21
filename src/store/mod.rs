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
//! - [`Readiness`]: the database answers and is migrated (`/readyz`);
//! - [`Leases`]: which replica runs each scheduled job;
//! - [`RetentionStore`]: history older than `[retention]` allows, removed;
//! - [`PurgeStore`]: a finding, or everything, deleted at once (`draco purge`).
//!
//! [`Store`] is all five, for the composition root. Every state change
//! appends an audit event in the same transaction.

pub mod approvals;
mod audit_log;
mod change_requests;
#[cfg(test)]
mod conformance;
mod decisions;
pub mod deliveries;
pub mod leases;
mod location;
mod model_ledger;
pub mod postgres;
pub mod purge;
pub mod retention;
mod scans;
pub mod sealed;
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
pub use leases::{LeaseState, Leases};
pub use location::{DATABASE_FILE, DatabaseLocation, LocationError, PostgresUrl};
pub use model_ledger::ModelLedger;
pub use postgres::{PostgresStore, ScratchDatabase};
pub use purge::{PurgeReport, PurgeScope, PurgeStore};
pub use retention::{RetentionConfig, RetentionReport, RetentionStore};
pub use scans::{Coverage, RecordOutcome, ScanRecord, ScanStatus, ScanStore, StoredFinding};
pub use sealed::SealedSecrets;
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
    #[error("cannot connect to the database {location}: {message}")]
    Connect { location: String, message: String },
    #[error(
        "the database {location} was migrated by a newer Draco (its schema is at migration {found}, this build knows migrations up to {known}); upgrade Draco, or point it at another database"
    )]
    Newer {
        location: String,
        found: i64,
        known: i64,
    },
}

impl StoreError {
    /// The database could not be reached (refused or timed-out connection,
    /// unknown host, credentials refused, the database missing): what a
    /// daemon waits out, retrying, rather than exits on.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            StoreError::Connect { .. }
                | StoreError::Database(
                    sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_)
                )
        )
    }
}

/// Where a backend keeps the audit key once the composition root has
/// installed it (it is itself sealed in the store, so it comes after
/// opening); shared by the backend's clones.
pub type AuditKeySlot = std::sync::Arc<std::sync::OnceLock<crate::audit::AuditKey>>;

/// How often a waiting scan retries the scan lock.
const SCAN_LOCK_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// Held while a scan runs; dropping it lets the next scan start. On SQLite
/// it is an advisory file lock, on PostgreSQL a session advisory lock on a
/// connection of its own: either way the lock goes with its holder when the
/// process dies, even by `kill -9` (the kernel closes the file or the socket).
pub struct ScanLock {
    _held: Held,
}

// Held only to be dropped: the fields are never read.
enum Held {
    File {
        _file: std::fs::File,
    },
    Postgres {
        _connection: Box<sqlx::PgConnection>,
    },
}

impl ScanLock {
    pub(crate) fn file(file: std::fs::File) -> Self {
        Self {
            _held: Held::File { _file: file },
        }
    }

    pub(crate) fn postgres(connection: sqlx::PgConnection) -> Self {
        Self {
            _held: Held::Postgres {
                _connection: Box::new(connection),
            },
        }
    }
}

impl std::fmt::Debug for ScanLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self._held {
            Held::File { .. } => "file",
            Held::Postgres { .. } => "postgres",
        };
        f.debug_struct("ScanLock").field("held", &kind).finish()
    }
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

/// One database Draco runs on, whichever the backend: every aggregate, the
/// webhook deliveries, readiness, the scan lock and closing. The daemon and
/// the commands hold an `Arc<dyn DatabaseStore>` and hand each consumer the
/// narrow trait it needs.
#[async_trait]
pub trait DatabaseStore:
    Store + DeliveryStore + SealedSecrets + Readiness + Leases + RetentionStore + PurgeStore
{
    /// Takes the lock that serialises scans on this database across
    /// processes and replicas, waiting up to `wait` for a scan in progress.
    /// Errors: [`StoreError::ScanBusy`] when `wait` runs out.
    async fn lock_scans(&self, wait: std::time::Duration) -> Result<ScanLock, StoreError>;
    /// Closes the connections (waits for those in use to be returned).
    async fn close(&self);
    /// `sqlite` or `postgres`, for messages and metrics.
    fn backend(&self) -> &'static str;
    /// The time by the database's clock (PostgreSQL's `clock_timestamp()`;
    /// this host's on SQLite, which only this host uses): what lease
    /// expiries are set and compared by, so that replicas whose clocks
    /// drift apart still agree on them.
    async fn clock(&self) -> Result<DateTime<Utc>, StoreError>;
    /// From now on every audit event is keyed under `key`. `false` when a
    /// key was installed already (the first one stays).
    fn install_audit_key(&self, key: crate::audit::AuditKey) -> bool;
    /// The audit key installed, if any (to verify the chain with).
    fn installed_audit_key(&self) -> Option<&crate::audit::AuditKey>;
}

/// Whether the backend can serve: reachable, and its schema is the one this
/// build expects. Errors: [`StoreError::Migrate`] when the schema is behind
/// or ahead, any other error when the database cannot be reached.
#[async_trait]
pub trait Readiness: Send + Sync {
    async fn check_ready(&self) -> Result<(), StoreError>;
}
