//! Stored webhook deliveries, processed: what GitHub says happened to a
//! pull request becomes the change request's state.
//!
//! The receiver (`server::webhooks`) stored each delivery, signature
//! checked, before answering; here they are read back oldest first, applied,
//! and marked processed. Applying is idempotent (each change only where
//! Draco's record disagrees with GitHub), so a crash between applying and
//! marking, or two replicas processing at once, changes nothing twice.
//!
//! Handled `pull_request` actions (GitHub Docs, "Webhook events and
//! payloads"): `closed` with `merged: false` (closed by hand), `closed` with
//! `merged: true` (merged outside Draco, unless Draco merged it), and
//! `synchronize` (a push to the branch; outside Draco unless the new head is
//! the commit Draco proposed), and `reopened` (a pull request closed by hand
//! opened again with the head Draco proposed: approvable again).
//!
//! `pull_request_review` and `issue_comment` deliveries are votes, applied
//! through [`crate::notify::review`] when approvals are set up.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::domain::{FindingId, neutralise};
use crate::gitops::github::api::GitHubUser;
use crate::gitops::{Review, ReviewState};
use crate::notify::inbound::{Deciding, InboundStore};
use crate::notify::review::{self, Source};
use crate::store::approvals::ChangeRequestRef;
use crate::store::{ChangeRequestStore, Delivery, DeliveryStore, OutsideChange, StoreError};

/// Deliveries claimed per round: few enough that a round (a merge is a few
/// GitHub calls each) ends well within its [`CLAIM`].
const BATCH: u32 = 20;

#[derive(Deserialize)]
struct PullRequestEvent {
    action: String,
    pull_request: PullRequest,
    #[serde(default)]
    sender: Option<Sender>,
}

#[derive(Deserialize)]
struct PullRequest {
    /// Which pull request: only the one Draco recorded is Draco's (not an
    /// older one from the same branch, nor another from it into elsewhere).
    number: u64,
    #[serde(default)]
    merged: bool,
    #[serde(default)]
    merge_commit_sha: Option<String>,
    head: Head,
}

#[derive(Deserialize)]
struct Head {
    #[serde(rename = "ref")]
    branch: String,
    sha: String,
}

#[derive(Deserialize)]
struct Sender {
    login: String,
}

/// `pull_request_review` (GitHub Docs, "Webhook events and payloads").
#[derive(Deserialize)]
struct ReviewEvent {
    action: String,
    review: ReviewPayload,
    pull_request: ReviewedPull,
}

#[derive(Deserialize)]
struct ReviewPayload {
    /// GitHub's id of the review: a dismissal names the review it undoes.
    #[serde(default)]
    id: Option<u64>,
    user: GitHubUser,
    state: String,
    #[serde(default)]
    commit_id: Option<String>,
    #[serde(default)]
    body: Option<String>,
}

#[derive(Deserialize)]
struct ReviewedPull {
    number: u64,
    head: Head,
    #[serde(default)]
    user: Option<GitHubUser>,
}

/// `issue_comment` on a pull request.
#[derive(Deserialize)]
struct CommentEvent {
    action: String,
    issue: CommentedIssue,
    comment: CommentPayload,
}

#[derive(Deserialize)]
struct CommentedIssue {
    number: u64,
    #[serde(default)]
    pull_request: Option<serde_json::Value>,
    /// Who opened the pull request: never counted as its approver.
    #[serde(default)]
    user: Option<GitHubUser>,
}

#[derive(Deserialize)]
struct CommentPayload {
    user: GitHubUser,
    #[serde(default)]
    body: Option<String>,
    /// When it was written: a command is about the head its author saw.
    #[serde(default)]
    created_at: Option<DateTime<Utc>>,
}

