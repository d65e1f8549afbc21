//! [`ApprovalStore`] in SQL (both backends). A vote, the ask it came through and the
//! decision it completes are one write transaction (`begin_write`), so two
//! approvers answering at the same moment are counted one after the other
//! and exactly one of them claims the decision.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::Row;

use super::{Backend, Db, DbConnection, DbRow, append_audit, finding_subject, text};
use crate::domain::{ChangeRequestId, DecisionRecord, FindingId, Severity};
use crate::store::approvals::{
    ApprovalState, ApprovalStore, AskDelivery, AskState, ChangeRequestRef, LinkAction, NewAsk,
    StoredApproval, StoredAsk, Verdict, Vote, VoteOutcome,
};
use crate::store::{StoreError, parse_timestamp, timestamp};

/// States in which a change request takes votes.
const VOTABLE: &str = "state IN ('open', 'awaiting_approval', 'failed')";

fn approval_state(name: &str) -> Result<ApprovalState, StoreError> {
    Ok(match name {
        "counted" => ApprovalState::Counted,
        "withdrawn" => ApprovalState::Withdrawn,
        "superseded" => ApprovalState::Superseded,
        other => {
            return Err(StoreError::Corrupt(format!(
                "unknown approval state `{other}`"
            )));
        }
    })
}

fn ask_state(name: &str) -> Result<AskState, StoreError> {
    Ok(match name {
        "pending" => AskState::Pending,
        "used" => AskState::Used,
        "superseded" => AskState::Superseded,
        "expired" => AskState::Expired,
        "revoked" => AskState::Revoked,
        other => return Err(StoreError::Corrupt(format!("unknown ask state `{other}`"))),
    })
}

fn delivery(name: &str) -> Result<AskDelivery, StoreError> {
    Ok(match name {
        "queued" => AskDelivery::Queued,
        "sending" => AskDelivery::Sending,
        "sent" => AskDelivery::Sent,
        "failed" => AskDelivery::Failed,
        "held" => AskDelivery::Held,
        other => return Err(StoreError::Corrupt(format!("unknown delivery `{other}`"))),
    })
}

fn ask_from_row(row: &DbRow) -> Result<StoredAsk, StoreError> {
    let created: String = row.try_get("created_at")?;
    let expires: String = row.try_get("expires_at")?;
    let state: String = row.try_get("state")?;
    let sent: String = row.try_get("delivery")?;
    Ok(StoredAsk {
        id: row.try_get("id")?,
        change_request: ChangeRequestRef {
            backend: row.try_get("backend")?,
            branch: row.try_get("branch")?,
            head_commit: row.try_get("head_commit")?,
        },
        approver: row.try_get("approver")?,
        channel: row.try_get("channel")?,
        state: ask_state(&state)?,
        delivery: delivery(&sent)?,
        created_at: parse_timestamp("ask created", &created)?,
        expires_at: parse_timestamp("ask expires", &expires)?,
        error: row.try_get("error")?,
        reminded_at: row
            .try_get::<Option<String>, _>("reminded_at")?
            .map(|t| parse_timestamp("ask reminded", &t))
            .transpose()?,
    })
}

/// Marks every counted vote and pending ask on `branch` that is not about
/// `head` superseded: a new commit (Draco's re-proposal, or a push by
/// anyone) voids what was given or sent for the old one. Returns how many
/// votes and asks it voided.
pub(super) async fn supersede_other_heads(
    tx: &mut DbConnection,
    backend: &str,
    branch: &str,
    head: &str,
) -> Result<(u64, u64), StoreError> {
    let votes = sqlx::query(
        "UPDATE approvals SET state = 'superseded'
         WHERE backend = $1 AND branch = $2 AND head_commit <> $3 AND state = 'counted'",
    )
    .bind(backend.to_owned())
    .bind(branch.to_owned())
    .bind(head.to_owned())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let asks = sqlx::query(
        "UPDATE approval_asks SET state = 'superseded'
         WHERE backend = $1 AND branch = $2 AND head_commit <> $3 AND state = 'pending'",
    )
    .bind(backend.to_owned())
    .bind(branch.to_owned())
    .bind(head.to_owned())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok((votes, asks))
}

fn approval_from_row(row: &DbRow) -> Result<StoredApproval, StoreError> {
    let at: String = row.try_get("at")?;
    let state: String = row.try_get("state")?;
    let verdict: String = row.try_get("verdict")?;
    Ok(StoredApproval {
        approver: row.try_get("approver")?,
        channel: row.try_get("channel")?,
        commit: row.try_get("head_commit")?,
        at: parse_timestamp("approval", &at)?,
        state: approval_state(&state)?,
        verdict: if verdict == "reject" {
            Verdict::Reject
        } else {
            Verdict::Approve
        },
    })
}

