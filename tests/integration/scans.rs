//! `draco scans`, and scans that a dead process left `running`.

use std::time::Duration;

use serde_json::Value;

use crate::support::{Draco, describe};

fn scans(draco: &Draco) -> Vec<Value> {
    match serde_json::from_str(&draco.ok(&["scans", "--json"])) {
        Ok(Value::Array(items)) => items,
        other => panic!("scans --json is not an array: {other:?}"),
    }
}

#[test]
fn scans_lists_each_scan_with_its_status_newest_first() {
    let draco = Draco::new();
    draco.ok(&["demo"]);
    draco.ok(&["demo"]);
    let list = scans(&draco);
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["id"], 2);
    for scan in &list {
        assert_eq!(scan["status"], "ok", "{scan}");
        assert!(scan["started_at"].is_string() && scan["finished_at"].is_string());
        assert_eq!(scan["errors"], Value::Array(vec![]));
        assert!(scan["source"].as_str().unwrap().contains("demo"), "{scan}");
    }
    let table = draco.ok(&["scans"]);
    assert!(table.starts_with("ID"), "{table}");
    assert_eq!(table.lines().count(), 3, "{table}");
}

/// What a `kill -9` during a scan leaves: a scan row still `running`.
async fn leave_a_running_scan(draco: &Draco) {
    let db = draco::app::database_path(&draco.data_dir());
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO scans (source, started_at, status) VALUES ('fixtures (built-in demo)', '2026-12-01T00:00:00.000000Z', 'running')",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
}

#[tokio::test]
async fn a_scan_left_running_by_a_dead_process_is_marked_interrupted_by_the_next() {
    let draco = Draco::new();
    draco.ok(&["demo"]);
    leave_a_running_scan(&draco).await;
    assert_eq!(scans(&draco)[0]["status"], "running");

    draco.ok(&["demo"]);
    let list = scans(&draco);
    assert_eq!(list.len(), 3);
    assert_eq!(list[0]["status"], "ok");
    assert_eq!(list[1]["status"], "interrupted");
    assert!(list[1]["finished_at"].is_string());
    assert!(!list.iter().any(|s| s["status"] == "running"));
    let audit = draco.ok(&["audit", "verify"]);
    assert!(audit.contains("intact"), "{audit}");
}

