//! What goes into a change request: the remediation, its rollback and the
//! evidence, laid out the same way for every backend.

use std::fmt::Write as _;

use super::{ChangeFile, NewChangeRequest};
use crate::domain::Finding;
use crate::remediate::Proposal;

pub fn branch_name(finding: &Finding) -> String {
    format!(
        "draco/{}-{}",
        finding.kind.as_str().replace('_', "-"),
        finding.fingerprint.short()
    )
}

pub fn change_request(finding: &Finding, proposal: &Proposal) -> NewChangeRequest {
    let dir = format!(
        "remediations/{}-{}",
        finding.kind,
        finding.fingerprint.short()
    );
    let ext = proposal.format.file_extension();
    let executable = ext == "sh";
    let body = description(finding, proposal);
    NewChangeRequest {
        branch: branch_name(finding),
        title: format!("[draco] {}", proposal.summary),
        files: vec![
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
        ],
        body,
    }
}

fn money(usd: Option<f64>) -> String {
    usd.map_or_else(|| "—".to_owned(), |v| format!("${v:.2}"))
}

fn description(finding: &Finding, proposal: &Proposal) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "{}\n", proposal.summary);
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(
        md,
        "| Finding | `{}` ({}) |",
        finding.kind, finding.severity
    );
    let _ = writeln!(md, "| Resource | `{}` |", finding.resource);
    let _ = writeln!(
        md,
        "| Account / region | {} / {} |",
        finding.account,
        finding.region.as_deref().unwrap_or("global")
    );
    let _ = writeln!(
        md,
        "| Impact | {} a month |",
        money(finding.impact_usd_monthly)
    );
    let _ = writeln!(md, "| Risk | {} |", proposal.risk.as_str());
    let _ = writeln!(
        md,
        "| Proposed by | {} advisor, template `{}` |",
        proposal.advisor, proposal.template_id
    );
    let _ = writeln!(md, "| Fingerprint | `{}` |\n", finding.fingerprint);
    let _ = writeln!(md, "**What it changes.** {}\n", proposal.changes);
    let _ = writeln!(md, "**Blast radius.** {}\n", proposal.blast_radius);
    if let Some(advice) = &proposal.advice {
        if let Some(reason) = &advice.fallback_reason {
            let _ = writeln!(
                md,
                "**Model answer not used.** {reason}. The built-in template was rendered instead.\n"
            );
        }
        if let Some(notes) = &advice.notes {
            let _ = writeln!(
                md,
                "**The model's notes** (confidence {:.2}, risk {}; for the reviewer, never executed): {}\n",
                notes.confidence,
                notes.risk.as_str(),
                notes.summary
            );
            for (i, step) in notes.steps.iter().enumerate() {
                let _ = writeln!(md, "{}. {step}", i + 1);
            }
            let _ = writeln!(md, "\nRollback: {}\n", notes.rollback);
        }
    }
    let _ = writeln!(
        md,
        "Nothing is applied until a human approves this change request."
    );
    md
}

fn evidence(finding: &Finding) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# {}\n", finding.title);
    let _ = writeln!(md, "- kind: `{}`", finding.kind);
    let _ = writeln!(md, "- severity: {}", finding.severity);
    let _ = writeln!(md, "- resource: `{}`", finding.resource);
    let _ = writeln!(md, "- account: {}", finding.account);
    let _ = writeln!(
        md,
        "- region: {}",
        finding.region.as_deref().unwrap_or("global")
    );
    let _ = writeln!(md, "- expected: {}", money(finding.expected));
    let _ = writeln!(md, "- actual: {}", money(finding.actual));
    let _ = writeln!(
        md,
        "- impact per month: {}",
        money(finding.impact_usd_monthly)
    );
    let _ = writeln!(md, "- fingerprint: `{}`\n", finding.fingerprint);
    let pretty = serde_json::to_string_pretty(&finding.evidence)
        .unwrap_or_else(|_| finding.evidence.to_string());
    let _ = writeln!(md, "```json\n{pretty}\n```");
    md
}
