//! Confirm before mutate. A change is merged only through an [`Approved`]
//! value, and only this module builds one: after it has atomically claimed
//! the (single-use) decision in the store and written it to the audit log.
//! The proof types live in [`crate::domain`], below both this module and
//! the change-request backends that consume them.

pub mod secrets;

use std::fmt;

use chrono::{DateTime, Utc};

use crate::approvers::policy::Quorum;
use crate::approvers::{ApproverEntry, Directory};
use crate::domain::{
    Approved, ChangeRequestState, DecisionRecord, FindingId, Rejected, Severity, has_unsafe_chars,
    neutralise,
};
use crate::gitops::{ChangeRequests, GitOpsError};
pub use crate::store::approvals::Verdict;
use crate::store::approvals::{ApprovalStore, ChangeRequestRef, Vote, VoteOutcome};
use crate::store::{AuditLog, DecisionStore, DecisionSubject, StoreError, StoredChangeRequest};

/// Through which channel a human decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// `draco approve` / `draco reject` on the host itself.
    Cli,
    /// A reply to Draco's text message (Twilio).
    Sms,
    /// The confirmation page of a link in Draco's mail.
    Email,
    /// A pull request review or a `/draco` comment command on GitHub.
    GitHub,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Cli => "cli",
            Channel::Sms => "sms",
            Channel::Email => "email",
            Channel::GitHub => "github",
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
    /// The vote was for a commit the change request no longer holds: a new
    /// commit superseded every approval, code and link given before it.
    #[error(
        "finding {finding}: that approval was for commit {given}, but the change request now holds {now}; every earlier approval, code and link was superseded: review the new commit"
    )]
    Superseded {
        finding: FindingId,
        given: String,
        now: String,
    },
    /// The approver may not decide on a change of this severity
    /// (`severities` in their `[[approvers]]` entry).
    #[error("{approver} may not decide on a {severity} change (finding {finding})")]
    NotAllowed {
        finding: FindingId,
        approver: String,
        severity: Severity,
    },
    /// Not in the approver directory.
    #[error(
        "\"{0}\" is not in the approver directory; approvers are the [[approvers]] entries of the configuration (see the README's \"Approvals\")"
    )]
    UnknownApprover(String),
    /// The code or link was used already, expired, or was revoked.
    #[error("finding {finding}: that code or link was already used, has expired, or was revoked")]
    Spent { finding: FindingId },
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
        Ok(now) if now.state.is_decidable() => ApproveError::Moved {
            finding: finding_id,
            read: read.head_commit.clone(),
            now: now.head_commit,
        },
        Ok(now) => already_decided(finding_id, &now),
        Err(error) => error,
    }
}

/// A decision that was recorded but not carried out is finished by the same
/// person at once, or by anyone once it is clearly abandoned (its process
/// died). Otherwise it is still in flight, and a second caller is told it was
/// decided, rather than racing the first to carry it out.
const ABANDONED_AFTER: chrono::TimeDelta = chrono::TimeDelta::minutes(2);

fn may_resume(decision: &DecisionRecord, approver: &str, now: DateTime<Utc>) -> bool {
    decision.by.split(", ").any(|by| by == approver) || now - decision.at > ABANDONED_AFTER
}

/// Change requests finished by one [`finish_abandoned`] run at most.
const ABANDONED_PER_RUN: u32 = 20;

/// Finishes decisions that were claimed but never carried out, once clearly
/// abandoned ([`ABANDONED_AFTER`]): the process (or replica) that claimed an
/// approval died before the merge, or before recording it. The approval
/// was authenticated, bound to its commit and spent when it was claimed,
/// so no new vote can come to finish it (a used code or link is refused);
/// this does, under the names of who decided, and the merge is still bound
/// to the approved commit (a moved branch fails it instead). The daemon's
/// approvals job runs it every minute, on the replica holding that lease.
///
/// Returns the outcomes, in order; one that fails is logged and counted by
/// its change request becoming `failed` (audited), as when a decider's own
/// merge fails. Errors: the store's, reading what to finish.
pub async fn finish_abandoned(
    store: &dyn ApprovalStores,
    change_requests: &dyn ChangeRequests,
    now: DateTime<Utc>,
) -> Result<Vec<Outcome>, ApproveError> {
    let mut finished = Vec::new();
    for finding_id in store
        .decisions_left_undone(now - ABANDONED_AFTER, ABANDONED_PER_RUN)
        .await?
    {
        let cr = match change_request_on(store, change_requests, finding_id).await {
            Ok(cr) => cr,
            // Opened on another backend (the configuration changed): the
            // backend that holds it is not here to finish it.
            Err(ApproveError::OtherBackend { .. }) => continue,
            Err(error) => return Err(error),
        };
        if !matches!(
            cr.state,
            ChangeRequestState::Approved | ChangeRequestState::Rejected
        ) {
            continue; // finished meanwhile
        }
        let Some(decision) = cr.decision() else {
            return Err(StoreError::Corrupt(format!(
                "change request {} is {} without a decision",
                cr.id, cr.state
            ))
            .into());
        };
        match carry_out(store, change_requests, &cr, &decision, true, now).await {
            Ok(outcome) => {
                tracing::info!(
                    finding = finding_id.get(),
                    state = %outcome.change_request.state,
                    "finished a decision left undone by a process that stopped"
                );
                finished.push(outcome);
            }
            Err(error) => tracing::warn!(
                finding = finding_id.get(),
                %error,
                "cannot finish a decision left undone"
            ),
        }
    }
    Ok(finished)
}

