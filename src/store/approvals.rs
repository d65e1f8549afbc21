//! The approval aggregate: votes toward a change request's quorum, the
//! asks sent to approvers (SMS codes, mail links, stored as keyed digests),
//! wrong-code lockouts and SMS opt-outs. Every vote is bound to the exact
//! head commit it was given on.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{StoreError, stored_time};
use crate::domain::{DecisionRecord, Severity};

/// Which change request: its rows share backend, branch and head commit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChangeRequestRef {
    pub backend: String,
    pub branch: String,
    pub head_commit: String,
}

/// What a vote says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Approve,
    Reject,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Approve => "approve",
            Verdict::Reject => "reject",
        }
    }
}

/// A vote to record.
#[derive(Debug, Clone)]
pub struct Vote<'a> {
    /// The approver's name as the directory has it.
    pub approver: &'a str,
    /// `cli`, `sms`, `email`, `github`.
    pub channel: &'a str,
    pub verdict: Verdict,
    /// Why, for a rejection.
    pub reason: Option<&'a str>,
    /// The message that carried it, already redacted.
    pub message: Option<&'a str>,
    /// The ask (code or link) the vote came through: consumed in the same
    /// transaction, so it is single-use even across replicas.
    pub ask: Option<i64>,
    pub at: DateTime<Utc>,
}

/// What recording a vote did.
#[derive(Debug, Clone, PartialEq)]
pub enum VoteOutcome {
    /// Counted; `have` of the `need` distinct approvers so far.
    Counted { have: u32, need: u32 },
    /// This approver's approval of this commit was already counted.
    AlreadyCounted { have: u32, need: u32 },
    /// The quorum is met, or it was a rejection: the decision is claimed
    /// (the change request is `approved` or `rejected`); carry it out.
    Decided(DecisionRecord),
    /// The change request is not waiting for a decision at this commit any
    /// more (decided, expired, or a new commit): nothing was recorded.
    Stale,
    /// The ask was used already, expired or was revoked: nothing recorded.
    AskSpent,
}

/// `change_request.approvals[].state` in `draco findings --json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    Counted,
    Withdrawn,
    Superseded,
}

/// A recorded vote, as `draco findings --json` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredApproval {
    pub approver: String,
    pub channel: String,
    /// The head commit it was given on.
    pub commit: String,
    #[serde(serialize_with = "stored_time::serialize")]
    pub at: DateTime<Utc>,
    pub state: ApprovalState,
    pub verdict: Verdict,
}

/// A channel's delivery of an ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AskDelivery {
    /// Recorded, not claimed for sending yet: the approvals follow-up
    /// sends it when whoever recorded it died before it could.
    Queued,
    /// Claimed for sending by one replica ([`ApprovalStore::arm_ask`]), the
    /// provider's answer not recorded yet. An ask left so was cut short
    /// mid-send and is never sent again: whether the message left is
    /// unknown, and a second message is worse than none; its reminder (at
    /// half the wait, with a fresh code or links) still goes out.
    Sending,
    Sent,
    /// The provider refused it (see `error`).
    Failed,
    /// Held back by `approval.max_messages_per_approver_per_day`.
    Held,
}

impl AskDelivery {
    pub fn as_str(self) -> &'static str {
        match self {
            AskDelivery::Queued => "queued",
            AskDelivery::Sending => "sending",
            AskDelivery::Sent => "sent",
            AskDelivery::Failed => "failed",
            AskDelivery::Held => "held",
        }
    }
}

/// Whether an ask's code or links still work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AskState {
    Pending,
    Used,
    /// A new commit on the branch: the code or link was for the old one.
    Superseded,
    Expired,
    /// The approver left the directory, or opted out.
    Revoked,
}

