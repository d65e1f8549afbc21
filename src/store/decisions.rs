//! The decision aggregate: the single-use claim of a human decision on a
//! change request, and carrying it out (merged or closed) or failing it.
//! This is all the approval state machine sees of the store.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::StoreError;
use super::change_requests::StoredChangeRequest;
use crate::domain::{ChangeRequestId, FindingId};

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

    pub(crate) fn parse(s: &str) -> Result<Self, StoreError> {
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

/// A human decision on a change request.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionRecord {
    pub approve: bool,
    pub by: String,
    pub channel: String,
    pub at: DateTime<Utc>,
    pub reason: Option<String>,
}

/// What a decision on a finding would be about.
#[derive(Debug, Clone, PartialEq)]
pub enum DecisionSubject {
    /// There is no such finding.
    NoFinding,
    /// The finding has no change request yet.
    NoChangeRequest,
    ChangeRequest(StoredChangeRequest),
}

/// Claims, completes and fails decisions. Each call is one transaction that
/// also appends its audit event.
#[async_trait]
pub trait DecisionStore: Send + Sync {
    /// The change request of `finding`, as a decision on it starts from (and
    /// re-reads after losing a claim).
    async fn decision_subject(&self, finding: FindingId) -> Result<DecisionSubject, StoreError>;
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
}
