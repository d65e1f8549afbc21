//! [`ChangeRequestStore`] in SQL (both backends): proposals and change requests.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::Row;

use super::{Backend, DbConnection, DbRow, append_audit, corrupt, finding_subject, text};
use crate::domain::{ChangeRequestId, ChangeRequestState, FindingId};
use crate::gitops::OpenedChangeRequest;
use crate::remediate::{Format, Proposal, Risk};
use crate::store::{
    ChangeRequestStore, OutsideChange, StoreError, StoredChangeRequest, parse_timestamp, timestamp,
};

/// A stored state name; an unknown one means the row is not what this build wrote.
pub(super) fn parse_state(name: &str) -> Result<ChangeRequestState, StoreError> {
    name.parse()
        .map_err(|_| StoreError::Corrupt(format!("unknown change request state `{name}`")))
}

pub(super) fn change_request_from_row(row: &DbRow) -> Result<StoredChangeRequest, StoreError> {
    let state: String = row.try_get("state")?;
    let opened_at: String = row.try_get("opened_at")?;
    let decided_at: Option<String> = row.try_get("decided_at")?;
    Ok(StoredChangeRequest {
        id: row.try_get("id")?,
        finding_id: row.try_get("finding_id")?,
        backend: row.try_get("backend")?,
        branch: row.try_get("branch")?,
        head_commit: row.try_get("head_commit")?,
        location: row.try_get("location")?,
        state: parse_state(&state)?,
        opened_at: parse_timestamp("change request opened", &opened_at)?,
        head_at: row
            .try_get::<Option<String>, _>("head_at")?
            .map(|t| parse_timestamp("change request head set", &t))
            .transpose()?,
        decided_by: row.try_get("decided_by")?,
        decision_channel: row.try_get("decision_channel")?,
        decided_at: decided_at
            .map(|t| parse_timestamp("change request decided", &t))
            .transpose()?,
        reason: row.try_get("reason")?,
        merge_commit: row.try_get("merge_commit")?,
        failure: row.try_get("failure")?,
        outside_change: row
            .try_get::<Option<String>, _>("outside_change")?
            .map(|name| enum_from_str("outside change", &name))
            .transpose()?,
        approvals: Vec::new(),
        asks: Vec::new(),
    })
}

fn enum_to_str<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        _ => String::new(),
    }
}

fn enum_from_str<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T, StoreError> {
    serde_json::from_value(Value::String(s.to_owned())).map_err(|e| corrupt(what, e))
}

