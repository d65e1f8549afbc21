//! [`ScanStore`] in SQL (both backends): scans, cost points, findings.

use std::collections::HashSet;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Value, json};
use sqlx::Row;

use super::{Backend, DbRow, append_audit, corrupt, finding_subject, text};
use crate::domain::{
    AccountId, Finding, FindingId, FindingKind, FindingStatus, Fingerprint, ScanId, Severity,
};
use crate::sources::CostPoint;
use crate::store::{
    Coverage, RecordOutcome, ScanRecord, ScanStatus, ScanStore, StoreError, StoredFinding,
    parse_timestamp, timestamp,
};

pub(super) const FINDING_COLUMNS: &str = "id, fingerprint, kind, severity, title, resource, account, region, expected, actual, impact_usd_monthly, evidence, status, first_seen_at, last_seen_at, resolved_at";

pub(super) fn finding_from_row(row: &DbRow) -> Result<StoredFinding, StoreError> {
    let kind: String = row.try_get("kind")?;
    let severity: String = row.try_get("severity")?;
    let account: String = row.try_get("account")?;
    let status: String = row.try_get("status")?;
    let evidence: String = row.try_get("evidence")?;
    let first_seen_at: String = row.try_get("first_seen_at")?;
    let last_seen_at: String = row.try_get("last_seen_at")?;
    let resolved_at: Option<String> = row.try_get("resolved_at")?;
    Ok(StoredFinding {
        id: row.try_get("id")?,
        finding: Finding {
            kind: FindingKind::from_str(&kind).map_err(|e| corrupt("finding kind", e))?,
            severity: Severity::from_str(&severity).map_err(|e| corrupt("finding severity", e))?,
            title: row.try_get("title")?,
            resource: row.try_get("resource")?,
            account: AccountId::parse(&account).map_err(|e| corrupt("finding account", e))?,
            region: row.try_get("region")?,
            expected: row.try_get("expected")?,
            actual: row.try_get("actual")?,
            impact_usd_monthly: row.try_get("impact_usd_monthly")?,
            evidence: serde_json::from_str(&evidence)
                .map_err(|e| corrupt("finding evidence", e))?,
            fingerprint: Fingerprint::from_stored(row.try_get("fingerprint")?),
        },
        status: FindingStatus::from_str(&status).map_err(|e| corrupt("finding status", e))?,
        first_seen_at: parse_timestamp("finding first seen", &first_seen_at)?,
        last_seen_at: parse_timestamp("finding last seen", &last_seen_at)?,
        resolved_at: resolved_at
            .map(|t| parse_timestamp("finding resolved", &t))
            .transpose()?,
    })
}

fn scan_from_row(row: &DbRow) -> Result<ScanRecord, StoreError> {
    let status: String = row.try_get("status")?;
    let started_at: String = row.try_get("started_at")?;
    let finished_at: Option<String> = row.try_get("finished_at")?;
    let summary: Option<String> = row.try_get("summary")?;
    Ok(ScanRecord {
        id: row.try_get("id")?,
        source: row.try_get("source")?,
        started_at: parse_timestamp("scan start", &started_at)?,
        finished_at: finished_at
            .map(|t| parse_timestamp("scan end", &t))
            .transpose()?,
        status: ScanStatus::parse(&status)?,
        errors: summary
            .and_then(|s| serde_json::from_str::<Value>(&s).ok())
            .map(|s| summary_errors(&s))
            .unwrap_or_default(),
    })
}

