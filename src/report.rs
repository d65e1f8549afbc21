//! What people and machines read: tables for the terminal, JSON for tools.
//!
//! The JSON shape of a finding is a public contract (`draco findings --json`):
//! fields may be added, never renamed or removed.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::audit::AuditEvent;
use crate::domain::{FindingStatus, Neutral, Severity, neutralise, neutralise_json};
use crate::pipeline::ScanReport;
use crate::remediate::Proposal;
use crate::store::{OutsideChangeKind, StoredChangeRequest, StoredFinding, timestamp};

/// A finding with its change request, if any.
pub type Row = (StoredFinding, Option<StoredChangeRequest>);

pub fn finding_json(
    finding: &StoredFinding,
    change_request: Option<&StoredChangeRequest>,
) -> Value {
    let f = &finding.finding;
    json!({
        "id": finding.id,
        "kind": f.kind,
        "severity": f.severity,
        "title": f.title,
        "resource": f.resource,
        "account": f.account,
        "region": f.region,
        "expected": f.expected,
        "actual": f.actual,
        "impact_usd_monthly": f.impact_usd_monthly,
        // Cost anomalies only; null for posture findings.
        "relative_change": f.evidence.get("relative_change"),
        "confidence": f.evidence.get("confidence"),
        "drill_down": f.evidence.get("drill_down"),
        "status": finding.status,
        "fingerprint": f.fingerprint,
        "first_seen_at": timestamp(finding.first_seen_at),
        "last_seen_at": timestamp(finding.last_seen_at),
        "resolved_at": finding.resolved_at.map(timestamp),
        // An open finding without one waits for it (a later scan opens it:
        // `gitops.max_new_per_scan`, or a failed attempt).
        "change_request": change_request.map_or_else(
            || (finding.status == FindingStatus::Open).then(|| json!({ "state": "queued" })),
            |cr| Some(json!({
            "state": cr.state,
            "backend": cr.backend,
            "branch": cr.branch,
            // The exact commit an approval is for.
            "head_commit": cr.head_commit,
            "location": cr.location,
            "decided_by": cr.decided_by,
            "merge_commit": cr.merge_commit,
            "failure": cr.failure,
            // pushed | merged | closed: done on GitHub, not by Draco.
            "outside_change": cr.outside_change,
            // Covers every finding of this kind, account and region
            // (`gitops.group`): a decision on it decides them all.
            "grouped": crate::gitops::group::is_group_branch(&cr.branch),
            // Every vote: {approver, channel, commit, at, state, verdict};
            // state counted | withdrawn | superseded.
            "approvals": cr.approvals,
            // Who was asked about this commit: {approver, channel, state,
            // delivery (queued | sent | failed | held: waiting for
            // approval.max_messages_per_approver_per_day), …}.
            "asks": cr.asks,
        }))),
    })
}

pub fn findings_json(rows: &[Row]) -> Value {
    Value::Array(
        rows.iter()
            .map(|(f, cr)| finding_json(f, cr.as_ref()))
            .collect(),
    )
}

/// A script as its lines, each neutralised: the line breaks are the script's
/// own, anything else that would move the cursor or drive the terminal is shown.
fn neutral_lines(text: &str) -> String {
    text.split('\n')
        .map(|line| neutralise(line))
        .collect::<Vec<_>>()
        .join("\n")
}

fn money(usd: Option<f64>) -> String {
    match usd {
        Some(v) => format!("${v:.2}"),
        None => "-".to_owned(),
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let cut: String = text.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// Left-aligned columns separated by two spaces.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<String>, out: &mut String| {
        let last = cells.len() - 1;
        for (i, cell) in cells.iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                out.push_str(cell);
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push('\n');
    };
    line(header.iter().map(|h| h.to_string()).collect(), &mut out);
    for row in rows {
        line(row.clone(), &mut out);
    }
    out
}

/// `draco scans`: one line per scan, newest first; the first error of a
/// scan that had any, with how many more.
pub fn scans_table(scans: &[crate::store::ScanRecord]) -> String {
    if scans.is_empty() {
        return "No scans yet.\n".to_owned();
    }
    let time = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M:%S").to_string();
    let body: Vec<Vec<String>> = scans
        .iter()
        .map(|scan| {
            let errors = match scan.errors.as_slice() {
                [] => String::new(),
                [one] => truncate(&neutralise(one), 60),
                [first, rest @ ..] => format!(
                    "{} (+{} more)",
                    truncate(&neutralise(first), 50),
                    rest.len()
                ),
            };
            vec![
                scan.id.to_string(),
                time(scan.started_at),
                scan.finished_at.map(time).unwrap_or_else(|| "-".into()),
                scan.status.to_string(),
                truncate(&neutralise(&scan.source), 30),
                errors,
            ]
        })
        .collect();
    table(
        &["ID", "STARTED", "FINISHED", "STATUS", "SOURCE", "ERRORS"],
        &body,
    )
}