/// An ask to record: who, on which channel, and the keyed digests of what
/// was (or is about to be) sent.
#[derive(Debug, Clone)]
pub struct NewAsk<'a> {
    pub change_request: &'a ChangeRequestRef,
    pub approver: &'a str,
    pub channel: &'a str,
    pub code_digest: Option<String>,
    pub approve_digest: Option<String>,
    pub reject_digest: Option<String>,
    pub delivery: AskDelivery,
    pub expires_at: DateTime<Utc>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredAsk {
    pub id: i64,
    #[serde(skip)]
    pub change_request: ChangeRequestRef,
    pub approver: String,
    pub channel: String,
    pub state: AskState,
    pub delivery: AskDelivery,
    #[serde(serialize_with = "stored_time::serialize")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "stored_time::serialize")]
    pub expires_at: DateTime<Utc>,
    pub error: Option<String>,
    #[serde(serialize_with = "stored_time::serialize_option")]
    pub reminded_at: Option<DateTime<Utc>>,
}

/// Which of a mail's two links a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkAction {
    Approve,
    Reject,
}

#[async_trait]
pub trait ApprovalStore: Send + Sync {
    /// The highest severity among the findings of the change request at
    /// this head; `None` when no row is at that head any more.
    async fn change_request_severity(
        &self,
        change_request: &ChangeRequestRef,
    ) -> Result<Option<Severity>, StoreError>;
    /// Records `vote` in one transaction with its audit event: an approval
    /// counts once per approver and commit, and claims the approval when
    /// `need` distinct approvers have approved this commit; a rejection
    /// claims the rejection at once. Only while the change request waits
    /// at exactly this head. Only the approvals of `eligible` count (the
    /// names, as the directory has them now, of those who may decide this
    /// change): someone removed from the directory, renamed, or no longer
    /// allowed this severity no longer counts toward the quorum.
    async fn cast_vote(
        &self,
        change_request: &ChangeRequestRef,
        vote: &Vote<'_>,
        need: u32,
        eligible: &[&str],
    ) -> Result<VoteOutcome, StoreError>;
    /// A dismissed review: that approver's counted approval on the change
    /// request's current head (via `channel`) no longer counts. `false`
    /// when there was none.
    async fn withdraw_vote(
        &self,
        change_request: &ChangeRequestRef,
        approver: &str,
        channel: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Every vote ever cast on `branch` of `backend`, oldest first.
    async fn approvals(
        &self,
        backend: &str,
        branch: &str,
    ) -> Result<Vec<StoredApproval>, StoreError>;
    /// Records an ask, once per change request, approver and channel: `None`
    /// when that approver was asked on that channel already.
    async fn record_ask(&self, ask: &NewAsk<'_>) -> Result<Option<i64>, StoreError>;
    /// Records how sending an ask went.
    async fn mark_ask_delivery(
        &self,
        id: i64,
        delivery: AskDelivery,
        provider_id: Option<&str>,
        error: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Holds ask `id` back under the daily message cap (`held`), only if
    /// it is still pending with delivery `from`: a claim like
    /// [`ApprovalStore::arm_ask`], so an ask another replica sent meanwhile
    /// is never marked held (and released, a second message). `false` when
    /// another got there first.
    async fn hold_ask(&self, id: i64, from: AskDelivery) -> Result<bool, StoreError>;
    /// Every ask about the change request on `branch`, oldest first.
    async fn asks(&self, backend: &str, branch: &str) -> Result<Vec<StoredAsk>, StoreError>;
    /// The pending ask of `approver` whose SMS code has `digest`.
    async fn ask_by_code(
        &self,
        approver: &str,
        digest: &str,
    ) -> Result<Option<StoredAsk>, StoreError>;
    /// The ask one of whose mail links has `digest`, in any state.
    async fn ask_by_link(
        &self,
        digest: &str,
    ) -> Result<Option<(StoredAsk, LinkAction)>, StoreError>;
    /// Marks the change request `awaiting_approval` (from `open`) with its
    /// audit event, once its approvers were asked. `false` when it was not
    /// open at that head.
    async fn mark_awaiting_approval(
        &self,
        change_request: &ChangeRequestRef,
        asked: &[String],
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Appends a refused attempt to the audit log (a wrong or replayed
    /// code, an unknown number, a forged review): `action` such as
    /// `approval.refused`, with `details` (already redacted).
    async fn audit_refusal(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        details: &serde_json::Value,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Records a wrong code from `approver` and returns how many they sent
    /// since `since` (this one included).
    async fn record_wrong_code(
        &self,
        approver: &str,
        channel: &str,
        since: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<u32, StoreError>;
    /// Reserves one code check for `approver` under the lockout, in one
    /// write step shared by every replica: counts their wrong codes since
    /// `since`; at `limit` or more, `None` (locked out); otherwise records a
    /// wrong code at `at` and returns its id and the count with it. A code
    /// that turns out right gives its reservation back
    /// ([`Self::withdraw_wrong_code`]). So at most `limit` codes are looked up
    /// per approver and window, however many replicas check at once.
    async fn reserve_code_check(
        &self,
        approver: &str,
        channel: &str,
        since: DateTime<Utc>,
        limit: u32,
        at: DateTime<Utc>,
    ) -> Result<Option<(i64, u32)>, StoreError>;
    /// Uses up ask `id` of `approver` if it is still pending and unexpired at
    /// `at`; false when it was used (or expired, revoked) meanwhile.
    async fn spend_ask(
        &self,
        id: i64,
        approver: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Removes the wrong code `id` recorded by [`Self::reserve_code_check`].
    async fn withdraw_wrong_code(&self, id: i64) -> Result<(), StoreError>;
    /// Wrong codes from `approver` since `since`.
    async fn wrong_codes_since(
        &self,
        approver: &str,
        since: DateTime<Utc>,
    ) -> Result<u32, StoreError>;
    /// STOP (`true`) or START (`false`) from `phone`, audited under
    /// `shown_as` (the number masked).
    async fn set_opt_out(
        &self,
        phone: &str,
        shown_as: &str,
        opted_out: bool,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    async fn is_opted_out(&self, phone: &str) -> Result<bool, StoreError>;
    /// Gives an ask fresh digests (the code or links about to be sent;
    /// earlier ones stop working) and marks it `sending`; `reminder` also
    /// records the reminder. Only if the ask is still pending with delivery
    /// `from` (and, for a reminder, not reminded yet): arming is the claim
    /// to send, so of two replicas releasing or reminding the same ask at
    /// once exactly one sends. `false` when another got there first or the
    /// ask is no longer pending.
    #[allow(clippy::too_many_arguments)]
    async fn arm_ask(
        &self,
        id: i64,
        from: AskDelivery,
        code_digest: Option<String>,
        approve_digest: Option<String>,
        reject_digest: Option<String>,
        reminder: bool,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Every pending ask, oldest first (the follow-up job's work list).
    async fn pending_asks(&self) -> Result<Vec<StoredAsk>, StoreError>;
    /// Nobody decided in time: the change request at this head becomes
    /// `expired` (its findings `open` again), its pending asks `expired`,
    /// with the audit event. Returns the findings it covered (none when it
    /// no longer waited at that head).
    async fn expire_change_request(
        &self,
        change_request: &ChangeRequestRef,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<crate::domain::FindingId>, StoreError>;
    /// Records that GitHub review `review_id` was dismissed (its
    /// `submitted` delivery may still be on its way).
    async fn record_dismissed_review(
        &self,
        review_id: u64,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    async fn is_review_dismissed(&self, review_id: u64) -> Result<bool, StoreError>;
    /// Records an inbound message's provider id (already hashed); `false`
    /// when it was seen before (a replay or a provider's retry).
    async fn first_sighting(&self, message_id: &str, at: DateTime<Utc>)
    -> Result<bool, StoreError>;
    /// Undoes [`first_sighting`](Self::first_sighting) for a message whose
    /// handling failed, so that the provider's retry of it is handled.
    async fn forget_sighting(&self, message_id: &str) -> Result<(), StoreError>;
    /// Messages sent to `approver` (any channel) since `since`.
    async fn messages_sent_since(
        &self,
        approver: &str,
        since: DateTime<Utc>,
    ) -> Result<u32, StoreError>;
}