/// Every store the approval state machine uses.
pub trait ApprovalStores: DecisionStore + ApprovalStore + AuditLog {}
impl<T: DecisionStore + ApprovalStore + AuditLog + ?Sized> ApprovalStores for T {}

/// Who decides and how, as the state machine needs it.
pub struct Ballot<'a> {
    /// The approver, from the directory (the channel recognised them).
    pub approver: &'a ApproverEntry,
    pub channel: Channel,
    pub verdict: Verdict,
    /// Why, for a rejection (required).
    pub reason: Option<&'a str>,
    /// The head commit the approver was shown (the code, link or review is
    /// bound to it); `None` for the CLI, which decides on the current head.
    pub commit: Option<&'a str>,
    /// The message that carried it, redacted.
    pub message: Option<&'a str>,
    /// The ask (SMS code, mail link) it came through, consumed with it.
    pub ask: Option<i64>,
}

/// What a vote came to.
#[derive(Debug, Clone, PartialEq)]
pub enum VoteResult {
    /// Counted; more approvals are needed.
    Counted { have: u32, need: u32 },
    /// This approver's approval of this commit was counted before.
    AlreadyCounted { have: u32, need: u32 },
    /// The decision was made and carried out (merged or closed).
    Decided(Box<Outcome>),
}

/// The single path by which any channel decides: checks that the approver
/// may decide on this change request (its severity), that the vote is for
/// the commit the change request holds now, records the vote (and the ask
/// it used) in one transaction, and, when that vote completes the quorum
/// or rejects, carries the decision out through an [`Approved`] or
/// [`Rejected`] proof.
///
/// Errors: [`ApproveError::Superseded`] (a vote for an older commit),
/// [`ApproveError::NotAllowed`] (a severity this approver may not decide),
/// [`ApproveError::Spent`] (a used, expired or revoked code or link),
/// [`ApproveError::AlreadyDecided`], and the store's and backend's errors.
pub async fn vote(
    store: &dyn ApprovalStores,
    change_requests: &dyn ChangeRequests,
    directory: &Directory,
    quorum: &Quorum,
    finding_id: FindingId,
    ballot: &Ballot<'_>,
    now: DateTime<Utc>,
) -> Result<VoteResult, ApproveError> {
    if ballot.verdict == Verdict::Reject && ballot.reason.is_none_or(|r| r.trim().is_empty()) {
        return Err(ApproveError::MissingReason);
    }
    let cr = change_request_on(store, change_requests, finding_id).await?;
    let approver = ballot.approver.name.as_str();
    match (cr.state, ballot.verdict) {
        // Claimed earlier, not carried out: a crash in between. Finish the
        // decision that was made, under the names of who made it.
        (ChangeRequestState::Approved, Verdict::Approve)
        | (ChangeRequestState::Rejected, Verdict::Reject)
            if ballot.commit.is_none_or(|c| c == cr.head_commit) =>
        {
            let decision = cr.decision().ok_or(StoreError::Corrupt(format!(
                "change request {} is {} without a decision",
                cr.id, cr.state
            )))?;
            if !may_resume(&decision, approver, now) {
                return Err(already_decided(finding_id, &cr));
            }
            // A ballot carrying an ask (an SMS code, a mail link) resumes
            // only by using that ask up: the same code sent twice at once
            // reads the ask pending on both, and the second must not carry
            // out again the decision the first is still carrying out.
            if let Some(ask) = ballot.ask
                && !store.spend_ask(ask, approver, now).await?
            {
                return Err(ApproveError::Spent {
                    finding: finding_id,
                });
            }
            return carry_out(store, change_requests, &cr, &decision, true, now)
                .await
                .map(|o| VoteResult::Decided(Box::new(o)));
        }
        (state, _) if !state.is_decidable() => return Err(already_decided(finding_id, &cr)),
        _ => {}
    }
    if let Some(commit) = ballot.commit
        && commit != cr.head_commit
    {
        return Err(ApproveError::Superseded {
            finding: finding_id,
            given: commit.to_owned(),
            now: cr.head_commit.clone(),
        });
    }
    let at_head = ChangeRequestRef {
        backend: cr.backend.clone(),
        branch: cr.branch.clone(),
        head_commit: cr.head_commit.clone(),
    };
    let severity = store
        .change_request_severity(&at_head)
        .await?
        .ok_or_else(|| ApproveError::Moved {
            finding: finding_id,
            read: cr.head_commit.clone(),
            now: "another commit".into(),
        })?;
    if !ballot.approver.may_decide(severity) {
        return Err(ApproveError::NotAllowed {
            finding: finding_id,
            approver: approver.to_owned(),
            severity,
        });
    }
    if ballot.verdict == Verdict::Approve {
        check_before_claim(store, change_requests, &cr, now).await?;
    }
    let need = quorum.for_severity(severity);
    // Only who may decide this change now counts: not someone since removed
    // from the directory (or renamed), nor someone no longer allowed this
    // severity.
    let eligible: Vec<&str> = directory
        .for_severity(severity)
        .map(|entry| entry.name.as_str())
        .collect();
    let recorded = store
        .cast_vote(
            &at_head,
            &Vote {
                approver,
                channel: ballot.channel.as_str(),
                verdict: ballot.verdict,
                reason: ballot.reason.map(str::trim),
                message: ballot.message,
                ask: ballot.ask,
                at: now,
            },
            need,
            &eligible,
        )
        .await?;
    match recorded {
        VoteOutcome::Counted { have, need } => Ok(VoteResult::Counted { have, need }),
        VoteOutcome::AlreadyCounted { have, need } => Ok(VoteResult::AlreadyCounted { have, need }),
        VoteOutcome::Stale => Err(lost_claim(store, finding_id, &cr).await),
        VoteOutcome::AskSpent => Err(ApproveError::Spent {
            finding: finding_id,
        }),
        VoteOutcome::Decided(decision) => {
            carry_out(store, change_requests, &cr, &decision, false, now)
                .await
                .map(|o| VoteResult::Decided(Box::new(o)))
        }
    }
}

