//! Answers that come back: SMS replies (Twilio's webhook, signature already
//! checked by the server) and the pages behind the mail links. Each one is
//! matched to an approver and to the ask it answers, checked (lockout,
//! single use, expiry, the exact commit), and decided only through
//! [`approve::vote`]; whatever is refused is audited.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;

use super::Notifier;
use crate::approve::{self, ApprovalStores, ApproveError, Ballot, Channel, Verdict, VoteResult};
use crate::approvers::{ApproverEntry, PhoneNumber};
use crate::channels::twilio::{Reply, parse_reply};
use crate::domain::FindingId;
use crate::gitops::ChangeRequests;
use crate::store::approvals::{AskState, LinkAction, StoredAsk};
use crate::store::{ChangeRequestStore, StoreError};

/// Stores the inbound paths use.
pub trait InboundStore: ApprovalStores + ChangeRequestStore {}
impl<T: ApprovalStores + ChangeRequestStore + ?Sized> InboundStore for T {}

/// What the inbound paths decide through.
pub struct Deciding<'a> {
    pub store: &'a dyn InboundStore,
    pub change_requests: &'a dyn ChangeRequests,
    pub notifier: &'a Notifier,
}

impl Deciding<'_> {
    /// [`approve::vote`] with this application's store, backend, directory
    /// and quorum: what every inbound channel decides through.
    pub async fn vote(
        &self,
        finding: FindingId,
        ballot: &Ballot<'_>,
        now: DateTime<Utc>,
    ) -> Result<VoteResult, ApproveError> {
        approve::vote(
            self.store,
            self.change_requests,
            &self.notifier.directory,
            &self.notifier.policy.quorum,
            finding,
            ballot,
            now,
        )
        .await
    }
}

const HELP_TEXT: &str = "Draco approvals: reply YES <code> to approve or NO <code> <reason> to reject the change a message named. STOP ends messages, START resumes them.";

/// The number as the audit log shows it (masked), or `unknown`.
fn shown(phone: &str) -> String {
    phone
        .parse::<PhoneNumber>()
        .map_or_else(|_| "an invalid number".to_owned(), |p| p.masked())
}

/// The finding whose change request an ask is about (the first one of a
/// group: a decision on it decides them all).
async fn finding_of(
    store: &dyn InboundStore,
    ask: &StoredAsk,
) -> Result<Option<FindingId>, StoreError> {
    let cr = &ask.change_request;
    Ok(store
        .change_requests_on_branch(&cr.backend, &cr.branch)
        .await?
        .into_iter()
        .find(|row| row.head_commit == cr.head_commit)
        .map(|row| row.finding_id))
}

/// The SMS text with the code hidden, for the audit log (the code must
/// not be replayable from it).
fn redact_code(body: &str, code: &str, notifier: &Notifier) -> String {
    let hidden = body.replace(code, "••••••");
    let (redacted, _) = notifier.redactor.redact_text(&hidden);
    redacted.get().chars().take(300).collect()
}

/// Handles one inbound SMS from `from` saying `body`; returns the reply to
/// send back (`None`: a neutral empty TwiML answer).
///
/// Errors: the store failed (Twilio is answered 5xx and retries).
pub async fn sms(
    deciding: &Deciding<'_>,
    message_sid: &str,
    from: &str,
    body: &str,
    now: DateTime<Utc>,
) -> Result<Option<String>, StoreError> {
    let store = deciding.store;
    // Twilio's signature has no timestamp: a captured request stays valid.
    // Each message is handled once (its id kept as a hash: it is not
    // secret, but nothing needs it in clear).
    let seen = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
        message_sid.as_bytes(),
    ));
    if !store.first_sighting(&seen, now).await? {
        store
            .audit_refusal(
                &format!("sms:{}", shown(from)),
                "approval.refused",
                "sms",
                &json!({ "channel": "sms", "why": "a message already handled (a replay, or Twilio retrying)" }),
                now,
            )
            .await?;
        return Ok(None);
    }
    match sighted(deciding, from, body, now).await {
        Ok(reply) => Ok(reply),
        Err(error) => {
            // Twilio is answered 5xx and retries with the same message id:
            // that retry must be handled, not refused as a replay, or an
            // approval cut off by a database error is lost.
            if let Err(forget) = store.forget_sighting(&seen).await {
                tracing::warn!(error = %forget, "cannot forget a message that failed; Twilio's retry will be refused as a replay");
            }
            Err(error)
        }
    }
}