/// How long a replica keeps the deliveries it claimed before another may
/// take them: far longer than processing a batch takes (a merge is a few
/// GitHub calls), short enough that a replica that died with a claim is
/// replaced within minutes.
pub const CLAIM: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// Processes every pending delivery not claimed by another replica (each
/// batch claimed for [`CLAIM`] under this process's [`crate::replica::id`]);
/// returns how many were processed.
///
/// Errors: the store failed; what was processed before stays processed,
/// the rest is taken up by the next call (here, or on another replica once
/// the claim runs out).
pub async fn process_pending<S>(
    store: &S,
    deciding: Option<&Deciding<'_>>,
    now: DateTime<Utc>,
) -> Result<usize, StoreError>
where
    S: DeliveryStore + ChangeRequestStore + ?Sized,
{
    let mut done = 0;
    loop {
        // Claimed on the clock, not at `now` (the call's logical time): a
        // long backlog's later batches get a full claim each.
        let claimed_at = Utc::now();
        let pending = store
            .claim_deliveries(crate::replica::id(), BATCH, claimed_at, claimed_at + CLAIM)
            .await?;
        if pending.is_empty() {
            return Ok(done);
        }
        for delivery in &pending {
            let outcome = match (delivery.event.as_str(), deciding) {
                ("pull_request_review", Some(deciding)) => {
                    apply_review(deciding, delivery, now).await?
                }
                ("issue_comment", Some(deciding)) => apply_comment(deciding, delivery, now).await?,
                _ => apply(store, delivery, now).await?,
            };
            tracing::info!(
                provider = delivery.provider,
                delivery = delivery.delivery_id,
                event = delivery.event,
                outcome,
                "webhook delivery processed"
            );
            store
                .mark_delivery_processed(delivery.id, &outcome, now)
                .await?;
            done += 1;
        }
    }
}

/// What one delivery changes; the text is its recorded outcome.
async fn apply<S>(store: &S, delivery: &Delivery, now: DateTime<Utc>) -> Result<String, StoreError>
where
    S: ChangeRequestStore + ?Sized,
{
    if delivery.provider != "github" || delivery.event != "pull_request" {
        return Ok(format!(
            "ignored: {} {} is not acted on yet",
            delivery.provider, delivery.event
        ));
    }
    let Ok(event) = serde_json::from_slice::<PullRequestEvent>(&delivery.body) else {
        return Ok("ignored: not a pull_request event".to_owned());
    };
    let pull = &event.pull_request;
    let change = match event.action.as_str() {
        "closed" if pull.merged => OutsideChange::Merged {
            merge_commit: pull.merge_commit_sha.clone(),
        },
        "closed" => OutsideChange::Closed,
        "synchronize" => OutsideChange::Pushed {
            head: pull.head.sha.clone(),
        },
        "reopened" => OutsideChange::Reopened {
            head: pull.head.sha.clone(),
        },
        other => return Ok(format!("ignored: action {}", neutralise(other))),
    };
    // The login comes from GitHub in a signed delivery; neutralised all the
    // same, as it goes to the audit log and the terminal.
    let actor = event.sender.map_or_else(
        || "github".to_owned(),
        |s| format!("github:{}", neutralise(&s.login)),
    );
    let changed = store
        .record_outside_change(
            "github",
            &pull.head.branch,
            Some(pull.number),
            &change,
            &actor,
            now,
        )
        .await?;
    Ok(match changed.as_slice() {
        [] => format!(
            "no change: {} by Draco or already recorded",
            change.as_str()
        ),
        [finding] => format!(
            "change request of finding {finding} {} outside Draco",
            change.as_str()
        ),
        findings => format!(
            "change request of findings {} {} outside Draco",
            findings
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            change.as_str()
        ),
    })
}

/// The waiting change request recorded for pull request `number`, and the
/// finding it is matched by (the first of a group).
async fn waiting_on_pull(
    store: &dyn InboundStore,
    number: u64,
    branch: Option<&str>,
) -> Result<Option<(FindingId, ChangeRequestRef, DateTime<Utc>)>, StoreError> {
    let suffix = format!("/pull/{number}");
    let rows = match branch {
        Some(branch) => store.change_requests_on_branch("github", branch).await?,
        None => store.change_requests().await?,
    };
    Ok(rows
        .into_iter()
        .find(|cr| {
            cr.backend == "github" && cr.location.ends_with(&suffix) && cr.state.is_decidable()
        })
        .map(|cr| {
            (
                cr.finding_id,
                ChangeRequestRef {
                    backend: cr.backend,
                    branch: cr.branch,
                    head_commit: cr.head_commit,
                },
                cr.head_at.unwrap_or(cr.opened_at),
            )
        }))
}