pub fn findings_table(rows: &[Row]) -> String {
    if rows.is_empty() {
        return "No findings.\n".to_owned();
    }
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|(f, _)| {
            vec![
                f.id.to_string(),
                f.finding.severity.to_string(),
                f.finding.kind.to_string(),
                truncate(&neutralise(&f.finding.resource), 40),
                f.finding.account.to_string(),
                neutralise(f.finding.region.as_deref().unwrap_or("global")).into_owned(),
                money(f.finding.impact_usd_monthly),
                f.status.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "SEVERITY",
            "KIND",
            "RESOURCE",
            "ACCOUNT",
            "REGION",
            "IMPACT/MO",
            "STATUS",
        ],
        &body,
    )
}

pub fn scan_summary(report: &ScanReport, rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Scan {} ({}): {}",
        report.scan_id, report.status, report.source
    );
    let _ = writeln!(
        out,
        "  {} daily cost points fetched ({} new or restated) with {} Cost Explorer request(s), {} account-region(s) of EC2 inventory",
        report.cost_points,
        report.cost_points_changed,
        report.cost_requests,
        report.regions_scanned
    );
    if !report.scan_errors.is_empty() {
        let _ = writeln!(
            out,
            "  {} part(s) of the scan failed; their findings were left as they were:",
            report.scan_errors.len()
        );
        for error in &report.scan_errors {
            let _ = writeln!(out, "    {}", Neutral(&error.to_string()));
        }
    }
    out.push('\n');
    let current: Vec<&Row> = rows
        .iter()
        .filter(|(f, _)| f.status != crate::domain::FindingStatus::Resolved)
        .collect();
    let by_severity: Vec<Vec<String>> = Severity::ALL_DESCENDING
        .iter()
        .map(|sev| {
            let of: Vec<&&Row> = current
                .iter()
                .filter(|(f, _)| f.finding.severity == *sev)
                .collect();
            let new = of
                .iter()
                .filter(|(f, _)| report.outcome.new.contains(&f.id))
                .count();
            let impacts: Vec<f64> = of
                .iter()
                .filter_map(|(f, _)| f.finding.impact_usd_monthly)
                .collect();
            // "-" as in the rows when no finding has a dollar impact (an
            // open port costs nothing a month, and is not $0.00 of risk).
            // Start from +0.0: an empty float sum is -0.0, "$-0.00".
            let impact = if impacts.is_empty() {
                "-".to_owned()
            } else {
                format!("${:.2}", 0.0 + impacts.iter().sum::<f64>())
            };
            vec![
                sev.to_string(),
                of.len().to_string(),
                new.to_string(),
                impact,
            ]
        })
        .collect();
    out.push_str(&table(
        &["SEVERITY", "FINDINGS", "NEW", "IMPACT/MO"],
        &by_severity,
    ));
    out.push('\n');
    let current_rows: Vec<Row> = current.into_iter().cloned().collect();
    out.push_str(&findings_table(&current_rows));
    out.push('\n');
    let o = &report.outcome;
    let _ = writeln!(
        out,
        "{} new, {} unchanged, {} changed, {} reopened, {} resolved finding(s).",
        o.new.len(),
        o.unchanged.len(),
        o.changed.len(),
        o.reopened.len(),
        o.resolved.len()
    );
    let opened = &report.change_requests_opened;
    if opened.is_empty() && report.change_requests_queued.is_empty() {
        // Failures are listed below, one line each.
        let _ = if report.failures.is_empty() {
            writeln!(
                out,
                "No change request opened: every current finding already has one."
            )
        } else {
            writeln!(
                out,
                "No change request opened: {} finding(s) could not be remediated.",
                report.failures.len()
            )
        };
    } else if !opened.is_empty() {
        // One repository (local) is named once; pull requests each.
        let one_place = opened.iter().all(|cr| cr.location == opened[0].location);
        if one_place {
            let _ = writeln!(
                out,
                "{} change request(s) opened in {}:",
                opened.len(),
                opened[0].location
            );
        } else {
            let _ = writeln!(out, "{} change request(s) opened:", opened.len());
        }
        for cr in opened {
            let recovered = if cr.recovered { " (recovered)" } else { "" };
            let location = if one_place {
                String::new()
            } else {
                format!("  {}", cr.location)
            };
            let _ = writeln!(
                out,
                "  finding {:>3}  {}{recovered}{location}",
                cr.finding_id, cr.branch
            );
        }
    }
    if !report.change_requests_queued.is_empty() {
        let _ = writeln!(
            out,
            "{} finding(s) queued for the next scans (gitops.max_new_per_scan reached).",
            report.change_requests_queued.len()
        );
    }
    for failure in &report.failures {
        let _ = writeln!(
            out,
            "  finding {:>3}  NOT remediated: {}",
            failure.finding_id,
            Neutral(&failure.error)
        );
    }
    if !report.change_requests_opened.is_empty() {
        let _ = writeln!(
            out,
            "\nReview with `draco show <id>`, then `draco approve <id> --as <name>` or `draco reject <id> --as <name> --reason <text>` (<name>: someone in the [[approvers]] directory; see the README's \"Approvals\")."
        );
    }
    out
}

