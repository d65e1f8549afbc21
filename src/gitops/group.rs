//! One change request over several findings (`gitops.group =
//! "kind-account-region"`): every open finding of one kind in one account
//! and region, one script over all their resources, one approval.
//!
//! The change request lives on one branch per kind, account and region
//! (`draco/group/<kind>-<hash>`), and the store keeps a row per finding on
//! that branch: each finding still says where its change is, and a decision
//! on any of them is the decision on all (see
//! [`DecisionStore`](crate::store::DecisionStore)).
//!
//! On the branch, each finding keeps the folder it would have alone
//! (remediation, rollback, evidence, chart) inside the group's folder, and
//! the group's `remediation.sh` / `rollback.sh` run those scripts one after
//! the other. The runners are Draco's own fixed lines around folder names
//! Draco made (a kind and a fingerprint): nothing from the cloud or a model
//! is in them, and each finding's script passed its template's line check.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::document::{Md, change_request, finding_dir, money, privacy_note};
use super::{ChangeFile, NewChangeRequest};
use crate::domain::{Finding, FindingId, FindingKind, Fingerprint, Severity};
use crate::remediate::{Format, Proposal, Risk};

/// What findings a grouped change request gathers: one kind, in one
/// account and region (`None`: a global finding, such as an account's cost).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupKey {
    pub kind: FindingKind,
    pub account: String,
    pub region: Option<String>,
}

impl GroupKey {
    pub fn of(finding: &Finding) -> Self {
        Self {
            kind: finding.kind,
            account: finding.account.to_string(),
            region: finding.region.clone(),
        }
    }

    /// `draco/group/<kind>-<12 hex digits>`: the account and region enter
    /// only hashed, so a policy that keeps account ids off GitHub keeps them
    /// out of branch names too.
    pub fn branch(&self) -> String {
        format!(
            "{GROUP_BRANCH_PREFIX}{}-{}",
            self.kind.as_str().replace('_', "-"),
            self.hash().short()
        )
    }

    fn hash(&self) -> Fingerprint {
        Fingerprint::of(&[
            "group",
            self.kind.as_str(),
            &self.account,
            self.region.as_deref().unwrap_or(""),
        ])
    }
}

/// Branches of grouped change requests start with this.
pub const GROUP_BRANCH_PREFIX: &str = "draco/group/";

/// Whether `branch` holds a grouped change request.
pub fn is_group_branch(branch: &str) -> bool {
    branch.starts_with(GROUP_BRANCH_PREFIX)
}

/// One finding of a group, as it may be published: the finding and its
/// proposal after the publication policy, its stored id, its cost chart.
#[derive(Debug, Clone)]
pub struct Member {
    pub finding: Finding,
    pub id: FindingId,
    pub proposal: Proposal,
    pub chart: Option<String>,
}

/// Rows of the findings table in a group's description. GitHub refuses a
/// pull request body over 65,536 characters; each finding's full record is
/// in its folder on the branch anyway.
const TABLE_ROWS: usize = 50;

/// Distinct "what it changes" and "blast radius" texts shown: findings of
/// one kind mostly share their template's.
const DISTINCT_TEXTS: usize = 3;

/// Characters of a resource id, a summary and a distinct text shown in the
/// description at most: they are the cloud's or a model's text, of any
/// length (an ARN may have 2,048 characters), and fifty rows of them must
/// stay within GitHub's limit. The full texts are in each finding's folder.
const RESOURCE_CHARS: usize = 120;
const SUMMARY_CHARS: usize = 200;
const TEXT_CHARS: usize = 1_000;

/// `text` cut to at most `max` characters, `…` marking a cut.
fn clip(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => text.into(),
        Some((end, _)) => format!("{}…", &text[..end]).into(),
    }
}

