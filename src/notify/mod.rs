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
use crate::gitops::ChangeRequests;
use crate::redact::{PiiKind, Redactor};
use crate::store::approvals::{AskDelivery, ChangeRequestRef, NewAsk, StoredAsk};
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
    /// Held while an SMS code is checked against the wrong-code lockout,
    /// so that concurrent guesses are counted one after the other.
    pub code_checks: tokio::sync::Mutex<()>,
}

/// What one pass asked.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AskReport {
    pub sent: usize,
    pub held: usize,
    pub failed: usize,
    /// Branches of change requests with an ask newly held back by the
    /// daily message cap (said on the pull request by the caller).
    pub held_branches: Vec<String>,
}

/// A change request waiting for a decision, with what it covers.
struct Waiting {
    at_head: ChangeRequestRef,
    location: String,
    findings: Vec<StoredFinding>,
    severity: Severity,
    impact: f64,
    /// When its head was proposed (`None` for change requests recorded
    /// before Draco kept it: they expire only through their asks).
    head_at: Option<DateTime<Utc>>,
}

/// Stores `ask_pending` reads and writes.
pub trait NotifyStore: ApprovalStore + ChangeRequestStore + ScanStore {}
impl<T: ApprovalStore + ChangeRequestStore + ScanStore + ?Sized> NotifyStore for T {}

/// Every change request waiting for a decision, highest severity × impact
/// first.
async fn waiting(store: &dyn NotifyStore) -> Result<Vec<Waiting>, StoreError> {
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
                head_at: cr.head_at,
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
    Ok(waiting)
}

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
    let expires_at = now + TimeDelta::hours(notifier.policy.expires_after_hours as i64);
    for cr in waiting(store).await? {
        let need = notifier.policy.quorum.for_severity(cr.severity) as usize;
        let primaries: Vec<&ApproverEntry> = notifier
            .directory
            .for_severity(cr.severity)
            .take(need)
            .collect();
        ask_all(
            store,
            notifier,
            &cr,
            &primaries,
            expires_at,
            now,
            &mut report,
        )
        .await?;
    }
    Ok(report)
}

/// Asks each of `approvers` about `cr` on every configured channel (those
/// asked already are skipped), and marks the change request
/// `awaiting_approval` once anyone has been asked.
async fn ask_all(
    store: &dyn NotifyStore,
    notifier: &Notifier,
    cr: &Waiting,
    approvers: &[&ApproverEntry],
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
    report: &mut AskReport,
) -> Result<(), NotifyError> {
    let mut asked_now = Vec::new();
    let mut held = false;
    for approver in approvers {
        for &channel in &notifier.policy.notify {
            match ask_one(store, notifier, cr, approver, channel, expires_at, now).await? {
                Some(AskDelivery::Sent) => {
                    report.sent += 1;
                    asked_now.push(format!("{} ({})", approver.name, channel.as_str()));
                }
                Some(AskDelivery::Held) => {
                    report.held += 1;
                    held = true;
                }
                Some(AskDelivery::Failed) => report.failed += 1,
                Some(AskDelivery::Queued | AskDelivery::Sending) | None => {}
            }
        }
    }
    if held {
        report.held_branches.push(cr.at_head.branch.clone());
    }
    let asked_before = store
        .asks(&cr.at_head.backend, &cr.at_head.branch)
        .await?
        .iter()
        .any(|a| a.change_request == cr.at_head && a.delivery == AskDelivery::Sent);
    if asked_before {
        store
            .mark_awaiting_approval(&cr.at_head, &asked_now, now)
            .await?;
    }
    Ok(())
}

/// Whether `approver` can be reached on `channel` now (an address for it,
/// the channel set up, the number not opted out).
async fn reachable(
    store: &dyn NotifyStore,
    notifier: &Notifier,
    approver: &ApproverEntry,
    channel: NotifyChannel,
) -> Result<bool, StoreError> {
    Ok(match channel {
        NotifyChannel::Sms => match (&approver.phone, &notifier.twilio) {
            (Some(phone), Some(_)) => !store.is_opted_out(phone.as_str()).await?,
            _ => false,
        },
        NotifyChannel::Email => {
            approver.email.is_some() && notifier.mailer.is_some() && notifier.public_url.is_some()
        }
    })
}