/// Every vote, by (backend, branch), oldest first: for listing all change
/// requests with one query.
pub(super) async fn all_approvals(
    pool: &sqlx::Pool<Db>,
) -> Result<std::collections::HashMap<(String, String), Vec<StoredApproval>>, StoreError> {
    let rows = sqlx::query("SELECT * FROM approvals ORDER BY id")
        .fetch_all(pool)
        .await?;
    let mut by_branch: std::collections::HashMap<(String, String), Vec<StoredApproval>> =
        std::collections::HashMap::new();
    for row in &rows {
        let key = (row.try_get("backend")?, row.try_get("branch")?);
        by_branch
            .entry(key)
            .or_default()
            .push(approval_from_row(row)?);
    }
    Ok(by_branch)
}

/// Every ask, by (backend, branch, head commit), oldest first.
pub(super) async fn all_asks(
    pool: &sqlx::Pool<Db>,
) -> Result<std::collections::HashMap<(String, String, String), Vec<StoredAsk>>, StoreError> {
    let rows = sqlx::query("SELECT * FROM approval_asks ORDER BY id")
        .fetch_all(pool)
        .await?;
    let mut by_head: std::collections::HashMap<(String, String, String), Vec<StoredAsk>> =
        std::collections::HashMap::new();
    for row in &rows {
        let ask = ask_from_row(row)?;
        let cr = &ask.change_request;
        by_head
            .entry((
                cr.backend.clone(),
                cr.branch.clone(),
                cr.head_commit.clone(),
            ))
            .or_default()
            .push(ask);
    }
    Ok(by_head)
}

/// Wrong codes one approver sent since a time (two placeholders).
const WRONG_CODES_SINCE: &str =
    "SELECT COUNT(*) FROM approval_failures WHERE approver = $1 AND at >= $2";
/// Messages sent to one approver since a time (two placeholders).
const MESSAGES_SENT_SINCE: &str =
    "SELECT COUNT(*) FROM approval_asks WHERE approver = $1 AND sent_at >= $2";

/// Runs one of the per-approver counts above: `approver` and `since` bound
/// in that order, the count saturated into a `u32`.
async fn count_since<'e>(
    executor: impl sqlx::Executor<'e, Database = Db>,
    sql: &'static str,
    approver: &str,
    since: DateTime<Utc>,
) -> Result<u32, StoreError> {
    let count: i64 = sqlx::query_scalar(sql)
        .bind(approver.to_owned())
        .bind(timestamp(since))
        .fetch_one(executor)
        .await?;
    Ok(u32::try_from(count).unwrap_or(u32::MAX))
}

impl Backend {
    /// The rows of the change request waiting at exactly this head.
    async fn votable_rows(
        tx: &mut DbConnection,
        cr: &ChangeRequestRef,
    ) -> Result<Vec<(ChangeRequestId, FindingId)>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT id, finding_id FROM change_requests WHERE backend = $1 AND branch = $2 AND head_commit = $3 AND {VOTABLE} ORDER BY finding_id"
        )))
        .bind(cr.backend.clone())
        .bind(cr.branch.clone())
        .bind(cr.head_commit.clone())
        .fetch_all(&mut *tx)
        .await?)
    }

    /// Distinct approvers whose approval of this head counts (those of
    /// `eligible` only), in the order they approved, with the channel of
    /// each one's first approval.
    async fn counted_approvers(
        tx: &mut DbConnection,
        cr: &ChangeRequestRef,
        eligible: &[&str],
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows: Vec<(String, String)> = sqlx::query_as("SELECT approver, channel FROM approvals
             WHERE backend = $1 AND branch = $2 AND head_commit = $3 AND verdict = 'approve' AND state = 'counted' ORDER BY id")
        .bind(cr.backend.clone())
        .bind(cr.branch.clone())
        .bind(cr.head_commit.clone())
        .fetch_all(&mut *tx)
        .await?;
        let mut distinct: Vec<(String, String)> = Vec::new();
        for (approver, channel) in rows {
            if eligible.contains(&approver.as_str())
                && !distinct.iter().any(|(a, _)| *a == approver)
            {
                distinct.push((approver, channel));
            }
        }
        Ok(distinct)
    }
}