/// `draco approve <id> --as <name>` / `draco reject`: the CLI channel. The
/// name must be in the directory; the vote is on the current head (the one
/// `draco show` shows).
///
/// Errors: [`ApproveError::UnknownApprover`], and those of [`vote`].
#[allow(clippy::too_many_arguments)]
pub async fn decide_from_cli(
    store: &dyn ApprovalStores,
    change_requests: &dyn ChangeRequests,
    directory: &Directory,
    quorum: &Quorum,
    finding_id: FindingId,
    name: &Approver,
    verdict: Verdict,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> Result<VoteResult, ApproveError> {
    let approver = directory
        .by_name(&name.0)
        .ok_or_else(|| ApproveError::UnknownApprover(name.0.clone()))?;
    let ballot = Ballot {
        approver,
        channel: Channel::Cli,
        verdict,
        reason,
        commit: None,
        message: None,
        ask: None,
    };
    vote(
        store,
        change_requests,
        directory,
        quorum,
        finding_id,
        &ballot,
        now,
    )
    .await
}

/// Merges (an approval) or closes (a rejection) what `decision` claimed on
/// `cr`, and records that it was done.
async fn carry_out(
    store: &dyn ApprovalStores,
    change_requests: &dyn ChangeRequests,
    cr: &StoredChangeRequest,
    decision: &DecisionRecord,
    resumed: bool,
    now: DateTime<Utc>,
) -> Result<Outcome, ApproveError> {
    let merge_commit = if decision.approve {
        // The head includes the claim: the merge commit anchors the log.
        let head = match store.audit_head().await {
            Ok(head) => head,
            Err(error) => {
                tracing::warn!(%error, "cannot read the audit head for the merge commit");
                None
            }
        };
        let approved = Approved::claimed(cr.id, &cr.branch, &cr.head_commit, decision, head);
        match change_requests.merge(&approved).await {
            Ok(commit) => Some(commit),
            Err(error) => return Err(failed(store, cr, error, now).await),
        }
    } else {
        // The reason is said on the pull request: people's data in it
        // never leaves the host.
        let reason = decision.reason.as_deref().map(|r| {
            crate::redact::Redactor::default()
                .redact_text(r)
                .0
                .get()
                .clone()
        });
        let rejected = Rejected::claimed(&cr.branch, &cr.head_commit, &decision.channel, reason);
        if let Err(error) = change_requests.close(&rejected).await {
            return Err(failed(store, cr, error, now).await);
        }
        None
    };
    store
        .complete_decision(cr.id, merge_commit.as_deref(), now)
        .await?;
    let change_request = change_request(store, cr.finding_id).await?;
    Ok(Outcome {
        change_request,
        merge_commit,
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