/// Records an ask of one approver on one channel about one change request,
/// unless they were asked already or cannot be reached there, then sends
/// it (or holds it back under the daily cap). Returns how it went (`None`:
/// nothing to do).
async fn ask_one(
    store: &dyn NotifyStore,
    notifier: &Notifier,
    cr: &Waiting,
    approver: &ApproverEntry,
    channel: NotifyChannel,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Option<AskDelivery>, NotifyError> {
    if !reachable(store, notifier, approver, channel).await? {
        return Ok(None);
    }
    let Some(id) = store
        .record_ask(&NewAsk {
            change_request: &cr.at_head,
            approver: &approver.name,
            channel: channel.as_str(),
            code_digest: None,
            approve_digest: None,
            reject_digest: None,
            delivery: AskDelivery::Queued,
            expires_at,
            at: now,
        })
        .await?
    else {
        return Ok(None);
    };
    send_ask(
        store,
        notifier,
        cr,
        approver,
        channel,
        (id, AskDelivery::Queued),
        expires_at,
        false,
        now,
    )
    .await
    .map(Some)
}

/// Sends ask `id` (whose delivery stands as `from`): fresh secrets (a code,
/// or two links) armed in the store first, which only one replica wins,
/// then the message; held instead when the approver had
/// `max_messages_per_approver_per_day` in the last 24 hours. Returns how
/// it went.
#[allow(clippy::too_many_arguments)]
async fn send_ask(
    store: &dyn NotifyStore,
    notifier: &Notifier,
    cr: &Waiting,
    approver: &ApproverEntry,
    channel: NotifyChannel,
    (id, from): (i64, AskDelivery),
    expires_at: DateTime<Utc>,
    reminder: bool,
    now: DateTime<Utc>,
) -> Result<AskDelivery, NotifyError> {
    let since = now - TimeDelta::hours(24);
    if store.messages_sent_since(&approver.name, since).await?
        >= notifier.policy.max_messages_per_approver_per_day
    {
        if !store.hold_ask(id, from).await? {
            return Ok(AskDelivery::Queued);
        }
        return Ok(AskDelivery::Held);
    }
    let mut summary = message::Summary::of(notifier, &cr.findings, cr.impact, &cr.location);
    if reminder {
        summary.line = format!("Reminder: {}", summary.line);
    }
    let sent = match channel {
        NotifyChannel::Sms => {
            let (Some(phone), Some(twilio)) = (&approver.phone, &notifier.twilio) else {
                return Ok(AskDelivery::Failed);
            };
            let code = secrets::new_code()?;
            let digest = notifier.key.code_digest(&approver.name, &code);
            if !store
                .arm_ask(id, from, Some(digest), None, None, reminder, now)
                .await?
            {
                return Ok(AskDelivery::Queued);
            }
            twilio
                .send(phone, &summary.sms(&code))
                .await
                .map(Some)
                .map_err(|e| e.to_string())
        }
        NotifyChannel::Email => {
            let (Some(email), Some(mailer), Some(base)) =
                (&approver.email, &notifier.mailer, &notifier.public_url)
            else {
                return Ok(AskDelivery::Failed);
            };
            let approve = secrets::new_link_token()?;
            let reject = secrets::new_link_token()?;
            if !store
                .arm_ask(
                    id,
                    from,
                    None,
                    Some(notifier.key.link_digest(&approve)),
                    Some(notifier.key.link_digest(&reject)),
                    reminder,
                    now,
                )
                .await?
            {
                return Ok(AskDelivery::Queued);
            }
            let mail = summary.mail(
                approver,
                email,
                &format!("{base}/approve/{approve}"),
                &format!("{base}/approve/{reject}"),
                expires_at,
            );
            mailer.send(&mail).await.map_err(|e| e.to_string())
        }
    };
    let (delivery, provider_id, error) = match sent {
        Ok(id) => (AskDelivery::Sent, id, None),
        Err(error) => {
            tracing::warn!(%error, approver = %approver.name, channel = channel.as_str(), "cannot send an approval request");
            (AskDelivery::Failed, None, Some(error))
        }
    };
    store
        .mark_ask_delivery(id, delivery, provider_id.as_deref(), error.as_deref(), now)
        .await?;
    Ok(delivery)
}

/// How long an ask may stay `queued` (recorded, not claimed for sending)
/// before the follow-up sends it: the replica that recorded it claims it
/// within milliseconds unless it died in between.
const QUEUED_GRACE: TimeDelta = TimeDelta::minutes(5);

/// What one follow-up pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FollowUpReport {
    /// Held asks sent now that the daily cap allows.
    pub released: usize,
    pub reminded: usize,
    /// Approvers beyond the first ones asked at three quarters of the wait.
    pub escalated: usize,
    pub expired: usize,
}

