//! The decision aggregate: the single-use claim of a human decision on a
//! change request, and carrying it out (merged or closed) or failing it.
//! This is all the approval state machine sees of the store.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use super::change_requests::StoredChangeRequest;
use crate::domain::{ChangeRequestId, DecisionRecord, FindingId};

/// What a decision on a finding would be about.
#[derive(Debug, Clone, PartialEq)]
pub enum DecisionSubject {
    /// There is no such finding.
    NoFinding,
    /// The finding has no change request yet.
    NoChangeRequest,
    ChangeRequest(Box<StoredChangeRequest>),
}

/// Claims, completes and fails decisions. Each call is one transaction that
/// also appends its audit event.
#[async_trait]
pub trait DecisionStore: Send + Sync {
    /// The change request of `finding`, as a decision on it starts from (and
    /// re-reads after losing a claim).
    async fn decision_subject(&self, finding: FindingId) -> Result<DecisionSubject, StoreError>;
    /// Records a decision if, and only if, the change request is still open
    /// (or `failed`: a failed one may be decided again) and still at
    /// `head_commit`, the head the decider read: a decision is on that
    /// commit, never on one a finding joining or leaving the group made
    /// since. Returns `false` when somebody decided first (decisions are
    /// single-use) or the change request moved on.
    async fn claim_decision(
        &self,
        change_request_id: ChangeRequestId,
        head_commit: &str,
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
    /// Findings whose change request was decided (`approved` or
    /// `rejected`) before `decided_before` and not carried out since: the
    /// process carrying it out died between the claim and the merge or
    /// close. One finding per change request, oldest decision first, at
    /// most `limit`.
    async fn decisions_left_undone(
        &self,
        decided_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<FindingId>, StoreError>;
    /// Records that the decision was carried out (merged, or closed).
    async fn complete_decision(
        &self,
        change_request_id: ChangeRequestId,
        merge_commit: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
}