/// The change request over `members` (at least one; in the order given,
/// which is the order the runner script applies them).
pub fn group_change_request(key: &GroupKey, members: &[Member]) -> NewChangeRequest {
    let branch = key.branch();
    let dir = format!("remediations/group-{}", branch_tail(&branch));
    let mut files = Vec::new();
    let mut chart = None;
    for member in members {
        let alone = change_request(
            &member.finding,
            member.id,
            &member.proposal,
            member.chart.clone(),
        );
        for file in alone.files {
            let path = file
                .path
                .strip_prefix("remediations/")
                .map_or_else(|| file.path.clone(), |p| format!("{dir}/{p}"));
            if alone.chart.as_deref() == Some(file.path.as_str()) && chart.is_none() {
                chart = Some(path.clone());
            }
            files.push(ChangeFile { path, ..file });
        }
    }
    let shell: Vec<&Member> = members
        .iter()
        .filter(|m| m.proposal.format == Format::AwsCli)
        .collect();
    if !shell.is_empty() {
        files.push(ChangeFile {
            path: format!("{dir}/remediation.sh"),
            contents: runner(key, &shell, "remediation", false),
            executable: true,
        });
        files.push(ChangeFile {
            path: format!("{dir}/rollback.sh"),
            contents: runner(key, &shell, "rollback", true),
            executable: true,
        });
    }
    let severity = members
        .iter()
        .map(|m| m.finding.severity)
        .max()
        .unwrap_or(Severity::Low);
    let region = key.region.as_deref().unwrap_or("global");
    NewChangeRequest {
        title: format!(
            "[draco] {}: {} {} in {}",
            key.kind,
            members.len(),
            if members.len() == 1 {
                "finding"
            } else {
                "findings"
            },
            Md(region)
        ),
        body: description(key, members, &dir, chart.as_deref()),
        branch,
        files,
        labels: vec![format!("draco:{}", severity.as_str())],
        chart,
    }
}

fn branch_tail(branch: &str) -> &str {
    branch.strip_prefix(GROUP_BRANCH_PREFIX).unwrap_or(branch)
}

/// `remediation.sh` or `rollback.sh` of the group: each finding's script of
/// that name in its folder, in order (rollbacks in reverse), stopping at the
/// first that fails.
fn runner(key: &GroupKey, members: &[&Member], script: &str, reverse: bool) -> String {
    let mut sh = String::new();
    let order = if reverse {
        "in reverse order"
    } else {
        "in order"
    };
    let _ = writeln!(sh, "#!/usr/bin/env bash");
    let _ = writeln!(
        sh,
        "# Runs the {script} of each of {} {} findings below, {order}; stops at the first that fails.",
        members.len(),
        key.kind
    );
    let _ = writeln!(
        sh,
        "# Each script is in its finding's folder beside this one. Generated by Draco; review each before merging."
    );
    let _ = writeln!(sh, "set -euo pipefail");
    let _ = writeln!(sh, "here=$(cd \"$(dirname \"$0\")\" && pwd)");
    let lines: Vec<String> = members
        .iter()
        .map(|m| format!("bash \"$here/{}/{script}.sh\"", finding_dir(&m.finding)))
        .collect();
    let lines: Box<dyn Iterator<Item = &String>> = if reverse {
        Box::new(lines.iter().rev())
    } else {
        Box::new(lines.iter())
    };
    for line in lines {
        let _ = writeln!(sh, "{line}");
    }
    sh
}

fn risk_rank(risk: Risk) -> u8 {
    match risk {
        Risk::Low => 0,
        Risk::Medium => 1,
        Risk::High => 2,
    }
}

fn description(key: &GroupKey, members: &[Member], dir: &str, chart: Option<&str>) -> String {
    let mut md = String::new();
    let region = key.region.as_deref().unwrap_or("global");
    let _ = writeln!(
        md,
        "{} findings of kind `{}` in account {}, region {}, in one change request (`gitops.group = \"kind-account-region\"`): one script over all their resources, one approval.\n",
        members.len(),
        key.kind,
        key.account,
        Md(region)
    );
    let impact: f64 = members
        .iter()
        .filter_map(|m| m.finding.impact_usd_monthly)
        .sum();
    let known = members
        .iter()
        .any(|m| m.finding.impact_usd_monthly.is_some());
    let risk = members
        .iter()
        .map(|m| m.proposal.risk)
        .max_by_key(|r| risk_rank(*r))
        .unwrap_or(Risk::Low);
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(md, "| Findings | {} |", members.len());
    let _ = writeln!(
        md,
        "| Account / region | {} / {} |",
        key.account,
        Md(region)
    );
    let _ = writeln!(
        md,
        "| Impact | {} a month in all |",
        money(known.then_some(impact))
    );
    let _ = writeln!(md, "| Highest risk | {} |\n", risk.as_str());
    let _ = writeln!(
        md,
        "| Finding | Resource | Severity | Impact a month | Change |\n|---|---|---|---|---|"
    );
    for member in members.iter().take(TABLE_ROWS) {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            member.id,
            Md(&clip(&member.finding.resource, RESOURCE_CHARS)),
            member.finding.severity,
            money(member.finding.impact_usd_monthly),
            Md(&clip(&member.proposal.summary, SUMMARY_CHARS))
        );
    }
    if members.len() > TABLE_ROWS {
        let _ = writeln!(
            md,
            "\n…and {} more: every finding has its folder on this branch.",
            members.len() - TABLE_ROWS
        );
    }
    let _ = writeln!(
        md,
        "\n**How it runs.** `{dir}/remediation.sh` runs each finding's remediation from its folder (beside its rollback and `EVIDENCE.md`), in the order above, and stops at the first that fails; `rollback.sh` runs their rollbacks in reverse order.\n"
    );
    if let Some(chart) = chart {
        let _ = writeln!(
            md,
            "**Cost charts.** Each cost finding's folder holds `chart.svg`: the last 90 days of its series, the band the model took for normal and the anomalous days (the first is `{chart}`).\n"
        );
    }
    for (title, text) in [
        ("What it changes", distinct(members, |p| &p.changes)),
        ("Blast radius", distinct(members, |p| &p.blast_radius)),
    ] {
        let _ = writeln!(md, "**{title}.** {text}\n");
    }
    let proposals: Vec<&Proposal> = members.iter().map(|m| &m.proposal).collect();
    let _ = writeln!(md, "{}\n", privacy_note(&proposals));
    let first = members
        .first()
        .map_or_else(String::new, |m| m.id.to_string());
    let _ = writeln!(
        md,
        "**How to approve.** Nothing is applied until a human approves, and one decision covers all {} findings. On the Draco host: `draco approve {first} --as \"<your name>\"`, or `draco reject {first} --as \"<your name>\" --reason \"…\"` (any of the findings' numbers does the same). An approval holds for this exact commit only: a push to this branch voids it, and so does a finding joining or leaving the group, after which Draco proposes the change again.",
        members.len()
    );
    md
}

