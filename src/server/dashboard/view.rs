//! What the dashboard's pages show, as plain values for the templates, and
//! the template environment that renders them.
//!
//! Every stored string reaches the page through one formatter: neutralised
//! first ([`crate::domain::neutralise`]: control, bidirectional and
//! zero-width characters shown as `\u{…}`), then HTML-escaped by
//! minijinja's auto-escaping (`.html` templates). Only the cost chart is
//! inserted as markup: an SVG that `chart::cost_chart` drew itself, with its
//! text escaped and no script or link.

use std::sync::OnceLock;

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;
use serde_json::Value;

use crate::audit::AuditEvent;
use crate::domain::{FindingKind, FindingStatus, Severity, neutralise, neutralise_json};
use crate::remediate::Proposal;
use crate::store::{ScanRecord, StoredChangeRequest, StoredFinding, timestamp};

/// Statuses in the order the overview shows them.
pub const STATUSES: [FindingStatus; 5] = [
    FindingStatus::Open,
    FindingStatus::AwaitingApproval,
    FindingStatus::Approved,
    FindingStatus::Rejected,
    FindingStatus::Resolved,
];

/// The overview's filters (`?severity=high&status=open&kind=…`; empty or
/// absent: any).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Filters {
    pub severity: Option<Severity>,
    pub status: Option<FindingStatus>,
    pub kind: Option<FindingKind>,
}

impl Filters {
    /// Parses the query string's filters; an unknown value is an error
    /// naming the parameter (never silently "any").
    pub fn parse(query: &[(String, String)]) -> Result<Self, String> {
        let mut filters = Filters::default();
        for (key, value) in query {
            if value.is_empty() {
                continue;
            }
            let bad = || format!("unknown {key}: choose one from the list");
            match key.as_str() {
                "severity" => filters.severity = Some(value.parse().map_err(|_| bad())?),
                "status" => filters.status = Some(value.parse().map_err(|_| bad())?),
                "kind" => filters.kind = Some(value.parse().map_err(|_| bad())?),
                _ => {}
            }
        }
        Ok(filters)
    }

    fn admits(&self, finding: &StoredFinding) -> bool {
        self.severity.is_none_or(|s| s == finding.finding.severity)
            && self.status.is_none_or(|s| s == finding.status)
            && self.kind.is_none_or(|k| k == finding.finding.kind)
    }
}

/// A variant's public name (its serde name).
fn name<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn money(usd: Option<f64>) -> String {
    usd.map_or_else(|| "-".to_owned(), |v| format!("${v:.2}"))
}

/// One row of the findings table.
#[derive(Debug, Serialize)]
pub struct FindingRow {
    id: i64,
    severity: &'static str,
    kind: &'static str,
    title: String,
    resource: String,
    account: String,
    region: String,
    impact: String,
    status: &'static str,
    change_request: Option<&'static str>,
}

/// One severity's counts by status.
#[derive(Debug, Serialize)]
struct SeverityCounts {
    severity: &'static str,
    counts: Vec<usize>,
    total: usize,
}

/// `GET /`.
#[derive(Debug, Serialize)]
pub struct Overview {
    statuses: Vec<&'static str>,
    severities: Vec<&'static str>,
    kinds: Vec<&'static str>,
    by_severity: Vec<SeverityCounts>,
    selected: SelectedFilters,
    findings: Vec<FindingRow>,
    total: usize,
}

#[derive(Debug, Serialize)]
struct SelectedFilters {
    severity: &'static str,
    status: &'static str,
    kind: &'static str,
}

/// The overview of `findings` (each with its change request), most severe
/// first, filtered by `filters`; the counts cover every finding.
pub fn overview(
    findings: &[(StoredFinding, Option<StoredChangeRequest>)],
    filters: Filters,
) -> Overview {
    let by_severity = Severity::ALL_DESCENDING
        .iter()
        .map(|severity| {
            let counts: Vec<usize> = STATUSES
                .iter()
                .map(|status| {
                    findings
                        .iter()
                        .filter(|(f, _)| f.finding.severity == *severity && f.status == *status)
                        .count()
                })
                .collect();
            SeverityCounts {
                severity: severity.as_str(),
                total: counts.iter().sum(),
                counts,
            }
        })
        .collect();
    let mut shown: Vec<&(StoredFinding, Option<StoredChangeRequest>)> =
        findings.iter().filter(|(f, _)| filters.admits(f)).collect();
    shown.sort_by_key(|(f, _)| {
        (
            std::cmp::Reverse(f.finding.severity),
            f.status == FindingStatus::Resolved,
            f.id,
        )
    });
    Overview {
        statuses: STATUSES.iter().map(|s| s.as_str()).collect(),
        severities: Severity::ALL_DESCENDING
            .iter()
            .map(|s| s.as_str())
            .collect(),
        kinds: FindingKind::ALL.iter().map(|k| k.as_str()).collect(),
        by_severity,
        selected: SelectedFilters {
            severity: filters.severity.map_or("", Severity::as_str),
            status: filters.status.map_or("", FindingStatus::as_str),
            kind: filters.kind.map_or("", FindingKind::as_str),
        },
        total: findings.len(),
        findings: shown
            .into_iter()
            .map(|(f, cr)| FindingRow {
                id: f.id.get(),
                severity: f.finding.severity.as_str(),
                kind: f.finding.kind.as_str(),
                title: f.finding.title.clone(),
                resource: f.finding.resource.clone(),
                account: f.finding.account.to_string(),
                region: f.finding.region.clone().unwrap_or_else(|| "global".into()),
                impact: money(f.finding.impact_usd_monthly),
                status: f.status.as_str(),
                change_request: cr.as_ref().map(|cr| cr.state.as_str()),
            })
            .collect(),
    }
}

