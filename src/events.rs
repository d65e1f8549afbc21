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

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::domain::neutralise;
use crate::store::{ChangeRequestStore, Delivery, DeliveryStore, OutsideChange, StoreError};

/// Deliveries read per round.
const BATCH: u32 = 100;

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

/// Processes every pending delivery; returns how many were processed.
///
/// Errors: the store failed; what was processed before stays processed,
/// the rest is taken up by the next call.
pub async fn process_pending<S>(store: &S, now: DateTime<Utc>) -> Result<usize, StoreError>
where
    S: DeliveryStore + ChangeRequestStore,
{
    let mut done = 0;
    loop {
        let pending = store.pending_deliveries(BATCH).await?;
        if pending.is_empty() {
            return Ok(done);
        }
        for delivery in &pending {
            let outcome = apply(store, delivery, now).await?;
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
    S: ChangeRequestStore,
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
