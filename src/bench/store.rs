//! `draco bench store`: how fast the store takes what scans and approvals
//! write: finding upserts (a scan recording N new findings, then a scan
//! seeing them all again with changed values) and audit appends (each its
//! own transaction, as free-standing events are), on a fresh database: an
//! SQLite file in a scratch directory, or a scratch database on a
//! PostgreSQL server (`--postgres`). The target is 2,000 upserts a
//! second on each.

use std::time::Instant;

use chrono::Utc;
use serde::Serialize;
use serde_json::json;

use crate::domain::{AccountId, Finding, FindingKind, Fingerprint, Severity};
use crate::store::{Coverage, DatabaseStore, StoreError};

/// What one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct StoreReport {
    pub backend: &'static str,
    pub findings: usize,
    /// New findings recorded by one scan, per second.
    pub inserts_per_sec: f64,
    /// The same findings seen again with changed values, per second.
    pub updates_per_sec: f64,
    pub audit_events: usize,
    /// Free-standing audit events appended, each in its own transaction,
    /// per second.
    pub audit_appends_per_sec: f64,
}

fn finding(i: usize, actual: f64) -> Result<Finding, StoreError> {
    let account = AccountId::parse(&format!("{:012}", 100_000_000_000 + i % 50))
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let resource = format!("vol-{i:017x}");
    Ok(Finding {
        kind: FindingKind::EbsUnattached,
        severity: Severity::Low,
        title: format!("EBS volume {resource} is not attached"),
        fingerprint: Fingerprint::of(&["ebs_unattached", account.as_str(), &resource]),
        resource,
        account,
        region: Some("us-east-1".into()),
        expected: Some(0.0),
        actual: Some(actual),
        impact_usd_monthly: Some(actual),
        evidence: json!({ "size_gib": 100, "days_unattached": 30 }),
    })
}

/// Measures on `store`, a new, empty database.
///
/// Errors: the database cannot be written.
pub async fn measure(
    store: &dyn DatabaseStore,
    findings: usize,
    audit_events: usize,
) -> Result<StoreReport, StoreError> {
    let first: Vec<Finding> = (0..findings)
        .map(|i| finding(i, 8.0))
        .collect::<Result<_, _>>()?;
    let second: Vec<Finding> = (0..findings)
        .map(|i| finding(i, 9.0))
        .collect::<Result<_, _>>()?;
    let coverage = Coverage {
        cost: true,
        regions: (0..50)
            .map(|a| {
                (
                    format!("{:012}", 100_000_000_000u64 + a),
                    "us-east-1".to_owned(),
                )
            })
            .collect(),
    };
    let per_sec = |n: usize, started: Instant| n as f64 / started.elapsed().as_secs_f64().max(1e-9);

    let scan = store.begin_scan("bench", Utc::now()).await?;
    let started = Instant::now();
    store
        .record_findings(scan, &first, &coverage, Utc::now())
        .await?;
    let inserts_per_sec = per_sec(findings, started);

    let scan = store.begin_scan("bench", Utc::now()).await?;
    let started = Instant::now();
    store
        .record_findings(scan, &second, &coverage, Utc::now())
        .await?;
    let updates_per_sec = per_sec(findings, started);

    let started = Instant::now();
    for i in 0..audit_events {
        store
            .audit(
                "bench",
                "bench.event",
                "bench",
                &json!({ "i": i }),
                Utc::now(),
            )
            .await?;
    }
    let audit_appends_per_sec = per_sec(audit_events, started);
    Ok(StoreReport {
        backend: store.backend(),
        findings,
        inserts_per_sec,
        updates_per_sec,
        audit_events,
        audit_appends_per_sec,
    })
}