/// A multi-line text as its lines, each neutralised by the formatter (the
/// line breaks are the text's own).
fn lines(text: &str) -> Vec<String> {
    text.trim_end().split('\n').map(str::to_owned).collect()
}

#[derive(Debug, Serialize)]
struct ProposalView {
    advisor: String,
    template_id: String,
    risk: &'static str,
    summary: String,
    changes: String,
    blast_radius: String,
    fallback_reason: Option<String>,
    body: Vec<String>,
    rollback: Vec<String>,
}

#[derive(Debug, Serialize)]
struct VoteView {
    verdict: &'static str,
    approver: String,
    channel: String,
    commit: String,
    at: String,
    state: String,
}

#[derive(Debug, Serialize)]
struct AskView {
    approver: String,
    channel: String,
    delivery: String,
    reminded: bool,
}

#[derive(Debug, Serialize)]
struct ChangeRequestView {
    state: &'static str,
    backend: String,
    branch: String,
    location: String,
    /// The pull request's address, when it is a web page.
    link: Option<String>,
    head_commit: String,
    grouped: bool,
    decided_by: Option<String>,
    decision_channel: Option<String>,
    decided_at: Option<String>,
    reason: Option<String>,
    failure: Option<String>,
    merge_commit: Option<String>,
    outside_change: Option<String>,
    approvals: Vec<VoteView>,
    asks: Vec<AskView>,
}

#[derive(Debug, Serialize)]
struct EventView {
    at: String,
    action: String,
    actor: String,
    channel: Option<String>,
    details: String,
}

/// `GET /findings/{id}` (the chart is passed beside it, as markup).
#[derive(Debug, Serialize)]
pub struct FindingPage {
    id: i64,
    title: String,
    kind: &'static str,
    severity: &'static str,
    status: &'static str,
    resource: String,
    account: String,
    region: String,
    expected: String,
    actual: String,
    impact: String,
    first_seen: String,
    last_seen: String,
    fingerprint: String,
    evidence: Vec<String>,
    has_chart: bool,
    proposal: Option<ProposalView>,
    change_request: Option<ChangeRequestView>,
    refusals: Vec<EventView>,
    audit: Vec<EventView>,
}

fn event_view(e: &AuditEvent) -> EventView {
    let mut details = e.details.clone();
    neutralise_json(&mut details);
    EventView {
        at: e.at.clone(),
        action: e.action.clone(),
        actor: e.actor.clone(),
        channel: e
            .details
            .get("channel")
            .and_then(Value::as_str)
            .map(str::to_owned),
        details: if details.is_null() || details == Value::Object(Default::default()) {
            String::new()
        } else {
            details.to_string()
        },
    }
}

/// The page of one finding.
pub fn finding_page(
    finding: &StoredFinding,
    change_request: Option<&StoredChangeRequest>,
    proposal: Option<&Proposal>,
    audit: &[AuditEvent],
    has_chart: bool,
) -> FindingPage {
    let f = &finding.finding;
    let mut evidence = f.evidence.clone();
    neutralise_json(&mut evidence);
    let evidence = serde_json::to_string_pretty(&evidence).unwrap_or_default();
    FindingPage {
        id: finding.id.get(),
        title: f.title.clone(),
        kind: f.kind.as_str(),
        severity: f.severity.as_str(),
        status: finding.status.as_str(),
        resource: f.resource.clone(),
        account: f.account.to_string(),
        region: f.region.clone().unwrap_or_else(|| "global".into()),
        expected: money(f.expected),
        actual: money(f.actual),
        impact: money(f.impact_usd_monthly),
        first_seen: timestamp(finding.first_seen_at),
        last_seen: timestamp(finding.last_seen_at),
        fingerprint: f.fingerprint.to_string(),
        evidence: lines(&evidence),
        has_chart,
        proposal: proposal.map(|p| ProposalView {
            advisor: p.advisor.clone(),
            template_id: p.template_id.clone(),
            risk: p.risk.as_str(),
            summary: p.summary.clone(),
            changes: p.changes.clone(),
            blast_radius: p.blast_radius.clone(),
            fallback_reason: p.advice.as_ref().and_then(|a| a.fallback_reason.clone()),
            body: lines(&p.body),
            rollback: lines(&p.rollback),
        }),
        change_request: change_request.map(|cr| ChangeRequestView {
            state: cr.state.as_str(),
            backend: cr.backend.clone(),
            branch: cr.branch.clone(),
            location: cr.location.clone(),
            link: crate::endpoint::check_https_url(&cr.location)
                .ok()
                .filter(|u| u.scheme() == "https")
                .map(|_| neutralise(&cr.location).into_owned()),
            head_commit: cr.head_commit.clone(),
            grouped: crate::gitops::group::is_group_branch(&cr.branch),
            decided_by: cr.decided_by.clone(),
            decision_channel: cr.decision_channel.clone(),
            decided_at: cr.decided_at.map(timestamp),
            reason: cr.reason.clone(),
            failure: cr.failure.clone(),
            merge_commit: cr.merge_commit.clone(),
            outside_change: cr.outside_change.as_ref().map(name),
            approvals: cr
                .approvals
                .iter()
                .map(|v| VoteView {
                    verdict: match v.verdict {
                        crate::store::approvals::Verdict::Approve => "approval",
                        crate::store::approvals::Verdict::Reject => "rejection",
                    },
                    approver: v.approver.clone(),
                    channel: v.channel.clone(),
                    commit: v.commit.get(..12).unwrap_or(&v.commit).to_owned(),
                    at: timestamp(v.at),
                    state: name(&v.state),
                })
                .collect(),
            asks: cr
                .asks
                .iter()
                .map(|a| AskView {
                    approver: a.approver.clone(),
                    channel: a.channel.clone(),
                    delivery: name(&a.delivery),
                    reminded: a.reminded_at.is_some(),
                })
                .collect(),
        }),
        refusals: audit
            .iter()
            .filter(|e| e.action.ends_with(".refused"))
            .map(event_view)
            .collect(),
        audit: audit.iter().map(event_view).collect(),
    }
}

