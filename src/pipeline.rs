//! One scan, end to end: sources → detect → propose (redact → advise →
//! render, in [`crate::advice`]) → change request. The pipeline owns no I/O of its own: every effect goes
//! through a trait object it is handed, so tests can mix real and stand-in parts.
//!
//! Each step's result is committed before the next starts. A scan that dies
//! half-way is resumed by the next one: findings already stored are updated,
//! a branch already pushed is found again instead of pushed twice.

mod grouped;
mod verify;

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;

use chrono::{DateTime, Duration, Utc};
use futures::FutureExt as _;
use serde::Serialize;
use serde_json::json;

use crate::advice::{Advice, AdviceStore, ProposeError};
use crate::chart;
use crate::detect::{self, DetectConfig};
use crate::domain::{Finding, FindingId, ScanId};
use crate::gitops::config::Grouping;
use crate::gitops::group::{Member, is_group_branch};
use crate::gitops::{ChangeRequests, GitOpsError, NewChangeRequest, Observed, document};
use crate::redact::{PiiKind, RedactError, Redacted, Redactor};
use crate::remediate::Advisor;
use crate::remediate::templates::Catalog;
use crate::sources::{
    CostFetch, CostSource, CostWindow, PostureScan, PostureSource, ScanError, SourceError,
};
use grouped::{Round, Unit, units};

use crate::store::{
    ChangeRequestStore, Coverage, OutsideChange, RecordOutcome, ScanStatus, ScanStore, StoreError,
    StoredFinding,
};

/// What a scan reads and writes: scans and findings, proposals and change
/// requests, audit events, the advice cache. Never decisions: the pipeline
/// cannot approve anything.
pub trait PipelineStore: ScanStore + ChangeRequestStore + AdviceStore {}

impl<T: ScanStore + ChangeRequestStore + AdviceStore + ?Sized> PipelineStore for T {}

/// How much stored cost history the detectors read each scan.
const COST_HISTORY_DAYS: i64 = crate::store::retention::COST_HISTORY_DAYS as i64;

