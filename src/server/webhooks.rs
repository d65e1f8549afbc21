//! `POST /webhooks/github`: GitHub's webhook deliveries (`pull_request`,
//! `pull_request_review`, `issue_comment`), checked and stored.
//!
//! In this order, so that nothing unauthenticated is parsed or stored:
//! 1. `X-Hub-Signature-256` is checked over the raw body, in constant time
//!    (missing, malformed or wrong → `401`, nothing stored);
//! 2. `X-GitHub-Event` and `X-GitHub-Delivery` must be present (`400`);
//! 3. the body must be JSON (`400`);
//! 4. `ping` → `200`; events Draco does not act on, and events about a
//!    repository or branch it does not manage → `204`, not stored;
//! 5. the delivery is stored once per `X-GitHub-Delivery` (a redelivery is
//!    answered `200` and changes nothing) *before* the answer, and processed
//!    from the store afterwards, so a crash after answering loses nothing
//!    (`202`; `503` when the store cannot take it, so GitHub shows a
//!    failed delivery that can be redelivered).
//!
//! Source: GitHub Docs, "Webhook events and payloads" (headers, `ping`) and
//! "Validating webhook deliveries".

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use secrecy::SecretString;
use serde::Deserialize;

use super::ServerApp;
use crate::gitops::github::signature;
use crate::store::{DeliveryStore, Recorded};

/// Largest body accepted, in bytes. The events Draco subscribes to
/// (`pull_request`, `pull_request_review`) are tens of kilobytes: a pull
/// request's description is at most 65,536 characters. GitHub caps any
/// payload at 25 MB, which Draco need not hold in memory per connection.
pub const MAX_DELIVERY_BYTES: usize = 1024 * 1024;

/// The events stored for processing; anything else is answered `204`.
pub const HANDLED_EVENTS: [&str; 3] = ["pull_request", "pull_request_review", "issue_comment"];

/// Branches Draco opens change requests on (`draco/<kind>-<fingerprint>`).
pub const BRANCH_PREFIX: &str = "draco/";

/// What the GitHub webhook route needs to know.
pub struct GitHubReceiver {
    /// The secret deliveries are signed with (`DRACO_GITHUB_WEBHOOK_SECRET`).
    pub secret: SecretString,
    /// The managed repository, `owner/name`: events about others are ignored.
    pub repository: String,
}

/// What the webhook routes need from the application.
pub trait Webhooks: Send + Sync {
    /// `None` when the GitHub backend is off: the route answers `404`.
    fn github_receiver(&self) -> Option<&GitHubReceiver>;
    /// Where deliveries are stored.
    fn deliveries(&self) -> &dyn DeliveryStore;
    /// Called after a new delivery was stored, to wake its processing.
    fn delivery_recorded(&self);
}

/// Only the fields the route checks before storing.
#[derive(Deserialize)]
struct Envelope {
    repository: Option<NamedRepository>,
    pull_request: Option<PullRequestHead>,
    /// `issue_comment`: the issue, with `pull_request` set when it is one.
    issue: Option<CommentedIssue>,
}

#[derive(Deserialize)]
struct CommentedIssue {
    #[serde(default)]
    pull_request: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct NamedRepository {
    full_name: String,
}

#[derive(Deserialize)]
struct PullRequestHead {
    head: HeadRef,
}

#[derive(Deserialize)]
struct HeadRef {
    #[serde(rename = "ref")]
    name: String,
    /// The repository the head branch lives in: a fork's pull request
    /// named like a Draco branch is not Draco's (`null` when the fork is gone).
    #[serde(default)]
    repo: Option<NamedRepository>,
}

fn answer(status: StatusCode, text: &'static str) -> Response {
    (status, text).into_response()
}

/// A header's value when it is present and plain visible ASCII of at most
/// `max` bytes (GitHub's delivery ids are GUIDs, event names short words).
fn header_text<'a>(headers: &'a HeaderMap, name: &str, max: usize) -> Option<&'a str> {
    let value = headers.get(name)?.to_str().ok()?;
    (!value.is_empty() && value.len() <= max && value.bytes().all(|b| b.is_ascii_graphic()))
        .then_some(value)
}

/// `POST /webhooks/github`, as the module describes.
pub async fn github(
    State(app): State<Arc<dyn ServerApp>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(receiver) = app.github_receiver() else {
        return answer(StatusCode::NOT_FOUND, "not found\n");
    };
    let signature = headers.get(signature::HEADER).map(|v| v.as_bytes());
    if let Err(reason) = signature::verify(&receiver.secret, &body, signature) {
        tracing::warn!(%reason, "GitHub webhook delivery refused");
        return answer(StatusCode::UNAUTHORIZED, "signature check failed\n");
    }
    let (Some(event), Some(delivery)) = (
        header_text(&headers, "X-GitHub-Event", 64),
        header_text(&headers, "X-GitHub-Delivery", 100),
    ) else {
        return answer(
            StatusCode::BAD_REQUEST,
            "X-GitHub-Event and X-GitHub-Delivery are required\n",
        );
    };
    let Ok(envelope) = serde_json::from_slice::<Envelope>(&body) else {
        return answer(StatusCode::BAD_REQUEST, "the body is not a JSON event\n");
    };
    if event == "ping" {
        return answer(StatusCode::OK, "pong\n");
    }
    if !HANDLED_EVENTS.contains(&event) {
        return answer(StatusCode::NO_CONTENT, "");
    }
    let managed = |r: &NamedRepository| r.full_name.eq_ignore_ascii_case(&receiver.repository);
    // A comment names no branch: it is matched later to the pull request
    // Draco recorded under its number, or ignored.
    let on_pull_request = event == "issue_comment"
        && envelope
            .issue
            .as_ref()
            .is_some_and(|i| i.pull_request.is_some());
    let ours = envelope.repository.as_ref().is_some_and(managed)
        && (on_pull_request
            || envelope.pull_request.as_ref().is_some_and(|pr| {
                pr.head.name.starts_with(BRANCH_PREFIX)
                    && pr.head.repo.as_ref().is_some_and(managed)
            }));
    if !ours {
        tracing::debug!(
            event,
            delivery,
            "GitHub webhook about something Draco does not manage"
        );
        return answer(StatusCode::NO_CONTENT, "");
    }
    match app
        .deliveries()
        .record_delivery("github", delivery, event, &body, Utc::now())
        .await
    {
        Ok(Recorded::New(_)) => {
            app.delivery_recorded();
            answer(StatusCode::ACCEPTED, "accepted\n")
        }
        Ok(Recorded::Duplicate) => answer(StatusCode::OK, "already received\n"),
        Err(error) => {
            tracing::error!(%error, delivery, "cannot store a GitHub webhook delivery");
            answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot store the delivery now; redeliver it later\n",
            )
        }
    }
}
