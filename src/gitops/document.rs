//! What goes into a change request: the remediation, its rollback and the
//! evidence, laid out the same way for every backend.

use std::fmt::Write as _;

use super::{ChangeFile, NewChangeRequest};
use crate::domain::{Finding, FindingId, Neutral, neutralise, neutralise_json};
use crate::remediate::Proposal;

pub fn branch_name(finding: &Finding) -> String {
    format!(
        "draco/{}-{}",
        finding.kind.as_str().replace('_', "-"),
        finding.fingerprint.short()
    )
}

/// The change request for `finding` (stored as `finding_id`), from
/// publishable inputs: the finding and proposal as they may leave the host,
/// and for a cost finding the chart of its series (an SVG, committed beside
/// the remediation and shown in the description).
pub fn change_request(
    finding: &Finding,
    finding_id: FindingId,
    proposal: &Proposal,
    chart: Option<String>,
) -> NewChangeRequest {
    let dir = format!("remediations/{}", finding_dir(finding));
    let ext = proposal.format.file_extension();
    let executable = ext == "sh";
    let chart_path = chart.as_ref().map(|_| format!("{dir}/chart.svg"));
    let body = description(finding, finding_id, proposal, chart_path.as_deref());
    let mut files = vec![
        ChangeFile {
            path: format!("{dir}/remediation.{ext}"),
            contents: proposal.body.clone(),
            executable,
        },
        ChangeFile {
            path: format!("{dir}/rollback.{ext}"),
            contents: proposal.rollback.clone(),
            executable,
        },
        ChangeFile {
            path: format!("{dir}/EVIDENCE.md"),
            contents: evidence(finding),
            executable: false,
        },
    ];
    if let (Some(svg), Some(path)) = (chart, &chart_path) {
        files.push(ChangeFile {
            path: path.clone(),
            contents: svg,
            executable: false,
        });
    }
    NewChangeRequest {
        branch: branch_name(finding),
        // The title is the commit message's first line: one line, always.
        title: format!("[draco] {}", Neutral(&proposal.summary)),
        files,
        body,
        labels: vec![format!("draco:{}", finding.severity.as_str())],
        chart: chart_path,
    }
}

/// The folder of one finding's files: `<kind>-<short fingerprint>`.
pub(super) fn finding_dir(finding: &Finding) -> String {
    format!("{}-{}", finding.kind, finding.fingerprint.short())
}

/// Outside text for Markdown: neutralised (one line, no control or format
/// characters), then every ASCII character Markdown or HTML could read as
/// markup backslash-escaped, so a tag value can neither open an HTML comment
/// that hides the rest of the description from the reviewer, nor a link, a
/// table cell or a code span. Escaped characters render as themselves.
pub(super) struct Md<'a>(pub(super) &'a str);

impl std::fmt::Display for Md<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in neutralise(self.0).chars() {
            if matches!(
                c,
                '\\' | '`'
                    | '*'
                    | '_'
                    | '{'
                    | '}'
                    | '['
                    | ']'
                    | '<'
                    | '>'
                    | '('
                    | ')'
                    | '#'
                    | '!'
                    | '|'
                    | '~'
                    | '&'
            ) {
                f.write_char('\\')?;
            }
            f.write_char(c)?;
        }
        Ok(())
    }
}

/// A fenced block that the content cannot close: the fence is longer than
/// any run of backticks inside it (CommonMark closes a fence only with one
/// at least as long).
pub(super) fn fenced(info: &str, content: &str) -> String {
    let longest = content.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    format!("{fence}{info}\n{content}\n{fence}")
}

pub(super) fn money(usd: Option<f64>) -> String {
    usd.map_or_else(|| "—".to_owned(), |v| format!("${v:.2}"))
}