pub struct Pipeline<'a> {
    pub cost: &'a dyn CostSource,
    pub posture: &'a dyn PostureSource,
    pub detect: &'a DetectConfig,
    pub redactor: &'a Redactor,
    pub advisor: &'a dyn Advisor,
    /// Answers when `advisor` fails or its answer is refused (the template
    /// advisor behind a model); `None` when `advisor` is already it.
    pub fallback: Option<&'a dyn Advisor>,
    /// Renders the advisor's choice locally, from the real finding.
    pub catalog: &'a Catalog,
    pub change_requests: &'a dyn ChangeRequests,
    /// What never goes into a change request (`gitops.github.publish_redact`
    /// for GitHub; nothing for the local repository, which stays on the host).
    pub publish_redact: &'a [PiiKind],
    /// Change requests opened per scan at most (`gitops.max_new_per_scan`).
    pub max_new_per_scan: usize,
    /// One change request per finding, or per kind, account and region
    /// (`gitops.group`).
    pub group: Grouping,
    pub store: &'a dyn PipelineStore,
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("scan {scan_id} failed reading its source: {source}")]
    Source {
        scan_id: ScanId,
        source: SourceError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why one finding got no change request this scan. The scan goes on.
#[derive(Debug, thiserror::Error)]
pub enum RemediationError {
    /// Redaction, the advisor (and its fallback) or the advice cache.
    #[error(transparent)]
    Propose(#[from] ProposeError),
    #[error("change request: {0}")]
    GitOps(#[from] GitOpsError),
    #[error("change request: {0}")]
    Publish(#[from] RedactError),
    /// The script's commands carry values the publication policy keeps on
    /// the host: published, it would not do what was reviewed.
    #[error(
        "change request not published: its {which} script needs values that gitops.github.publish_redact keeps on the host ({kinds}); review it locally, or take those kinds out of the policy"
    )]
    Unpublishable { which: &'static str, kinds: String },
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The change request of the finding's group failed (the cause, once
    /// per finding of the group).
    #[error("{0}")]
    Group(String),
    /// A bug met while handling this finding (a panic in the redactor, a
    /// template or an answer's parser). The finding fails; the scan goes on.
    #[error("internal error while handling this finding: {0}")]
    Panic(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct OpenedRequest {
    pub finding_id: FindingId,
    pub branch: String,
    pub location: String,
    /// Found already pushed (a previous scan died before recording it).
    pub recovered: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct FindingFailure {
    pub finding_id: FindingId,
    pub error: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScanReport {
    pub scan_id: ScanId,
    pub source: String,
    /// Daily cost points fetched this scan.
    pub cost_points: usize,
    pub cost_points_changed: u64,
    /// Billable Cost Explorer requests this scan made.
    pub cost_requests: u32,
    pub regions_scanned: usize,
    pub findings_detected: usize,
    pub outcome: RecordOutcome,
    pub change_requests_opened: Vec<OpenedRequest>,
    /// Findings waiting for a change request because this scan opened its
    /// `gitops.max_new_per_scan` already: the next scans open them,
    /// highest severity × dollar impact first.
    pub change_requests_queued: Vec<FindingId>,
    pub failures: Vec<FindingFailure>,
    /// Accounts, regions or services that could not be read.
    pub scan_errors: Vec<ScanError>,
    /// `ok`, or `partial` when a part could not be read or a finding could not be remediated.
    pub status: ScanStatus,
}

/// A source that could not be read, as a scan error of the whole source.
fn source_failure(service: &'static str, error: &SourceError) -> ScanError {
    ScanError {
        account: None,
        region: None,
        service,
        message: error.to_string(),
    }
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
        let window = CostWindow {
            last_stored_day: self.store.last_cost_day().await?,
            today: now.date_naive(),
        };
        // A source that cannot be read at all (a garbled cost file, an
        // unreadable inventory directory) fails its half of the scan, as a
        // failed AWS region does: the other half is still scanned, the scan is
        // `partial`, and nothing of the failed half is created or resolved.
        // Only when neither half could be read does the scan fail.
        let (costs, posture) = match (
            self.cost.daily_costs(window).await,
            self.posture.inventory().await,
        ) {
            (Err(source), Err(_)) => {
                let summary = json!({ "error": source.to_string() });
                self.store
                    .finish_scan(scan_id, ScanStatus::Failed, &summary, Utc::now())
                    .await?;
                return Err(PipelineError::Source { scan_id, source });
            }
            (costs, posture) => (
                costs.unwrap_or_else(|e| CostFetch {
                    complete: false,
                    errors: vec![source_failure("cost", &e)],
                    ..CostFetch::default()
                }),
                posture.unwrap_or_else(|e| PostureScan {
                    inventories: Vec::new(),
                    errors: vec![source_failure("inventory", &e)],
                }),
            ),
        };
        let cost_points_changed = self.store.save_cost_points(&costs.points).await?;
        // Detect over the stored history, not only what this scan fetched:
        // sources fetch incrementally. The window ends at the newest stored day
        // (not today) so fixed data sets such as the demo stay meaningful.
        let history = match self.store.last_cost_day().await? {
            Some(last) => {
                self.store
                    .cost_points_since(last - Duration::days(COST_HISTORY_DAYS))
                    .await?
            }
            None => Vec::new(),
        };

        let findings = detect::detect(&history, &posture.inventories, self.detect, now);
        let coverage = Coverage {
            cost: costs.complete,
            regions: posture
                .inventories
                .iter()
                .map(|i| (i.account.to_string(), i.region.clone()))
                .collect(),
        };
        // Findings from a part that failed are not reported from stale data either.
        let findings: Vec<_> = findings
            .into_iter()
            .filter(|f| coverage.covers(f.account.as_str(), f.region.as_deref()))
            .collect();
        let outcome = self
            .store
            .record_findings(scan_id, &findings, &coverage, now)
            .await?;
        tracing::info!(
            scan_id = scan_id.get(),
            detected = findings.len(),
            new = outcome.new.len(),
            resolved = outcome.resolved.len(),
            "findings recorded"
        );

        self.reconcile(now).await?;
        self.verify_merged(&coverage, now).await?;
        let mut failures = self.update_changed(&outcome.changed, now).await?;

        let mut opened = Vec::new();
        let mut pending = self.store.findings_without_change_request().await?;
        // Highest severity first, then the larger dollar impact, then the
        // older finding: what a human should see first is opened first.
        pending.sort_by(|a, b| {
            let (a, b) = ((&a.finding, a.id), (&b.finding, b.id));
            b.0.severity
                .cmp(&a.0.severity)
                .then_with(|| {
                    let impact = |f: &Finding| f.impact_usd_monthly.unwrap_or(0.0);
                    impact(b.0).total_cmp(&impact(a.0))
                })
                .then_with(|| a.1.cmp(&b.1))
        });
        // Up to the limit opened; a finding that fails does not take a slot
        // (one that always fails would starve the queue), but as many
        // failures as the limit end the round: the backend is likely down,
        // and the next scan tries again. A group of findings is one change
        // request: it takes one slot.
        let limit = self.max_new_per_scan;
        let mut pending = units(pending, self.group).into_iter();
        let mut queued: Vec<FindingId> = Vec::new();
        let (mut slots, mut failed_here) = (0, 0);
        while slots < limit && failed_here < limit.max(FAILURES_PER_ROUND) {
            let Some(unit) = pending.next() else { break };
            let failures_before = failures.len();
            // A panic is a bug, but one finding's bug must not stop the scan
            // nor the daemon: it fails that finding like any other error.
            // Nothing here is shared mutable state a panic could leave broken.
            let round = match unit {
                Unit::Alone(stored) => {
                    let id = stored.id;
                    let handled = AssertUnwindSafe(self.remediate(&stored, now))
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|panic| {
                            Err(RemediationError::Panic(panic_message(&*panic)))
                        });
                    match handled {
                        Ok(request) => Round {
                            opened: vec![request],
                            ..Round::default()
                        },
                        Err(error) => Round {
                            failed: vec![(id, error)],
                            ..Round::default()
                        },
                    }
                }
                Unit::Group(key, members) => {
                    let ids: Vec<FindingId> = members.iter().map(|m| m.id).collect();
                    AssertUnwindSafe(self.remediate_group(&key, members, now))
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|panic| {
                            Err(RemediationError::Panic(panic_message(&*panic)))
                        })
                        .unwrap_or_else(|error| Round::all_failed(&ids, &error))
                }
            };
            if !round.opened.is_empty() {
                slots += 1;
            }
            opened.extend(round.opened);
            queued.extend(round.waiting);
            for (finding_id, error) in round.failed {
                tracing::warn!(finding = finding_id.get(), %error, "no change request for this finding");
                self.store
                    .audit(
                        "draco",
                        "remediation.failed",
                        &format!("finding:{finding_id}"),
                        &json!({ "error": error.to_string() }),
                        Utc::now(),
                    )
                    .await?;
                failures.push(FindingFailure {
                    finding_id,
                    error: error.to_string(),
                });
            }
            failed_here += usize::from(failures.len() > failures_before);
        }
        queued.extend(pending.flat_map(Unit::into_ids));
        if !queued.is_empty() {
            tracing::info!(
                queued = queued.len(),
                limit,
                "more findings need a change request than one scan opens; the rest wait for the next scans"
            );
        }

        let scan_errors: Vec<ScanError> = costs.errors.into_iter().chain(posture.errors).collect();
        for error in &scan_errors {
            tracing::warn!(%error, "part of the scan failed");
        }
        let report = ScanReport {
            scan_id,
            source,
            cost_points: costs.points.len(),
            cost_points_changed,
            cost_requests: costs.requests,
            regions_scanned: posture.inventories.len(),
            findings_detected: findings.len(),
            outcome,
            change_requests_opened: opened,
            change_requests_queued: queued,
            status: if failures.is_empty() && scan_errors.is_empty() {
                ScanStatus::Ok
            } else {
                ScanStatus::Partial
            },
            failures,
            scan_errors,
        };
        let summary = serde_json::to_value(&report).unwrap_or_default();
        self.store
            .finish_scan(scan_id, report.status, &summary, Utc::now())
            .await?;
        Ok(report)
    }

    /// The proposal (see [`Advice::propose`]), then the change request.
    async fn remediate(
        &self,
        stored: &StoredFinding,
        now: DateTime<Utc>,
    ) -> Result<OpenedRequest, RemediationError> {
        let change = self.propose(stored, now).await?;
        // Re-proposing a failed change request: its branch may hold what
        // someone else pushed; set it aside so the proposal is Draco's own.
        if let Some(previous) = self.store.change_request_for_finding(stored.id).await?
            && previous.state.needs_reproposal()
        {
            self.change_requests.retire(&previous.branch).await?;
        }
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

impl Pipeline<'_> {
    /// The proposal for `stored` (saved), and the change request as it may
    /// be published (see [`Self::publishable`]), the whole document passed
    /// once more through the redactor (free text the template wrote).
    async fn propose(
        &self,
        stored: &StoredFinding,
        now: DateTime<Utc>,
    ) -> Result<Redacted<NewChangeRequest>, RemediationError> {
        let member = self.publishable(stored, now).await?;
        let change =
            document::change_request(&member.finding, stored.id, &member.proposal, member.chart);
        self.publish(&change)
    }

    /// The finding, its proposal (saved) and its chart as they may leave the
    /// host: the finding structure-aware (an `Owner` tag's value is a name),
    /// the proposal keeping the addresses its commands need.
    async fn publishable(
        &self,
        stored: &StoredFinding,
        now: DateTime<Utc>,
    ) -> Result<Member, RemediationError> {
        let advice = Advice {
            redactor: self.redactor,
            advisor: self.advisor,
            fallback: self.fallback,
            catalog: self.catalog,
            store: self.store,
        };
        let proposal = advice.propose(stored.id, &stored.finding, now).await?;
        self.store.save_proposal(stored.id, &proposal, now).await?;
        let removed = self.publish_redact;
        let mut finding = stored.finding.clone();
        if removed.contains(&PiiKind::Name) {
            withhold_free_text(&mut finding.evidence);
        }
        finding.title = self
            .redactor
            .publishable(&finding.title, removed)?
            .get()
            .clone();
        finding.evidence = self
            .redactor
            .publishable(&finding.evidence, removed)?
            .get()
            .clone();
        let published = self
            .redactor
            .publishable(&proposal, &self.change_policy())?;
        check_script("remediation", &proposal.body, &published.get().body)?;
        check_script("rollback", &proposal.rollback, &published.get().rollback)?;
        let chart = self.chart(&finding).await;
        Ok(Member {
            finding,
            id: stored.id,
            proposal: published.get().clone(),
            chart,
        })
    }

    /// The change itself (its scripts, summary and description) keeps the
    /// network addresses it operates on (a rule's CIDR, an Elastic IP): a
    /// script with a placeholder where its address was cannot run, and one
    /// revoking several ranges under `set -e` would stop half-way.
    fn change_policy(&self) -> Vec<PiiKind> {
        self.publish_redact
            .iter()
            .filter(|k| !CHANGE_KEEPS.contains(k))
            .copied()
            .collect()
    }

    /// `change` as it may be published: the whole document through the
    /// redactor under the change's policy.
    fn publish(
        &self,
        change: &NewChangeRequest,
    ) -> Result<Redacted<NewChangeRequest>, RemediationError> {
        Ok(self.redactor.publishable(change, &self.change_policy())?)
    }

    /// Brings the open change requests of findings that changed (another
    /// severity, or a dollar impact a quarter off) up to date: proposed
    /// again (a model's advice comes from its cache), a new commit on the
    /// same branch and pull request, which voids the approvals given.
    async fn update_changed(
        &self,
        changed: &[FindingId],
        now: DateTime<Utc>,
    ) -> Result<Vec<FindingFailure>, StoreError> {
        let mut failures = Vec::new();
        let mut groups_done = Vec::new();
        for &id in changed {
            let (Some(stored), Some(cr)) = (
                self.store.finding(id).await?,
                self.store.change_request_for_finding(id).await?,
            ) else {
                continue;
            };
            if !cr.state.is_pending() || cr.backend != self.change_requests.backend() {
                continue;
            }
            let grouped = is_group_branch(&cr.branch);
            if grouped && groups_done.contains(&cr.branch) {
                continue;
            }
            let note = format!(
                "Draco updated this change: {}the finding changed (now {}, {} a month).",
                if grouped {
                    format!("finding {id}: ")
                } else {
                    String::new()
                },
                stored.finding.severity.as_str(),
                stored
                    .finding
                    .impact_usd_monthly
                    .map_or_else(|| "no dollar impact".to_owned(), |v| format!("${v:.2}"))
            );
            let updated = async {
                if grouped {
                    groups_done.push(cr.branch.clone());
                    self.refresh_group(&cr.branch, &note, now).await?;
                    return Ok(());
                }
                let change = self.propose(&stored, now).await?;
                self.bring_up_to_date(&change, &cr, &note, now).await?;
                Ok::<_, RemediationError>(())
            };
            if let Err(error) = AssertUnwindSafe(updated)
                .catch_unwind()
                .await
                .unwrap_or_else(|panic| Err(RemediationError::Panic(panic_message(&*panic))))
            {
                tracing::warn!(finding = id.get(), %error, "cannot bring the change request up to date; the next scan tries again");
                failures.push(FindingFailure {
                    finding_id: id,
                    error: error.to_string(),
                });
            }
        }
        Ok(failures)
    }

    /// Moves the open change request that `row` records (one of its rows:
    /// its finding, branch and head) to `change`, saying `note` where the
    /// backend can, and records the new head for every finding it covers.
    /// Returns the head, unchanged when the files are the same.
    ///
    /// A branch that is not at the recorded head (pushed to outside Draco,
    /// or Draco's own update whose record a crash lost) or is gone fails the
    /// change request, as reading it back would: this scan or the next
    /// proposes it again, rather than every scan trying to update a head
    /// that no longer exists.
    async fn bring_up_to_date(
        &self,
        change: &Redacted<NewChangeRequest>,
        row: &crate::store::StoredChangeRequest,
        note: &str,
        now: DateTime<Utc>,
    ) -> Result<String, RemediationError> {
        let head = match self
            .change_requests
            .update(change, &row.head_commit, note)
            .await
        {
            Ok(head) => head,
            Err(error) => {
                let outside = match &error {
                    GitOpsError::BranchMoved { actual, .. } => Some(OutsideChange::Pushed {
                        head: actual.clone(),
                    }),
                    GitOpsError::NoBranch(_) => Some(OutsideChange::Deleted),
                    _ => None,
                };
                if let Some(outside) = outside {
                    let backend = self.change_requests.backend();
                    self.store
                        .record_outside_change(backend, &row.branch, None, &outside, backend, now)
                        .await?;
                }
                return Err(error.into());
            }
        };
        if head != row.head_commit {
            self.store
                .update_change_request(row.finding_id, &row.head_commit, &head, now)
                .await?;
        }
        Ok(head)
    }

    /// Brings the store in step with the backend before anything new is
    /// proposed: each open change request is read back (a push, a merge or
    /// a close made outside Draco whose webhook was missed is recorded now),
    /// and the change requests of findings that resolved themselves are
    /// withdrawn with a note. A backend error leaves that change request for
    /// the next scan; only a store error fails the scan.
    async fn reconcile(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let backend = self.change_requests.backend();
        let observed = if self.change_requests.changed_outside_draco() {
            self.store.change_requests().await?
        } else {
            Vec::new()
        };
        // A grouped change request is one row per finding on one branch,
        // read back once. A branch with an open row is read back for it:
        // a `failed` row beside it (a finding whose proposal failed when the
        // others were proposed again) is at an older head, and reading the
        // branch back for it would let a close or a push by hand pass unseen.
        let live: std::collections::HashSet<String> = observed
            .iter()
            .filter(|cr| cr.backend == backend && cr.state.is_pending())
            .map(|cr| cr.branch.clone())
            .collect();
        let mut seen = std::collections::HashSet::new();
        for cr in observed {
            let failed = cr.state.needs_reproposal();
            if cr.backend != backend || !(cr.state.is_pending() || failed) {
                continue;
            }
            if (failed && live.contains(&cr.branch)) || !seen.insert(cr.branch.clone()) {
                continue;
            }
            // A failed one matters only if it was merged or closed meanwhile
            // (by hand, or Draco's merge whose answer was lost): otherwise
            // this scan proposes it again anyway.
            let change = match self.change_requests.observe(&cr.branch).await {
                Ok(Observed::Merged { merge_commit }) => OutsideChange::Merged { merge_commit },
                Ok(Observed::Closed) if !failed => OutsideChange::Closed,
                Ok(Observed::Open { head }) if !failed && head != cr.head_commit => {
                    OutsideChange::Pushed { head }
                }
                Ok(Observed::Missing) if !failed => OutsideChange::Deleted,
                Ok(_) => continue,
                Err(error) => {
                    // One answer is enough to know the backend is down: the
                    // next scan reads everything back, and this one goes on.
                    tracing::warn!(%error, branch = cr.branch, "cannot read change requests back; the next scan tries again");
                    break;
                }
            };
            self.store
                .record_outside_change(backend, &cr.branch, None, &change, backend, now)
                .await?;
        }
        let mut groups: BTreeMap<String, Vec<crate::store::StoredChangeRequest>> = BTreeMap::new();
        for cr in self.store.change_requests_of_resolved_findings().await? {
            if cr.backend != backend {
                continue;
            }
            if is_group_branch(&cr.branch) {
                groups.entry(cr.branch.clone()).or_default().push(cr);
                continue;
            }
            let note = "Draco no longer sees this problem: its finding resolved itself, so this change request is closed without merging.";
            match self.change_requests.withdraw(&cr.branch, note).await {
                Ok(()) => {
                    self.store
                        .withdraw_change_request(cr.finding_id, "the finding resolved itself", now)
                        .await?;
                }
                Err(error) => {
                    tracing::warn!(%error, branch = cr.branch, "cannot withdraw change requests; the next scan tries again");
                    return Ok(());
                }
            }
        }
        for (branch, resolved) in groups {
            match self.withdraw_from_group(&branch, &resolved, now).await {
                Ok(()) => {}
                Err(RemediationError::Store(error)) => return Err(error),
                Err(error) => {
                    tracing::warn!(%error, branch, "cannot take resolved findings out of their change request; the next scan tries again");
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// The chart of a cost finding (`finding` is the publishable copy: its
    /// title goes into the SVG). A chart that cannot be drawn is logged and
    /// left out: the change request does not depend on it.
    async fn chart(&self, finding: &Finding) -> Option<String> {
        if !chart::has_chart(finding.kind) {
            return None;
        }
        let points = match self.store.last_cost_day().await {
            Ok(Some(last)) => {
                self.store
                    .cost_points_since(last - chrono::Duration::days(chart::HISTORY_DAYS))
                    .await
            }
            Ok(None) => return None,
            Err(e) => Err(e),
        };
        let drawn = points.map_err(|e| e.to_string()).and_then(|points| {
            chart::finding_chart(finding, &finding.title, &points, &self.detect.cost)
                .map_err(|e| e.to_string())
        });
        match drawn {
            Ok(svg) => svg,
            Err(error) => {
                tracing::warn!(%error, "cannot draw the cost chart; the change request goes without it");
                None
            }
        }
    }
}

/// What a published change request shows in place of a free-text field.
const WITHHELD: &str = "(free text, not published)";

/// Replaces the values of free-text fields in `evidence` (AWS's
/// `Description` of a rule or a snapshot: whatever someone typed) with
/// [`WITHHELD`]: the redactor finds a name after a person key (`Owner`),
/// not in a sentence ("backup of Priya's laptop"), so a policy that keeps
/// names on the host keeps these fields there whole. The change needs none
/// of them.
fn withhold_free_text(evidence: &mut serde_json::Value) {
    match evidence {
        serde_json::Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                let key = key.to_ascii_lowercase();
                if key == "description" || key == "descriptions" {
                    withhold_strings(value);
                } else {
                    withhold_free_text(value);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(withhold_free_text),
        _ => {}
    }
}

fn withhold_strings(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => *s = WITHHELD.to_owned(),
        serde_json::Value::Array(items) => items.iter_mut().for_each(withhold_strings),
        serde_json::Value::Object(map) => map.values_mut().for_each(withhold_strings),
        _ => {}
    }
}

/// Failures that end a scan's round of new change requests (or the limit,
/// if higher): a few findings that always fail do not hold every slot, and a
/// backend that is down is not tried for each of thousands of findings.
const FAILURES_PER_ROUND: usize = 5;

/// Kinds a change keeps when it is published, whatever the policy: the
/// addresses its commands operate on. Elsewhere (the finding's title and
/// evidence) they are removed as the policy says.
const CHANGE_KEEPS: [PiiKind; 2] = [PiiKind::Ipv4, PiiKind::Ipv6];

/// Refuses a script whose commands the publication policy changed: only
/// comments may lose a value (a title naming a person); a command with a
/// placeholder would not do what was reviewed.
fn check_script(
    which: &'static str,
    original: &str,
    published: &str,
) -> Result<(), RemediationError> {
    let original_lines: Vec<&str> = original.lines().collect();
    let published_lines: Vec<&str> = published.lines().collect();
    let changed_command = original_lines.len() != published_lines.len()
        || original_lines
            .iter()
            .zip(&published_lines)
            .any(|(o, p)| o != p && !o.trim_start().starts_with('#'));
    if !changed_command {
        return Ok(());
    }
    let mut kinds: Vec<String> = published_lines
        .iter()
        .flat_map(|line| line.split('<').skip(1))
        .filter_map(|rest| rest.split_once('>').map(|(inside, _)| inside))
        .filter_map(|inside| inside.rsplit_once('_').map(|(kind, _)| kind.to_lowercase()))
        .collect();
    kinds.sort();
    kinds.dedup();
    Err(RemediationError::Unpublishable {
        which,
        kinds: kinds.join(", "),
    })
}

/// The text of a panic payload (`panic!` with a message gives a `&str` or a
/// `String`; anything else is described generically).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_owned()
    }
}