#[derive(Debug, Serialize)]
struct ScanRow {
    id: i64,
    started: String,
    finished: String,
    status: String,
    source: String,
    errors: Vec<String>,
}

/// `GET /scans`.
#[derive(Debug, Serialize)]
pub struct ScansPage {
    scans: Vec<ScanRow>,
    partial: usize,
}

/// The scans page: newest first, with each scan's errors.
pub fn scans_page(scans: &[ScanRecord]) -> ScansPage {
    ScansPage {
        partial: scans.iter().filter(|s| !s.errors.is_empty()).count(),
        scans: scans
            .iter()
            .map(|s| ScanRow {
                id: s.id.get(),
                started: timestamp(s.started_at),
                finished: s.finished_at.map_or_else(|| "-".into(), timestamp),
                status: s.status.to_string(),
                source: s.source.clone(),
                errors: s.errors.clone(),
            })
            .collect(),
    }
}

/// The page templates, compiled once.
pub fn templates() -> &'static Result<Environment<'static>, String> {
    static ENV: OnceLock<Result<Environment<'static>, String>> = OnceLock::new();
    ENV.get_or_init(build_environment)
}

fn build_environment() -> Result<Environment<'static>, String> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Auto-escaping is on for `.html` names (minijinja's default); every
    // value that is not already markup is neutralised before it is escaped.
    env.set_formatter(|out, state, value| {
        if value.is_safe() || value.is_undefined() || value.is_none() {
            return minijinja::escape_formatter(out, state, value);
        }
        let text = value.to_string();
        let neutral = minijinja::Value::from(neutralise(&text).into_owned());
        minijinja::escape_formatter(out, state, &neutral)
    });
    let pages = [
        ("base.html", include_str!("templates/base.html")),
        ("overview.html", include_str!("templates/overview.html")),
        ("finding.html", include_str!("templates/finding.html")),
        ("scans.html", include_str!("templates/scans.html")),
        ("login.html", include_str!("templates/login.html")),
        ("message.html", include_str!("templates/message.html")),
    ];
    for (name, source) in pages {
        env.add_template(name, source)
            .map_err(|e| format!("dashboard template {name}: {e}"))?;
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn filters_parse_known_values_and_refuse_others() {
        let f = Filters::parse(&query(&[
            ("severity", "high"),
            ("status", "open"),
            ("kind", "ebs_unattached"),
        ]))
        .unwrap();
        assert_eq!(f.severity, Some(Severity::High));
        assert_eq!(f.status, Some(FindingStatus::Open));
        assert_eq!(f.kind, Some(FindingKind::EbsUnattached));
        assert_eq!(
            Filters::parse(&query(&[("severity", "")])).unwrap(),
            Filters::default()
        );
        assert!(Filters::parse(&query(&[("severity", "<script>")])).is_err());
    }

    #[test]
    fn the_formatter_neutralises_then_escapes() {
        let env = templates().as_ref().unwrap();
        let out = env
            .render_str(
                "{{ t }}",
                minijinja::context! { t => "<b>\u{202e}x</b>\u{1b}[31m" },
            )
            .unwrap();
        // render_str has no .html name: neutralised only.
        assert_eq!(out, "<b>\\u{202e}x</b>\\u{1b}[31m");
        let page = env.get_template("message.html").unwrap();
        let html = page
            .render(minijinja::context! { title => "<script>", message => "a\u{200b}b", authenticated => false })
            .unwrap();
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("a\\u{200b}b"), "{html}");
    }
}
