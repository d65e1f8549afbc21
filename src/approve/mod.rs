//! Confirm before mutate. A change is merged only through an [`Approved`]
//! value, and only this module builds one: after it has atomically claimed
//! the (single-use) decision in the store and written it to the audit log.
//! The proof types live in [`crate::domain`], below both this module and
//! the change-request backends that consume them.

use std::fmt;

use chrono::{DateTime, Utc};

use crate::domain::{
    Approved, ChangeRequestState, DecisionRecord, FindingId, Rejected, has_unsafe_chars, neutralise,
};
use crate::gitops::{ChangeRequests, GitOpsError};
use crate::store::{DecisionStore, DecisionSubject, StoreError, StoredChangeRequest};

/// Through which channel a human decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// `draco approve` / `draco reject` on the host itself.
    Cli,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Cli => "cli",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who decided: a non-empty, printable name of at most 100 characters.
///
/// Refused: any character [`neutralise`] escapes: controls (C0, C1, DEL:
/// ANSI and OSC escapes start with them), format characters (bidirectional
/// controls, the "Trojan Source" characters of CVE-2021-42574, and
/// zero-width ones), line and paragraph separators, any of which would make
/// the name in the audit log and on a terminal differ from what a reader sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approver(String);

impl Approver {
    pub fn parse(raw: &str) -> Result<Self, ApproveError> {
        let name = raw.trim();
        if name.is_empty() || name.chars().count() > 100 || has_unsafe_chars(name) {
            return Err(ApproveError::InvalidApprover(neutralise(raw).into_owned()));
        }
        Ok(Self(name.to_owned()))
    }
}

impl fmt::Display for Approver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApproveError {
    #[error("there is no finding {0} (see `draco findings`)")]
    UnknownFinding(FindingId),
    #[error("finding {0} has no change request to decide on yet")]
    NoChangeRequest(FindingId),
    #[error("finding {finding}: its change request was already {state} by {by}")]
    AlreadyDecided {
        finding: FindingId,
        state: &'static str,
        by: String,
    },
    /// Holds the name as given, escaped (`\u{1b}`), so printing the error
    /// cannot drive the terminal.
    #[error(
        "\"{0}\" is not a usable approver name (1 to 100 printable characters; no control, bidirectional or zero-width characters)"
    )]
    InvalidApprover(String),
    #[error("a rejection needs a reason")]
    MissingReason,
    /// The change request was opened on another backend than the one
    /// configured now: deciding here would act on the wrong repository.
    #[error(
        "finding {finding}: its change request was opened on the {recorded} backend, but gitops.backend is now {configured}; decide it with the backend it was opened on"
    )]
    OtherBackend {
        finding: FindingId,
        recorded: String,
        configured: &'static str,
    },
    /// The change request moved to another commit between reading it and
    /// claiming the decision (a finding joined or left its group): nothing
    /// was decided.
    #[error(
        "finding {finding}: its change request changed while deciding (from commit {read} to {now}); nothing was decided: review it again, then decide"
    )]
    Moved {
        finding: FindingId,
        read: String,
        now: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    GitOps(#[from] GitOpsError),
    /// The change request no longer holds what was proposed, or carrying the
    /// decision out failed. It is now `failed`: decide again, or let the next
    /// scan propose it afresh.
    #[error(
        "finding {finding}: {cause}; its change request is marked failed and will be proposed again by the next scan (or decide again)"
    )]
    Failed {
        finding: FindingId,
        cause: GitOpsError,
    },
}

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub change_request: StoredChangeRequest,
    /// The merge commit on `main`, for an approval.
    pub merge_commit: Option<String>,
    /// The decision had been recorded before but not carried out (a crash); this call finished it.
    pub resumed: bool,
}

async fn change_request(
    store: &dyn DecisionStore,
    finding_id: FindingId,
) -> Result<StoredChangeRequest, ApproveError> {
    match store.decision_subject(finding_id).await? {
        DecisionSubject::NoFinding => Err(ApproveError::UnknownFinding(finding_id)),
        DecisionSubject::NoChangeRequest => Err(ApproveError::NoChangeRequest(finding_id)),
        DecisionSubject::ChangeRequest(cr) => Ok(*cr),
    }
}