/// [`sms`] for a message seen for the first time.
async fn sighted(
    deciding: &Deciding<'_>,
    from: &str,
    body: &str,
    now: DateTime<Utc>,
) -> Result<Option<String>, StoreError> {
    let store = deciding.store;
    let notifier = deciding.notifier;
    let Some(approver) = notifier.directory.by_phone(from) else {
        store
            .audit_refusal(
                &format!("sms:{}", shown(from)),
                "approval.refused",
                "sms",
                &json!({ "channel": "sms", "why": "the number is not an approver's" }),
                now,
            )
            .await?;
        return Ok(None);
    };
    match parse_reply(body) {
        Reply::OptOut => {
            store.set_opt_out(from, &shown(from), true, now).await?;
            Ok(None)
        }
        Reply::OptIn => {
            store.set_opt_out(from, &shown(from), false, now).await?;
            Ok(Some(
                "Draco: messages resumed. A bare YES approves nothing: reply YES <code> to a request."
                    .into(),
            ))
        }
        Reply::Help => Ok(Some(HELP_TEXT.into())),
        Reply::Unknown => Ok(Some(
            "Draco did not understand. Reply YES <code> to approve or NO <code> <reason> to reject."
                .into(),
        )),
        Reply::Approve { code } => {
            answer_code(deciding, approver, &code, Verdict::Approve, None, body, now).await
        }
        Reply::Reject { code, reason } => {
            if reason.trim().is_empty() {
                return Ok(Some(format!(
                    "Draco needs a reason to reject: reply NO {code} <reason>."
                )));
            }
            answer_code(
                deciding,
                approver,
                &code,
                Verdict::Reject,
                Some(&reason),
                body,
                now,
            )
            .await
        }
    }
}

async fn answer_code(
    deciding: &Deciding<'_>,
    approver: &ApproverEntry,
    code: &str,
    verdict: Verdict,
    reason: Option<&str>,
    body: &str,
    now: DateTime<Utc>,
) -> Result<Option<String>, StoreError> {
    let store = deciding.store;
    let notifier = deciding.notifier;
    let name = approver.name.as_str();
    let refuse = |why: &'static str, finding: Option<FindingId>| {
        let subject = finding.map_or_else(|| "sms".to_owned(), |f| format!("finding:{f}"));
        let details =
            json!({ "channel": "sms", "why": why, "message": redact_code(body, code, notifier) });
        async move {
            store
                .audit_refusal(name, "approval.refused", &subject, &details, now)
                .await
        }
    };
    let hour_ago = now - TimeDelta::hours(1);
    let limit = notifier.policy.max_wrong_codes_per_hour;
    // Checking the lockout, looking the code up and counting a wrong one
    // are one step, on every replica: each check first reserves a wrong
    // code in the store (refused at the limit), given back if the code is
    // right. Checked then counted, guesses sent to several replicas at once
    // would each pass the check before any was counted.
    let checking = notifier.code_checks.lock().await;
    let Some((reserved, wrong)) = store
        .reserve_code_check(name, "sms", hour_ago, limit, now)
        .await?
    else {
        refuse("locked out after too many wrong codes", None).await?;
        return Ok(Some(
            "Draco: too many wrong codes; replies from this number are ignored for an hour.".into(),
        ));
    };
    let digest = notifier.key.code_digest(name, code);
    let looked_up = match store.ask_by_code(name, &digest).await {
        Ok(found) => found,
        Err(error) => {
            // Not a wrong code: the store failed (Twilio retries).
            if let Err(give_back) = store.withdraw_wrong_code(reserved).await {
                tracing::warn!(error = %give_back, "cannot give back a code check that failed");
            }
            return Err(error);
        }
    };
    let Some(ask) = looked_up else {
        refuse("a wrong code", None).await?;
        if wrong >= limit {
            store
                .audit_refusal(
                    name,
                    "approval.locked_out",
                    "sms",
                    &json!({ "channel": "sms", "wrong_codes": wrong, "for": "1 hour" }),
                    now,
                )
                .await?;
        }
        return Ok(Some("Draco: that code is not valid.".into()));
    };
    store.withdraw_wrong_code(reserved).await?;
    drop(checking);
    let finding = finding_of(store, &ask).await?;
    let spent = match ask.state {
        AskState::Pending if ask.expires_at > now => None,
        AskState::Pending | AskState::Expired => Some("the code has expired"),
        AskState::Used => Some("the code was used already"),
        AskState::Superseded => {
            Some("the change has a newer commit; the code was for an older one")
        }
        AskState::Revoked => Some("the code was revoked"),
    };
    if let Some(why) = spent {
        refuse(why, finding).await?;
        return Ok(Some(format!("Draco: nothing decided: {why}.")));
    }
    let Some(finding) = finding else {
        refuse("the change request is gone", None).await?;
        return Ok(Some(
            "Draco: nothing decided: that change is no longer proposed.".into(),
        ));
    };
    let message = redact_code(body, code, notifier);
    let ballot = Ballot {
        approver,
        channel: Channel::Sms,
        verdict,
        reason,
        commit: Some(&ask.change_request.head_commit),
        message: Some(&message),
        ask: Some(ask.id),
    };
    let result = deciding.vote(finding, &ballot, now).await;
    Ok(Some(match result {
        Ok(VoteResult::Counted { have, need }) => format!(
            "Draco: approval counted ({have} of {need}); the change merges once {need} approvers have said yes."
        ),
        Ok(VoteResult::AlreadyCounted { have, need }) => {
            format!("Draco: you had approved this already ({have} of {need}).")
        }
        Ok(VoteResult::Decided(outcome)) if verdict == Verdict::Approve => format!(
            "Draco: approved and merged ({}).",
            outcome
                .merge_commit
                .as_deref()
                .map_or("", |c| c.get(..12).unwrap_or(c))
        ),
        Ok(VoteResult::Decided(_)) => "Draco: rejected; the change is closed.".into(),
        Err(error) => {
            let why = refusal_text(&error);
            refuse(why, Some(finding)).await?;
            if let ApproveError::Store(e) = error {
                return Err(e);
            }
            format!("Draco: nothing decided: {why}.")
        }
    }))
}

