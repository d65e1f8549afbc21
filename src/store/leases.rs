//! Leases: which replica runs each scheduled job.
//!
//! Every replica serves HTTP; a scheduled job (the scan, the approvals
//! follow-up, retention) runs on the one replica holding its lease. A lease
//! is a row (`leases`: job, holder, expiry) that its holder renews well
//! within its time to live while it works; when the holder dies or stalls,
//! the lease expires and another replica takes it over. A row rather than a
//! PostgreSQL session advisory lock: it survives a connection pooler in
//! transaction mode (PgBouncer), shows who holds what, and expires on time
//! instead of when TCP keepalives notice a vanished host.
//!
//! Callers pass the database's time ([`super::DatabaseStore::clock`]) as
//! `now`, so expiries do not depend on the replicas' clocks agreeing.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;

/// What [`Leases::acquire_lease`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseState {
    /// `holder` holds the lease until the new expiry: renewed, newly taken
    /// when it was free, or taken over from `taken_from` (whose lease had
    /// expired: that replica died or stalled mid-job).
    Held { taken_from: Option<String> },
    /// Another replica holds it, until `until`.
    HeldBy {
        holder: String,
        until: DateTime<Utc>,
    },
}

/// The `leases` table. Job names are the daemon's: `scan`, `approvals`,
/// `retention`.
#[async_trait]
pub trait Leases: Send + Sync {
    /// Takes or renews lease `job` for `holder` until `until` when it is
    /// free, expired at `now`, or `holder`'s already; one statement, so two
    /// replicas racing for a free lease cannot both win.
    async fn acquire_lease(
        &self,
        job: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<LeaseState, StoreError>;

    /// Gives lease `job` up if `holder` holds it (a clean shutdown: another
    /// replica takes it at its next try instead of after the expiry).
    async fn release_lease(&self, job: &str, holder: &str) -> Result<(), StoreError>;
}
