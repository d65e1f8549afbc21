//! GitHub pull request reviews and `/draco` comment commands as votes.
//!
//! A review counts only if its reviewer's login is an approver's (allowed
//! for the change's severity), is neither the pull request's author nor a
//! bot, and `review.commit_id` is the head Draco proposed. `approved` is an
//! approval, `changes_requested` a rejection, `commented` nothing,
//! `dismissed` withdraws that reviewer's approval. Of each reviewer's
//! reviews only the latest counts. Comment commands (`/draco approve`,
//! `/draco reject <reason>`) count only from comments just `created` by an
//! approver (never `edited`), on the current head.
//!
//! Reviews arrive by webhook and are read again by each scan's
//! reconciliation, so a review whose delivery was lost still counts; both
//! go through [`apply_reviews`], which does nothing twice.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::inbound::{Deciding, refusal_text};
use crate::approve::{ApproveError, Ballot, Channel, Verdict, VoteResult};
use crate::domain::FindingId;
use crate::gitops::{Review, ReviewState};
use crate::store::StoreError;
use crate::store::approvals::{ApprovalState, ChangeRequestRef};

/// Whether a refusal is written to the audit log: for a webhook (somebody
/// just did it), not for the reconciliation pass (it reads the same
/// reviews every scan).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Webhook,
    Reconciliation,
}

/// The latest review of each reviewer that says something (approved,
/// changes requested, dismissed), in the order they came.
fn latest_per_reviewer(reviews: &[Review]) -> Vec<&Review> {
    let mut latest: Vec<&Review> = Vec::new();
    for review in reviews {
        if matches!(review.state, ReviewState::Commented | ReviewState::Other) {
            continue;
        }
        latest.retain(|r| !r.reviewer.eq_ignore_ascii_case(&review.reviewer));
        latest.push(review);
    }
    latest
}

/// Applies `reviews` (oldest first) of the pull request of the change
/// request covering `finding`, at `at_head`; returns what each came to,
/// for the delivery's outcome and the logs.
///
/// Errors: the store failed.
pub async fn apply_reviews(
    deciding: &Deciding<'_>,
    finding: FindingId,
    at_head: &ChangeRequestRef,
    reviews: &[Review],
    source: Source,
    now: DateTime<Utc>,
) -> Result<Vec<String>, StoreError> {
    let mut outcomes = Vec::new();
    let counted = deciding
        .store
        .approvals(&at_head.backend, &at_head.branch)
        .await?;
    for review in latest_per_reviewer(reviews) {
        let refuse = |why: &'static str| async move {
            if source == Source::Webhook {
                deciding
                    .store
                    .audit_refusal(
                        &format!("github:{}", crate::domain::neutralise(&review.reviewer)),
                        "approval.refused",
                        &format!("finding:{finding}"),
                        &json!({ "channel": "github", "why": why, "commit": review.commit }),
                        now,
                    )
                    .await?;
            }
            Ok::<String, StoreError>(format!("review by {} ignored: {why}", review.reviewer))
        };
        if review.bot {
            outcomes.push(refuse("a bot's review never counts").await?);
            continue;
        }
        if review.reviewer.eq_ignore_ascii_case(&review.pull_author) {
            outcomes.push(refuse("the pull request's author cannot approve it").await?);
            continue;
        }
        let Some(approver) = deciding.notifier.directory.by_github(&review.reviewer) else {
            outcomes.push(refuse("the reviewer is not in the approver directory").await?);
            continue;
        };
        let already = |state: ApprovalState| {
            counted.iter().any(|a| {
                a.approver == approver.name
                    && a.channel == Channel::GitHub.as_str()
                    && a.commit == review.commit
                    && a.state == state
            })
        };
        let verdict = match review.state {
            ReviewState::Dismissed => {
                let withdrawn = deciding
                    .store
                    .withdraw_vote(at_head, &approver.name, Channel::GitHub.as_str(), now)
                    .await?;
                outcomes.push(format!(
                    "review by {} dismissed: {}",
                    review.reviewer,
                    if withdrawn {
                        "approval withdrawn"
                    } else {
                        "nothing to withdraw"
                    }
                ));
                continue;
            }
            ReviewState::Approved => {
                // Read again by every scan: counted once is enough.
                if already(ApprovalState::Counted) {
                    continue;
                }
                Verdict::Approve
            }
            ReviewState::ChangesRequested => Verdict::Reject,
            ReviewState::Commented | ReviewState::Other => continue,
        };
        if review.commit != at_head.head_commit {
            outcomes.push(refuse("the review is on an older commit").await?);
            continue;
        }
        let reason = (verdict == Verdict::Reject).then(|| {
            let body = review.body.trim();
            if body.is_empty() {
                "changes requested on GitHub".to_owned()
            } else {
                body.chars().take(1000).collect()
            }
        });
        let message = reason
            .as_deref()
            .map(|r| deciding.notifier.redactor.redact_text(r).0.get().clone());
        let ballot = Ballot {
            approver,
            channel: Channel::GitHub,
            verdict,
            reason: reason.as_deref(),
            commit: Some(&review.commit),
            message: message.as_deref(),
            ask: None,
        };
        outcomes.push(vote(deciding, finding, &ballot, &review.reviewer, source, now).await?);
    }
    Ok(outcomes)
}

