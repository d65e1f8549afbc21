//! One scan, end to end: sources → detect → redact → advise → render →
//! change request. The pipeline owns no I/O of its own: every effect goes
//! through a trait object it is handed, so tests can mix real and stand-in parts.
//!
//! Each step's result is committed before the next starts. A scan that dies
//! half-way is resumed by the next one: findings already stored are updated,
//! a branch already pushed is found again instead of pushed twice.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use crate::detect::{self, DetectConfig};
use crate::gitops::{ChangeRequests, GitOpsError, document};
use crate::redact::{RedactError, Redactor};
use crate::remediate::templates::Catalog;
use crate::remediate::{AdviceError, AdviceRequest, Advisor};
use crate::sources::{CostSource, PostureSource, SourceError};
use crate::store::{RecordOutcome, Store, StoreError, StoredFinding};

pub struct Pipeline<'a> {
    pub cost: &'a dyn CostSource,
    pub posture: &'a dyn PostureSource,
    pub detect: &'a DetectConfig,
    pub redactor: &'a Redactor,
    pub advisor: &'a dyn Advisor,
    /// Renders the advisor's choice locally, from the real finding.
    pub catalog: &'a Catalog,
    pub change_requests: &'a dyn ChangeRequests,
    pub store: &'a dyn Store,
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("scan {scan_id} failed reading its source: {source}")]
    Source { scan_id: i64, source: SourceError },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why one finding got no change request this scan. The scan goes on.
#[derive(Debug, thiserror::Error)]
pub enum RemediationError {
    #[error("redaction: {0}")]
    Redact(#[from] RedactError),
    #[error("advisor: {0}")]
    Advice(#[from] AdviceError),
    #[error("change request: {0}")]
    GitOps(#[from] GitOpsError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, Serialize)]
pub struct OpenedRequest {
    pub finding_id: i64,
    pub branch: String,
    pub location: String,
    /// Found already pushed (a previous scan died before recording it).
    pub recovered: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct FindingFailure {
    pub finding_id: i64,
    pub error: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScanReport {
    pub scan_id: i64,
    pub source: String,
    pub cost_points: usize,
    pub cost_points_changed: u64,
    pub regions_scanned: usize,
    pub findings_detected: usize,
    pub outcome: RecordOutcome,
    pub change_requests_opened: Vec<OpenedRequest>,
    pub failures: Vec<FindingFailure>,
    /// `succeeded`, or `partial` when some finding could not be remediated.
    pub status: &'static str,
}

impl Pipeline<'_> {
    pub async fn scan(&self, now: DateTime<Utc>) -> Result<ScanReport, PipelineError> {
        let (cost, posture) = (self.cost.describe(), self.posture.describe());
        let source = if cost == posture {
            cost
        } else {
            format!("{cost} + {posture}")
        };
        let scan_id = self.store.begin_scan(&source, now).await?;
        let observed = async {
            let costs = self.cost.daily_costs().await?;
            let inventories = self.posture.inventory().await?;
            Ok::<_, SourceError>((costs, inventories))
        }
        .await;
        let (costs, inventories) = match observed {
            Ok(observed) => observed,
            Err(source) => {
                let summary = json!({ "error": source.to_string() });
                self.store
                    .finish_scan(scan_id, "failed", &summary, Utc::now())
                    .await?;
                return Err(PipelineError::Source { scan_id, source });
            }
        };
        let cost_points_changed = self.store.save_cost_points(&costs).await?;

        let findings = detect::detect(&costs, &inventories, self.detect, now);
        let outcome = self.store.record_findings(scan_id, &findings, now).await?;
        tracing::info!(
            scan_id,
            detected = findings.len(),
            new = outcome.new.len(),
            resolved = outcome.resolved.len(),
            "findings recorded"
        );

        let mut opened = Vec::new();
        let mut failures = Vec::new();
        for stored in self.store.findings_without_change_request().await? {
            match self.remediate(&stored, now).await {
                Ok(request) => opened.push(request),
                Err(error) => {
                    tracing::warn!(finding = stored.id, %error, "no change request for this finding");
                    self.store
                        .audit(
                            "draco",
                            "remediation.failed",
                            &format!("finding:{}", stored.id),
                            &json!({ "error": error.to_string() }),
                            Utc::now(),
                        )
                        .await?;
                    failures.push(FindingFailure {
                        finding_id: stored.id,
                        error: error.to_string(),
                    });
                }
            }
        }

        let report = ScanReport {
            scan_id,
            source,
            cost_points: costs.len(),
            cost_points_changed,
            regions_scanned: inventories.len(),
            findings_detected: findings.len(),
            outcome,
            change_requests_opened: opened,
            status: if failures.is_empty() {
                "succeeded"
            } else {
                "partial"
            },
            failures,
        };
        let summary = serde_json::to_value(&report).unwrap_or_default();
        self.store
            .finish_scan(scan_id, report.status, &summary, Utc::now())
            .await?;
        Ok(report)
    }

    /// Redact → advise → restore locally → render → open the change request.
    async fn remediate(
        &self,
        stored: &StoredFinding,
        now: DateTime<Utc>,
    ) -> Result<OpenedRequest, RemediationError> {
        let request = AdviceRequest::from_finding(&stored.finding);
        let (redacted, vault) = self.redactor.redact(&request)?;
        let recommendation = self.advisor.recommend(&redacted).await?;
        let (recommendation, invented) = recommendation.restore(&vault);
        drop(vault);
        if !invented.is_empty() {
            self.store
                .audit(
                    "draco",
                    "advice.unknown_placeholders",
                    &format!("finding:{}", stored.id),
                    &json!({ "placeholders": invented }),
                    now,
                )
                .await?;
        }
        let proposal = self.catalog.render(&recommendation, &request)?;
        self.store.save_proposal(stored.id, &proposal, now).await?;
        let change = document::change_request(&stored.finding, &proposal);
        let opened = self.change_requests.open(&change).await?;
        self.store
            .record_change_request(stored.id, self.change_requests.backend(), &opened, now)
            .await?;
        Ok(OpenedRequest {
            finding_id: stored.id,
            branch: opened.branch,
            location: opened.location,
            recovered: !opened.created,
        })
    }
}