fn description(
    finding: &Finding,
    finding_id: FindingId,
    proposal: &Proposal,
    chart: Option<&str>,
) -> String {
    let mut md = String::new();
    // Outside text (the finding's, a model's) is neutralised again here:
    // stored rows may predate neutralising, and a description or commit
    // message must not gain lines from a tag value.
    let _ = writeln!(md, "{}\n", Md(&proposal.summary));
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(
        md,
        "| Finding | `{}` ({}) |",
        finding.kind, finding.severity
    );
    let _ = writeln!(md, "| Resource | {} |", Md(&finding.resource));
    let _ = writeln!(
        md,
        "| Account / region | {} / {} |",
        finding.account,
        Md(finding.region.as_deref().unwrap_or("global"))
    );
    let _ = writeln!(
        md,
        "| Impact | {} a month |",
        money(finding.impact_usd_monthly)
    );
    let _ = writeln!(md, "| Risk | {} |", proposal.risk.as_str());
    let _ = writeln!(
        md,
        "| Proposed by | {} advisor, template {} |",
        Md(&proposal.advisor),
        Md(&proposal.template_id)
    );
    let _ = writeln!(md, "| Fingerprint | `{}` |\n", finding.fingerprint);
    evidence_table(&mut md, &finding.evidence);
    if let Some(chart) = chart {
        let _ = writeln!(
            md,
            "**Cost chart.** The last 90 days of the series, the band the model took for normal and the anomalous days: `{chart}` on this branch.\n"
        );
    }
    let _ = writeln!(md, "**What it changes.** {}\n", proposal.changes);
    let _ = writeln!(md, "**Blast radius.** {}\n", proposal.blast_radius);
    let _ = writeln!(
        md,
        "**Rollback.** If the change must be undone:\n\n{}\n",
        fenced("", proposal.rollback.trim_end())
    );
    let _ = writeln!(md, "{}\n", privacy_note(&[proposal]));
    if let Some(advice) = &proposal.advice {
        if let Some(reason) = &advice.fallback_reason {
            let _ = writeln!(
                md,
                "**Model answer not used.** {}. The built-in template was rendered instead.\n",
                Md(reason)
            );
        }
        if let Some(notes) = &advice.notes {
            let _ = writeln!(
                md,
                "**The model's notes** (confidence {:.2}, risk {}; for the reviewer, never executed): {}\n",
                notes.confidence,
                notes.risk.as_str(),
                Md(&notes.summary)
            );
            for (i, step) in notes.steps.iter().enumerate() {
                let _ = writeln!(md, "{}. {}", i + 1, Md(step));
            }
            let _ = writeln!(md, "\nRollback: {}\n", Md(&notes.rollback));
        }
    }
    let _ = writeln!(
        md,
        "**How to approve.** Nothing is applied until a human approves. On the Draco host: `draco approve {finding_id} --as \"<your name>\"`, or `draco reject {finding_id} --as \"<your name>\" --reason \"…\"`. An approval holds for this exact commit only: a push to this branch voids it, and Draco proposes the change again."
    );
    md
}

/// What was kept from the advisors of `proposals` (one, or each finding of
/// a group): nothing left the host, or what the redactor replaced before a
/// model saw the findings (kinds and counts, never values).
pub(super) fn privacy_note(proposals: &[&Proposal]) -> String {
    let asked: Vec<_> = proposals
        .iter()
        .filter_map(|p| p.advice.as_ref())
        .filter(|a| a.advisor != "template" || a.fallback_reason.is_some())
        .collect();
    if asked.is_empty() {
        return "**Privacy.** No model was asked: the built-in template advisor answered on the Draco host.".to_owned();
    }
    let mut counts = std::collections::BTreeMap::<&str, u32>::new();
    for advice in &asked {
        for (kind, n) in &advice.redacted {
            *counts.entry(kind.as_str()).or_default() += n;
        }
    }
    if counts.is_empty() {
        return "**Privacy.** A model was asked; the redactor found nothing personal or secret to keep back.".to_owned();
    }
    let kept: Vec<String> = counts
        .iter()
        .map(|(kind, n)| format!("{n} {}", kind.to_lowercase().replace('_', " ")))
        .collect();
    format!(
        "**Privacy.** Before a model was asked, the redactor replaced {} with placeholders; the values never left the Draco host.",
        kept.join(", ")
    )
}