async fn vote(
    deciding: &Deciding<'_>,
    finding: FindingId,
    ballot: &Ballot<'_>,
    login: &str,
    source: Source,
    now: DateTime<Utc>,
) -> Result<String, StoreError> {
    let result = deciding.vote(finding, ballot, now).await;
    Ok(match result {
        Ok(VoteResult::Counted { have, need }) => {
            format!("approval by {login} counted ({have} of {need})")
        }
        Ok(VoteResult::AlreadyCounted { .. }) => format!("approval by {login} counted before"),
        Ok(VoteResult::Decided(outcome)) => format!(
            "{} by {login}: change request {}",
            if ballot.verdict == Verdict::Approve {
                "approved"
            } else {
                "rejected"
            },
            outcome.change_request.state
        ),
        Err(ApproveError::Store(error)) => return Err(error),
        Err(error) => {
            let why = refusal_text(&error);
            if source == Source::Webhook {
                audit_refusal(deciding, login, finding, why, now).await?;
            }
            format!("vote by {login} refused: {why}")
        }
    })
}

/// The reconciliation pass: reads the reviews of every pull request that
/// waits for a decision and applies them as the webhook would have (a
/// refusal is not audited again). Returns how many change requests were
/// read. A backend without reviews (the local repository) reads none.
///
/// Errors: the store failed. GitHub failing for one pull request is logged
/// and the pass goes on (the next scan reads it again).
pub async fn reconcile(deciding: &Deciding<'_>, now: DateTime<Utc>) -> Result<usize, StoreError> {
    if !deciding.change_requests.changed_outside_draco() || deciding.notifier.directory.is_empty() {
        return Ok(0);
    }
    let backend = deciding.change_requests.backend();
    let mut seen = std::collections::HashSet::new();
    let mut read = 0;
    for cr in deciding.store.change_requests().await? {
        if cr.backend != backend || !cr.state.is_pending() || !seen.insert(cr.branch.clone()) {
            continue;
        }
        let reviews = match deciding.change_requests.reviews(&cr.branch).await {
            Ok(reviews) => reviews,
            Err(error) => {
                tracing::warn!(%error, branch = cr.branch, "cannot read pull request reviews; the next scan tries again");
                continue;
            }
        };
        read += 1;
        let at_head = ChangeRequestRef {
            backend: cr.backend.clone(),
            branch: cr.branch.clone(),
            head_commit: cr.head_commit.clone(),
        };
        let outcomes = apply_reviews(
            deciding,
            cr.finding_id,
            &at_head,
            &reviews,
            Source::Reconciliation,
            now,
        )
        .await?;
        for outcome in outcomes {
            tracing::info!(branch = cr.branch, outcome, "review read back");
        }
    }
    Ok(read)
}