/// The error lines of a stored scan summary: parts that could not be read
/// (`scan_errors`), findings that got no change request (`failures`), and
/// the error of a failed scan (`error`).
fn summary_errors(summary: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    if let Some(error) = summary.get("error").and_then(Value::as_str) {
        errors.push(error.to_owned());
    }
    for key in ["scan_errors", "failures"] {
        for item in summary
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let line = match item {
                Value::String(s) => s.clone(),
                Value::Object(fields) => fields
                    .iter()
                    .map(|(k, v)| match v {
                        Value::String(s) => format!("{k}: {s}"),
                        other => format!("{k}: {other}"),
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other.to_string(),
            };
            errors.push(line);
        }
    }
    errors
}

#[async_trait]
impl ScanStore for Backend {
    async fn begin_scan(&self, source: &str, at: DateTime<Utc>) -> Result<ScanId, StoreError> {
        let mut tx = self.begin_write().await?;
        let id: ScanId = sqlx::query_scalar(
            "INSERT INTO scans (source, started_at, status) VALUES ($1, $2, 'running') RETURNING id",
        )
        .bind(source.to_owned())
        .bind(timestamp(at))
        .fetch_one(&mut *tx)
        .await?;
        append_audit(
            &self.audit_key,
            &mut tx,
            "draco",
            "scan.started",
            &format!("scan:{id}"),
            &json!({ "source": source }),
            at,
        )
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn finish_scan(
        &self,
        scan_id: ScanId,
        status: ScanStatus,
        summary: &Value,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE scans SET finished_at = $1, status = $2, summary = $3 WHERE id = $4")
            .bind(timestamp(at))
            .bind(status.as_str())
            .bind(summary.to_string())
            .bind(scan_id)
            .execute(&mut *tx)
            .await?;
        append_audit(
            &self.audit_key,
            &mut tx,
            "draco",
            "scan.finished",
            &format!("scan:{scan_id}"),
            &json!({ "status": status, "summary": summary }),
            at,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn interrupt_abandoned_scans(
        &self,
        at: DateTime<Utc>,
    ) -> Result<Vec<ScanId>, StoreError> {
        let mut tx = self.begin_write().await?;
        let ids: Vec<ScanId> = sqlx::query_scalar(
            "UPDATE scans SET status = 'interrupted', finished_at = $1 WHERE status = 'running' RETURNING id",
        )
        .bind(timestamp(at))
        .fetch_all(&mut *tx)
        .await?;
        for id in &ids {
            append_audit(
                &self.audit_key,
                &mut tx,
                "draco",
                "scan.interrupted",
                &format!("scan:{id}"),
                &json!({ "reason": "its process ended before the scan finished" }),
                at,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(ids)
    }

    async fn scans(&self, limit: u32) -> Result<Vec<ScanRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, source, started_at, finished_at, status, summary FROM scans ORDER BY id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(scan_from_row).collect()
    }

    async fn save_cost_points(&self, points: &[CostPoint]) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut changed = 0;
        for p in points {
            // Only rows that are new or restated count as changed.
            let result = sqlx::query(
                "INSERT INTO cost_points (account_id, service, day, amount_usd, estimated) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (account_id, service, day) DO UPDATE SET amount_usd = excluded.amount_usd, estimated = excluded.estimated
                 WHERE cost_points.amount_usd IS DISTINCT FROM excluded.amount_usd OR cost_points.estimated IS DISTINCT FROM excluded.estimated",
            )
            .bind(p.account.as_str().to_owned())
            .bind(p.service.clone())
            .bind(p.day.to_string())
            .bind(p.amount_usd)
            .bind(p.estimated)
            .execute(&mut *tx)
            .await?;
            changed += result.rows_affected();
        }
        tx.commit().await?;
        Ok(changed)
    }

    async fn cost_points_since(&self, day: NaiveDate) -> Result<Vec<CostPoint>, StoreError> {
        let rows: Vec<(String, String, String, f64, bool)> = sqlx::query_as(
            "SELECT account_id, service, day, amount_usd, estimated FROM cost_points WHERE day >= $1 ORDER BY day, account_id, service",
        )
        .bind(day.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(account, service, day, amount_usd, estimated)| {
                Ok(CostPoint {
                    day: NaiveDate::parse_from_str(&day, "%Y-%m-%d")
                        .map_err(|e| corrupt("cost day", e))?,
                    account: AccountId::parse(&account).map_err(|e| corrupt("cost account", e))?,
                    service,
                    amount_usd,
                    estimated,
                })
            })
            .collect()
    }

    async fn last_cost_day(&self) -> Result<Option<NaiveDate>, StoreError> {
        let day: Option<String> = sqlx::query_scalar("SELECT MAX(day) FROM cost_points")
            .fetch_one(&self.pool)
            .await?;
        day.map(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").map_err(|e| corrupt("cost day", e)))
            .transpose()
    }

    async fn record_findings(
        &self,
        scan_id: ScanId,
        findings: &[Finding],
        coverage: &Coverage,
        at: DateTime<Utc>,
    ) -> Result<RecordOutcome, StoreError> {
        let now = timestamp(at);
        let mut tx = self.begin_write().await?;
        let mut outcome = RecordOutcome::default();
        let mut seen = HashSet::new();
        for f in findings {
            seen.insert(f.fingerprint.as_str().to_owned());
            let existing: Option<(FindingId, String, String, Option<f64>)> = sqlx::query_as(
                "SELECT id, status, severity, impact_usd_monthly FROM findings WHERE fingerprint = $1",
            )
            .bind(f.fingerprint.as_str().to_owned())
            .fetch_optional(&mut *tx)
            .await?;
            match existing {
                None => {
                    let id: FindingId = sqlx::query_scalar(
                        "INSERT INTO findings (fingerprint, kind, severity, title, resource, account, region, expected, actual, impact_usd_monthly, evidence, status, first_seen_at, last_seen_at, first_scan_id, last_scan_id)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'open', $12, $13, $14, $15) RETURNING id",
                    )
                    .bind(f.fingerprint.as_str().to_owned())
                    .bind(f.kind.as_str())
                    .bind(f.severity.as_str())
                    .bind(text(&f.title))
                    .bind(text(&f.resource))
                    .bind(f.account.as_str().to_owned())
                    .bind(f.region.clone())
                    .bind(f.expected)
                    .bind(f.actual)
                    .bind(f.impact_usd_monthly)
                    .bind(f.evidence.to_string())
                    .bind(now.clone())
                    .bind(now.clone())
                    .bind(scan_id)
                    .bind(scan_id)
                    .fetch_one(&mut *tx)
                    .await?;
                    append_audit(&self.audit_key, &mut tx, "draco", "finding.detected", &finding_subject(id),
                        &json!({ "kind": f.kind, "severity": f.severity, "fingerprint": f.fingerprint, "scan": scan_id }), at).await?;
                    outcome.new.push(id);
                }
                Some((id, status, severity, impact)) => {
                    let reopened = status == FindingStatus::Resolved.as_str();
                    let changed = !reopened
                        && materially_changed(
                            &severity,
                            impact,
                            f.severity.as_str(),
                            f.impact_usd_monthly,
                        );
                    sqlx::query(
                        "UPDATE findings SET kind = $1, severity = $2, title = $3, resource = $4, region = $5, expected = $6, actual = $7, impact_usd_monthly = $8, evidence = $9,
                         last_seen_at = $10, last_scan_id = $11, resolved_at = NULL,
                         status = CASE WHEN status = 'resolved' THEN 'open' ELSE status END
                         WHERE id = $12",
                    )
                    .bind(f.kind.as_str())
                    .bind(f.severity.as_str())
                    .bind(text(&f.title))
                    .bind(text(&f.resource))
                    .bind(f.region.clone())
                    .bind(f.expected)
                    .bind(f.actual)
                    .bind(f.impact_usd_monthly)
                    .bind(f.evidence.to_string())
                    .bind(now.clone())
                    .bind(scan_id)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    if reopened {
                        // The problem is back after its change request was
                        // merged or closed: it fails, so this scan proposes
                        // the change again (a new pull request).
                        sqlx::query(
                            "UPDATE change_requests SET state = 'failed',
                                 failure = 'the finding came back after its change request was ' || state
                             WHERE finding_id = $1 AND state IN ('merged', 'closed')",
                        )
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                        append_audit(
                            &self.audit_key,
                            &mut tx,
                            "draco",
                            "finding.reopened",
                            &finding_subject(id),
                            &json!({ "scan": scan_id }),
                            at,
                        )
                        .await?;
                        outcome.reopened.push(id);
                    } else if changed {
                        append_audit(
                            &self.audit_key,
                            &mut tx,
                            "draco",
                            "finding.changed",
                            &finding_subject(id),
                            &json!({ "scan": scan_id, "severity": [severity, f.severity],
                                     "impact_usd_monthly": [impact, f.impact_usd_monthly] }),
                            at,
                        )
                        .await?;
                        outcome.changed.push(id);
                    } else {
                        outcome.unchanged.push(id);
                    }
                }
            }
        }
        let present: Vec<(FindingId, String, String, Option<String>)> = sqlx::query_as(
            "SELECT id, fingerprint, account, region FROM findings WHERE status != 'resolved'",
        )
        .fetch_all(&mut *tx)
        .await?;
        for (id, fingerprint, account, region) in present {
            if !seen.contains(&fingerprint) && coverage.covers(&account, region.as_deref()) {
                sqlx::query(
                    "UPDATE findings SET status = 'resolved', resolved_at = $1 WHERE id = $2",
                )
                .bind(now.clone())
                .bind(id)
                .execute(&mut *tx)
                .await?;
                append_audit(
                    &self.audit_key,
                    &mut tx,
                    "draco",
                    "finding.resolved",
                    &finding_subject(id),
                    &json!({ "scan": scan_id }),
                    at,
                )
                .await?;
                outcome.resolved.push(id);
            }
        }
        tx.commit().await?;
        Ok(outcome)
    }

    async fn findings(&self) -> Result<Vec<StoredFinding>, StoreError> {
        let sql = format!("SELECT {FINDING_COLUMNS} FROM findings ORDER BY id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(finding_from_row).collect()
    }

    async fn finding(&self, id: FindingId) -> Result<Option<StoredFinding>, StoreError> {
        let sql = format!("SELECT {FINDING_COLUMNS} FROM findings WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(finding_from_row).transpose()
    }

    async fn findings_without_change_request(&self) -> Result<Vec<StoredFinding>, StoreError> {
        let sql = format!(
            "SELECT {FINDING_COLUMNS} FROM findings f WHERE f.status = 'open'
             AND NOT EXISTS (SELECT 1 FROM change_requests c WHERE c.finding_id = f.id AND c.state NOT IN ('failed', 'superseded'))
             ORDER BY f.id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(finding_from_row).collect()
    }
}

/// Whether a finding seen again changed enough for its change request to
/// be brought up to date: another severity, or a dollar impact a quarter
/// higher or lower (or newly known). Smaller moves (a cost anomaly's daily
/// figures) leave it alone: every update voids the approvals given.
fn materially_changed(
    old_severity: &str,
    old_impact: Option<f64>,
    new_severity: &str,
    new_impact: Option<f64>,
) -> bool {
    if old_severity != new_severity {
        return true;
    }
    match (old_impact, new_impact) {
        (None, None) => false,
        (Some(old), Some(new)) => (new - old).abs() > 0.25 * old.abs().max(1.0),
        _ => true,
    }
}