/// The change request, when `change_requests` is the backend it was opened on.
async fn change_request_on(
    store: &dyn DecisionStore,
    change_requests: &dyn ChangeRequests,
    finding_id: FindingId,
) -> Result<StoredChangeRequest, ApproveError> {
    let cr = change_request(store, finding_id).await?;
    if cr.backend != change_requests.backend() {
        return Err(ApproveError::OtherBackend {
            finding: finding_id,
            recorded: cr.backend,
            configured: change_requests.backend(),
        });
    }
    Ok(cr)
}

fn already_decided(finding_id: FindingId, cr: &StoredChangeRequest) -> ApproveError {
    ApproveError::AlreadyDecided {
        finding: finding_id,
        state: cr.state.past_tense(),
        by: cr
            .decided_by
            .as_deref()
            .map_or_else(|| "someone".into(), |by| neutralise(by).into_owned()),
    }
}

/// Why a claim on `read` (the change request as the decider read it) was
/// not recorded: somebody decided first, or the change request moved to
/// another head (a finding joined or left its group) and is to be decided
/// again on what it holds now.
async fn lost_claim(
    store: &dyn DecisionStore,
    finding_id: FindingId,
    read: &StoredChangeRequest,
) -> ApproveError {
    match change_request(store, finding_id).await {
        Ok(now)
            if matches!(
                now.state,
                ChangeRequestState::Open | ChangeRequestState::Failed
            ) =>
        {
            ApproveError::Moved {
                finding: finding_id,
                read: read.head_commit.clone(),
                now: now.head_commit,
            }
        }
        Ok(now) => already_decided(finding_id, &now),
        Err(error) => error,
    }
}

/// A decision that was recorded but not carried out is finished by the same
/// person at once, or by anyone once it is clearly abandoned (its process
/// died). Otherwise it is still in flight, and a second caller is told it was
/// decided, rather than racing the first to carry it out.
const ABANDONED_AFTER: chrono::TimeDelta = chrono::TimeDelta::minutes(2);

fn may_resume(decision: &DecisionRecord, approver: &Approver, now: DateTime<Utc>) -> bool {
    decision.by == approver.0 || now - decision.at > ABANDONED_AFTER
}

/// Approves the change request of a finding and merges it.
pub async fn approve(
    store: &dyn DecisionStore,
    change_requests: &dyn ChangeRequests,
    finding_id: FindingId,
    approver: &Approver,
    channel: Channel,
    now: DateTime<Utc>,
) -> Result<Outcome, ApproveError> {
    let cr = change_request_on(store, change_requests, finding_id).await?;
    if matches!(
        cr.state,
        ChangeRequestState::Open | ChangeRequestState::Failed
    ) {
        check_before_claim(store, change_requests, &cr, now).await?;
    }
    let (decision, resumed) = match cr.state {
        ChangeRequestState::Open | ChangeRequestState::Failed => {
            let decision = DecisionRecord {
                approve: true,
                by: approver.to_string(),
                channel: channel.as_str().to_owned(),
                at: now,
                reason: None,
            };
            if !store
                .claim_decision(cr.id, &cr.head_commit, &decision)
                .await?
            {
                // Somebody decided between our read and our claim, or the
                // change request moved on.
                return Err(lost_claim(store, finding_id, &cr).await);
            }
            (decision, false)
        }
        // Claimed earlier, merge not recorded: a crash in between. Finish the
        // decision that was made, under the name of who made it.
        ChangeRequestState::Approved => {
            let decision = cr.decision().ok_or(StoreError::Corrupt(format!(
                "change request {} is approved without a decision",
                cr.id
            )))?;
            if !may_resume(&decision, approver, now) {
                return Err(already_decided(finding_id, &cr));
            }
            (decision, true)
        }
        _ => return Err(already_decided(finding_id, &cr)),
    };
    let approved = Approved::claimed(cr.id, &cr.branch, &cr.head_commit, &decision);
    let merge_commit = match change_requests.merge(&approved).await {
        Ok(commit) => commit,
        Err(error) => return Err(failed(store, &cr, error, now).await),
    };
    store
        .complete_decision(cr.id, Some(&merge_commit), now)
        .await?;
    let change_request = change_request(store, finding_id).await?;
    Ok(Outcome {
        change_request,
        merge_commit: Some(merge_commit),
        resumed,
    })
}