/// Writes `approval.refused` for something `login` did on GitHub about
/// `finding`, with why.
pub async fn audit_refusal(
    deciding: &Deciding<'_>,
    login: &str,
    finding: FindingId,
    why: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    deciding
        .store
        .audit_refusal(
            &format!("github:{}", crate::domain::neutralise(login)),
            "approval.refused",
            &format!("finding:{finding}"),
            &json!({ "channel": "github", "why": why }),
            now,
        )
        .await
}

/// A `/draco approve` or `/draco reject <reason>` comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Approve,
    Reject { reason: String },
}

/// Reads a comment body: the command must be the comment's first line.
pub fn parse_command(body: &str) -> Option<Command> {
    let line = body.trim().lines().next()?.trim();
    let rest = line.strip_prefix("/draco")?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let mut words = rest.split_whitespace();
    match words.next()? {
        "approve" if words.next().is_none() => Some(Command::Approve),
        "reject" => Some(Command::Reject {
            reason: words.collect::<Vec<_>>().join(" "),
        }),
        _ => None,
    }
}

/// A comment command by `login` (a bot or not) on the change request
/// covering `finding`, whose pull request `pull_author` opened: decides on
/// its current head.
pub async fn apply_command(
    deciding: &Deciding<'_>,
    finding: FindingId,
    login: &str,
    bot: bool,
    pull_author: &str,
    command: &Command,
    now: DateTime<Utc>,
) -> Result<String, StoreError> {
    let refuse = |why: &'static str| async move {
        audit_refusal(deciding, login, finding, why, now).await?;
        Ok::<String, StoreError>(format!("command by {login} ignored: {why}"))
    };
    if bot {
        return refuse("a bot's comment never counts").await;
    }
    if login.eq_ignore_ascii_case(pull_author) {
        return refuse("the pull request's author cannot approve it").await;
    }
    let Some(approver) = deciding.notifier.directory.by_github(login) else {
        return refuse("the commenter is not in the approver directory").await;
    };
    let (verdict, reason) = match command {
        Command::Approve => (Verdict::Approve, None),
        Command::Reject { reason } => (Verdict::Reject, Some(reason.as_str())),
    };
    let message = reason.map(|r| deciding.notifier.redactor.redact_text(r).0.get().clone());
    let ballot = Ballot {
        approver,
        channel: Channel::GitHub,
        verdict,
        reason,
        commit: None,
        message: message.as_deref(),
        ask: None,
    };
    vote(deciding, finding, &ballot, login, Source::Webhook, now).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comment_commands_are_the_first_line_only() {
        assert_eq!(parse_command("/draco approve"), Some(Command::Approve));
        assert_eq!(
            parse_command("  /draco reject not in the freeze\nthanks"),
            Some(Command::Reject {
                reason: "not in the freeze".into()
            })
        );
        assert_eq!(parse_command("/draco approve now"), None);
        assert_eq!(parse_command("/dracoapprove"), None);
        assert_eq!(parse_command("LGTM\n/draco approve"), None);
        assert_eq!(parse_command("> /draco approve"), None);
    }

    fn review(reviewer: &str, state: ReviewState) -> Review {
        Review {
            reviewer: reviewer.into(),
            bot: false,
            state,
            commit: "c".into(),
            body: String::new(),
            pull_author: "draco-bot".into(),
        }
    }

    #[test]
    fn only_each_reviewers_latest_review_counts() {
        let reviews = [
            review("ada", ReviewState::Approved),
            review("bob", ReviewState::Approved),
            review("ada", ReviewState::Commented),
            review("Ada", ReviewState::Dismissed),
        ];
        let latest = latest_per_reviewer(&reviews);
        assert_eq!(latest.len(), 2);
        assert_eq!(latest[0].reviewer, "bob");
        assert_eq!(latest[1].state, ReviewState::Dismissed);
    }
}
