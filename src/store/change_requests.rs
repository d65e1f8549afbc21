//! The change-request aggregate: the proposal made for a finding and the
//! change request opened for it (one per finding, re-proposed in place when
//! it failed).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{StoreError, stored_time};
use crate::domain::{ChangeRequestId, ChangeRequestState, DecisionRecord, FindingId};
use crate::gitops::OpenedChangeRequest;
use crate::remediate::Proposal;

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
    /// When `head_commit` was set (opened, re-proposed or updated); `None`
    /// for rows written before Draco recorded it (then `opened_at`).
    #[serde(serialize_with = "stored_time::serialize_option")]
    pub head_at: Option<DateTime<Utc>>,
    pub decided_by: Option<String>,
    pub decision_channel: Option<String>,
    #[serde(serialize_with = "stored_time::serialize_option")]
    pub decided_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
    pub merge_commit: Option<String>,
    /// Why it is `failed`.
    pub failure: Option<String>,
    /// What was done to it outside Draco, if anything (`pushed`, `merged`,
    /// `closed`); cleared when Draco re-proposes it.
    pub outside_change: Option<OutsideChangeKind>,
    /// Every vote cast on this change request's branch, oldest first (those
    /// on earlier commits `superseded`). Filled by the listing reads
    /// (`change_requests`, `change_request_for_finding`); empty elsewhere.
    pub approvals: Vec<super::approvals::StoredApproval>,
    /// Who was asked about the current head, on which channel, and how
    /// the message went (`held`: waiting for the daily message cap).
    /// Filled like `approvals`.
    pub asks: Vec<super::approvals::StoredAsk>,
}

/// What someone did to a change request outside Draco.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum OutsideChange {
    /// A commit Draco did not make is now the branch's head: the change
    /// request is `superseded` (nothing on it may be approved) until Draco
    /// proposes it again.
    Pushed { head: String },
    /// Merged without Draco, as `merge_commit`.
    Merged { merge_commit: Option<String> },
    /// Closed without merging, not by Draco.
    Closed,
    /// The branch and its pull request are gone: the change request fails
    /// (shown as `closed` outside Draco) and the next scan proposes it again.
    Deleted,
    /// A pull request closed by hand was reopened with the head Draco
    /// recorded: the change request is open again, approvable as before.
    Reopened { head: String },
}

impl OutsideChange {
    pub fn as_str(&self) -> &'static str {
        match self {
            OutsideChange::Pushed { .. } => "pushed",
            OutsideChange::Merged { .. } => "merged",
            OutsideChange::Closed => "closed",
            OutsideChange::Deleted => "deleted",
            OutsideChange::Reopened { .. } => "reopened",
        }
    }
}

/// `change_request.outside_change` in `draco findings --json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutsideChangeKind {
    Pushed,
    Merged,
    Closed,
}

impl StoredChangeRequest {
    /// The recorded decision, if one was made.
    pub fn decision(&self) -> Option<DecisionRecord> {
        let approve = match self.state {
            ChangeRequestState::Approved | ChangeRequestState::Merged => true,
            ChangeRequestState::Rejected | ChangeRequestState::Closed => false,
            ChangeRequestState::Open
            | ChangeRequestState::AwaitingApproval
            | ChangeRequestState::Failed
            | ChangeRequestState::Superseded
            | ChangeRequestState::Expired => return None,
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

/// Proposals and change requests, as the pipeline writes them and the
/// commands read them. Deciding is [`DecisionStore`](super::DecisionStore)'s.
#[async_trait]
pub trait ChangeRequestStore: Send + Sync {
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
    /// Records `change` to the change request on `branch` of `backend`, in
    /// one transaction with its audit event (`change_request.outside_pushed`
    /// …, by `actor`, the GitHub login that did it). With `pull_number`,
    /// only the change request whose location is that pull request
    /// (`…/pull/<n>`). Only where Draco's
    /// record disagrees: a push of the head Draco recorded, or a change to a
    /// change request Draco already merged, rejected or closed, changes
    /// nothing. Returns the findings whose change request changed: one, or
    /// every finding of a grouped change request.
    async fn record_outside_change(
        &self,
        backend: &str,
        branch: &str,
        pull_number: Option<u64>,
        change: &OutsideChange,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<FindingId>, StoreError>;
    /// Closes the change request of a finding that resolved itself (`open`
    /// or `failed` → `closed`, with `reason`), with its audit event
    /// (`change_request.withdrawn`). `false` when there was none to close.
    async fn withdraw_change_request(
        &self,
        finding_id: FindingId,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Records that the open change request of `finding_id`, proposed at
    /// `old_head`, now holds `new_head` (Draco brought it up to date), with
    /// its audit event (`change_request.updated`), for every finding it
    /// covers. `false` when it is no longer open at `old_head` (decided or
    /// moved meanwhile).
    async fn update_change_request(
        &self,
        finding_id: FindingId,
        old_head: &str,
        new_head: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Every change request recorded on `branch` of `backend`, by finding:
    /// the findings a grouped change request covers (and earlier ones on
    /// the same branch, merged or closed, for the record).
    async fn change_requests_on_branch(
        &self,
        backend: &str,
        branch: &str,
    ) -> Result<Vec<StoredChangeRequest>, StoreError>;
    /// Change requests Draco merged that no scan has checked since: one row
    /// per finding, oldest first.
    async fn merged_to_verify(&self) -> Result<Vec<StoredChangeRequest>, StoreError>;
    /// Records that a scan checked the merged change request on `branch` at
    /// `head_commit` (`resolved`: every finding it covered is gone), with
    /// its audit event per finding.
    async fn mark_verified(
        &self,
        backend: &str,
        branch: &str,
        head_commit: &str,
        resolved: bool,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Change requests still `open` or `failed` whose finding is resolved:
    /// to withdraw (also those a failed withdrawal left behind).
    async fn change_requests_of_resolved_findings(
        &self,
    ) -> Result<Vec<StoredChangeRequest>, StoreError>;
}