/// The distinct texts `field` gives over the members' proposals, at most
/// [`DISTINCT_TEXTS`] of them.
fn distinct(members: &[Member], field: impl Fn(&Proposal) -> &String) -> String {
    let texts: BTreeSet<&str> = members
        .iter()
        .map(|m| field(&m.proposal).as_str())
        .collect();
    let mut shown: Vec<std::borrow::Cow<'_, str>> = texts
        .iter()
        .take(DISTINCT_TEXTS)
        .map(|t| clip(t, TEXT_CHARS))
        .collect();
    if texts.len() > DISTINCT_TEXTS {
        shown.push("(and others: see each finding's proposal)".into());
    }
    shown.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::AccountId;

    fn member(id: i64, resource: &str, format: Format) -> Member {
        Member {
            finding: Finding {
                kind: FindingKind::EbsUnattached,
                severity: Severity::Low,
                title: format!("Unattached volume {resource}"),
                resource: resource.into(),
                account: AccountId::parse("123456789012").expect("valid"),
                region: Some("eu-west-1".into()),
                expected: None,
                actual: None,
                impact_usd_monthly: Some(8.0),
                evidence: serde_json::json!({}),
                fingerprint: Fingerprint::of(&[resource]),
            },
            id: FindingId::new(id),
            proposal: Proposal {
                advisor: "template".into(),
                template_id: "ebs_unattached".into(),
                summary: format!("Delete {resource}"),
                risk: Risk::Low,
                changes: "Snapshots, then deletes the volume.".into(),
                blast_radius: "Nothing is attached.".into(),
                format,
                body: "#!/usr/bin/env bash\nset -euo pipefail\n".into(),
                rollback: "#!/usr/bin/env bash\nset -euo pipefail\n".into(),
                advice: None,
            },
            chart: None,
        }
    }

    #[test]
    fn one_branch_per_kind_account_and_region_with_the_account_hashed() {
        let a = member(1, "vol-0a", Format::AwsCli);
        let mut b = member(2, "vol-0b", Format::AwsCli);
        assert_eq!(GroupKey::of(&a.finding), GroupKey::of(&b.finding));
        let branch = GroupKey::of(&a.finding).branch();
        assert!(
            branch.starts_with("draco/group/ebs-unattached-"),
            "{branch}"
        );
        assert!(!branch.contains("123456789012"), "{branch}");
        assert!(is_group_branch(&branch));
        b.finding.region = Some("eu-west-2".into());
        assert_ne!(GroupKey::of(&b.finding).branch(), branch);
    }

    #[test]
    fn the_runner_runs_each_findings_script_in_order_and_rolls_back_in_reverse() {
        let members = [
            member(1, "vol-0a", Format::AwsCli),
            member(2, "vol-0b", Format::AwsCli),
            member(3, "vol-0c", Format::Terraform),
        ];
        let key = GroupKey::of(&members[0].finding);
        let request = group_change_request(&key, &members);
        let file = |suffix: &str| {
            request
                .files
                .iter()
                .find(|f| f.path.ends_with(suffix))
                .unwrap_or_else(|| panic!("{suffix} in {:?}", request.files))
        };
        let dir_a = finding_dir(&members[0].finding);
        let dir_b = finding_dir(&members[1].finding);
        let runner = &file(&format!("{}/remediation.sh", branch_tail(&key.branch()))).contents;
        let a = runner.find(&format!("{dir_a}/remediation.sh")).expect("a");
        let b = runner.find(&format!("{dir_b}/remediation.sh")).expect("b");
        assert!(a < b, "{runner}");
        assert!(
            !runner.contains("vol-0c") && !runner.contains(".tf"),
            "{runner}"
        );
        let rollback = &file(&format!("{}/rollback.sh", branch_tail(&key.branch()))).contents;
        let a = rollback.find(&format!("{dir_a}/rollback.sh")).expect("a");
        let b = rollback.find(&format!("{dir_b}/rollback.sh")).expect("b");
        assert!(b < a, "{rollback}");
        // Each finding keeps its own folder, inside the group's.
        assert!(
            file(&format!("{dir_a}/EVIDENCE.md"))
                .path
                .starts_with("remediations/group-")
        );
        assert!(request.body.contains("one decision covers all 3 findings"));
        assert!(
            request.body.contains("$24.00 a month in all"),
            "{}",
            request.body
        );
        assert_eq!(
            request.title,
            "[draco] ebs_unattached: 3 findings in eu-west-1"
        );
    }

    #[test]
    fn a_large_group_keeps_its_description_within_githubs_limit() {
        let members: Vec<Member> = (0..2_000)
            .map(|i| member(i, &format!("vol-{i:08x}"), Format::AwsCli))
            .collect();
        let key = GroupKey::of(&members[0].finding);
        let request = group_change_request(&key, &members);
        assert!(request.body.len() < 65_536, "{}", request.body.len());
        assert!(request.body.contains("and 1950 more"));
    }

    #[test]
    fn hostile_resource_ids_stay_text_in_the_description_and_out_of_the_runner() {
        let hostile = "vol-1\n<!-- hidden | `x` [a](http://e.vil) $(rm -rf /)\r\n# h";
        let mut members = vec![
            member(1, hostile, Format::AwsCli),
            member(2, "vol-0b", Format::AwsCli),
        ];
        members[0].proposal.summary = format!("Delete {hostile}");
        let key = GroupKey::of(&members[0].finding);
        let request = group_change_request(&key, &members);
        assert!(!request.body.contains("<!--"), "{}", request.body);
        assert!(!request.body.contains("](http"), "{}", request.body);
        let row = request
            .body
            .lines()
            .find(|l| l.starts_with("| 1 |"))
            .expect("the hostile finding's row");
        assert_eq!(
            row.matches(" | ").count(),
            4,
            "one row of five cells: {row}"
        );
        let runner = &request
            .files
            .iter()
            .find(|f| {
                f.path
                    .ends_with(&format!("{}/remediation.sh", branch_tail(&key.branch())))
            })
            .expect("the runner")
            .contents;
        let fixed: Vec<&str> = runner
            .lines()
            .filter(|l| !l.starts_with("bash \"$here/"))
            .collect();
        assert_eq!(fixed.len(), 5, "{runner}");
        for line in runner.lines().filter(|l| l.starts_with("bash ")) {
            let dir = line
                .strip_prefix("bash \"$here/")
                .and_then(|l| l.strip_suffix("/remediation.sh\""))
                .expect("Draco's line");
            assert!(
                dir.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
                "{line}"
            );
        }
        assert!(
            !runner.contains("rm -rf") && !runner.contains("vol-1"),
            "{runner}"
        );
    }

    #[test]
    fn long_resource_ids_and_summaries_keep_the_description_within_githubs_limit() {
        // A resource id is the cloud's text (an ARN may be 2,048 characters)
        // and a summary may be a model's: fifty table rows of them must not
        // push the description past what GitHub accepts.
        let members: Vec<Member> = (0..60)
            .map(|i| {
                let long = format!(
                    "arn:aws:iam::123456789012:role/{i:04}/{}",
                    "p_".repeat(1_000)
                );
                let mut m = member(i, &long, Format::AwsCli);
                m.proposal.summary = format!("Delete `{long}` |{}", "*".repeat(1_000));
                m.proposal.changes = format!("{i}{}", "x".repeat(5_000));
                m.proposal.blast_radius = format!("{i}{}", "y".repeat(5_000));
                m
            })
            .collect();
        let key = GroupKey::of(&members[0].finding);
        let request = group_change_request(&key, &members);
        assert!(
            request.body.chars().count() < 65_536,
            "{} characters",
            request.body.chars().count()
        );
        assert!(request.body.contains("and 10 more"));
    }
}