/// A short, secret-free reason for a refused decision, for the person and
/// the audit log.
pub fn refusal_text(error: &ApproveError) -> &'static str {
    match error {
        ApproveError::Superseded { .. } | ApproveError::Moved { .. } => {
            "the change has a newer commit; review it again"
        }
        ApproveError::NotAllowed { .. } => "you may not decide changes of this severity",
        ApproveError::AlreadyDecided { .. } => "it was already decided",
        ApproveError::Spent { .. } => "the code or link was used already or has expired",
        ApproveError::MissingReason => "a rejection needs a reason",
        ApproveError::UnknownApprover(_) | ApproveError::InvalidApprover(_) => {
            "you are not in the approver directory"
        }
        ApproveError::Failed { .. } => {
            "what was proposed is no longer on the branch; it will be proposed again"
        }
        ApproveError::UnknownFinding(_)
        | ApproveError::NoChangeRequest(_)
        | ApproveError::OtherBackend { .. } => "that change is no longer proposed",
        ApproveError::Store(_) | ApproveError::GitOps(_) => {
            "Draco could not record it now; try again"
        }
    }
}

/// What a mail link leads to.
pub enum LinkPage {
    /// Unknown, malformed or no longer usable: say why, change nothing.
    Refused { status: u16, why: &'static str },
    /// The confirmation page: what the change is, and a form.
    Confirm {
        action: LinkAction,
        approver: String,
        summary: String,
        commit: String,
        form_token: String,
    },
}

/// Looks a link token up: the ask, its approver (still in the directory)
/// and whether it can still decide.
async fn usable_link(
    deciding: &Deciding<'_>,
    token: &str,
    now: DateTime<Utc>,
) -> Result<Result<(StoredAsk, LinkAction, String, FindingId), (u16, &'static str)>, StoreError> {
    if !crate::approve::secrets::looks_like_link_token(token) {
        return Ok(Err((404, "This link is not a Draco approval link.")));
    }
    let notifier = deciding.notifier;
    let digest = notifier.key.link_digest(token);
    let Some((ask, action)) = deciding.store.ask_by_link(&digest).await? else {
        return Ok(Err((404, "This link is not a Draco approval link.")));
    };
    if notifier.directory.by_name(&ask.approver).is_none() {
        return Ok(Err((
            410,
            "This link's approver is no longer in Draco's approver directory.",
        )));
    }
    let why = match ask.state {
        AskState::Pending if ask.expires_at > now => None,
        AskState::Pending | AskState::Expired => Some("This link has expired."),
        AskState::Used => Some("This link was used already: each link decides once."),
        AskState::Superseded => Some(
            "The change has a newer commit since this mail was sent: this link was for the old one. A new request has been sent.",
        ),
        AskState::Revoked => Some("This link was revoked."),
    };
    if let Some(why) = why {
        return Ok(Err((410, why)));
    }
    let Some(finding) = finding_of(deciding.store, &ask).await? else {
        return Ok(Err((410, "That change is no longer proposed.")));
    };
    Ok(Ok((ask, action, digest, finding)))
}

/// `GET /approve/{token}`: the confirmation page, changing nothing.
pub async fn link_page(
    deciding: &Deciding<'_>,
    token: &str,
    now: DateTime<Utc>,
) -> Result<LinkPage, StoreError> {
    let (ask, action, digest, finding) = match usable_link(deciding, token, now).await? {
        Ok(found) => found,
        Err((status, why)) => return Ok(LinkPage::Refused { status, why }),
    };
    let cr = deciding
        .store
        .change_request_for_finding(finding)
        .await?
        .filter(|cr| cr.head_commit == ask.change_request.head_commit && cr.state.is_decidable());
    let Some(cr) = cr else {
        return Ok(LinkPage::Refused {
            status: 410,
            why: "This change was decided already, or has a newer commit.",
        });
    };
    let form_token = deciding
        .notifier
        .key
        .form_token(&digest)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(LinkPage::Confirm {
        action,
        approver: ask.approver.clone(),
        summary: format!("finding {finding}: {}", cr.location),
        commit: cr.head_commit,
        form_token,
    })
}

/// `POST /approve/{token}`: decides, when the form token is the page's own
/// (`form_token` from the form, `cookie` from the page's cookie).
/// Returns the HTTP status and the text of the result page.
pub async fn link_decide(
    deciding: &Deciding<'_>,
    token: &str,
    form_token: &str,
    cookie: Option<&str>,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(u16, String), StoreError> {
    let (ask, action, digest, finding) = match usable_link(deciding, token, now).await? {
        Ok(found) => found,
        Err((status, why)) => return Ok((status, why.to_owned())),
    };
    let store = deciding.store;
    let notifier = deciding.notifier;
    let forged = !cookie.is_some_and(|c| crate::approve::secrets::same(c, form_token))
        || !notifier.key.check_form_token(&digest, form_token);
    let audit_refusal = |why: &'static str| {
        let subject = format!("finding:{finding}");
        let approver = ask.approver.clone();
        async move {
            store
                .audit_refusal(
                    &approver,
                    "approval.refused",
                    &subject,
                    &json!({ "channel": "email", "why": why }),
                    now,
                )
                .await
        }
    };
    if forged {
        audit_refusal("the confirmation form's anti-forgery token did not match").await?;
        return Ok((
            403,
            "Nothing was decided: open the link again and confirm on its page.".into(),
        ));
    }
    let Some(approver) = notifier.directory.by_name(&ask.approver) else {
        return Ok((410, "This link's approver is no longer an approver.".into()));
    };
    let verdict = match action {
        LinkAction::Approve => Verdict::Approve,
        LinkAction::Reject => Verdict::Reject,
    };
    let message = reason.map(|r| {
        let (redacted, _) = notifier.redactor.redact_text(r);
        redacted.get().chars().take(300).collect::<String>()
    });
    let ballot = Ballot {
        approver,
        channel: Channel::Email,
        verdict,
        reason,
        commit: Some(&ask.change_request.head_commit),
        message: message.as_deref(),
        ask: Some(ask.id),
    };
    let result = deciding.vote(finding, &ballot, now).await;
    Ok(match result {
        Ok(VoteResult::Counted { have, need }) => (
            200,
            format!(
                "Your approval is counted ({have} of {need}). The change merges once {need} approvers have approved it."
            ),
        ),
        Ok(VoteResult::AlreadyCounted { have, need }) => (
            200,
            format!("You had approved this change already ({have} of {need})."),
        ),
        Ok(VoteResult::Decided(outcome)) if verdict == Verdict::Approve => (
            200,
            format!(
                "Approved. The change is merged ({}).",
                outcome.merge_commit.as_deref().unwrap_or("?")
            ),
        ),
        Ok(VoteResult::Decided(_)) => (
            200,
            "Rejected. The change is closed without merging.".into(),
        ),
        Err(ApproveError::MissingReason) => (
            400,
            "Nothing was decided: a rejection needs a reason. Go back and write one.".into(),
        ),
        Err(error) => {
            let why = refusal_text(&error);
            audit_refusal(why).await?;
            if let ApproveError::Store(e) = error {
                return Err(e);
            }
            (409, format!("Nothing was decided: {why}."))
        }
    })
}