#[test]
fn a_second_scan_waits_for_the_first_then_says_it_gave_up() {
    let draco = Draco::new();
    draco.ok(&["demo"]);
    // Hold the scan lock as a scan in progress would.
    let lock_path = draco::app::database_path(&draco.data_dir()).with_extension("db.scan");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .unwrap();
    lock.lock().unwrap();

    let started = std::time::Instant::now();
    let out = draco
        .command()
        .env("DRACO_SCAN_LOCK_WAIT_SECS", "1")
        .arg("demo")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(started.elapsed() >= Duration::from_secs(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another scan is running") && err.contains("scan.lock_wait_secs"),
        "{err}"
    );
    // Released: the next one runs.
    drop(lock);
    draco.ok(&["demo"]);
    assert_eq!(scans(&draco).len(), 2, "the refused scan left no row");
}

#[test]
fn concurrent_demos_on_one_data_dir_all_succeed_one_at_a_time() {
    let draco = Draco::new();
    let children: Vec<_> = (0..4)
        .map(|_| {
            draco
                .command()
                .arg("demo")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", describe(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("locked") && !err.contains("NOT"), "{err}");
    }
    let list = scans(&draco);
    assert_eq!(list.len(), 4);
    assert!(list.iter().all(|s| s["status"] == "ok"), "{list:?}");
    let findings = draco.findings();
    assert_eq!(findings.len(), 8, "no duplicates");
}

#[test]
fn twenty_kill_nines_on_one_data_dir_leave_nothing_running_or_twice() {
    let draco = Draco::new();
    for i in 0..20u64 {
        let mut child = draco
            .command()
            .arg("demo")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Spread over a demo's run: opening the store, scanning, proposing,
        // opening change requests.
        std::thread::sleep(Duration::from_millis(i * 47 % 900));
        let _ = child.kill();
        let _ = child.wait();
    }
    draco.ok(&["demo"]);
    let list = scans(&draco);
    assert!(
        list.iter().all(|s| s["status"] != "running"),
        "a scan is left running: {list:?}"
    );
    let findings = draco.findings();
    assert_eq!(findings.len(), 8, "no duplicate findings: {findings:?}");
    assert!(
        findings.iter().all(|f| f["status"] == "awaiting_approval"),
        "every finding has its one change request: {findings:?}"
    );
    let second = draco.ok(&["demo"]);
    assert!(second.contains("0 new, 8 unchanged"), "{second}");
    draco.ok(&["audit", "verify"]);
}

/// `gitops.max_new_per_scan`: a scan opens at most that many change
/// requests, most severe and costly first; the others wait as `queued` and
/// the next scans open them.
#[test]
fn change_requests_beyond_the_per_scan_limit_wait_for_the_next_scans() {
    let draco = crate::support::Draco::new();
    let run = |args: &[&str]| {
        let out = draco
            .command()
            .env("DRACO_GITOPS_MAX_NEW_PER_SCAN", "3")
            .args(args)
            .output()
            .expect("draco runs");
        assert!(out.status.success(), "{}", crate::support::describe(&out));
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let text = run(&["demo"]);
    assert!(text.contains("queued for the next scans"), "{text}");
    let findings: Vec<serde_json::Value> =
        serde_json::from_str(&run(&["findings", "--json"])).expect("json");
    let state = |f: &serde_json::Value| f["change_request"]["state"].as_str().map(str::to_owned);
    let opened: Vec<&serde_json::Value> = findings
        .iter()
        .filter(|f| state(f).as_deref() == Some("open"))
        .collect();
    let queued: Vec<&serde_json::Value> = findings
        .iter()
        .filter(|f| state(f).as_deref() == Some("queued"))
        .collect();
    assert_eq!(opened.len(), 3, "{findings:?}");
    assert_eq!(queued.len(), findings.len() - 3, "{findings:?}");
    let rank = |f: &serde_json::Value| match f["severity"].as_str() {
        Some("critical") => 3,
        Some("high") => 2,
        Some("medium") => 1,
        _ => 0,
    };
    let least_opened = opened.iter().map(|f| rank(f)).min().unwrap_or(0);
    let most_queued = queued.iter().map(|f| rank(f)).max().unwrap_or(0);
    assert!(
        least_opened >= most_queued,
        "most severe first: {findings:?}"
    );

    // The next scans open the rest, three at a time.
    run(&["demo"]);
    run(&["demo"]);
    let findings: Vec<serde_json::Value> =
        serde_json::from_str(&run(&["findings", "--json"])).expect("json");
    assert!(
        findings.iter().all(|f| state(f).as_deref() == Some("open")),
        "{findings:?}"
    );
}

/// A finding whose dollar impact moved by more than a quarter gets its local
/// change request brought up to date: a new commit on the same branch.
#[test]
fn a_changed_finding_moves_its_local_branch_to_a_new_commit() {
    let draco = crate::support::Draco::new();
    let fixtures = draco.path("fixtures");
    crate::support::copy_tree(&crate::support::demo_fixtures(), &fixtures);
    let scan = || {
        let out = draco
            .command()
            .env("DRACO_SOURCE_KIND", "fixtures")
            .env("DRACO_SOURCE_FIXTURES_DIR", &fixtures)
            .args(["scan", "--once"])
            .output()
            .expect("draco runs");
        assert!(out.status.success(), "{}", crate::support::describe(&out));
    };
    scan();
    let id = draco.finding_id("ebs_unattached");
    let branch = draco.finding(id)["change_request"]["branch"]
        .as_str()
        .expect("branch")
        .to_owned();
    let before = crate::support::git(&draco.repository(), &["rev-parse", &branch]);

    let file = fixtures.join("ec2/402917364518/eu-west-1.json");
    let text = std::fs::read_to_string(&file).expect("read");
    std::fs::write(&file, text.replacen("\"Size\": 500", "\"Size\": 2000", 1)).expect("write");
    scan();
    let after = crate::support::git(&draco.repository(), &["rev-parse", &branch]);
    assert_ne!(before, after, "a new commit");
    assert_eq!(
        draco.finding(id)["change_request"]["head_commit"].as_str(),
        Some(after.as_str())
    );
    let evidence = crate::support::git(
        &draco.repository(),
        &[
            "show",
            &format!(
                "{after}:remediations/ebs_unattached-{}/EVIDENCE.md",
                &branch["draco/ebs-unattached-".len()..]
            ),
        ],
    );
    assert!(evidence.contains("2000"), "{evidence}");
}
