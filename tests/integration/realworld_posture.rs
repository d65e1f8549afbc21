//! The real-world posture and cost-input cases of `../shared/data/realworld`
//! (see its README), run as a new user would: from the case folder,
//! `draco --data-dir <tmp> --config draco.toml scan --once`. Each asserts the
//! finding a careful engineer expects and the absence of the wrong ones.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::support::{Draco, realworld_case, scan_realworld_case};

/// The kinds of every finding, cost ones included: none but the expected may appear.
fn kinds(findings: &[Value]) -> BTreeSet<String> {
    findings
        .iter()
        .filter_map(|f| f["kind"].as_str())
        .map(str::to_owned)
        .collect()
}

#[test]
fn ssh_open_to_both_halves_of_ipv4_is_a_critical_admin_port_finding() {
    let Some(case) = realworld_case("08-sg-split-halves") else {
        return;
    };
    let draco = Draco::new();
    let (report, findings) = scan_realworld_case(&draco, &case);
    assert_eq!(report["scan"]["status"], "ok", "{report:#}");
    assert_eq!(
        kinds(&findings),
        BTreeSet::from(["sg_open_admin_port".to_owned()]),
        "{findings:#?}"
    );
    let finding = findings
        .iter()
        .find(|f| f["kind"] == "sg_open_admin_port")
        .expect("the finding");
    assert_eq!(finding["severity"], "critical");
    assert_eq!(finding["resource"], "sg-0a00000000000008a");
    let id = finding["id"].as_i64().expect("an id");
    let shown: Value = serde_json::from_str(&draco.ok(&["show", &id.to_string(), "--json"]))
        .expect("show --json is JSON");
    assert_eq!(
        shown["evidence"]["world_open"][0]["ranges"],
        serde_json::json!(["0.0.0.0/1", "128.0.0.0/1"]),
        "{shown:#}"
    );
    assert_eq!(shown["evidence"]["ports"], serde_json::json!([22]));
}

#[test]
fn a_snapshot_of_a_disabled_ami_is_not_orphaned_whether_or_not_the_ami_is_listed() {
    for case in [
        "12-snapshot-disabled-ami",
        "12-snapshot-disabled-ami/control-ami-listed",
    ] {
        let Some(case) = realworld_case(case) else {
            return;
        };
        let draco = Draco::new();
        let (report, findings) = scan_realworld_case(&draco, &case);
        assert_eq!(report["scan"]["status"], "ok", "{report:#}");
        assert_eq!(
            kinds(&findings),
            BTreeSet::new(),
            "{}: {findings:#?}",
            case.display()
        );
    }
}

#[test]
fn a_tiny_negative_credit_residue_does_not_stop_the_scan() {
    let Some(case) = realworld_case("14-cost-tiny-negative-credit") else {
        return;
    };
    let draco = Draco::new();
    let (report, findings) = scan_realworld_case(&draco, &case);
    assert_eq!(report["scan"]["status"], "ok", "{report:#}");
    assert_eq!(report["scan"]["scan_errors"], serde_json::json!([]));
    assert!(
        report["scan"]["cost_points"].as_u64().unwrap_or(0) > 0,
        "{report:#}"
    );
    assert_eq!(kinds(&findings), BTreeSet::new(), "{findings:#?}");
}

#[test]
fn a_tiny_negative_credit_residue_beside_open_ssh_still_reports_the_ssh() {
    let Some(case) = realworld_case("14-cost-tiny-negative-credit/control-plus-open-ssh-group")
    else {
        return;
    };
    let draco = Draco::new();
    let (report, findings) = scan_realworld_case(&draco, &case);
    assert_eq!(report["scan"]["status"], "ok", "{report:#}");
    assert_eq!(
        kinds(&findings),
        BTreeSet::from(["sg_open_admin_port".to_owned()]),
        "{findings:#?}"
    );
    assert!(
        findings
            .iter()
            .any(|f| f["kind"] == "sg_open_admin_port" && f["severity"] == "critical"),
        "{findings:#?}"
    );
}
