//! Purge: deleting every trace of a finding, or of everything, from the
//! store at once (`draco purge`). The change-request backend's side (the
//! local repository's objects, a pull request) is `compose::App::purge_*`'s.
//!
//! What stays: the audit chain (each event's row, time, action, subject and
//! hash; payloads of events written since migration 0010 / PostgreSQL 0005
//! become tombstones, older ones cannot and are counted), the sealed keys
//! and the schema's own bookkeeping.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::StoreError;
use crate::domain::FindingId;

/// Where a finding's change request lives, as the store knows it: what the
/// backend must purge too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeScope {
    pub finding: FindingId,
    /// The change request's backend (`local-git`, `github`) and branch.
    pub change_request: Option<PurgeBranch>,
    /// Other findings whose change request is on the same branch (a
    /// grouped change request): the branch holds their files too.
    pub sharing_branch: Vec<FindingId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeBranch {
    pub backend: String,
    pub branch: String,
    /// Every head commit recorded for it (the current one and those votes
    /// and asks were bound to).
    pub heads: Vec<String>,
    /// Where a human looks at it (a pull request URL).
    pub location: String,
}

/// Rows removed or tombstoned by one purge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PurgeReport {
    /// Rows deleted, all tables together.
    pub rows: u64,
    /// Audit events whose payload was replaced by a tombstone.
    pub audit_tombstoned: u64,
    /// Audit events about it written before payload digests existed: their
    /// payload cannot be replaced without breaking the chain, and is kept.
    pub audit_kept: u64,
    /// Scan summaries from which the finding's entries were removed.
    pub scans_scrubbed: u64,
}

/// The tables `purge_all` keeps: the audit chain (tombstoned), the sealed
/// keys, the job leases (replica names, no personal data: deleting them
/// under running replicas would hand their jobs around), and sqlx's
/// migration bookkeeping. Every other table is emptied; a
/// conformance test checks that no table is forgotten.
pub const KEPT_TABLES: [&str; 4] = [
    "audit_events",
    "sealed_secrets",
    "leases",
    "_sqlx_migrations",
];

#[async_trait]
pub trait PurgeStore: Send + Sync {
    /// What purging finding `id` touches; `None` when there is no such finding.
    async fn purge_scope(&self, id: FindingId) -> Result<Option<PurgeScope>, StoreError>;
    /// Deletes findings `ids` and everything tied to them in one
    /// transaction: proposals, change requests, votes and asks on their
    /// branches, cached advice for their fingerprints, webhook deliveries
    /// that name their branch or pull request, their entries in scan
    /// summaries; tombstones the payload of the audit events about them;
    /// then appends one `purge` event per finding naming only its id.
    async fn purge_findings(
        &self,
        ids: &[FindingId],
        at: DateTime<Utc>,
    ) -> Result<PurgeReport, StoreError>;
    /// Empties every table but [`KEPT_TABLES`] and tombstones every audit
    /// payload that can be, in one transaction, then appends one `purge`
    /// event (`{"all": true}`).
    async fn purge_all(&self, at: DateTime<Utc>) -> Result<PurgeReport, StoreError>;
    /// After a purge: lets the database give back what the deleted rows
    /// used, so their bytes do not linger in its files (SQLite: the
    /// write-ahead log is checkpointed and truncated; deleted content is
    /// already zeroed by `secure_delete`. PostgreSQL: `VACUUM FULL` of the
    /// tables purged). Errors are the database's.
    async fn compact(&self) -> Result<(), StoreError>;
    /// Every table of the database, by name.
    async fn tables(&self) -> Result<Vec<String>, StoreError>;
    /// Every text and binary value of every table, as `table: value`
    /// (binary values lossily as UTF-8): what a purge test searches.
    #[cfg(test)]
    async fn dump_text(&self) -> Result<Vec<String>, StoreError>;
}