/// The evidence's top-level facts as a table (nested ones are in
/// `EVIDENCE.md`), at most [`EVIDENCE_ROWS`] rows.
fn evidence_table(md: &mut String, evidence: &serde_json::Value) {
    let Some(map) = evidence.as_object() else {
        return;
    };
    let rows: Vec<(&String, String)> = map
        .iter()
        .filter_map(|(k, v)| match v {
            serde_json::Value::String(s) => Some((k, s.clone())),
            serde_json::Value::Number(n) => Some((k, n.to_string())),
            serde_json::Value::Bool(b) => Some((k, b.to_string())),
            _ => None,
        })
        .take(EVIDENCE_ROWS)
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "**Evidence** (all of it in `EVIDENCE.md`):\n\n| | |\n|---|---|"
    );
    for (key, value) in rows {
        let _ = writeln!(md, "| {} | {} |", Md(key), Md(&value));
    }
    md.push('\n');
}

/// Rows of the evidence table in a description.
const EVIDENCE_ROWS: usize = 15;

pub(super) fn evidence(finding: &Finding) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# {}\n", Md(&finding.title));
    let _ = writeln!(md, "- kind: `{}`", finding.kind);
    let _ = writeln!(md, "- severity: {}", finding.severity);
    let _ = writeln!(md, "- resource: {}", Md(&finding.resource));
    let _ = writeln!(md, "- account: {}", finding.account);
    let _ = writeln!(
        md,
        "- region: {}",
        Md(finding.region.as_deref().unwrap_or("global"))
    );
    let _ = writeln!(md, "- expected: {}", money(finding.expected));
    let _ = writeln!(md, "- actual: {}", money(finding.actual));
    let _ = writeln!(
        md,
        "- impact per month: {}",
        money(finding.impact_usd_monthly)
    );
    let _ = writeln!(md, "- fingerprint: `{}`\n", finding.fingerprint);
    let mut evidence = finding.evidence.clone();
    neutralise_json(&mut evidence);
    let pretty = serde_json::to_string_pretty(&evidence).unwrap_or_else(|_| evidence.to_string());
    let _ = writeln!(md, "{}", fenced("json", &pretty));
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AccountId, FindingKind, Fingerprint, Severity};
    use crate::remediate::{Format, Risk};

    fn hostile() -> (Finding, Proposal) {
        let finding = Finding {
            kind: FindingKind::SgOpenAdminPort,
            severity: Severity::High,
            title: "Security group web\n<!-- hide\u{1b}[8m".into(),
            resource: "sg-1`|x".into(),
            account: AccountId::parse("123456789012").expect("valid"),
            region: Some("us-east-1".into()),
            expected: None,
            actual: None,
            impact_usd_monthly: None,
            evidence: serde_json::json!({"tags": {"Name": "a\n```\n# injected\n````"}}),
            fingerprint: Fingerprint::of(&["x"]),
        };
        let proposal = Proposal {
            advisor: "template".into(),
            template_id: "sg_open_admin_port".into(),
            summary: "Revoke\r\nSigned-off-by: attacker".into(),
            risk: Risk::Medium,
            changes: "c".into(),
            blast_radius: "b".into(),
            format: Format::AwsCli,
            body: "#!/usr/bin/env bash\n".into(),
            rollback: "#!/usr/bin/env bash\n".into(),
            advice: None,
        };
        (finding, proposal)
    }

    #[test]
    fn outside_text_adds_no_line_and_no_markup_to_the_change_request() {
        let (finding, proposal) = hostile();
        let request = change_request(&finding, FindingId::new(7), &proposal, None);
        assert_eq!(request.title, "[draco] Revoke\\r\\nSigned-off-by: attacker");
        assert!(
            !request.body.contains("\nSigned-off-by"),
            "{}",
            request.body
        );
        let evidence = &request.files[2].contents;
        assert!(
            evidence.starts_with(r"# Security group web\\n\<\!-- hide\\u\{1b\}\[8m"),
            "{evidence}"
        );
        assert!(!evidence.contains('\u{1b}'), "{evidence}");
        assert!(evidence.contains("- resource: sg-1\\`\\|x"), "{evidence}");
        // The evidence block is fenced by more backticks than it holds.
        assert!(evidence.contains("`````json\n"), "{evidence}");
        assert!(evidence.trim_end().ends_with("`````"), "{evidence}");
    }
}
