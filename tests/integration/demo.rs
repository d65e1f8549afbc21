use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;

use crate::support::{
    Draco, PLANTED, demo_without_network, describe, git, kinds_and_resources, stderr,
};

#[test]
fn demo_yields_exactly_the_planted_findings() {
    let draco = Draco::new();
    draco.ok(&["demo"]);
    let findings = draco.findings();
    let expected: BTreeSet<(String, String)> = PLANTED
        .iter()
        .map(|(k, r)| (k.to_string(), r.to_string()))
        .collect();
    assert_eq!(kinds_and_resources(&findings), expected);
    assert!(findings.iter().all(|f| f["status"] == "awaiting_approval"));
}

#[test]
fn findings_json_keeps_its_contract() {
    let draco = Draco::new();
    draco.ok(&["demo"]);
    for f in draco.findings() {
        for field in [
            "id",
            "kind",
            "severity",
            "title",
            "resource",
            "account",
            "region",
            "impact_usd_monthly",
            "status",
            "fingerprint",
        ] {
            assert!(f.get(field).is_some(), "missing {field} in {f}");
        }
        assert!(f["id"].is_i64());
        assert!(
            ["critical", "high", "medium", "low"].contains(&f["severity"].as_str().unwrap_or("")),
            "{f}"
        );
        assert_eq!(f["account"].as_str().map(str::len), Some(12));
        assert!(
            f["impact_usd_monthly"].is_null() || f["impact_usd_monthly"].is_f64(),
            "{f}"
        );
        assert_eq!(f["fingerprint"].as_str().map(str::len), Some(64));
    }
}

#[test]
fn severities_and_impacts_are_what_the_planted_problems_warrant() {
    let draco = Draco::new();
    draco.ok(&["demo"]);
    let findings = draco.findings();
    let get = |kind: &str| {
        findings
            .iter()
            .find(|f| f["kind"] == kind)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(get("sg_open_admin_port")["severity"], "critical");
    assert_eq!(get("snapshot_public")["severity"], "critical");
    assert_eq!(get("ebs_unencrypted")["severity"], "medium");
    // 500 GiB of gp3 at $0.08 per GiB-month.
    assert_eq!(get("ebs_unattached")["impact_usd_monthly"], 40.0);
    assert_eq!(get("eip_unassociated")["impact_usd_monthly"], 3.65);
    // The Lambda spike: $410 against about $46 expected, on one day.
    let spike = get("cost_spike");
    let excess = spike["impact_usd_monthly"].as_f64().unwrap_or_default();
    assert!((350.0..375.0).contains(&excess), "{spike}");
    assert_eq!(spike["account"], "402917364518");
    // RDS went from about $62 to $148 a day (plus the slow trend): roughly $86 × 30.
    let shift = get("cost_level_shift");
    let monthly = shift["impact_usd_monthly"].as_f64().unwrap_or_default();
    assert!((2_500.0..3_000.0).contains(&monthly), "{shift}");
    assert!(
        shift["expected"].as_f64().unwrap_or_default() < 70.0,
        "{shift}"
    );
    assert!(
        shift["actual"].as_f64().unwrap_or_default() > 140.0,
        "{shift}"
    );
}

#[test]
fn a_second_demo_is_idempotent() {
    let draco = Draco::new();
    draco.ok(&["demo"]);
    let before = draco.findings();
    let branches_before = git(
        &draco.repository(),
        &["for-each-ref", "--format=%(refname) %(objectname)"],
    );

    let second = draco.ok(&["demo", "--json"]);
    let report: Value = serde_json::from_str(&second).expect("json");
    assert_eq!(report["scan"]["outcome"]["new"], Value::Array(vec![]));
    assert_eq!(
        report["scan"]["outcome"]["unchanged"]
            .as_array()
            .map(Vec::len),
        Some(8)
    );
    assert_eq!(
        report["scan"]["change_requests_opened"],
        Value::Array(vec![])
    );

    let after = draco.findings();
    assert_eq!(before.len(), after.len());
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(
            (b["id"].clone(), b["fingerprint"].clone()),
            (a["id"].clone(), a["fingerprint"].clone())
        );
    }
    let branches_after = git(
        &draco.repository(),
        &["for-each-ref", "--format=%(refname) %(objectname)"],
    );
    assert_eq!(
        branches_before, branches_after,
        "no branch may be created or moved"
    );

    let human = draco.ok(&["demo"]);
    assert!(human.contains("0 new, 8 unchanged"), "{human}");
    assert!(human.contains("No change request opened"), "{human}");
}

