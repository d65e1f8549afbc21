//! Draco's state behind one trait, so the pipeline and the approval flow do
//! not care which database holds it. SQLite is the embedded default.
//!
//! Every state change appends an audit event in the same transaction.

pub mod llm_budget;
pub mod sqlite;

use async_trait::async_trait;
use std::collections::HashSet;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::audit::AuditEvent;
use crate::domain::{ChangeRequestId, Finding, FindingId, FindingStatus, ScanId};
use crate::gitops::OpenedChangeRequest;
use crate::remediate::{Proposal, Recommendation};
use crate::sources::CostPoint;

pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path} cannot be opened: {message}")]
    Open { path: String, message: String },
    #[error(
        "database {path} is not a Draco database or is damaged ({message}); it was left untouched — move it aside or restore a backup"
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeRequestState {
    Open,
    /// Approval recorded, merge not yet recorded.
    Approved,
    Merged,
    /// Rejection recorded, close not yet recorded.
    Rejected,
    Closed,
    /// The decision could not be carried out, or what was proposed is no
    /// longer on the branch (changed outside Draco, repository gone). Not
    /// stuck: it may be decided again, and the next scan re-proposes it.
    Failed,
}

impl ChangeRequestState {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeRequestState::Open => "open",
            ChangeRequestState::Approved => "approved",
            ChangeRequestState::Merged => "merged",
            ChangeRequestState::Rejected => "rejected",
            ChangeRequestState::Closed => "closed",
            ChangeRequestState::Failed => "failed",
        }
    }

    pub fn past_tense(self) -> &'static str {
        match self {
            ChangeRequestState::Open => "opened",
            ChangeRequestState::Approved | ChangeRequestState::Merged => "approved",
            ChangeRequestState::Rejected | ChangeRequestState::Closed => "rejected",
            ChangeRequestState::Failed => "marked failed",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "open" => ChangeRequestState::Open,
            "approved" => ChangeRequestState::Approved,
            "merged" => ChangeRequestState::Merged,
            "rejected" => ChangeRequestState::Rejected,
            "closed" => ChangeRequestState::Closed,
            "failed" => ChangeRequestState::Failed,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "unknown change request state `{other}`"
                )));
            }
        })
    }
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

    fn parse(s: &str) -> Result<Self, StoreError> {
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

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredChangeRequest {
    pub id: ChangeRequestId,
    pub finding_id: FindingId,
    pub backend: String,
    pub branch: String,
    pub head_commit: String,
    pub location: String,
    pub state: ChangeRequestState,
    #[serde(serialize_with = "stored_time::serialize")]
    pub opened_at: DateTime<Utc>,
    pub decided_by: Option<String>,
    pub decision_channel: Option<String>,
    #[serde(serialize_with = "stored_time::serialize_option")]
    pub decided_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
    pub merge_commit: Option<String>,
    /// Why it is `failed`.
    pub failure: Option<String>,
}

impl StoredChangeRequest {
    /// The recorded decision, if one was made.
    pub fn decision(&self) -> Option<DecisionRecord> {
        let approve = match self.state {
            ChangeRequestState::Approved | ChangeRequestState::Merged => true,
            ChangeRequestState::Rejected | ChangeRequestState::Closed => false,
            ChangeRequestState::Open | ChangeRequestState::Failed => return None,
        };
        Some(DecisionRecord {
            approve,
            by: self.decided_by.clone()?,
            channel: self.decision_channel.clone()?,
            at: self.decided_at?,
            reason: self.reason.clone(),
        })
    }
}

/// A human decision on a change request.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionRecord {
    pub approve: bool,
    pub by: String,
    pub channel: String,
    pub at: DateTime<Utc>,
    pub reason: Option<String>,
}

/// What recording one scan's findings did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RecordOutcome {
    pub new: Vec<FindingId>,
    pub unchanged: Vec<FindingId>,
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

#[async_trait]
pub trait Store: Send + Sync {
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
    async fn save_proposal(
        &self,
        finding_id: FindingId,
        proposal: &Proposal,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    async fn proposal(&self, finding_id: FindingId) -> Result<Option<Proposal>, StoreError>;
    async fn record_change_request(
        &self,
        finding_id: FindingId,
        backend: &str,
        opened: &OpenedChangeRequest,
        at: DateTime<Utc>,
    ) -> Result<ChangeRequestId, StoreError>;
    async fn change_request_for_finding(
        &self,
        finding_id: FindingId,
    ) -> Result<Option<StoredChangeRequest>, StoreError>;
    async fn change_requests(&self) -> Result<Vec<StoredChangeRequest>, StoreError>;
    /// Records a decision if, and only if, the change request is still open
    /// (or `failed`: a failed one may be decided again).
    /// Returns `false` when somebody decided first: decisions are single-use.
    async fn claim_decision(
        &self,
        change_request_id: ChangeRequestId,
        decision: &DecisionRecord,
    ) -> Result<bool, StoreError>;
    /// Marks the change request `failed` with why (audited) and puts its
    /// finding back to `open`, so that it is decided again or re-proposed.
    /// A change request already merged or closed is left as it is.
    async fn fail_change_request(
        &self,
        change_request_id: ChangeRequestId,
        failure: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Records that the decision was carried out (merged, or closed).
    async fn complete_decision(
        &self,
        change_request_id: ChangeRequestId,
        merge_commit: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Appends a free-standing audit event (e.g. an advisor failure).
    async fn audit(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        details: &Value,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Audit events, oldest first; only those about `subject` when given.
    async fn audit_events(&self, subject: Option<&str>) -> Result<Vec<AuditEvent>, StoreError>;
    /// A model's earlier (still redacted) answer for this finding under this
    /// prompt and model.
    async fn cached_advice(
        &self,
        cache_key: &str,
        fingerprint: &str,
    ) -> Result<Option<Recommendation>, StoreError>;
    async fn cache_advice(
        &self,
        cache_key: &str,
        fingerprint: &str,
        recommendation: &Recommendation,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Requests and tokens (input + output) spent with a provider on one UTC day.
    async fn llm_usage(&self, provider: &str, day: NaiveDate) -> Result<(u64, u64), StoreError>;
    async fn add_llm_usage(
        &self,
        provider: &str,
        day: NaiveDate,
        input_tokens: u64,
        output_tokens: u64,
    ) -> Result<(), StoreError>;
}