/// The daemon's approval job (every minute, and after each scan): asks
/// held back by the daily cap go out once it allows (most severe first),
/// each ask gets one reminder with a fresh code or links at half of
/// `approval.expires_after_hours`, the next approvers are asked at three
/// quarters, and a change request nobody decided by then expires: its pull
/// request or branch is closed and its codes and links stop working.
///
/// Errors: the store failed; a provider failing is recorded on its ask.
pub async fn follow_up(
    store: &dyn NotifyStore,
    notifier: &Notifier,
    change_requests: &dyn ChangeRequests,
    now: DateTime<Utc>,
) -> Result<FollowUpReport, NotifyError> {
    let mut report = FollowUpReport::default();
    if notifier.directory.is_empty() {
        return Ok(report);
    }
    let pending = store.pending_asks().await?;
    for cr in waiting(store).await? {
        let asks: Vec<&StoredAsk> = pending
            .iter()
            .filter(|a| a.change_request == cr.at_head)
            .collect();
        let window = TimeDelta::hours(notifier.policy.expires_after_hours as i64);
        // Nobody asked (no channel, or nobody reachable): the wait counts
        // from when the commit was proposed.
        let (Some(first), Some(deadline)) = (
            asks.iter().map(|a| a.created_at).min().or(cr.head_at),
            asks.iter()
                .map(|a| a.expires_at)
                .min()
                .or(cr.head_at.map(|at| at + window)),
        ) else {
            continue;
        };
        if now >= deadline {
            let hours = notifier.policy.expires_after_hours;
            let reason = format!("nobody decided within {hours} hours");
            let expired = store
                .expire_change_request(&cr.at_head, &reason, now)
                .await?;
            if !expired.is_empty() {
                report.expired += 1;
                let note = format!(
                    "Expired: nobody approved or rejected this change within {hours} hours, so it is closed without merging. Its codes and links no longer work."
                );
                if let Err(error) = change_requests.withdraw(&cr.at_head.branch, &note).await {
                    tracing::warn!(%error, branch = cr.at_head.branch, "cannot close an expired change request");
                }
            }
            continue;
        }
        let wait = deadline - first;
        for ask in &asks {
            let Some(approver) = notifier.directory.by_name(&ask.approver) else {
                continue;
            };
            let channel = match ask.channel.as_str() {
                "sms" => NotifyChannel::Sms,
                _ => NotifyChannel::Email,
            };
            // Held by the daily cap, or recorded by a replica that died
            // before claiming it (after a grace period: the one that
            // recorded it a moment ago is about to send it).
            let released = ask.delivery == AskDelivery::Held
                || (ask.delivery == AskDelivery::Queued && now >= ask.created_at + QUEUED_GRACE);
            // A send cut short (`sending`) is not repeated, but its reminder
            // goes out as any other: at most that one more message.
            let remind = matches!(ask.delivery, AskDelivery::Sent | AskDelivery::Sending)
                && ask.reminded_at.is_none()
                && now >= ask.created_at + wait / 2;
            if !(released || remind) || !reachable(store, notifier, approver, channel).await? {
                continue;
            }
            let delivery = send_ask(
                store,
                notifier,
                &cr,
                approver,
                channel,
                (ask.id, ask.delivery),
                deadline,
                remind,
                now,
            )
            .await?;
            if delivery == AskDelivery::Sent {
                if remind {
                    report.reminded += 1;
                } else {
                    report.released += 1;
                }
            }
        }
        if now >= first + wait * 3 / 4 {
            let others: Vec<&ApproverEntry> =
                notifier.directory.for_severity(cr.severity).collect();
            let mut asked = AskReport::default();
            ask_all(store, notifier, &cr, &others, deadline, now, &mut asked).await?;
            report.escalated += asked.sent;
        }
    }
    Ok(report)
}
