//! A human decision on a change request, as every module that handles one
//! sees it: the change request's state, the recorded decision, and the
//! proofs [`Approved`] and [`Rejected`] that a merge or a close requires.
//!
//! They live in the domain, below both the approval state machine that
//! builds the proofs and the change-request backends that consume them, so
//! that neither module depends on the other's internals (`approve` ↔
//! `gitops` ↔ `store` was an import cycle).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{ChangeRequestId, UnknownName};

/// Where a change request stands. Stored and printed as its snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeRequestState {
    /// Proposed; no approver has been asked (none is reachable, or the
    /// daily message cap holds the asks back). Decidable.
    Open,
    /// Approvers were asked (SMS, e-mail); waiting for the quorum.
    /// Decidable.
    AwaitingApproval,
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
    /// A commit Draco did not make is on the branch (pushed outside Draco):
    /// every approval, code and link was for the old head, nothing on it
    /// may be approved, and the next scan proposes the change again.
    Superseded,
    /// Nobody decided within `approval.expires_after_hours`: closed
    /// without merging; the next scan proposes it again if still needed.
    Expired,
}

impl ChangeRequestState {
    pub const ALL: [ChangeRequestState; 9] = [
        ChangeRequestState::Open,
        ChangeRequestState::AwaitingApproval,
        ChangeRequestState::Approved,
        ChangeRequestState::Merged,
        ChangeRequestState::Rejected,
        ChangeRequestState::Closed,
        ChangeRequestState::Failed,
        ChangeRequestState::Superseded,
        ChangeRequestState::Expired,
    ];

    /// To be proposed afresh by the next scan (`failed` or `superseded`).
    pub fn needs_reproposal(self) -> bool {
        matches!(
            self,
            ChangeRequestState::Failed | ChangeRequestState::Superseded
        )
    }

    /// Waiting for a decision (`open` or `awaiting_approval`).
    pub fn is_pending(self) -> bool {
        matches!(
            self,
            ChangeRequestState::Open | ChangeRequestState::AwaitingApproval
        )
    }

    /// May be decided now: pending, or `failed` (decided again).
    pub fn is_decidable(self) -> bool {
        self.is_pending() || self == ChangeRequestState::Failed
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ChangeRequestState::Open => "open",
            ChangeRequestState::AwaitingApproval => "awaiting_approval",
            ChangeRequestState::Approved => "approved",
            ChangeRequestState::Merged => "merged",
            ChangeRequestState::Rejected => "rejected",
            ChangeRequestState::Closed => "closed",
            ChangeRequestState::Failed => "failed",
            ChangeRequestState::Superseded => "superseded",
            ChangeRequestState::Expired => "expired",
        }
    }

    pub fn past_tense(self) -> &'static str {
        match self {
            ChangeRequestState::Open | ChangeRequestState::AwaitingApproval => "opened",
            ChangeRequestState::Approved | ChangeRequestState::Merged => "approved",
            ChangeRequestState::Rejected | ChangeRequestState::Closed => "rejected",
            ChangeRequestState::Failed => "marked failed",
            ChangeRequestState::Superseded => "superseded by a commit pushed outside Draco",
            ChangeRequestState::Expired => "left to expire",
        }
    }
}

impl FromStr for ChangeRequestState {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ChangeRequestState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownName(s.to_owned()))
    }
}

impl fmt::Display for ChangeRequestState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A human decision on a change request, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionRecord {
    pub approve: bool,
    pub by: String,
    pub channel: String,
    pub at: DateTime<Utc>,
    pub reason: Option<String>,
}

/// Proof that a human approved this exact commit: what
/// `ChangeRequests::merge` requires.
///
/// Its only constructor is crate-private and called by the approval state
/// machine alone (`approve`), after the store claimed the decision; a test
/// (`module_map::only_the_approval_state_machine_builds_a_decision`) keeps
/// it that way.
#[derive(Debug, Clone)]
pub struct Approved {
    change_request_id: ChangeRequestId,
    branch: String,
    head_commit: String,
    approver: String,
    channel: String,
    decided_at: DateTime<Utc>,
    audit_head: Option<crate::audit::Anchor>,
}

impl Approved {
    /// The proof for `decision`, claimed on the change request
    /// `change_request_id` whose `branch` was proposed at `head_commit`;
    /// `audit_head` is the audit chain's head once the claim was recorded,
    /// written into the merge commit.
    pub(crate) fn claimed(
        change_request_id: ChangeRequestId,
        branch: &str,
        head_commit: &str,
        decision: &DecisionRecord,
        audit_head: Option<crate::audit::Anchor>,
    ) -> Self {
        Self {
            change_request_id,
            branch: branch.to_owned(),
            head_commit: head_commit.to_owned(),
            approver: decision.by.clone(),
            channel: decision.channel.clone(),
            decided_at: decision.at,
            audit_head,
        }
    }

    /// The audit chain's head when the approval was claimed (`None` when
    /// it could not be read): merge commits carry it as a
    /// [`crate::audit::MERGE_TRAILER`] trailer, an anchor of the log
    /// outside the database and the data directory.
    pub fn audit_head(&self) -> Option<&crate::audit::Anchor> {
        self.audit_head.as_ref()
    }

    pub fn change_request_id(&self) -> ChangeRequestId {
        self.change_request_id
    }
    pub fn branch(&self) -> &str {
        &self.branch
    }
    pub fn head_commit(&self) -> &str {
        &self.head_commit
    }
    pub fn approver(&self) -> &str {
        &self.approver
    }
    pub fn channel(&self) -> &str {
        &self.channel
    }
    pub fn decided_at(&self) -> DateTime<Utc> {
        self.decided_at
    }
}

/// Proof that a human rejected the change: what `ChangeRequests::close`
/// requires. Built, like [`Approved`], only by `approve` after the claim.
#[derive(Debug, Clone)]
pub struct Rejected {
    branch: String,
    head_commit: String,
    channel: String,
    reason: Option<String>,
}

impl Rejected {
    /// The proof for a rejection claimed on `branch`, proposed at
    /// `head_commit`, through `channel`, with `reason` already redacted for
    /// publication (it is said on the pull request).
    pub(crate) fn claimed(
        branch: &str,
        head_commit: &str,
        channel: &str,
        reason: Option<String>,
    ) -> Self {
        Self {
            branch: branch.to_owned(),
            head_commit: head_commit.to_owned(),
            channel: channel.to_owned(),
            reason,
        }
    }

    /// The channel the rejection came through (`sms`, `email`, …).
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Why, redacted: publishable.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    pub fn branch(&self) -> &str {
        &self.branch
    }
    pub fn head_commit(&self) -> &str {
        &self.head_commit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_request_states_round_trip_through_their_stored_names() {
        for state in ChangeRequestState::ALL {
            assert_eq!(
                state.as_str().parse::<ChangeRequestState>().ok(),
                Some(state)
            );
            let json = serde_json::to_string(&state).expect("json");
            assert_eq!(json, format!("\"{}\"", state.as_str()));
        }
        assert!("merging".parse::<ChangeRequestState>().is_err());
    }
}
