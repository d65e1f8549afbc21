//! What goes into a change request: the remediation, its rollback and the
//! evidence, laid out the same way for every backend.

use std::fmt::Write as _;

use super::{ChangeFile, NewChangeRequest};
use crate::domain::{Finding, Neutral, neutralise, neutralise_json};
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
        labels: vec![format!("draco:{}", finding.severity.as_str())],
    }
}

/// Outside text for Markdown: neutralised (one line, no control or format
/// characters), then every ASCII character Markdown or HTML could read as
/// markup backslash-escaped, so a tag value can neither open an HTML comment
/// that hides the rest of the description from the reviewer, nor a link, a
/// table cell or a code span. Escaped characters render as themselves.
struct Md<'a>(&'a str);

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
fn fenced(info: &str, content: &str) -> String {
    let longest = content.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    format!("{fence}{info}\n{content}\n{fence}")
}

fn money(usd: Option<f64>) -> String {
    usd.map_or_else(|| "—".to_owned(), |v| format!("${v:.2}"))
}

fn description(finding: &Finding, proposal: &Proposal) -> String {
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
    let _ = writeln!(md, "**What it changes.** {}\n", proposal.changes);
    let _ = writeln!(md, "**Blast radius.** {}\n", proposal.blast_radius);
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
        "Nothing is applied until a human approves this change request."
    );
    md
}

fn evidence(finding: &Finding) -> String {
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
        let request = change_request(&finding, &proposal);
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
