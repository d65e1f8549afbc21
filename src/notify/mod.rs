//! Asking approvers, and reading their answers.
//!
//! [`ask_pending`] goes through every change request waiting for a decision,
//! highest severity × monthly impact first, and asks the approvers allowed
//! to decide it (the first `quorum` of them in directory order; escalation
//! brings in the others) on each channel of `approval.notify`: one SMS with
//! its own code, one mail with its own approve and reject links. Each ask is
//! recorded (as keyed digests) before it is sent, so a restart between
//! "sent" and "answered" loses nothing; the change request then becomes
//! `awaiting_approval`. What would exceed
//! `approval.max_messages_per_approver_per_day` is recorded as held.
//!
//! [`inbound`] reads SMS replies and serves the mail links' pages; both
//! decide only through [`crate::approve::vote`].
//!
//! Everything sent leaves the host: its text passes the publishing
//! redaction (`gitops.github.publish_redact`) first.

pub mod inbound;
pub mod message;
pub mod review;

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};

use crate::approve::secrets::{self, ApprovalKey};
use crate::approvers::policy::{ApprovalConfig, NotifyChannel};
use crate::approvers::{ApproverEntry, Directory};
use crate::channels::email::Mailer;
use crate::channels::twilio::TwilioClient;
use crate::domain::Severity;
use crate::redact::{PiiKind, Redactor};
use crate::store::approvals::{AskDelivery, ChangeRequestRef, NewAsk};
use crate::store::{ApprovalStore, ChangeRequestStore, ScanStore, StoreError, StoredFinding};

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Secrets(#[from] secrets::SecretsError),
}

/// Everything asking needs: the channels that are set up, the key codes and
/// links are digested under, where links point, and who to ask.
pub struct Notifier {
    pub twilio: Option<TwilioClient>,
    pub mailer: Option<Mailer>,
    pub key: ApprovalKey,
    /// `server.public_url`, without a trailing `/`.
    pub public_url: Option<String>,
    pub policy: ApprovalConfig,
    pub directory: Directory,
    pub redactor: Redactor,
    /// Kinds removed from anything sent (`gitops.github.publish_redact`).
    pub publish_redact: Vec<PiiKind>,
}

/// What one pass asked.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AskReport {
    pub sent: usize,
    pub held: usize,
    pub failed: usize,
}

/// A change request waiting for a decision, with what it covers.
struct Waiting {
    at_head: ChangeRequestRef,
    location: String,
    findings: Vec<StoredFinding>,
    severity: Severity,
    impact: f64,
}

/// Stores `ask_pending` reads and writes.
pub trait NotifyStore: ApprovalStore + ChangeRequestStore + ScanStore {}
impl<T: ApprovalStore + ChangeRequestStore + ScanStore + ?Sized> NotifyStore for T {}

/// Asks the approvers of every change request waiting for a decision that
/// were not asked yet, as the module describes.
///
/// Errors: the store failed (what was asked before stays recorded). A
/// provider refusing one message is recorded on that ask (`failed`) and the
/// pass goes on.
pub async fn ask_pending(
    store: &dyn NotifyStore,
    notifier: &Notifier,
    now: DateTime<Utc>,
) -> Result<AskReport, NotifyError> {
    let mut report = AskReport::default();
    if notifier.policy.notify.is_empty() || notifier.directory.is_empty() {
        return Ok(report);
    }
    let findings: BTreeMap<_, _> = store
        .findings()
        .await?
        .into_iter()
        .map(|f| (f.id, f))
        .collect();
    let mut waiting: BTreeMap<(String, String, String), Waiting> = BTreeMap::new();
    for cr in store.change_requests().await? {
        if !cr.state.is_pending() {
            continue;
        }
        let Some(finding) = findings.get(&cr.finding_id) else {
            continue;
        };
        let entry = waiting
            .entry((
                cr.backend.clone(),
                cr.branch.clone(),
                cr.head_commit.clone(),
            ))
            .or_insert_with(|| Waiting {
                at_head: ChangeRequestRef {
                    backend: cr.backend.clone(),
                    branch: cr.branch.clone(),
                    head_commit: cr.head_commit.clone(),
                },
                // A pull request's URL names it; the local repository is
                // named by its branch (its path is the host's business).
                location: if cr.backend == "github" {
                    cr.location.clone()
                } else {
                    format!("Branch {} in Draco's local repository.", cr.branch)
                },
                findings: Vec::new(),
                severity: Severity::Low,
                impact: 0.0,
            });
        entry.severity = entry.severity.max(finding.finding.severity);
        entry.impact += finding.finding.impact_usd_monthly.unwrap_or(0.0);
        entry.findings.push(finding.clone());
    }
    let mut waiting: Vec<Waiting> = waiting.into_values().collect();
    // Highest severity first, then the most money: what the daily cap lets
    // through goes to what matters most.
    waiting.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(b.impact.total_cmp(&a.impact))
    });
    let since = now - TimeDelta::hours(24);
    let expires_at = now + TimeDelta::hours(notifier.policy.expires_after_hours as i64);
    for cr in &waiting {
        let need = notifier.policy.quorum.for_severity(cr.severity) as usize;
        let asked_already = store
            .asks(&cr.at_head.backend, &cr.at_head.branch)
            .await?
            .into_iter()
            .filter(|a| a.change_request == cr.at_head)
            .count();
        let primaries: Vec<&ApproverEntry> = notifier
            .directory
            .for_severity(cr.severity)
            .take(need)
            .collect();
        let mut asked_now = Vec::new();
        for approver in primaries {
            for &channel in &notifier.policy.notify {
                let outcome = ask_one(
                    store, notifier, cr, approver, channel, since, expires_at, now,
                )
                .await?;
                match outcome {
                    Some(AskDelivery::Sent) => {
                        report.sent += 1;
                        asked_now.push(format!("{} ({})", approver.name, channel.as_str()));
                    }
                    Some(AskDelivery::Held) => report.held += 1,
                    Some(AskDelivery::Failed) => report.failed += 1,
                    Some(AskDelivery::Queued) | None => {}
                }
            }
        }
        if !asked_now.is_empty() || asked_already > 0 {
            store
                .mark_awaiting_approval(&cr.at_head, &asked_now, now)
                .await?;
        }
    }
    Ok(report)
}

