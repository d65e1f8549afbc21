//! [`DecisionStore`] on SQLite: each claim is a conditional update, so of
//! concurrent decisions exactly one wins.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::Row;

use super::change_requests::{change_request_from_row, parse_state};
use super::{SqliteStore, append_audit, finding_subject};
use crate::domain::{
    ChangeRequestId, ChangeRequestState, DecisionRecord, FindingId, FindingStatus,
};
use crate::store::{DecisionStore, DecisionSubject, StoreError, timestamp};

#[async_trait]
impl DecisionStore for SqliteStore {
    async fn decision_subject(&self, finding: FindingId) -> Result<DecisionSubject, StoreError> {
        let row = sqlx::query(
            "SELECT c.*, f.id AS subject FROM findings f LEFT JOIN change_requests c ON c.finding_id = f.id WHERE f.id = ?",
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
        decision: &DecisionRecord,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_immediate().await?;
        let state = if decision.approve {
            "approved"
        } else {
            "rejected"
        };
        let claimed = sqlx::query(
            "UPDATE change_requests SET state = ?, decided_by = ?, decision_channel = ?, decided_at = ?, reason = ?, failure = NULL
             WHERE id = ? AND state IN ('open', 'failed')",
        )
        .bind(state)
        .bind(decision.by.clone())
        .bind(decision.channel.clone())
        .bind(timestamp(decision.at))
        .bind(decision.reason.clone())
        .bind(change_request_id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !claimed {
            tx.rollback().await?;
            return Ok(false);
        }
        let finding_id: FindingId =
            sqlx::query_scalar("SELECT finding_id FROM change_requests WHERE id = ?")
                .bind(change_request_id)
                .fetch_one(&mut *tx)
                .await?;
        append_audit(&mut tx, &decision.by, &format!("change_request.{state}"), &finding_subject(finding_id),
            &json!({ "change_request": change_request_id, "channel": decision.channel, "reason": decision.reason }), decision.at).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn fail_change_request(
        &self,
        change_request_id: ChangeRequestId,
        failure: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_immediate().await?;
        let finding_id: Option<FindingId> = sqlx::query_scalar(
            "UPDATE change_requests SET state = 'failed', failure = ?
             WHERE id = ? AND state IN ('open', 'approved', 'rejected', 'failed') RETURNING finding_id",
        )
        .bind(failure.to_owned())
        .bind(change_request_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(finding_id) = finding_id else {
            // Merged or closed meanwhile: nothing failed.
            tx.rollback().await?;
            return Ok(());
        };
        sqlx::query(
            "UPDATE findings SET status = 'open' WHERE id = ? AND status IN ('awaiting_approval', 'approved', 'rejected')",
        )
        .bind(finding_id)
        .execute(&mut *tx)
        .await?;
        append_audit(
            &mut tx,
            "draco",
            "change_request.failed",
            &finding_subject(finding_id),
            &json!({ "change_request": change_request_id, "failure": failure }),
            at,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn complete_decision(
        &self,
        change_request_id: ChangeRequestId,
        merge_commit: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_immediate().await?;
        let row: Option<(FindingId, String)> =
            sqlx::query_as("SELECT finding_id, state FROM change_requests WHERE id = ?")
                .bind(change_request_id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some((finding_id, state)) = row else {
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
            ChangeRequestState::Open | ChangeRequestState::Failed => {
                return Err(StoreError::Corrupt(format!(
                    "change request {change_request_id} has no decision to carry out"
                )));
            }
        };
        sqlx::query(
            "UPDATE change_requests SET state = ?, merge_commit = ?, completed_at = ? WHERE id = ?",
        )
        .bind(done)
        .bind(merge_commit.map(str::to_owned))
        .bind(timestamp(at))
        .bind(change_request_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE findings SET status = ? WHERE id = ? AND status != 'resolved'")
            .bind(finding_status.as_str())
            .bind(finding_id)
            .execute(&mut *tx)
            .await?;
        append_audit(
            &mut tx,
            "draco",
            action,
            &finding_subject(finding_id),
            &json!({ "change_request": change_request_id, "merge_commit": merge_commit }),
            at,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