/// Before claiming an approval: the change request must still hold what was
/// proposed. If it does not (the repository is gone, the branch was pushed
/// to or deleted), nothing is claimed: the change request is marked `failed`
/// so that the next scan proposes it afresh, and the caller is told why.
async fn check_before_claim(
    store: &dyn DecisionStore,
    change_requests: &dyn ChangeRequests,
    cr: &StoredChangeRequest,
    now: DateTime<Utc>,
) -> Result<(), ApproveError> {
    match change_requests.verify(&cr.branch, &cr.head_commit).await {
        Ok(()) => Ok(()),
        Err(error) => Err(failed(store, cr, error, now).await),
    }
}

/// Records a side effect that failed (the change request becomes `failed`,
/// audited) and gives the error to return. If even recording fails, that is
/// what the caller hears about.
async fn failed(
    store: &dyn DecisionStore,
    cr: &StoredChangeRequest,
    error: GitOpsError,
    now: DateTime<Utc>,
) -> ApproveError {
    let failure = error.to_string();
    match store.fail_change_request(cr.id, &failure, now).await {
        Ok(()) => ApproveError::Failed {
            finding: cr.finding_id,
            cause: error,
        },
        Err(store_error) => ApproveError::Store(store_error),
    }
}

/// Rejects the change request of a finding and closes it without merging.
pub async fn reject(
    store: &dyn DecisionStore,
    change_requests: &dyn ChangeRequests,
    finding_id: FindingId,
    approver: &Approver,
    reason: &str,
    channel: Channel,
    now: DateTime<Utc>,
) -> Result<Outcome, ApproveError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(ApproveError::MissingReason);
    }
    let cr = change_request_on(store, change_requests, finding_id).await?;
    let resumed = match cr.state {
        ChangeRequestState::Open | ChangeRequestState::Failed => {
            let decision = DecisionRecord {
                approve: false,
                by: approver.to_string(),
                channel: channel.as_str().to_owned(),
                at: now,
                reason: Some(reason.to_owned()),
            };
            if !store
                .claim_decision(cr.id, &cr.head_commit, &decision)
                .await?
            {
                return Err(lost_claim(store, finding_id, &cr).await);
            }
            false
        }
        ChangeRequestState::Rejected => {
            let decision = cr.decision().ok_or(StoreError::Corrupt(format!(
                "change request {} is rejected without a decision",
                cr.id
            )))?;
            if !may_resume(&decision, approver, now) {
                return Err(already_decided(finding_id, &cr));
            }
            true
        }
        _ => return Err(already_decided(finding_id, &cr)),
    };
    let rejected = Rejected::claimed(&cr.branch, &cr.head_commit);
    if let Err(error) = change_requests.close(&rejected).await {
        return Err(failed(store, &cr, error, now).await);
    }
    store.complete_decision(cr.id, None, now).await?;
    let change_request = change_request(store, finding_id).await?;
    Ok(Outcome {
        change_request,
        merge_commit: None,
        resumed,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_failed_decision_names_its_cause_once() {
        // The cause is in the message, so it is not also the error's source:
        // `anyhow` would print it a second time after the message.
        let error = anyhow::Error::from(ApproveError::Failed {
            finding: FindingId::new(3),
            cause: GitOpsError::BranchMoved {
                branch: "draco/x".into(),
                approved: "a".into(),
                actual: "b".into(),
            },
        });
        let shown = format!("{error:#}");
        assert_eq!(shown.matches("refusing to merge").count(), 1, "{shown}");
    }

    use super::*;

    #[test]
    fn approver_names_that_would_drive_a_terminal_are_refused() {
        for hostile in [
            "Ada\u{1b}[2J",
            "Ada\u{1b}]0;pwned\u{7}",
            "Ada\nLovelace",
            "Ada\rEve",
            "Ada\u{202e}ecalevoL",
            "Ada\u{2066}Eve\u{2069}",
            "Ada\u{200b}",
            "Ada\u{feff}",
            "Ada\u{2028}Eve",
            "Ada\u{9b}31m",
            "",
            "   ",
        ] {
            let error = Approver::parse(hostile).unwrap_err().to_string();
            assert!(
                !error.contains('\u{1b}') && !error.contains('\n'),
                "{error:?}"
            );
            assert!(!error.contains('\u{202e}'), "{error:?}");
        }
        for fine in ["Ada Lovelace", "José Ñúñez", "李小龍", "O'Brien-Smith"] {
            assert_eq!(Approver::parse(fine).unwrap().to_string(), fine);
        }
    }
}
