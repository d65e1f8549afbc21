//! [`DecisionStore`] in SQL (both backends): each claim is a conditional update, so of
//! concurrent decisions exactly one wins.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::Row;

use super::change_requests::{change_request_from_row, parse_state};
use super::{Backend, Db, append_audit, finding_subject, text};
use crate::domain::{
    ChangeRequestId, ChangeRequestState, DecisionRecord, FindingId, FindingStatus,
};
use crate::store::{DecisionStore, DecisionSubject, StoreError, timestamp};

#[async_trait]
impl DecisionStore for Backend {
    async fn decision_subject(&self, finding: FindingId) -> Result<DecisionSubject, StoreError> {
        let row = sqlx::query(
            "SELECT c.*, f.id AS subject FROM findings f LEFT JOIN change_requests c ON c.finding_id = f.id WHERE f.id = $1",
        )
        .bind(finding)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(DecisionSubject::NoFinding);
        };
        let change_request: Option<ChangeRequestId> = row.try_get("id")?;
        Ok(match change_request {
            None => DecisionSubject::NoChangeRequest,
            Some(_) => DecisionSubject::ChangeRequest(Box::new(change_request_from_row(&row)?)),
        })
    }

    async fn claim_decision(
        &self,
        change_request_id: ChangeRequestId,
        head_commit: &str,
        decision: &DecisionRecord,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let state = if decision.approve {
            "approved"
        } else {
            "rejected"
        };
        // One decision covers every finding of the change request (one row
        // each, on one branch at one head), and all of them or none: the
        // claim is single-use for the whole change request. It is bound to
        // the head the decider read: a group's change request moves to a new
        // head when a finding joins or leaves it, and the rows at that head
        // are not what was decided on.
        let claimed: Vec<(ChangeRequestId, FindingId)> = sqlx::query_as("UPDATE change_requests SET state = $1, decided_by = $2, decision_channel = $3, decided_at = $4, reason = $5, failure = NULL
             WHERE (backend, branch, head_commit) = (SELECT backend, branch, head_commit FROM change_requests WHERE id = $6) AND head_commit = $7 AND state IN ('open', 'awaiting_approval', 'failed')
               AND EXISTS (SELECT 1 FROM change_requests c WHERE c.id = $8 AND c.state IN ('open', 'awaiting_approval', 'failed'))
             RETURNING id, finding_id")
        .bind(state)
        .bind(decision.by.clone())
        .bind(decision.channel.clone())
        .bind(timestamp(decision.at))
        .bind(decision.reason.as_deref().map(text))
        .bind(change_request_id)
        .bind(head_commit.to_owned())
        .bind(change_request_id)
        .fetch_all(&mut *tx)
        .await?;
        if claimed.is_empty() {
            tx.rollback().await?;
            return Ok(false);
        }
        for (id, finding_id) in claimed {
            append_audit(&self.audit_key, &mut tx, &decision.by, &format!("change_request.{state}"), &finding_subject(finding_id),
                &json!({ "change_request": id, "channel": decision.channel, "reason": decision.reason }), decision.at).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn fail_change_request(
        &self,
        change_request_id: ChangeRequestId,
        failure: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let failed: Vec<(ChangeRequestId, FindingId)> =
            sqlx::query_as("UPDATE change_requests SET state = 'failed', failure = $1
             WHERE (backend, branch, head_commit) = (SELECT backend, branch, head_commit FROM change_requests WHERE id = $2) AND state IN ('open', 'awaiting_approval', 'approved', 'rejected', 'failed')
             RETURNING id, finding_id")
            .bind(text(failure))
            .bind(change_request_id)
            .fetch_all(&mut *tx)
            .await?;
        if failed.is_empty() {
            // Merged or closed meanwhile: nothing failed.
            tx.rollback().await?;
            return Ok(());
        }
        settle_findings(
            &self.audit_key,
            &mut tx,
            &failed,
            (
                FindingStatus::Open,
                "status IN ('awaiting_approval', 'approved', 'rejected')",
            ),
            "change_request.failed",
            |id| json!({ "change_request": id, "failure": failure }),
            at,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn decisions_left_undone(
        &self,
        decided_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<FindingId>, StoreError> {
        // A group's change request is one row per finding on one branch:
        // the lowest finding id stands for it.
        let rows: Vec<(FindingId,)> = sqlx::query_as(
            "SELECT MIN(finding_id) FROM change_requests
             WHERE state IN ('approved', 'rejected') AND decided_at < $1
             GROUP BY backend, branch, head_commit
             ORDER BY MIN(decided_at), MIN(finding_id) LIMIT $2",
        )
        .bind(timestamp(decided_before))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(finding,)| finding).collect())
    }

    async fn complete_decision(
        &self,
        change_request_id: ChangeRequestId,
        merge_commit: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM change_requests WHERE id = $1")
                .bind(change_request_id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(state) = state else {
            return Err(StoreError::Corrupt(format!(
                "change request {change_request_id} vanished"
            )));
        };
        let (done, finding_status, action) = match parse_state(&state)? {
            ChangeRequestState::Approved => {
                ("merged", FindingStatus::Approved, "change_request.merged")
            }
            ChangeRequestState::Rejected => {
                ("closed", FindingStatus::Rejected, "change_request.closed")
            }
            // Already carried out: nothing to record twice.
            ChangeRequestState::Merged | ChangeRequestState::Closed => return Ok(()),
            ChangeRequestState::Open
            | ChangeRequestState::AwaitingApproval
            | ChangeRequestState::Failed
            | ChangeRequestState::Superseded
            | ChangeRequestState::Expired => {
                return Err(StoreError::Corrupt(format!(
                    "change request {change_request_id} has no decision to carry out"
                )));
            }
        };
        let completed: Vec<(ChangeRequestId, FindingId)> =
            sqlx::query_as("UPDATE change_requests SET state = $1, merge_commit = $2, completed_at = $3
             WHERE (backend, branch, head_commit) = (SELECT backend, branch, head_commit FROM change_requests WHERE id = $4) AND state = $5
             RETURNING id, finding_id")
            .bind(done)
            .bind(merge_commit.map(str::to_owned))
            .bind(timestamp(at))
            .bind(change_request_id)
            .bind(state)
            .fetch_all(&mut *tx)
            .await?;
        settle_findings(
            &self.audit_key,
            &mut tx,
            &completed,
            (finding_status, "status != 'resolved'"),
            action,
            |id| json!({ "change_request": id, "merge_commit": merge_commit }),
            at,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

// The queries above that match `(backend, branch, head_commit)` to one row's
// select every row of that change request: a change request over a group of
// findings is a row per finding, all on one branch of one backend at one
// head. Earlier change requests on the same branch (merged, closed) are at
// other heads.

/// For each row of a change request that was just failed or carried out:
/// its finding to `status` (only where the finding stands as `only_from`, an
/// SQL condition on its `status`), and the audit event `action` with
/// `detail` of the row.
async fn settle_findings(
    key: &crate::store::AuditKeySlot,
    tx: &mut sqlx::Transaction<'_, Db>,
    rows: &[(ChangeRequestId, FindingId)],
    (status, only_from): (FindingStatus, &'static str),
    action: &str,
    detail: impl Fn(ChangeRequestId) -> serde_json::Value,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let sql = format!("UPDATE findings SET status = $1 WHERE id = $2 AND {only_from}");
    for &(id, finding_id) in rows {
        sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .bind(status.as_str())
            .bind(finding_id)
            .execute(&mut **tx)
            .await?;
        append_audit(
            key,
            tx,
            "draco",
            action,
            &finding_subject(finding_id),
            &detail(id),
            at,
        )
        .await?;
    }
    Ok(())
}
