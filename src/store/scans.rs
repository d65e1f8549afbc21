//! The scan aggregate: scans, the daily cost history they fetch, and the
//! findings they record (deduplicated by fingerprint, resolved only within
//! what a scan covered).

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde_json::Value;

use super::{StoreError, stored_time};
use crate::domain::{Finding, FindingId, FindingStatus, ScanId};
use crate::sources::CostPoint;

/// A finding as stored, with its life-cycle fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredFinding {
    pub id: FindingId,
    #[serde(flatten)]
    pub finding: Finding,
    pub status: FindingStatus,
    #[serde(serialize_with = "stored_time::serialize")]
    pub first_seen_at: DateTime<Utc>,
    #[serde(serialize_with = "stored_time::serialize")]
    pub last_seen_at: DateTime<Utc>,
    #[serde(serialize_with = "stored_time::serialize_option")]
    pub resolved_at: Option<DateTime<Utc>>,
}

/// Where a scan stands. Stored as its snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanStatus {
    /// Started and not finished. Only ever true of a scan whose process holds
    /// the scan lock; any other `running` scan is marked `interrupted`.
    Running,
    /// Everything was read and every finding was handled.
    Ok,
    /// A part could not be read (an account, a region, the cost input) or a
    /// finding could not be remediated; the rest was scanned.
    Partial,
    /// The scan could not proceed; it resolved nothing.
    Failed,
    /// Its process died or was stopped before it finished; the next scan
    /// repairs what it can (every step commits before the next starts).
    Interrupted,
}

impl ScanStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ScanStatus::Running => "running",
            ScanStatus::Ok => "ok",
            ScanStatus::Partial => "partial",
            ScanStatus::Failed => "failed",
            ScanStatus::Interrupted => "interrupted",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "running" => ScanStatus::Running,
            // Written as `succeeded` before the name was fixed as `ok`.
            "ok" | "succeeded" => ScanStatus::Ok,
            "partial" => ScanStatus::Partial,
            "failed" => ScanStatus::Failed,
            "interrupted" => ScanStatus::Interrupted,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "unknown scan status `{other}`"
                )));
            }
        })
    }
}

impl std::fmt::Display for ScanStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One scan as stored, for `draco scans`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScanRecord {
    pub id: ScanId,
    pub source: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub status: ScanStatus,
    /// What could not be read or remediated, one line each.
    pub errors: Vec<String>,
}

/// What recording one scan's findings did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RecordOutcome {
    pub new: Vec<FindingId>,
    pub unchanged: Vec<FindingId>,
    /// Seen again with another severity or a dollar impact a quarter
    /// higher or lower: an open change request is brought up to date.
    pub changed: Vec<FindingId>,
    pub reopened: Vec<FindingId>,
    pub resolved: Vec<FindingId>,
}

/// What a scan actually looked at. Findings outside it are left alone: an
/// account whose credentials failed does not see its findings "resolved".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Coverage {
    pub cost: bool,
    /// `(account, region)` pairs whose inventory was read completely.
    pub regions: HashSet<(String, String)>,
}

impl Coverage {
    pub fn covers(&self, account: &str, region: Option<&str>) -> bool {
        match region {
            None => self.cost,
            Some(region) => self
                .regions
                .contains(&(account.to_owned(), region.to_owned())),
        }
    }
}

/// Scans, cost points and findings: what a scan writes and what the
/// commands that list them read.
#[async_trait]
pub trait ScanStore: Send + Sync {
    async fn begin_scan(&self, source: &str, at: DateTime<Utc>) -> Result<ScanId, StoreError>;
    async fn finish_scan(
        &self,
        scan_id: ScanId,
        status: ScanStatus,
        summary: &Value,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Marks every scan still `running` as `interrupted` and returns their
    /// ids. Only the holder of the scan lock may call it: it proves that no
    /// live process is running them.
    async fn interrupt_abandoned_scans(&self, at: DateTime<Utc>)
    -> Result<Vec<ScanId>, StoreError>;
    /// The most recent scans, newest first.
    async fn scans(&self, limit: u32) -> Result<Vec<ScanRecord>, StoreError>;
    /// Upserts daily cost; returns how many rows were new or changed.
    async fn save_cost_points(&self, points: &[CostPoint]) -> Result<u64, StoreError>;
    /// Stored daily cost from `day` on, oldest first.
    async fn cost_points_since(&self, day: NaiveDate) -> Result<Vec<CostPoint>, StoreError>;
    async fn last_cost_day(&self) -> Result<Option<NaiveDate>, StoreError>;
    /// Inserts new findings, updates the ones seen again, and resolves the
    /// ones no longer seen, within what the scan covered.
    async fn record_findings(
        &self,
        scan_id: ScanId,
        findings: &[Finding],
        coverage: &Coverage,
        at: DateTime<Utc>,
    ) -> Result<RecordOutcome, StoreError>;
    async fn findings(&self) -> Result<Vec<StoredFinding>, StoreError>;
    async fn finding(&self, id: FindingId) -> Result<Option<StoredFinding>, StoreError>;
    /// Findings still present that have no change request yet, or only a `failed` one (to re-propose).
    async fn findings_without_change_request(&self) -> Result<Vec<StoredFinding>, StoreError>;
}