#[test]
fn every_finding_gets_a_branch_with_remediation_rollback_and_evidence() {
    let draco = Draco::new();
    draco.ok(&["demo"]);
    let repo = draco.repository();
    for f in draco.findings() {
        let branch = f["change_request"]["branch"]
            .as_str()
            .expect("a branch")
            .to_owned();
        let files = git(&repo, &["ls-tree", "-r", "--name-only", &branch]);
        let short = &f["fingerprint"].as_str().unwrap_or_default()[..12];
        let dir = format!(
            "remediations/{}-{short}",
            f["kind"].as_str().unwrap_or_default()
        );
        for name in ["remediation.sh", "rollback.sh", "EVIDENCE.md"] {
            assert!(
                files.contains(&format!("{dir}/{name}")),
                "{branch} lacks {name}: {files}"
            );
        }
        // The rendered scripts must at least be valid shell.
        for name in ["remediation.sh", "rollback.sh"] {
            let script = git(&repo, &["show", &format!("{branch}:{dir}/{name}")]);
            let check = Command::new("bash")
                .arg("-n")
                .arg("-c")
                .arg(&script)
                .output()
                .expect("bash runs");
            assert!(
                check.status.success(),
                "{branch}/{name} is not valid shell: {}\n{script}",
                describe(&check)
            );
        }
    }
    // Nothing reaches main without approval.
    let main_files = git(&repo, &["ls-tree", "-r", "--name-only", "main"]);
    assert_eq!(main_files, "README.md");
}

#[test]
fn demo_runs_with_no_network_at_all() {
    let draco = Draco::new();
    let out = demo_without_network(&draco, &[]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(draco.findings().len(), PLANTED.len());
}

#[test]
fn show_prints_evidence_proposal_and_audit_trail() {
    let draco = Draco::new();
    draco.ok(&["demo"]);
    let id = draco.finding_id("snapshot_public").to_string();
    let text = draco.ok(&["show", &id]);
    assert!(text.contains("modify-snapshot-attribute"), "{text}");
    assert!(
        text.contains("--operation-type remove --group-names all"),
        "{text}"
    );
    assert!(text.contains("change_request.opened"), "{text}");
    let json: Value = serde_json::from_str(&draco.ok(&["show", &id, "--json"])).expect("json");
    assert_eq!(json["proposal"]["template_id"], "snapshot_public");
    assert_eq!(json["evidence"]["snapshot_id"], "snap-0f9e8d7c6b5a49382");
}

#[test]
fn a_cost_finding_has_a_chart_and_another_finding_does_not() {
    let draco = Draco::new();
    draco.ok(&["demo"]);
    let spike = draco.finding_id("cost_spike").to_string();
    let path = draco.path("spike.svg");
    let path_arg = path.to_str().expect("utf-8 path");
    draco.ok(&["show", &spike, "--chart", path_arg]);
    let svg = std::fs::read_to_string(&path).expect("chart written");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("AWS Lambda"), "the finding's title");
    // The spike's day, and only it, is marked.
    assert_eq!(svg.matches("<circle").count(), 1, "{svg}");
    assert!(!svg.contains("<script"));

    let group = draco.finding_id("sg_open_admin_port").to_string();
    let out = draco.run(&["show", &group, "--chart", path_arg]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(stderr(&out).contains("only cost findings have a chart"));
}

#[test]
fn the_summary_shows_no_dollar_impact_where_no_finding_has_one() {
    let draco = Draco::new();
    let out = draco.ok(&["demo"]);
    // The two critical findings (an open port, a public snapshot) have no
    // monthly dollar impact: "-", as in their rows, not "$0.00".
    let critical = out
        .lines()
        .find(|l| l.starts_with("critical  2"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(critical.trim_end().ends_with('-'), "{critical}");
    let high = out
        .lines()
        .find(|l| l.starts_with("high  "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(high.contains('$'), "{high}");
}
