//! What goes into a change request: the remediation, its rollback and the
//! evidence, laid out the same way for every backend.

use std::fmt::Write as _;

use super::{ChangeFile, NewChangeRequest};
use crate::domain::{Finding, Neutral, neutralise_json};
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
        // The title is the commit message's first line: one line, always.
        title: format!("[draco] {}", Neutral(&proposal.summary)),
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
    // Outside text (the finding's, a model's) is neutralised again here:
    // stored rows may predate neutralising, and a description or commit
    // message must not gain lines from a tag value.
    let _ = writeln!(md, "{}\n", Neutral(&proposal.summary));
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(
        md,
        "| Finding | `{}` ({}) |",
        finding.kind, finding.severity
    );
    let _ = writeln!(md, "| Resource | `{}` |", Neutral(&finding.resource));
    let _ = writeln!(
        md,
        "| Account / region | {} / {} |",
        finding.account,
        Neutral(finding.region.as_deref().unwrap_or("global"))
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
        Neutral(&proposal.advisor),
        Neutral(&proposal.template_id)
    );
    let _ = writeln!(md, "| Fingerprint | `{}` |\n", finding.fingerprint);
    let _ = writeln!(md, "**What it changes.** {}\n", proposal.changes);
    let _ = writeln!(md, "**Blast radius.** {}\n", proposal.blast_radius);
    if let Some(advice) = &proposal.advice {
        if let Some(reason) = &advice.fallback_reason {
            let _ = writeln!(
                md,
                "**Model answer not used.** {}. The built-in template was rendered instead.\n",
                Neutral(reason)
            );
        }
        if let Some(notes) = &advice.notes {
            let _ = writeln!(
                md,
                "**The model's notes** (confidence {:.2}, risk {}; for the reviewer, never executed): {}\n",
                notes.confidence,
                notes.risk.as_str(),
                Neutral(&notes.summary)
            );
            for (i, step) in notes.steps.iter().enumerate() {
                let _ = writeln!(md, "{}. {}", i + 1, Neutral(step));
            }
            let _ = writeln!(md, "\nRollback: {}\n", Neutral(&notes.rollback));
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
    let _ = writeln!(md, "# {}\n", Neutral(&finding.title));
    let _ = writeln!(md, "- kind: `{}`", finding.kind);
    let _ = writeln!(md, "- severity: {}", finding.severity);
    let _ = writeln!(md, "- resource: `{}`", Neutral(&finding.resource));
    let _ = writeln!(md, "- account: {}", finding.account);
    let _ = writeln!(
        md,
        "- region: {}",
        Neutral(finding.region.as_deref().unwrap_or("global"))
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
    let _ = writeln!(md, "```json\n{pretty}\n```");
    md
}
