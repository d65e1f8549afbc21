//! [`PurgeStore`] in SQL (both backends): a finding, or everything, gone
//! in one write transaction, the audit chain kept with tombstones.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{Backend, Db, DbConnection, append_audit, finding_subject};
use crate::audit::{TOMBSTONE_ACTOR, tombstone_details};
use crate::domain::FindingId;
use crate::store::purge::{KEPT_TABLES, PurgeBranch, PurgeReport, PurgeScope, PurgeStore};
use crate::store::{StoreError, timestamp};

/// Tables that refer to others, emptied first by `purge_all`.
const CHILD_TABLES: [&str; 5] = [
    "approvals",
    "approval_asks",
    "change_requests",
    "proposals",
    "findings",
];

/// Whether `haystack` holds `needle` not followed by another digit (so
/// `…/pull/1` does not match `…/pull/12`, nor `"finding_id":1` `…:12`).
fn mentions(haystack: &[u8], needle: &str) -> bool {
    let needle = needle.as_bytes();
    if needle.is_empty() || haystack.len() < needle.len() {
        return false;
    }
    (0..=haystack.len() - needle.len()).any(|i| {
        haystack[i..].starts_with(needle)
            && !haystack
                .get(i + needle.len())
                .is_some_and(|b| b.is_ascii_digit())
    })
}

/// What marks a stored text as being about the findings of `scopes`: their
/// branch names, their pull requests' URLs, `"finding_id":<id>`.
fn markers(scopes: &[(FindingId, Option<PurgeBranch>)]) -> Vec<String> {
    let mut markers = Vec::new();
    for (id, branch) in scopes {
        markers.push(format!("\"finding_id\":{id}"));
        if let Some(branch) = branch {
            markers.push(branch.branch.clone());
            if branch.location.starts_with("http") {
                markers.push(branch.location.clone());
            }
        }
    }
    markers
}

