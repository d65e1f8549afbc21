//! [`RetentionStore`] in SQL (both backends): each kind in one write
//! transaction. Their audit event is written once for all by
//! `store::retention::enforce`.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use super::{Backend, Db};
use crate::audit::{TOMBSTONE_ACTOR, tombstone_details};
use crate::store::retention::RetentionStore;
use crate::store::{StoreError, timestamp};

/// The change-request states after which nothing is waiting any more: a
/// resolved finding with one of these (or none) may expire.
const FINISHED_STATES: &str = "('merged', 'closed', 'expired')";

/// Deletes what hangs off the findings selected by `findings` (a subquery
/// of ids, spliced: only ever one of this crate's constants) inside `tx`:
/// votes and asks on their branches, change requests, proposals. Returns
/// the rows deleted.
pub(super) async fn delete_dependents(
    tx: &mut sqlx::Transaction<'_, Db>,
    findings: &str,
    binds: &[String],
) -> Result<u64, StoreError> {
    let mut rows = 0;
    for table in ["approvals", "approval_asks"] {
        let sql = format!(
            "DELETE FROM {table} WHERE EXISTS (SELECT 1 FROM change_requests cr
               WHERE cr.backend = {table}.backend AND cr.branch = {table}.branch
                 AND cr.finding_id IN ({findings}))
             AND NOT EXISTS (SELECT 1 FROM change_requests other
               WHERE other.backend = {table}.backend AND other.branch = {table}.branch
                 AND other.finding_id NOT IN ({findings}))"
        );
        rows += bind_all(&sql, binds)
            .execute(&mut **tx)
            .await?
            .rows_affected();
    }
    for table in ["change_requests", "proposals"] {
        let sql = format!("DELETE FROM {table} WHERE finding_id IN ({findings})");
        rows += bind_all(&sql, binds)
            .execute(&mut **tx)
            .await?
            .rows_affected();
    }
    Ok(rows)
}

fn bind_all<'q>(
    sql: &'q str,
    binds: &'q [String],
) -> sqlx::query::Query<'q, Db, <Db as sqlx::Database>::Arguments> {
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for value in binds {
        query = query.bind(value.clone());
    }
    query
}

#[async_trait]
impl RetentionStore for Backend {
    async fn expire_scans(&self, before: DateTime<Utc>) -> Result<(u64, u64), StoreError> {
        let mut tx = self.begin_write().await?;
        let expired = format!(
            "SELECT f.id FROM findings f WHERE f.status = 'resolved' AND f.resolved_at < $1
               AND NOT EXISTS (SELECT 1 FROM change_requests cr WHERE cr.finding_id = f.id
                               AND cr.state NOT IN {FINISHED_STATES})"
        );
        let binds = [timestamp(before)];
        delete_dependents(&mut tx, &expired, &binds).await?;
        let findings = bind_all(
            &format!("DELETE FROM findings WHERE id IN ({expired})"),
            &binds,
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let scans = sqlx::query(
            "DELETE FROM scans WHERE started_at < $1 AND status <> 'running'
               AND NOT EXISTS (SELECT 1 FROM findings f
                               WHERE f.first_scan_id = scans.id OR f.last_scan_id = scans.id)",
        )
        .bind(timestamp(before))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok((findings, scans))
    }

    async fn expire_cost_points(&self, before: NaiveDate) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let deleted = sqlx::query("DELETE FROM cost_points WHERE day < $1")
            .bind(before.format("%Y-%m-%d").to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(deleted)
    }

    async fn expire_webhook_deliveries(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let deleted = sqlx::query(
            "DELETE FROM webhook_deliveries WHERE processed_at IS NOT NULL AND received_at < $1",
        )
        .bind(timestamp(before))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(deleted)
    }

    async fn tombstone_audit_payloads(
        &self,
        before: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<(u64, u64), StoreError> {
        let mut tx = self.begin_write().await?;
        let purged_at = timestamp(at);
        let tombstoned = sqlx::query(
            "UPDATE audit_events SET actor = $1, details = $2, purged_at = $3
             WHERE at < $4 AND purged_at IS NULL AND payload_digest IS NOT NULL",
        )
        .bind(TOMBSTONE_ACTOR)
        .bind(tombstone_details(&purged_at).to_string())
        .bind(purged_at.clone())
        .bind(timestamp(before))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let kept: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM audit_events WHERE at < $1 AND payload_digest IS NULL",
        )
        .bind(timestamp(before))
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((tombstoned, u64::try_from(kept).unwrap_or(0)))
    }
}