/// A `pull_request_review` delivery: `submitted` and `dismissed` are
/// votes (see [`review`]); `edited` changes no state on GitHub.
async fn apply_review(
    deciding: &Deciding<'_>,
    delivery: &Delivery,
    now: DateTime<Utc>,
) -> Result<String, StoreError> {
    let Ok(event) = serde_json::from_slice::<ReviewEvent>(&delivery.body) else {
        return Ok("ignored: not a pull_request_review event".to_owned());
    };
    let state = match event.action.as_str() {
        "submitted" => ReviewState::parse(&event.review.state),
        "dismissed" => ReviewState::Dismissed,
        other => return Ok(format!("ignored: review {}", neutralise(other))),
    };
    // Deliveries can arrive out of order: a review dismissed before its
    // submission was processed must not count when the submission comes.
    if let Some(id) = event.review.id {
        if state == ReviewState::Dismissed {
            deciding.store.record_dismissed_review(id, now).await?;
        } else if deciding.store.is_review_dismissed(id).await? {
            return Ok("ignored: that review was dismissed already".to_owned());
        }
    }
    let pull = &event.pull_request;
    let Some((finding, at_head, _)) =
        waiting_on_pull(deciding.store, pull.number, Some(&pull.head.branch)).await?
    else {
        return Ok("ignored: no change request waits on that pull request".to_owned());
    };
    let review = Review {
        bot: event.review.user.is_bot(),
        reviewer: event.review.user.login.clone(),
        state,
        commit: event.review.commit_id.clone().unwrap_or_default(),
        body: event.review.body.clone().unwrap_or_default(),
        pull_author: pull
            .user
            .as_ref()
            .map(|u| u.login.clone())
            .unwrap_or_default(),
    };
    let outcomes =
        review::apply_reviews(deciding, finding, &at_head, &[review], Source::Webhook, now).await?;
    Ok(if outcomes.is_empty() {
        "review: nothing to count".to_owned()
    } else {
        outcomes.join("; ")
    })
}

/// An `issue_comment` delivery: a `/draco` command in a just `created`
/// comment on a pull request Draco recorded.
async fn apply_comment(
    deciding: &Deciding<'_>,
    delivery: &Delivery,
    now: DateTime<Utc>,
) -> Result<String, StoreError> {
    let Ok(event) = serde_json::from_slice::<CommentEvent>(&delivery.body) else {
        return Ok("ignored: not an issue_comment event".to_owned());
    };
    let Some(command) = review::parse_command(event.comment.body.as_deref().unwrap_or("")) else {
        return Ok("ignored: no /draco command".to_owned());
    };
    if event.action != "created" {
        // An edited comment could turn an old remark into a command.
        return Ok(format!(
            "ignored: /draco command in a comment {}, not created",
            neutralise(&event.action)
        ));
    }
    if event.issue.pull_request.is_none() {
        return Ok("ignored: not a pull request".to_owned());
    }
    let Some((finding, _, head_at)) =
        waiting_on_pull(deciding.store, event.issue.number, None).await?
    else {
        return Ok("ignored: no change request waits on that pull request".to_owned());
    };
    // A command is about the commit its author saw: one written before the
    // current head was proposed was about an older one.
    if event
        .comment
        .created_at
        .is_none_or(|written| written < head_at)
    {
        review::audit_refusal(
            deciding,
            &event.comment.user.login,
            finding,
            "the comment was written before the change's current commit",
            now,
        )
        .await?;
        return Ok("ignored: the comment predates the current commit".to_owned());
    }
    review::apply_command(
        deciding,
        finding,
        &event.comment.user.login,
        event.comment.user.is_bot(),
        event.issue.user.as_ref().map_or("", |u| u.login.as_str()),
        &command,
        now,
    )
    .await
}