#[async_trait]
impl ApprovalStore for Backend {
    async fn change_request_severity(
        &self,
        cr: &ChangeRequestRef,
    ) -> Result<Option<Severity>, StoreError> {
        let severities: Vec<String> = sqlx::query_scalar(
            "SELECT f.severity FROM change_requests c JOIN findings f ON f.id = c.finding_id
             WHERE c.backend = $1 AND c.branch = $2 AND c.head_commit = $3",
        )
        .bind(cr.backend.clone())
        .bind(cr.branch.clone())
        .bind(cr.head_commit.clone())
        .fetch_all(&self.pool)
        .await?;
        let mut highest = None;
        for name in severities {
            let severity: Severity = name
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("unknown severity `{name}`")))?;
            highest = highest.max(Some(severity));
        }
        Ok(highest)
    }

    async fn cast_vote(
        &self,
        cr: &ChangeRequestRef,
        vote: &Vote<'_>,
        need: u32,
        eligible: &[&str],
    ) -> Result<VoteOutcome, StoreError> {
        let mut tx = self.begin_write().await?;
        let rows = Self::votable_rows(&mut tx, cr).await?;
        if rows.is_empty() {
            tx.rollback().await?;
            return Ok(VoteOutcome::Stale);
        }
        let at = timestamp(vote.at);
        if let Some(ask) = vote.ask {
            let used: Option<i64> = sqlx::query_scalar("UPDATE approval_asks SET state = 'used', used_at = $1
                 WHERE id = $2 AND state = 'pending' AND expires_at > $3 AND backend = $4 AND branch = $5 AND head_commit = $6 AND approver = $7
                 RETURNING id")
            .bind(at.clone())
            .bind(ask)
            .bind(at.clone())
            .bind(cr.backend.clone())
            .bind(cr.branch.clone())
            .bind(cr.head_commit.clone())
            .bind(vote.approver.to_owned())
            .fetch_optional(&mut *tx)
            .await?;
            if used.is_none() {
                tx.rollback().await?;
                return Ok(VoteOutcome::AskSpent);
            }
        }
        let before = Self::counted_approvers(&mut tx, cr, eligible).await?;
        let already = vote.verdict == Verdict::Approve
            && before.iter().any(|(approver, _)| approver == vote.approver);
        if !already {
            sqlx::query(
                "INSERT INTO approvals (backend, branch, head_commit, approver, channel, verdict, at, state, message)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'counted', $8)",
            )
            .bind(cr.backend.clone())
            .bind(cr.branch.clone())
            .bind(cr.head_commit.clone())
            .bind(vote.approver.to_owned())
            .bind(vote.channel.to_owned())
            .bind(vote.verdict.as_str())
            .bind(at.clone())
            .bind(vote.message.map(text))
            .execute(&mut *tx)
            .await?;
        }
        let counted = Self::counted_approvers(&mut tx, cr, eligible).await?;
        let have = counted.len() as u32;
        for &(id, finding_id) in &rows {
            append_audit(&self.audit_key, &mut tx,
                vote.approver,
                match (vote.verdict, already) {
                    (Verdict::Reject, _) => "approval.rejected",
                    (Verdict::Approve, false) => "approval.counted",
                    (Verdict::Approve, true) => "approval.repeated",
                },
                &finding_subject(finding_id),
                &json!({
                    "change_request": id, "channel": vote.channel, "commit": cr.head_commit,
                    "approvals": have, "quorum": need, "reason": vote.reason, "message": vote.message,
                }),
                vote.at,
            )
            .await?;
        }
        let decision = match vote.verdict {
            Verdict::Reject => DecisionRecord {
                approve: false,
                by: vote.approver.to_owned(),
                channel: vote.channel.to_owned(),
                at: vote.at,
                reason: vote.reason.map(str::to_owned),
            },
            Verdict::Approve if have >= need => {
                let mut channels: Vec<&str> = Vec::new();
                for (_, channel) in &counted {
                    if !channels.contains(&channel.as_str()) {
                        channels.push(channel);
                    }
                }
                DecisionRecord {
                    approve: true,
                    by: counted
                        .iter()
                        .map(|(a, _)| a.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    channel: channels.join(", "),
                    at: vote.at,
                    reason: None,
                }
            }
            Verdict::Approve => {
                tx.commit().await?;
                return Ok(if already {
                    VoteOutcome::AlreadyCounted { have, need }
                } else {
                    VoteOutcome::Counted { have, need }
                });
            }
        };
        let state = if decision.approve {
            "approved"
        } else {
            "rejected"
        };
        let claimed: Vec<(ChangeRequestId, FindingId)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE change_requests SET state = $1, decided_by = $2, decision_channel = $3, decided_at = $4, reason = $5, failure = NULL
             WHERE backend = $6 AND branch = $7 AND head_commit = $8 AND {VOTABLE} RETURNING id, finding_id"
        )))
        .bind(state)
        .bind(decision.by.clone())
        .bind(decision.channel.clone())
        .bind(at)
        .bind(decision.reason.as_deref().map(text))
        .bind(cr.backend.clone())
        .bind(cr.branch.clone())
        .bind(cr.head_commit.clone())
        .fetch_all(&mut *tx)
        .await?;
        for (id, finding_id) in claimed {
            append_audit(&self.audit_key, &mut tx,
                &decision.by,
                &format!("change_request.{state}"),
                &finding_subject(finding_id),
                &json!({ "change_request": id, "channel": decision.channel, "reason": decision.reason, "commit": cr.head_commit }),
                vote.at,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(VoteOutcome::Decided(decision))
    }

    async fn withdraw_vote(
        &self,
        cr: &ChangeRequestRef,
        approver: &str,
        channel: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let rows = Self::votable_rows(&mut tx, cr).await?;
        let withdrawn = sqlx::query("UPDATE approvals SET state = 'withdrawn'
             WHERE backend = $1 AND branch = $2 AND head_commit = $3 AND approver = $4 AND channel = $5 AND verdict = 'approve' AND state = 'counted'")
        .bind(cr.backend.clone())
        .bind(cr.branch.clone())
        .bind(cr.head_commit.clone())
        .bind(approver.to_owned())
        .bind(channel.to_owned())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if withdrawn == 0 || rows.is_empty() {
            tx.rollback().await?;
            return Ok(false);
        }
        for (id, finding_id) in rows {
            append_audit(
                &self.audit_key,
                &mut tx,
                approver,
                "approval.withdrawn",
                &finding_subject(finding_id),
                &json!({ "change_request": id, "channel": channel, "commit": cr.head_commit }),
                at,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn approvals(
        &self,
        backend: &str,
        branch: &str,
    ) -> Result<Vec<StoredApproval>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM approvals WHERE backend = $1 AND branch = $2 ORDER BY id")
                .bind(backend.to_owned())
                .bind(branch.to_owned())
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(approval_from_row).collect()
    }

    async fn record_ask(&self, ask: &NewAsk<'_>) -> Result<Option<i64>, StoreError> {
        let cr = ask.change_request;
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO approval_asks (backend, branch, head_commit, approver, channel, code_digest,
                 approve_digest, reject_digest, created_at, expires_at, state, delivery)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'pending', $11)
             ON CONFLICT (backend, branch, head_commit, approver, channel) DO NOTHING
             RETURNING id",
        )
        .bind(cr.backend.clone())
        .bind(cr.branch.clone())
        .bind(cr.head_commit.clone())
        .bind(ask.approver.to_owned())
        .bind(ask.channel.to_owned())
        .bind(ask.code_digest.clone())
        .bind(ask.approve_digest.clone())
        .bind(ask.reject_digest.clone())
        .bind(timestamp(ask.at))
        .bind(timestamp(ask.expires_at))
        .bind(ask.delivery.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(id)
    }

    async fn mark_ask_delivery(
        &self,
        id: i64,
        delivery: AskDelivery,
        provider_id: Option<&str>,
        error: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let sent_at = (delivery == AskDelivery::Sent).then(|| timestamp(at));
        sqlx::query(
            "UPDATE approval_asks SET delivery = $1, provider_id = COALESCE($2, provider_id), error = $3,
                 sent_at = COALESCE($4, sent_at) WHERE id = $5",
        )
        .bind(delivery.as_str())
        .bind(provider_id.map(str::to_owned))
        .bind(error.map(text))
        .bind(sent_at)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn hold_ask(&self, id: i64, from: AskDelivery) -> Result<bool, StoreError> {
        let held = sqlx::query(
            "UPDATE approval_asks SET delivery = 'held'
             WHERE id = $1 AND state = 'pending' AND delivery = $2",
        )
        .bind(id)
        .bind(from.as_str())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(held > 0)
    }

    async fn asks(&self, backend: &str, branch: &str) -> Result<Vec<StoredAsk>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM approval_asks WHERE backend = $1 AND branch = $2 ORDER BY id",
        )
        .bind(backend.to_owned())
        .bind(branch.to_owned())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(ask_from_row).collect()
    }

    async fn ask_by_code(
        &self,
        approver: &str,
        digest: &str,
    ) -> Result<Option<StoredAsk>, StoreError> {
        let row =
            sqlx::query("SELECT * FROM approval_asks WHERE approver = $1 AND code_digest = $2")
                .bind(approver.to_owned())
                .bind(digest.to_owned())
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(ask_from_row).transpose()
    }

    async fn ask_by_link(
        &self,
        digest: &str,
    ) -> Result<Option<(StoredAsk, LinkAction)>, StoreError> {
        let row = sqlx::query(
            "SELECT *, approve_digest = $1 AS approving FROM approval_asks
             WHERE approve_digest = $1 OR reject_digest = $1",
        )
        .bind(digest.to_owned())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let approving: bool = row.try_get("approving")?;
        let action = if approving {
            LinkAction::Approve
        } else {
            LinkAction::Reject
        };
        Ok(Some((ask_from_row(&row)?, action)))
    }

    async fn mark_awaiting_approval(
        &self,
        cr: &ChangeRequestRef,
        asked: &[String],
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let moved: Vec<(ChangeRequestId, FindingId)> = sqlx::query_as("UPDATE change_requests SET state = 'awaiting_approval' WHERE backend = $1 AND branch = $2 AND head_commit = $3 AND state = 'open'
             RETURNING id, finding_id")
        .bind(cr.backend.clone())
        .bind(cr.branch.clone())
        .bind(cr.head_commit.clone())
        .fetch_all(&mut *tx)
        .await?;
        if moved.is_empty() {
            tx.rollback().await?;
            return Ok(false);
        }
        for (id, finding_id) in moved {
            append_audit(
                &self.audit_key,
                &mut tx,
                "draco",
                "change_request.awaiting_approval",
                &finding_subject(finding_id),
                &json!({ "change_request": id, "commit": cr.head_commit, "asked": asked }),
                at,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn audit_refusal(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        details: &serde_json::Value,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        crate::store::AuditLog::audit(self, actor, action, subject, details, at).await
    }

    async fn record_wrong_code(
        &self,
        approver: &str,
        channel: &str,
        since: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<u32, StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT INTO approval_failures (approver, channel, at) VALUES ($1, $2, $3)")
            .bind(approver.to_owned())
            .bind(channel.to_owned())
            .bind(timestamp(at))
            .execute(&mut *tx)
            .await?;
        let count = count_since(&mut *tx, WRONG_CODES_SINCE, approver, since).await?;
        tx.commit().await?;
        Ok(count)
    }

    async fn reserve_code_check(
        &self,
        approver: &str,
        channel: &str,
        since: DateTime<Utc>,
        limit: u32,
        at: DateTime<Utc>,
    ) -> Result<Option<(i64, u32)>, StoreError> {
        let mut tx = self.begin_write().await?;
        let count = count_since(&mut *tx, WRONG_CODES_SINCE, approver, since).await?;
        if count >= limit {
            tx.rollback().await?;
            return Ok(None);
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO approval_failures (approver, channel, at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(approver.to_owned())
        .bind(channel.to_owned())
        .bind(timestamp(at))
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some((id, count.saturating_add(1))))
    }

    async fn spend_ask(
        &self,
        id: i64,
        approver: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let at = timestamp(at);
        let used: Option<i64> = sqlx::query_scalar(
            "UPDATE approval_asks SET state = 'used', used_at = $1
             WHERE id = $2 AND state = 'pending' AND expires_at > $1 AND approver = $3
             RETURNING id",
        )
        .bind(at)
        .bind(id)
        .bind(approver.to_owned())
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(used.is_some())
    }

    async fn withdraw_wrong_code(&self, id: i64) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM approval_failures WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn wrong_codes_since(
        &self,
        approver: &str,
        since: DateTime<Utc>,
    ) -> Result<u32, StoreError> {
        count_since(&self.pool, WRONG_CODES_SINCE, approver, since).await
    }

    async fn set_opt_out(
        &self,
        phone: &str,
        shown_as: &str,
        opted_out: bool,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let changed = if opted_out {
            sqlx::query(
                "INSERT INTO sms_opt_outs (phone, at) VALUES ($1, $2) ON CONFLICT (phone) DO NOTHING",
            )
            .bind(phone.to_owned())
            .bind(timestamp(at))
            .execute(&mut *tx)
            .await?
            .rows_affected()
        } else {
            sqlx::query("DELETE FROM sms_opt_outs WHERE phone = $1")
                .bind(phone.to_owned())
                .execute(&mut *tx)
                .await?
                .rows_affected()
        };
        if changed > 0 {
            append_audit(
                &self.audit_key,
                &mut tx,
                shown_as,
                if opted_out {
                    "sms.opted_out"
                } else {
                    "sms.opted_in"
                },
                "sms",
                &json!({ "phone": shown_as }),
                at,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn is_opted_out(&self, phone: &str) -> Result<bool, StoreError> {
        let found: Option<String> =
            sqlx::query_scalar("SELECT phone FROM sms_opt_outs WHERE phone = $1")
                .bind(phone.to_owned())
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.is_some())
    }

    async fn arm_ask(
        &self,
        id: i64,
        from: AskDelivery,
        code_digest: Option<String>,
        approve_digest: Option<String>,
        reject_digest: Option<String>,
        reminder: bool,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let armed = sqlx::query(
            "UPDATE approval_asks SET code_digest = $1, approve_digest = $2, reject_digest = $3,
                 delivery = 'sending', reminded_at = CASE WHEN $4 THEN $5 ELSE reminded_at END
             WHERE id = $6 AND state = 'pending' AND delivery = $7 AND (NOT $4 OR reminded_at IS NULL)",
        )
        .bind(code_digest)
        .bind(approve_digest)
        .bind(reject_digest)
        .bind(reminder)
        .bind(timestamp(at))
        .bind(id)
        .bind(from.as_str())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(armed > 0)
    }

    async fn pending_asks(&self) -> Result<Vec<StoredAsk>, StoreError> {
        let rows = sqlx::query("SELECT * FROM approval_asks WHERE state = 'pending' ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(ask_from_row).collect()
    }

    async fn expire_change_request(
        &self,
        cr: &ChangeRequestRef,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<FindingId>, StoreError> {
        let mut tx = self.begin_write().await?;
        let expired: Vec<(ChangeRequestId, FindingId)> =
            sqlx::query_as("UPDATE change_requests SET state = 'expired', reason = $1, completed_at = $2
             WHERE backend = $3 AND branch = $4 AND head_commit = $5 AND state IN ('open', 'awaiting_approval') RETURNING id, finding_id")
            .bind(text(reason))
            .bind(timestamp(at))
            .bind(cr.backend.clone())
            .bind(cr.branch.clone())
            .bind(cr.head_commit.clone())
            .fetch_all(&mut *tx)
            .await?;
        if expired.is_empty() {
            tx.rollback().await?;
            return Ok(Vec::new());
        }
        sqlx::query("UPDATE approval_asks SET state = 'expired' WHERE backend = $1 AND branch = $2 AND head_commit = $3 AND state = 'pending'")
        .bind(cr.backend.clone())
        .bind(cr.branch.clone())
        .bind(cr.head_commit.clone())
        .execute(&mut *tx)
        .await?;
        for &(id, finding_id) in &expired {
            sqlx::query(
                "UPDATE findings SET status = 'open' WHERE id = $1 AND status = 'awaiting_approval'",
            )
            .bind(finding_id)
            .execute(&mut *tx)
            .await?;
            append_audit(
                &self.audit_key,
                &mut tx,
                "draco",
                "change_request.expired",
                &finding_subject(finding_id),
                &json!({ "change_request": id, "commit": cr.head_commit, "reason": reason }),
                at,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(expired.into_iter().map(|(_, f)| f).collect())
    }

    async fn record_dismissed_review(
        &self,
        review_id: u64,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO dismissed_reviews (review_id, at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(i64::try_from(review_id).unwrap_or(i64::MAX))
        .bind(timestamp(at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn is_review_dismissed(&self, review_id: u64) -> Result<bool, StoreError> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT review_id FROM dismissed_reviews WHERE review_id = $1")
                .bind(i64::try_from(review_id).unwrap_or(i64::MAX))
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.is_some())
    }

    async fn first_sighting(
        &self,
        message_id: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let new = sqlx::query(
            "INSERT INTO sms_seen (message_sid, at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(message_id.to_owned())
        .bind(timestamp(at))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(new > 0)
    }

    async fn forget_sighting(&self, message_id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sms_seen WHERE message_sid = $1")
            .bind(message_id.to_owned())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn messages_sent_since(
        &self,
        approver: &str,
        since: DateTime<Utc>,
    ) -> Result<u32, StoreError> {
        count_since(&self.pool, MESSAGES_SENT_SINCE, approver, since).await
    }
}