#[async_trait]
impl ChangeRequestStore for Backend {
    async fn save_proposal(
        &self,
        finding_id: FindingId,
        proposal: &Proposal,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let advice = proposal
            .advice
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| corrupt("proposal advice", e))?;
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO proposals (finding_id, advisor, template_id, summary, risk, changes, blast_radius, format, body, rollback, created_at, advice)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (finding_id) DO UPDATE SET advisor = excluded.advisor, template_id = excluded.template_id, summary = excluded.summary,
               risk = excluded.risk, changes = excluded.changes, blast_radius = excluded.blast_radius, format = excluded.format,
               body = excluded.body, rollback = excluded.rollback, created_at = excluded.created_at, advice = excluded.advice",
        )
        .bind(finding_id)
        .bind(proposal.advisor.clone())
        .bind(proposal.template_id.clone())
        .bind(proposal.summary.clone())
        .bind(proposal.risk.as_str())
        .bind(proposal.changes.clone())
        .bind(proposal.blast_radius.clone())
        .bind(enum_to_str(&proposal.format))
        .bind(proposal.body.clone())
        .bind(proposal.rollback.clone())
        .bind(timestamp(at))
        .bind(advice)
        .execute(&mut *tx)
        .await?;
        let fallback = proposal
            .advice
            .as_ref()
            .and_then(|a| a.fallback_reason.clone());
        append_audit(&self.audit_key, &mut tx, "draco", "proposal.created", &finding_subject(finding_id),
            &json!({ "advisor": proposal.advisor, "template": proposal.template_id, "risk": proposal.risk, "fallback_reason": fallback }), at).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn proposal(&self, finding_id: FindingId) -> Result<Option<Proposal>, StoreError> {
        let row = sqlx::query("SELECT advisor, template_id, summary, risk, changes, blast_radius, format, body, rollback, advice FROM proposals WHERE finding_id = $1")
            .bind(finding_id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let risk: String = row.try_get("risk")?;
        let format: String = row.try_get("format")?;
        Ok(Some(Proposal {
            advisor: row.try_get("advisor")?,
            template_id: row.try_get("template_id")?,
            summary: row.try_get("summary")?,
            risk: enum_from_str::<Risk>("proposal risk", &risk)?,
            changes: row.try_get("changes")?,
            blast_radius: row.try_get("blast_radius")?,
            format: enum_from_str::<Format>("proposal format", &format)?,
            body: row.try_get("body")?,
            rollback: row.try_get("rollback")?,
            advice: row
                .try_get::<Option<String>, _>("advice")?
                .map(|a| serde_json::from_str(&a))
                .transpose()
                .map_err(|e| corrupt("proposal advice", e))?,
        }))
    }

    async fn record_change_request(
        &self,
        finding_id: FindingId,
        backend: &str,
        opened: &OpenedChangeRequest,
        at: DateTime<Utc>,
    ) -> Result<ChangeRequestId, StoreError> {
        let mut tx = self.begin_write().await?;
        // A failed change request is re-proposed in place: one row per
        // finding, its history in the audit log.
        let id: Option<ChangeRequestId> = sqlx::query_scalar(
            "INSERT INTO change_requests (finding_id, backend, branch, head_commit, location, state, opened_at, head_at)
             VALUES ($1, $2, $3, $4, $5, 'open', $6, $7)
             ON CONFLICT (finding_id) DO UPDATE SET backend = excluded.backend, branch = excluded.branch,
                 head_commit = excluded.head_commit, location = excluded.location, state = 'open',
                 opened_at = excluded.opened_at, head_at = excluded.head_at, decided_by = NULL, decision_channel = NULL,
                 decided_at = NULL, reason = NULL, merge_commit = NULL, completed_at = NULL, failure = NULL,
                 outside_change = NULL
             WHERE change_requests.state IN ('failed', 'superseded')
             RETURNING id",
        )
        .bind(finding_id)
        .bind(backend.to_owned())
        .bind(opened.branch.clone())
        .bind(opened.head_commit.clone())
        .bind(opened.location.clone())
        .bind(timestamp(at))
        .bind(timestamp(at))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = id else {
            return Err(StoreError::Corrupt(format!(
                "finding {finding_id} already has a change request that is not failed"
            )));
        };
        // Re-proposed on the same branch: what was given for the old commit is void.
        super::approvals::supersede_other_heads(
            &mut tx,
            backend,
            &opened.branch,
            &opened.head_commit,
        )
        .await?;
        sqlx::query(
            "UPDATE findings SET status = 'awaiting_approval' WHERE id = $1 AND status = 'open'",
        )
        .bind(finding_id)
        .execute(&mut *tx)
        .await?;
        append_audit(&self.audit_key, &mut tx, "draco", "change_request.opened", &finding_subject(finding_id),
            &json!({ "change_request": id, "backend": backend, "branch": opened.branch, "head_commit": opened.head_commit }), at).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn change_request_for_finding(
        &self,
        finding_id: FindingId,
    ) -> Result<Option<StoredChangeRequest>, StoreError> {
        let row = sqlx::query("SELECT * FROM change_requests WHERE finding_id = $1")
            .bind(finding_id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(mut cr) = row.as_ref().map(change_request_from_row).transpose()? else {
            return Ok(None);
        };
        cr.approvals =
            crate::store::ApprovalStore::approvals(self, &cr.backend, &cr.branch).await?;
        Ok(Some(cr))
    }

    async fn change_requests(&self) -> Result<Vec<StoredChangeRequest>, StoreError> {
        let rows = sqlx::query("SELECT * FROM change_requests ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        let mut all: Vec<StoredChangeRequest> = rows
            .iter()
            .map(change_request_from_row)
            .collect::<Result<_, _>>()?;
        let by_branch = super::approvals::all_approvals(&self.pool).await?;
        let asks = super::approvals::all_asks(&self.pool).await?;
        for cr in &mut all {
            if let Some(votes) = by_branch.get(&(cr.backend.clone(), cr.branch.clone())) {
                cr.approvals = votes.clone();
            }
            if let Some(asks) = asks.get(&(
                cr.backend.clone(),
                cr.branch.clone(),
                cr.head_commit.clone(),
            )) {
                cr.asks = asks.clone();
            }
        }
        Ok(all)
    }

    async fn record_outside_change(
        &self,
        backend: &str,
        branch: &str,
        pull_number: Option<u64>,
        change: &OutsideChange,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<FindingId>, StoreError> {
        // `%` alone matches any location; `%/pull/7` only pull request 7
        // (not 17: LIKE matches the whole text).
        let location = pull_number.map_or_else(|| "%".to_owned(), |n| format!("%/pull/{n}"));
        let mut tx = self.begin_write().await?;
        // Each statement acts only where Draco's own record disagrees with
        // GitHub: a push of Draco's own head, a merge of Draco's own, a close
        // after Draco's own rejection change nothing.
        // A change request over a group of findings is one row per finding,
        // all on one branch: each statement changes every one of them.
        let finding_ids: Vec<FindingId> = match change {
            OutsideChange::Pushed { head } => {
                let sql = "UPDATE change_requests SET state = 'superseded', outside_change = 'pushed',
                         failure = 'the branch was pushed to outside Draco; the next scan proposes it again'
                     WHERE backend = $1 AND branch = $2 AND location LIKE $3 AND state IN ('open', 'awaiting_approval', 'failed') AND head_commit <> $4
                     RETURNING finding_id";
                let failed = update_at_head(&mut tx, sql, [backend, branch, &location, head]).await?;
                // A commit nobody here proposed: every approval, code and
                // link given for an earlier one is void.
                if !failed.is_empty() {
                    super::approvals::supersede_other_heads(&mut tx, backend, branch, head).await?;
                }
                failed
            }
            OutsideChange::Merged { merge_commit } => {
                sqlx::query_scalar(
                    // With an approval recorded, this is Draco's own merge
                    // whose answer was lost (the change request failed):
                    // merged, not outside Draco.
                    "UPDATE change_requests SET state = 'merged',
                         outside_change = CASE WHEN decided_by IS NULL THEN 'merged' ELSE NULL END,
                         merge_commit = $1, completed_at = $2
                     WHERE backend = $3 AND branch = $4 AND location LIKE $5 AND state IN ('open', 'awaiting_approval', 'failed', 'superseded')
                     RETURNING finding_id",
                )
                .bind(merge_commit.clone())
                .bind(timestamp(at))
                .bind(backend.to_owned())
                .bind(branch.to_owned())
                .bind(location.clone())
                .fetch_all(&mut *tx)
                .await?
            }
            OutsideChange::Deleted => {
                sqlx::query_scalar(
                    "UPDATE change_requests SET state = 'failed', outside_change = 'closed',
                         failure = 'the branch was deleted outside Draco; the next scan proposes it again'
                     WHERE backend = $1 AND branch = $2 AND location LIKE $3 AND state IN ('open', 'awaiting_approval', 'failed', 'superseded')
                     RETURNING finding_id",
                )
                .bind(backend.to_owned())
                .bind(branch.to_owned())
                .bind(location.clone())
                .fetch_all(&mut *tx)
                .await?
            }
            OutsideChange::Reopened { head } => {
                let sql = "UPDATE change_requests SET state = 'open', outside_change = NULL,
                         reason = NULL, completed_at = NULL
                     WHERE backend = $1 AND branch = $2 AND location LIKE $3 AND state = 'closed'
                         AND outside_change = 'closed' AND head_commit = $4
                     RETURNING finding_id";
                update_at_head(&mut tx, sql, [backend, branch, &location, head]).await?
            }
            OutsideChange::Closed => {
                sqlx::query_scalar(
                    // The finding resolved: the close is Draco's own
                    // withdrawal (its webhook can come before the store
                    // records it), or a close of what was no longer needed.
                    "UPDATE change_requests SET state = 'closed',
                         outside_change = CASE WHEN (SELECT status FROM findings f WHERE f.id = change_requests.finding_id) = 'resolved'
                             THEN NULL ELSE 'closed' END,
                         reason = CASE WHEN (SELECT status FROM findings f WHERE f.id = change_requests.finding_id) = 'resolved'
                             THEN 'the finding resolved itself' ELSE 'closed without merging outside Draco' END,
                         completed_at = $1
                     WHERE backend = $2 AND branch = $3 AND location LIKE $4 AND state IN ('open', 'awaiting_approval', 'failed', 'superseded')
                     RETURNING finding_id",
                )
                .bind(timestamp(at))
                .bind(backend.to_owned())
                .bind(branch.to_owned())
                .bind(location.clone())
                .fetch_all(&mut *tx)
                .await?
            }
        };
        if finding_ids.is_empty() {
            tx.rollback().await?;
            return Ok(finding_ids);
        }
        // Nothing waits for approval any more. A merge with an approval
        // recorded is the approved change landing; any other merge applied
        // what nobody approved here, and the finding stays open until a
        // scan no longer sees it.
        let status = if matches!(change, OutsideChange::Reopened { .. }) {
            // Waiting for a decision again.
            "UPDATE findings SET status = 'awaiting_approval' WHERE id = $1 AND status = 'open'"
        } else {
            "UPDATE findings SET status = CASE
                 WHEN (SELECT c.state = 'merged' AND c.outside_change IS NULL FROM change_requests c WHERE c.finding_id = findings.id)
                 THEN 'approved' ELSE 'open' END
             WHERE id = $1 AND status IN ('awaiting_approval', 'approved')"
        };
        for &finding_id in &finding_ids {
            sqlx::query(status)
                .bind(finding_id)
                .execute(&mut *tx)
                .await?;
            append_audit(
                &self.audit_key,
                &mut tx,
                actor,
                &format!("change_request.outside_{}", change.as_str()),
                &finding_subject(finding_id),
                &json!({ "branch": branch, "change": change }),
                at,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(finding_ids)
    }

    async fn withdraw_change_request(
        &self,
        finding_id: FindingId,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let id: Option<ChangeRequestId> = sqlx::query_scalar(
            "UPDATE change_requests SET state = 'closed', reason = $1, completed_at = $2
             WHERE finding_id = $3 AND state IN ('open', 'awaiting_approval', 'failed', 'superseded') RETURNING id",
        )
        .bind(text(reason))
        .bind(timestamp(at))
        .bind(finding_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = id else {
            tx.rollback().await?;
            return Ok(false);
        };
        append_audit(
            &self.audit_key,
            &mut tx,
            "draco",
            "change_request.withdrawn",
            &finding_subject(finding_id),
            &json!({ "change_request": id, "reason": reason }),
            at,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn update_change_request(
        &self,
        finding_id: FindingId,
        old_head: &str,
        new_head: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        // Every finding the change request covers moves with it: one row
        // per finding, all on the same branch and head.
        let moved: Vec<(ChangeRequestId, FindingId)> = sqlx::query_as(
            "UPDATE change_requests SET head_commit = $1, head_at = $2
             WHERE state IN ('open', 'awaiting_approval') AND head_commit = $3
               AND (backend, branch) = (SELECT backend, branch FROM change_requests WHERE finding_id = $4)
             RETURNING id, finding_id",
        )
        .bind(new_head.to_owned())
        .bind(timestamp(at))
        .bind(old_head.to_owned())
        .bind(finding_id)
        .fetch_all(&mut *tx)
        .await?;
        if moved.is_empty() {
            tx.rollback().await?;
            return Ok(false);
        }
        let branch: String = sqlx::query_scalar("SELECT branch FROM change_requests WHERE id = $1")
            .bind(moved[0].0)
            .fetch_one(&mut *tx)
            .await?;
        let backend: String =
            sqlx::query_scalar("SELECT backend FROM change_requests WHERE id = $1")
                .bind(moved[0].0)
                .fetch_one(&mut *tx)
                .await?;
        let (approvals, asks) =
            super::approvals::supersede_other_heads(&mut tx, &backend, &branch, new_head).await?;
        for (id, finding_id) in moved {
            append_audit(
                &self.audit_key,
                &mut tx,
                "draco",
                "change_request.updated",
                &finding_subject(finding_id),
                &json!({ "change_request": id, "from": old_head, "to": new_head,
                    "superseded_approvals": approvals, "superseded_asks": asks }),
                at,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn change_requests_on_branch(
        &self,
        backend: &str,
        branch: &str,
    ) -> Result<Vec<StoredChangeRequest>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM change_requests WHERE backend = $1 AND branch = $2 ORDER BY finding_id",
        )
        .bind(backend.to_owned())
        .bind(branch.to_owned())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(change_request_from_row).collect()
    }

    async fn merged_to_verify(&self) -> Result<Vec<StoredChangeRequest>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM change_requests WHERE state = 'merged' AND verified_at IS NULL
                 AND outside_change IS NULL ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(change_request_from_row).collect()
    }

    async fn mark_verified(
        &self,
        backend: &str,
        branch: &str,
        head_commit: &str,
        resolved: bool,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let rows: Vec<(ChangeRequestId, FindingId)> = sqlx::query_as(
            "UPDATE change_requests SET verified_at = $1
             WHERE backend = $2 AND branch = $3 AND head_commit = $4 AND state = 'merged' AND verified_at IS NULL
             RETURNING id, finding_id",
        )
        .bind(timestamp(at))
        .bind(backend.to_owned())
        .bind(branch.to_owned())
        .bind(head_commit.to_owned())
        .fetch_all(&mut *tx)
        .await?;
        for (id, finding_id) in rows {
            append_audit(
                &self.audit_key,
                &mut tx,
                "draco",
                "change_request.verified",
                &finding_subject(finding_id),
                &json!({ "change_request": id, "resolved": resolved }),
                at,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn change_requests_of_resolved_findings(
        &self,
    ) -> Result<Vec<StoredChangeRequest>, StoreError> {
        let rows = sqlx::query(
            "SELECT c.* FROM change_requests c JOIN findings f ON f.id = c.finding_id
             WHERE f.status = 'resolved' AND c.state IN ('open', 'awaiting_approval', 'failed', 'superseded') ORDER BY c.id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(change_request_from_row).collect()
    }
}

/// Runs one of `record_outside_change`'s statements whose four parameters
/// are the backend, the branch, the location pattern and a head commit.
async fn update_at_head(
    tx: &mut DbConnection,
    sql: &'static str,
    [backend, branch, location, head]: [&str; 4],
) -> Result<Vec<FindingId>, StoreError> {
    Ok(sqlx::query_scalar(sql)
        .bind(backend.to_owned())
        .bind(branch.to_owned())
        .bind(location.to_owned())
        .bind(head.to_owned())
        .fetch_all(tx)
        .await?)
}