pub fn scan_json(report: &ScanReport, rows: &[Row]) -> Value {
    json!({
        "scan": report,
        "findings": findings_json(rows),
    })
}

pub fn finding_detail(row: &Row, proposal: Option<&Proposal>, audit: &[AuditEvent]) -> String {
    let (f, cr) = row;
    let mut out = String::new();
    // Everything below that came from outside (the cloud, a model, a
    // reviewer's reason) is printed neutralised: stored rows may predate
    // neutralising, and a terminal must not be driven by a tag value.
    let _ = writeln!(out, "Finding {}: {}", f.id, Neutral(&f.finding.title));
    let _ = writeln!(out, "  kind        {}", f.finding.kind);
    let _ = writeln!(out, "  severity    {}", f.finding.severity);
    let _ = writeln!(out, "  status      {}", f.status);
    let _ = writeln!(out, "  resource    {}", Neutral(&f.finding.resource));
    let _ = writeln!(out, "  account     {}", f.finding.account);
    let _ = writeln!(
        out,
        "  region      {}",
        Neutral(f.finding.region.as_deref().unwrap_or("global"))
    );
    let _ = writeln!(out, "  expected    {}", money(f.finding.expected));
    let _ = writeln!(out, "  actual      {}", money(f.finding.actual));
    let _ = writeln!(out, "  impact/mo   {}", money(f.finding.impact_usd_monthly));
    let evidence = &f.finding.evidence;
    if let Some(change) = evidence.get("relative_change").and_then(Value::as_f64) {
        let _ = writeln!(out, "  change      {:+.0}%", change * 100.0);
    }
    if let Some(confidence) = evidence.get("confidence").and_then(Value::as_f64) {
        let _ = writeln!(out, "  confidence  {confidence:.2}");
    }
    for dimension in ["services", "tags"] {
        let contributors = evidence
            .pointer(&format!("/drill_down/{dimension}"))
            .and_then(Value::as_array);
        for c in contributors.into_iter().flatten() {
            let _ = writeln!(
                out,
                "  carried by  {} {}: {} ({:.0}% of the excess)",
                Neutral(c["dimension"].as_str().unwrap_or(dimension)),
                Neutral(c["name"].as_str().unwrap_or("?")),
                money(c["excess_usd"].as_f64()),
                c["share"].as_f64().unwrap_or(0.0) * 100.0,
            );
        }
    }
    let _ = writeln!(out, "  first seen  {}", timestamp(f.first_seen_at));
    let _ = writeln!(out, "  last seen   {}", timestamp(f.last_seen_at));
    let _ = writeln!(out, "  fingerprint {}", f.finding.fingerprint);
    let mut evidence = f.finding.evidence.clone();
    neutralise_json(&mut evidence);
    let evidence = serde_json::to_string_pretty(&evidence).unwrap_or_default();
    let _ = writeln!(out, "\nEvidence:\n{evidence}");
    if let Some(p) = proposal {
        let _ = writeln!(
            out,
            "\nProposal ({} advisor, template {}, risk {}): {}",
            p.advisor,
            p.template_id,
            p.risk.as_str(),
            Neutral(&p.summary)
        );
        let _ = writeln!(out, "  changes:      {}", p.changes);
        let _ = writeln!(out, "  blast radius: {}", p.blast_radius);
        if let Some(advice) = &p.advice {
            if let Some(reason) = &advice.fallback_reason {
                let _ = writeln!(out, "  model answer not used: {}", Neutral(reason));
            }
            if let Some(u) = &advice.usage {
                let _ = writeln!(
                    out,
                    "  model:        {} at {} ({} in / {} out tokens, ~${:.4}{}, prompt {})",
                    u.model,
                    u.provider,
                    u.input_tokens,
                    u.output_tokens,
                    u.estimated_cost_usd,
                    if u.cached { ", cached" } else { "" },
                    u.prompt_version
                );
            }
            if let Some(notes) = &advice.notes {
                let _ = writeln!(
                    out,
                    "  model notes:  {} (confidence {:.2})",
                    Neutral(&notes.summary),
                    notes.confidence
                );
                for step in &notes.steps {
                    let _ = writeln!(out, "    - {}", Neutral(step));
                }
            }
        }
        let _ = writeln!(
            out,
            "\n--- remediation ---\n{}",
            neutral_lines(p.body.trim_end())
        );
        let _ = writeln!(
            out,
            "--- rollback ---\n{}",
            neutral_lines(p.rollback.trim_end())
        );
    }
    if let Some(cr) = cr {
        let _ = writeln!(
            out,
            "\nChange request: {} on {} ({}, {})",
            cr.state.as_str(),
            cr.branch,
            cr.backend,
            cr.location
        );
        if crate::gitops::group::is_group_branch(&cr.branch) {
            let _ = writeln!(
                out,
                "  covers every {} finding of this account and region: a decision on it decides them all",
                f.finding.kind
            );
        }
        for vote in &cr.approvals {
            let _ = writeln!(
                out,
                "  {} by {} via {} on {} at {} ({})",
                match vote.verdict {
                    crate::store::approvals::Verdict::Approve => "approval",
                    crate::store::approvals::Verdict::Reject => "rejection",
                },
                Neutral(&vote.approver),
                vote.channel,
                vote.commit.get(..12).unwrap_or(&vote.commit),
                timestamp(vote.at),
                match vote.state {
                    crate::store::approvals::ApprovalState::Counted => "counted",
                    crate::store::approvals::ApprovalState::Withdrawn => "withdrawn",
                    crate::store::approvals::ApprovalState::Superseded =>
                        "superseded by a newer commit",
                }
            );
        }
        for ask in &cr.asks {
            let _ = writeln!(
                out,
                "  asked {} via {}: {}{}",
                Neutral(&ask.approver),
                ask.channel,
                match ask.delivery {
                    crate::store::approvals::AskDelivery::Held =>
                        "held back by the daily message cap (sent when it allows, most severe first)",
                    crate::store::approvals::AskDelivery::Sent => "sent",
                    crate::store::approvals::AskDelivery::Queued => "queued",
                    crate::store::approvals::AskDelivery::Sending =>
                        "cut short while sending (not sent again: whether it left is unknown)",
                    crate::store::approvals::AskDelivery::Failed => "sending failed",
                },
                if ask.reminded_at.is_some() {
                    ", reminded"
                } else {
                    ""
                }
            );
        }
        if let Some(by) = &cr.decided_by {
            let _ = writeln!(
                out,
                "  decided by {} via {} at {}",
                Neutral(by),
                cr.decision_channel.as_deref().unwrap_or("?"),
                cr.decided_at.map_or_else(|| "?".to_owned(), timestamp)
            );
        }
        if let Some(reason) = &cr.reason {
            let _ = writeln!(out, "  reason: {}", Neutral(reason));
        }
        if let Some(failure) = &cr.failure {
            let _ = writeln!(
                out,
                "  failed: {} (decide again, or the next scan proposes it afresh)",
                Neutral(failure)
            );
        }
        if let Some(commit) = &cr.merge_commit {
            let _ = writeln!(out, "  merged as {}", Neutral(commit));
        }
        if let Some(outside) = cr.outside_change {
            let what = match outside {
                OutsideChangeKind::Pushed => {
                    "PUSHED TO outside Draco: what is on the branch is not what Draco proposed"
                }
                OutsideChangeKind::Merged => {
                    "MERGED outside Draco, without an approval recorded here"
                }
                OutsideChangeKind::Closed => "CLOSED outside Draco",
            };
            let _ = writeln!(out, "  {what} (see the audit trail)");
        }
    }
    if !audit.is_empty() {
        let _ = writeln!(out, "\nAudit trail:");
        for e in audit {
            // Approvals, rejections and refusals name their channel.
            let channel = e
                .details
                .get("channel")
                .and_then(Value::as_str)
                .map(|c| format!(" via {}", Neutral(c)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {}  {:<34} by {}{channel}",
                e.at,
                e.action,
                Neutral(&e.actor)
            );
        }
    }
    out
}