/// Asks one approver on one channel about one change request, unless they
/// were asked already or cannot be reached there. Returns how it went
/// (`None`: nothing to do).
#[allow(clippy::too_many_arguments)]
async fn ask_one(
    store: &dyn NotifyStore,
    notifier: &Notifier,
    cr: &Waiting,
    approver: &ApproverEntry,
    channel: NotifyChannel,
    since: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Option<AskDelivery>, NotifyError> {
    let summary = message::Summary::of(notifier, &cr.findings, cr.impact, &cr.location);
    match channel {
        NotifyChannel::Sms => {
            let (Some(phone), Some(twilio)) = (&approver.phone, &notifier.twilio) else {
                return Ok(None);
            };
            if store.is_opted_out(phone.as_str()).await? {
                return Ok(None);
            }
            let held = store.messages_sent_since(&approver.name, since).await?
                >= notifier.policy.max_messages_per_approver_per_day;
            let code = secrets::new_code()?;
            let Some(id) = store
                .record_ask(&NewAsk {
                    change_request: &cr.at_head,
                    approver: &approver.name,
                    channel: channel.as_str(),
                    code_digest: (!held).then(|| notifier.key.code_digest(&approver.name, &code)),
                    approve_digest: None,
                    reject_digest: None,
                    delivery: if held {
                        AskDelivery::Held
                    } else {
                        AskDelivery::Queued
                    },
                    expires_at,
                    at: now,
                })
                .await?
            else {
                return Ok(None);
            };
            if held {
                return Ok(Some(AskDelivery::Held));
            }
            let text = summary.sms(&code);
            let (delivery, provider_id, error) = match twilio.send(phone, &text).await {
                Ok(sid) => (AskDelivery::Sent, Some(sid), None),
                Err(error) => {
                    tracing::warn!(%error, approver = %approver.name, "cannot send an approval SMS");
                    (AskDelivery::Failed, None, Some(error.to_string()))
                }
            };
            store
                .mark_ask_delivery(id, delivery, provider_id.as_deref(), error.as_deref(), now)
                .await?;
            Ok(Some(delivery))
        }
        NotifyChannel::Email => {
            let (Some(email), Some(mailer), Some(base)) =
                (&approver.email, &notifier.mailer, &notifier.public_url)
            else {
                return Ok(None);
            };
            let held = store.messages_sent_since(&approver.name, since).await?
                >= notifier.policy.max_messages_per_approver_per_day;
            let approve = secrets::new_link_token()?;
            let reject = secrets::new_link_token()?;
            let Some(id) = store
                .record_ask(&NewAsk {
                    change_request: &cr.at_head,
                    approver: &approver.name,
                    channel: channel.as_str(),
                    code_digest: None,
                    approve_digest: (!held).then(|| notifier.key.link_digest(&approve)),
                    reject_digest: (!held).then(|| notifier.key.link_digest(&reject)),
                    delivery: if held {
                        AskDelivery::Held
                    } else {
                        AskDelivery::Queued
                    },
                    expires_at,
                    at: now,
                })
                .await?
            else {
                return Ok(None);
            };
            if held {
                return Ok(Some(AskDelivery::Held));
            }
            let mail = summary.mail(
                approver,
                email,
                &format!("{base}/approve/{approve}"),
                &format!("{base}/approve/{reject}"),
                expires_at,
            );
            let (delivery, provider_id, error) = match mailer.send(&mail).await {
                Ok(id) => (AskDelivery::Sent, id, None),
                Err(error) => {
                    tracing::warn!(%error, approver = %approver.name, "cannot send an approval mail");
                    (AskDelivery::Failed, None, Some(error.to_string()))
                }
            };
            store
                .mark_ask_delivery(id, delivery, provider_id.as_deref(), error.as_deref(), now)
                .await?;
            Ok(Some(delivery))
        }
    }
}