/// `value` without the array elements that are about `id`: the number
/// itself (lists of finding ids) or an object whose `finding_id` is it.
fn without_finding(value: &Value, id: i64) -> Value {
    match value {
        Value::Array(items) => Value::Array(
            items
                .iter()
                .filter(|item| {
                    item.as_i64() != Some(id)
                        && item.get("finding_id").and_then(Value::as_i64) != Some(id)
                })
                .map(|item| without_finding(item, id))
                .collect(),
        ),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), without_finding(v, id)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Replaces the payload of the audit events `seqs` by a tombstone dated
/// `purged_at`; only events with a digest and no tombstone yet change.
async fn tombstone(
    tx: &mut sqlx::Transaction<'_, Db>,
    seqs: &[i64],
    purged_at: &str,
) -> Result<u64, StoreError> {
    let mut done = 0;
    for seq in seqs {
        done += sqlx::query(
            "UPDATE audit_events SET actor = $1, details = $2, purged_at = $3
             WHERE seq = $4 AND purged_at IS NULL AND payload_digest IS NOT NULL",
        )
        .bind(TOMBSTONE_ACTOR)
        .bind(tombstone_details(purged_at).to_string())
        .bind(purged_at.to_owned())
        .bind(*seq)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    }
    Ok(done)
}

impl Backend {
    async fn branch_of(
        &self,
        conn: &mut DbConnection,
        id: FindingId,
    ) -> Result<Option<PurgeBranch>, StoreError> {
        let row: Option<(String, String, String, String)> = sqlx::query_as(
            "SELECT backend, branch, head_commit, location FROM change_requests WHERE finding_id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
        let Some((backend, branch, head, location)) = row else {
            return Ok(None);
        };
        let mut heads: Vec<String> = sqlx::query_scalar(
            "SELECT head_commit FROM approvals WHERE backend = $1 AND branch = $2
             UNION SELECT head_commit FROM approval_asks WHERE backend = $1 AND branch = $2",
        )
        .bind(backend.clone())
        .bind(branch.clone())
        .fetch_all(&mut *conn)
        .await?;
        if !heads.contains(&head) {
            heads.insert(0, head);
        }
        Ok(Some(PurgeBranch {
            backend,
            branch,
            heads,
            location,
        }))
    }
}

#[async_trait]
impl PurgeStore for Backend {
    async fn purge_scope(&self, id: FindingId) -> Result<Option<PurgeScope>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM findings WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
        if exists.is_none() {
            return Ok(None);
        }
        let change_request = self.branch_of(&mut conn, id).await?;
        let sharing_branch = match &change_request {
            Some(cr) => {
                sqlx::query_scalar(
                    "SELECT finding_id FROM change_requests
                     WHERE backend = $1 AND branch = $2 AND finding_id <> $3 ORDER BY finding_id",
                )
                .bind(cr.backend.clone())
                .bind(cr.branch.clone())
                .bind(id)
                .fetch_all(&mut *conn)
                .await?
            }
            None => Vec::new(),
        };
        Ok(Some(PurgeScope {
            finding: id,
            change_request,
            sharing_branch,
        }))
    }

    async fn purge_findings(
        &self,
        ids: &[FindingId],
        at: DateTime<Utc>,
    ) -> Result<PurgeReport, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut report = PurgeReport::default();
        let mut scopes = Vec::new();
        for id in ids {
            let fingerprint: Option<String> =
                sqlx::query_scalar("SELECT fingerprint FROM findings WHERE id = $1")
                    .bind(*id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some(fingerprint) = fingerprint else {
                continue;
            };
            let branch = self.branch_of(&mut tx, *id).await?;
            report.rows += sqlx::query("DELETE FROM advice_cache WHERE fingerprint = $1")
                .bind(fingerprint)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            scopes.push((*id, branch));
        }
        if scopes.is_empty() {
            tx.commit().await?;
            return Ok(report);
        }
        let list = scopes
            .iter()
            .map(|(id, _)| id.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        // Ids are this crate's integers: safe to splice.
        report.rows += super::retention::delete_dependents(&mut tx, &list, &[]).await?;
        report.rows += sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM findings WHERE id IN ({list})"
        )))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let markers = markers(&scopes);
        // Webhook deliveries that name a branch or pull request purged.
        let deliveries: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT id, body FROM webhook_deliveries")
                .fetch_all(&mut *tx)
                .await?;
        for (delivery, body) in deliveries {
            if markers.iter().any(|m| mentions(&body, m)) {
                report.rows += sqlx::query("DELETE FROM webhook_deliveries WHERE id = $1")
                    .bind(delivery)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            }
        }
        // Scan summaries: the findings' entries removed.
        let scans: Vec<(i64, Option<String>)> =
            sqlx::query_as("SELECT id, summary FROM scans WHERE summary IS NOT NULL")
                .fetch_all(&mut *tx)
                .await?;
        for (scan, summary) in scans {
            let Some(text) = summary else { continue };
            let Ok(mut value) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            for (id, _) in &scopes {
                value = without_finding(&value, id.get());
            }
            let scrubbed = value.to_string();
            if scrubbed != text || markers.iter().any(|m| mentions(text.as_bytes(), m)) {
                let scrubbed = if markers.iter().any(|m| mentions(scrubbed.as_bytes(), m)) {
                    // Still named somewhere the structure did not show.
                    json!({ "purged": true }).to_string()
                } else {
                    scrubbed
                };
                sqlx::query("UPDATE scans SET summary = $1 WHERE id = $2")
                    .bind(scrubbed)
                    .bind(scan)
                    .execute(&mut *tx)
                    .await?;
                report.scans_scrubbed += 1;
            }
        }
        // Audit events about them: by subject, or naming them in details.
        let subjects: Vec<String> = scopes.iter().map(|(id, _)| finding_subject(*id)).collect();
        let events: Vec<(i64, String, String, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT seq, subject, details, payload_digest, purged_at FROM audit_events ORDER BY seq",
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut seqs = Vec::new();
        for (seq, subject, details, digest, purged_at) in events {
            let about = subjects.contains(&subject)
                || markers.iter().any(|m| mentions(details.as_bytes(), m));
            if !about || purged_at.is_some() {
                continue;
            }
            if digest.is_some() {
                seqs.push(seq);
            } else {
                report.audit_kept += 1;
            }
        }
        let purged_at = timestamp(at);
        report.audit_tombstoned = tombstone(&mut tx, &seqs, &purged_at).await?;
        for (id, _) in &scopes {
            append_audit(
                &self.audit_key,
                &mut tx,
                "draco",
                "purge",
                &finding_subject(*id),
                &json!({ "finding": id.get() }),
                at,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(report)
    }

    async fn purge_all(&self, at: DateTime<Utc>) -> Result<PurgeReport, StoreError> {
        let tables = self.tables().await?;
        let mut tx = self.begin_write().await?;
        let mut report = PurgeReport::default();
        let mut order: Vec<&str> = CHILD_TABLES
            .iter()
            .copied()
            .filter(|t| tables.iter().any(|have| have == t))
            .collect();
        order.extend(
            tables
                .iter()
                .map(String::as_str)
                .filter(|t| !CHILD_TABLES.contains(t) && !KEPT_TABLES.contains(t)),
        );
        for table in order {
            // A name from the database's own catalogue, quoted.
            let quoted = format!("\"{}\"", table.replace('"', "\"\""));
            report.rows += sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {quoted}")))
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        let seqs: Vec<i64> = sqlx::query_scalar(
            "SELECT seq FROM audit_events WHERE purged_at IS NULL AND payload_digest IS NOT NULL ORDER BY seq",
        )
        .fetch_all(&mut *tx)
        .await?;
        let kept: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM audit_events WHERE payload_digest IS NULL")
                .fetch_one(&mut *tx)
                .await?;
        report.audit_kept = u64::try_from(kept).unwrap_or(0);
        report.audit_tombstoned = tombstone(&mut tx, &seqs, &timestamp(at)).await?;
        append_audit(
            &self.audit_key,
            &mut tx,
            "draco",
            "purge",
            "all",
            &json!({ "all": true }),
            at,
        )
        .await?;
        tx.commit().await?;
        Ok(report)
    }

    async fn compact(&self) -> Result<(), StoreError> {
        self.compact_storage().await
    }

    async fn tables(&self) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(super::TABLES_SQL)
            .fetch_all(&self.pool)
            .await?)
    }

    #[cfg(test)]
    async fn dump_text(&self) -> Result<Vec<String>, StoreError> {
        use sqlx::Row as _;
        let mut out = Vec::new();
        for table in self.tables().await? {
            let quoted = format!("\"{}\"", table.replace('"', "\"\""));
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM {quoted}")))
                .fetch_all(&self.pool)
                .await?;
            for row in rows {
                for i in 0..row.len() {
                    if let Ok(Some(text)) = row.try_get::<Option<String>, _>(i) {
                        out.push(format!("{table}: {text}"));
                    } else if let Ok(Some(bytes)) = row.try_get::<Option<Vec<u8>>, _>(i) {
                        out.push(format!("{table}: {}", String::from_utf8_lossy(&bytes)));
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mention_is_not_a_prefix_of_a_longer_number() {
        assert!(mentions(
            b"x https://g/o/r/pull/1\"",
            "https://g/o/r/pull/1"
        ));
        assert!(mentions(b"https://g/o/r/pull/1#c", "https://g/o/r/pull/1"));
        assert!(!mentions(b"https://g/o/r/pull/12", "https://g/o/r/pull/1"));
        assert!(!mentions(b"", "x"));
    }

    #[test]
    fn a_summary_loses_the_finding_s_entries_only() {
        let summary = json!({
            "outcome": {"new": [1, 12], "resolved": []},
            "failures": [{"finding_id": 1, "error": "vol-1 planted"}, {"finding_id": 12, "error": "e"}],
            "cost_points": 1,
        });
        assert_eq!(
            without_finding(&summary, 1),
            json!({
                "outcome": {"new": [12], "resolved": []},
                "failures": [{"finding_id": 12, "error": "e"}],
                "cost_points": 1,
            })
        );
    }
}
