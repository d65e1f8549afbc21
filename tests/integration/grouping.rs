//! `gitops.group = "kind-account-region"`: one change request over every
//! finding of one kind in one account and region, on the local backend
//! through the real binary. Findings join it and leave it as scans find
//! and lose them; one approval merges it for all of them, once.

use std::path::Path;

use serde_json::Value;

use crate::support::{Draco, copy_tree, demo_fixtures, describe, git};

/// The demo's eu-west-1 inventory of account 402917364518, which holds one
/// unattached volume.
const INVENTORY: &str = "ec2/402917364518/eu-west-1.json";

/// Adds an unattached volume `id` to the fixtures' inventory.
fn add_volume(fixtures: &Path, id: &str) {
    edit_volumes(fixtures, |volumes| {
        volumes.push(serde_json::json!({
            "VolumeId": id, "Size": 200, "VolumeType": "gp3", "Encrypted": true,
            "State": "available", "CreateTime": "2026-08-15T11:02:00Z",
            "AvailabilityZone": "eu-west-1a", "Attachments": [], "Tags": []
        }));
    });
}

fn remove_volume(fixtures: &Path, id: &str) {
    edit_volumes(fixtures, |volumes| volumes.retain(|v| v["VolumeId"] != id));
}

fn edit_volumes(fixtures: &Path, edit: impl FnOnce(&mut Vec<Value>)) {
    let file = fixtures.join(INVENTORY);
    let mut inventory: Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("json");
    let volumes = inventory["Volumes"].as_array_mut().expect("volumes");
    edit(volumes);
    std::fs::write(&file, inventory.to_string()).expect("write");
}

fn scan(draco: &Draco, fixtures: &Path) {
    let out = draco
        .command()
        .env("DRACO_SOURCE_KIND", "fixtures")
        .env("DRACO_SOURCE_FIXTURES_DIR", fixtures)
        .env("DRACO_GITOPS_GROUP", "kind-account-region")
        .args(["scan", "--once"])
        .output()
        .expect("draco runs");
    assert!(out.status.success(), "{}", describe(&out));
}

/// The unattached-volume findings, by resource.
fn volumes(draco: &Draco) -> Vec<Value> {
    let mut found: Vec<Value> = draco
        .findings()
        .into_iter()
        .filter(|f| f["kind"] == "ebs_unattached")
        .collect();
    found.sort_by_key(|f| f["resource"].as_str().map(str::to_owned));
    found
}

fn runner(draco: &Draco, branch: &str) -> String {
    let dir = format!(
        "remediations/group-{}",
        branch.strip_prefix("draco/group/").expect("a group branch")
    );
    git(
        &draco.repository(),
        &["show", &format!("{branch}:{dir}/remediation.sh")],
    )
}

/// The application on the demo fixtures plus two unattached volumes beside
/// the demo's one (three findings of one group), grouping on, GitHub on
/// `standin`.
async fn grouped_app(
    standin: &crate::github_standin::StandIn,
    dir: &Path,
) -> std::sync::Arc<draco::compose::App> {
    crate::github::app_on_fixtures(
        standin,
        dir,
        &[("DRACO_GITOPS_GROUP", "kind-account-region")],
        |fixtures| {
            add_volume(fixtures, "vol-0a1a1a1a1a1a1a1a1");
            add_volume(fixtures, "vol-0b2b2b2b2b2b2b2b2");
        },
    )
    .await
}

/// The rows of the unattached volumes' group: three.
async fn volume_group(app: &draco::compose::App) -> Vec<draco::store::StoredChangeRequest> {
    let group: Vec<_> = app
        .store
        .change_requests()
        .await
        .expect("read")
        .into_iter()
        .filter(|c| c.branch.starts_with("draco/group/ebs-unattached-"))
        .collect();
    assert_eq!(group.len(), 3, "{group:?}");
    group
}

/// Leaves change request row `id` failed at a head its branch never had.
async fn fail_at_a_stale_head(dir: &Path, id: draco::domain::ChangeRequestId) {
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        dir.join("data").join("draco.db").display()
    ))
    .await
    .expect("db");
    sqlx::query(
        "UPDATE change_requests SET state = 'failed', head_commit = 'a-stale-head', failure = 'its proposal failed' WHERE id = ?",
    )
    .bind(id)
    .execute(&pool)
    .await
    .expect("update");
    pool.close().await;
}

#[test]
fn findings_of_one_kind_account_and_region_share_one_change_request_and_one_approval() {
    let draco = Draco::new();
    let fixtures = draco.path("fixtures");
    copy_tree(&demo_fixtures(), &fixtures);
    add_volume(&fixtures, "vol-0a1a1a1a1a1a1a1a1");
    add_volume(&fixtures, "vol-0b2b2b2b2b2b2b2b2");
    scan(&draco, &fixtures);

    let found = volumes(&draco);
    assert_eq!(found.len(), 3, "{found:?}");
    let cr = |f: &Value, field: &str| f["change_request"][field].as_str().map(str::to_owned);
    let branch = cr(&found[0], "branch").expect("a branch");
    assert!(
        branch.starts_with("draco/group/ebs-unattached-"),
        "{branch}"
    );
    let head = cr(&found[0], "head_commit").expect("a head");
    for f in &found {
        assert_eq!(cr(f, "branch").as_deref(), Some(branch.as_str()), "{f}");
        assert_eq!(cr(f, "head_commit").as_deref(), Some(head.as_str()), "{f}");
        assert_eq!(cr(f, "state").as_deref(), Some("open"), "{f}");
    }
    // Findings of other kinds are alone in their groups, each on its own branch.
    let others: Vec<Value> = draco
        .findings()
        .into_iter()
        .filter(|f| f["kind"] != "ebs_unattached" && f["change_request"]["branch"].is_string())
        .collect();
    assert!(!others.is_empty());
    assert!(
        others
            .iter()
            .all(|f| cr(f, "branch") != Some(branch.clone()))
    );
    // One script runs the three volumes' own scripts.
    let script = runner(&draco, &branch);
    assert_eq!(script.matches("/remediation.sh\"").count(), 3, "{script}");
    assert_eq!(git(&draco.repository(), &["rev-parse", &branch]), head);

    // A fourth volume joins: a new commit on the same branch, for all four.
    add_volume(&fixtures, "vol-0c3c3c3c3c3c3c3c3");
    scan(&draco, &fixtures);
    let found = volumes(&draco);
    assert_eq!(found.len(), 4);
    let joined = cr(&found[0], "head_commit").expect("a head");
    assert_ne!(joined, head, "a new commit voids what was proposed");
    assert!(
        found
            .iter()
            .all(|f| cr(f, "head_commit").as_deref() == Some(joined.as_str())
                && cr(f, "branch").as_deref() == Some(branch.as_str())),
        "{found:?}"
    );
    assert_eq!(
        runner(&draco, &branch).matches("/remediation.sh\"").count(),
        4
    );

    // One resolves itself: it leaves, the others stay in a new commit.
    remove_volume(&fixtures, "vol-0a1a1a1a1a1a1a1a1");
    scan(&draco, &fixtures);
    let all = volumes(&draco);
    let gone: Vec<&Value> = all.iter().filter(|f| f["status"] == "resolved").collect();
    assert_eq!(gone.len(), 1, "{all:?}");
    assert_eq!(cr(gone[0], "state").as_deref(), Some("closed"));
    let left: Vec<&Value> = all.iter().filter(|f| f["status"] != "resolved").collect();
    let left_head = cr(left[0], "head_commit").expect("a head");
    assert_ne!(left_head, joined);
    assert!(
        left.iter()
            .all(|f| cr(f, "head_commit").as_deref() == Some(left_head.as_str()))
    );
    let script = runner(&draco, &branch);
    assert_eq!(script.matches("/remediation.sh\"").count(), 3, "{script}");
    assert!(
        !script.contains(
            gone[0]["fingerprint"]
                .as_str()
                .expect("fp")
                .get(..12)
                .expect("12")
        )
    );

    // One approval, through any of the findings, merges it for all three.
    let first = left[0]["id"].as_i64().expect("id").to_string();
    draco.ok(&["approve", &first, "--as", "Ada Lovelace"]);
    let after = volumes(&draco);
    let merged: Vec<&Value> = after.iter().filter(|f| f["status"] != "resolved").collect();
    assert_eq!(merged.len(), 3);
    assert!(
        merged
            .iter()
            .all(|f| cr(f, "state").as_deref() == Some("merged")),
        "{merged:?}"
    );
    // Single-use: deciding again through another finding of the group is refused.
    let second = left[1]["id"].as_i64().expect("id").to_string();
    let again = draco.run(&["approve", &second, "--as", "Eve"]);
    assert!(!again.status.success(), "{}", describe(&again));
    assert!(
        crate::support::stderr(&again).contains("already"),
        "{}",
        describe(&again)
    );
    let main = git(&draco.repository(), &["log", "--format=%s", "main"]);
    assert_eq!(
        main.matches("ebs_unattached").count(),
        1,
        "merged once: {main}"
    );
    draco.ok(&["audit", "verify"]);
}

/// On GitHub: one pull request per group, holding every finding's folder
/// and the runner, in one tree request (no blob per file); a push by
/// someone else voids it for all its findings, the next scan re-proposes it
/// on the same pull request, and one approval merges it for all, at the
/// commit approved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_github_a_group_is_one_pull_request_and_one_merge() {
    use crate::github::{TOKEN, count};
    use crate::github_standin::StandIn;
    use draco::domain::ChangeRequestState;

    let standin = StandIn::start(TOKEN).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let app = grouped_app(&standin, dir.path()).await;
    app.scan(chrono::Utc::now()).await.expect("scan");
    let crs = app.store.change_requests().await.expect("read");
    let group: Vec<_> = crs
        .iter()
        .filter(|c| c.branch.starts_with("draco/group/ebs-unattached-"))
        .cloned()
        .collect();
    assert_eq!(group.len(), 3, "{crs:?}");
    let branch = group[0].branch.clone();
    let mut branches: Vec<&str> = crs.iter().map(|c| c.branch.as_str()).collect();
    branches.sort_unstable();
    branches.dedup();
    let pulls = standin.pulls();
    assert_eq!(pulls.len(), branches.len(), "one pull request per group");
    let pull = pulls
        .iter()
        .find(|p| p.head == branch)
        .expect("the group's pull request");
    assert!(
        group
            .iter()
            .all(|c| c.location.ends_with(&format!("/pull/{}", pull.number)))
    );
    for c in &group {
        assert!(
            pull.body.contains(&format!("| {} |", c.finding_id)),
            "finding {} missing from {}",
            c.finding_id,
            pull.body
        );
    }
    let files = standin.files(&branch);
    let scripts = files
        .keys()
        .filter(|p| p.starts_with("remediations/group-") && p.ends_with("/remediation.sh"))
        .count();
    assert_eq!(
        scripts,
        4,
        "three findings' scripts and the runner: {:?}",
        files.keys()
    );
    assert_eq!(
        count(&standin, "POST", "/git/blobs"),
        0,
        "contents go in the tree request"
    );

    // Someone pushes to the group's branch: every finding's change request
    // is void, and the next scan proposes the group again on the same pull
    // request.
    standin.push_foreign_commit(&branch);
    app.scan(chrono::Utc::now()).await.expect("scan");
    let again = app
        .store
        .change_requests_on_branch("github", &branch)
        .await
        .expect("read");
    let head = standin.branch_head(&branch).expect("the branch");
    assert_eq!(again.len(), 3);
    assert!(
        again
            .iter()
            .all(|c| c.state == ChangeRequestState::Open && c.head_commit == head),
        "{again:?}"
    );
    assert_eq!(standin.pulls().len(), pulls.len(), "the same pull request");

    // One approval merges it for all three, with the approved commit's sha.
    crate::support::approve_in_process(&app, again[1].finding_id, "Ada Lovelace")
        .await
        .expect("approved and merged");
    let merged = app
        .store
        .change_requests_on_branch("github", &branch)
        .await
        .expect("read");
    assert!(
        merged.iter().all(|c| c.state == ChangeRequestState::Merged),
        "{merged:?}"
    );
    let merges: Vec<_> = standin
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT" && r.path.ends_with("/merge"))
        .collect();
    assert_eq!(merges.len(), 1, "merged once: {merges:?}");
    let body: Value = serde_json::from_slice(&merges[0].body).expect("json");
    assert_eq!(body["sha"].as_str(), Some(head.as_str()));
}

/// An approval read at one head of a group's change request must never be
/// claimed, nor carried out, at a later head: here a volume joins the group
/// between the approver's read and their claim, and the approver's process
/// stops after the claim (a crash). Finishing that decision must not merge
/// the joined volume's script, which nobody saw.
#[tokio::test(flavor = "multi_thread")]
async fn an_approval_read_before_a_finding_joins_never_merges_the_later_head() {
    use chrono::Utc;
    use draco::domain::{DecisionRecord, FindingId};
    use draco::store::{AuditLog, ChangeRequestStore, DecisionStore, SqliteStore};

    let draco = Draco::new();
    let fixtures = draco.path("fixtures");
    copy_tree(&demo_fixtures(), &fixtures);
    add_volume(&fixtures, "vol-0a1a1a1a1a1a1a1a1");
    scan(&draco, &fixtures);
    let first = volumes(&draco)[0]["id"].as_i64().expect("id");
    let store = SqliteStore::open(&draco.data_dir().join("draco.db"))
        .await
        .expect("store");
    // The approver reads the change request (at its first head) ...
    let read = store
        .change_request_for_finding(FindingId::new(first))
        .await
        .expect("read")
        .expect("a change request");
    // ... a scan adds a volume to the group meanwhile (a new head) ...
    add_volume(&fixtures, "vol-0c3c3c3c3c3c3c3c3");
    scan(&draco, &fixtures);
    let joined = volumes(&draco);
    assert_eq!(joined.len(), 3);
    let later = joined[0]["change_request"]["head_commit"]
        .as_str()
        .expect("a head")
        .to_owned();
    assert_ne!(later, read.head_commit);
    // ... and the approver's claim, of what they read, arrives.
    let decision = DecisionRecord {
        approve: true,
        by: "Ada".into(),
        channel: "cli".into(),
        at: Utc::now(),
        reason: None,
    };
    let claimed = store
        .claim_decision(read.id, &read.head_commit, &decision)
        .await
        .expect("claim");
    assert!(
        !claimed,
        "an approval of {} claimed at {later}",
        read.head_commit
    );
    let events = store.audit_events(None).await.expect("audit");
    assert!(
        !events.iter().any(|e| e.action == "change_request.approved"),
        "nobody approved what the group holds now"
    );
    store.close().await;
    // Whatever the approver runs next decides the head they see then, not
    // the stale one: nothing was merged by the stale claim.
    let merged = std::process::Command::new("git")
        .args(["merge-base", "--is-ancestor", &later, "main"])
        .current_dir(draco.repository())
        .status()
        .expect("git runs");
    assert!(
        !merged.success(),
        "{later} merged without an approval of it"
    );
    let out = draco.run(&["approve", &first.to_string(), "--as", "Ada"]);
    assert!(out.status.success(), "{}", describe(&out));
    let after = volumes(&draco);
    assert!(
        after
            .iter()
            .all(|f| f["change_request"]["state"] == "merged"
                && f["change_request"]["head_commit"] == later.as_str()),
        "{after:?}"
    );
    draco.ok(&["audit", "verify"]);
}

/// Two decisions on one group through two of its findings, at the same
/// time (an approval and a rejection, each its own process): exactly one
/// wins, for every finding of the group, and main gets at most one merge.
#[test]
fn concurrent_decisions_through_two_findings_of_a_group_decide_it_once() {
    let draco = Draco::new();
    let fixtures = draco.path("fixtures");
    copy_tree(&demo_fixtures(), &fixtures);
    add_volume(&fixtures, "vol-0a1a1a1a1a1a1a1a1");
    add_volume(&fixtures, "vol-0b2b2b2b2b2b2b2b2");
    scan(&draco, &fixtures);
    let found = volumes(&draco);
    let ids: Vec<String> = found
        .iter()
        .map(|f| f["id"].as_i64().expect("id").to_string())
        .collect();
    let spawn = |args: &[&str]| {
        draco
            .command()
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("draco runs")
    };
    let approve = spawn(&["approve", &ids[0], "--as", "Ada"]);
    let reject = spawn(&["reject", &ids[1], "--as", "Eve", "--reason", "no"]);
    let again = spawn(&["approve", &ids[2], "--as", "Bob"]);
    let outs = [approve, reject, again].map(|c| c.wait_with_output().expect("waits"));
    let won: Vec<usize> = (0..3).filter(|&i| outs[i].status.success()).collect();
    assert_eq!(
        won.len(),
        1,
        "{}",
        outs.iter()
            .map(describe)
            .collect::<Vec<_>>()
            .join("\n---\n")
    );
    let after = volumes(&draco);
    let state = if won[0] == 1 { "closed" } else { "merged" };
    assert!(
        after.iter().all(|f| f["change_request"]["state"] == state),
        "{after:?}"
    );
    let merges = git(&draco.repository(), &["rev-list", "--merges", "main"]);
    assert_eq!(merges.lines().count(), usize::from(won[0] != 1), "{merges}");
    draco.ok(&["audit", "verify"]);
}

/// A group's branch with a stale `failed` row (a finding whose proposal
/// failed when the others were proposed again) beside its open ones: a
/// close by hand on GitHub must still be read back for the open ones, not
/// skipped because the stale row came first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_failed_row_does_not_hide_a_close_by_hand_of_its_group() {
    use crate::github::TOKEN;
    use crate::github_standin::StandIn;
    use draco::domain::ChangeRequestState;

    let standin = StandIn::start(TOKEN).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let app = grouped_app(&standin, dir.path()).await;
    app.scan(chrono::Utc::now()).await.expect("scan");
    let group = volume_group(&app).await;
    let branch = group[0].branch.clone();
    // The first row is left failed at an earlier head, as when its finding's
    // proposal failed while the others were proposed again.
    fail_at_a_stale_head(dir.path(), group[0].id).await;

    standin.close_by_hand(&branch, false);
    app.scan(chrono::Utc::now()).await.expect("scan");
    let after = app
        .store
        .change_requests_on_branch("github", &branch)
        .await
        .expect("read");
    let pulls = standin.pulls();
    for row in after.iter().filter(|c| c.state == ChangeRequestState::Open) {
        let number = crate::github_standin::pull_number(&row.location);
        let pull = pulls
            .iter()
            .find(|p| p.number == number)
            .expect("its pull request");
        assert_eq!(
            pull.state, "open",
            "a row left open on a pull request closed by hand: {row:?}"
        );
    }
}

/// A crash between the backend's update of a group and the store's record
/// of it (here: the group's branch is one commit ahead of what the store
/// says): the group is not stuck. Findings still join it within the next
/// scans, and no row stays open at a head the branch no longer has.
#[test]
fn a_group_whose_branch_moved_past_the_store_is_proposed_again_not_stuck() {
    let draco = Draco::new();
    let fixtures = draco.path("fixtures");
    copy_tree(&demo_fixtures(), &fixtures);
    add_volume(&fixtures, "vol-0a1a1a1a1a1a1a1a1");
    scan(&draco, &fixtures);
    let found = volumes(&draco);
    let branch = found[0]["change_request"]["branch"]
        .as_str()
        .expect("a branch")
        .to_owned();
    // Draco's update reached the branch; the store never heard of it.
    let repo = draco.repository();
    let tip = git(&repo, &["rev-parse", &branch]);
    let commit = git(
        &repo,
        &[
            "-c",
            "user.name=Draco",
            "-c",
            "user.email=draco@localhost",
            "commit-tree",
            &format!("{tip}^{{tree}}"),
            "-p",
            &tip,
            "-m",
            "an update whose record was lost",
        ],
    );
    assert_eq!(commit.len(), 40, "{commit}");
    git(
        &repo,
        &["update-ref", &format!("refs/heads/{branch}"), &commit],
    );
    let moved = git(&repo, &["rev-parse", &branch]);

    add_volume(&fixtures, "vol-0c3c3c3c3c3c3c3c3");
    for _ in 0..3 {
        scan(&draco, &fixtures);
    }
    let after = volumes(&draco);
    assert_eq!(after.len(), 3);
    let head = git(&repo, &["rev-parse", &branch]);
    for f in &after {
        assert_eq!(f["change_request"]["state"], "open", "{after:?}");
        assert_eq!(
            f["change_request"]["head_commit"],
            head.as_str(),
            "{after:?}"
        );
    }
    assert_ne!(head, moved);
}

/// `gitops.group` switched from `finding` to `kind-account-region` and back
/// with change requests open: each finding keeps one change request, new
/// findings get one of the mode in force, a group left over from the other
/// mode is still withdrawn when its finding resolves, and nothing crashes.
#[test]
fn switching_the_grouping_with_change_requests_open_keeps_one_per_finding() {
    let scan_as = |draco: &Draco, fixtures: &Path, group: &str| {
        let out = draco
            .command()
            .env("DRACO_SOURCE_KIND", "fixtures")
            .env("DRACO_SOURCE_FIXTURES_DIR", fixtures)
            .env("DRACO_GITOPS_GROUP", group)
            .args(["scan", "--once"])
            .output()
            .expect("draco runs");
        assert!(out.status.success(), "{}", describe(&out));
    };
    let branch_of = |f: &Value| {
        f["change_request"]["branch"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let draco = Draco::new();
    let fixtures = draco.path("fixtures");
    copy_tree(&demo_fixtures(), &fixtures);
    add_volume(&fixtures, "vol-0a1a1a1a1a1a1a1a1");
    scan_as(&draco, &fixtures, "finding");
    let singles = volumes(&draco);
    assert_eq!(singles.len(), 2);
    assert!(
        singles
            .iter()
            .all(|f| !branch_of(f).starts_with("draco/group/"))
    );

    add_volume(&fixtures, "vol-0b2b2b2b2b2b2b2b2");
    scan_as(&draco, &fixtures, "kind-account-region");
    let mixed = volumes(&draco);
    assert_eq!(mixed.len(), 3);
    let grouped: Vec<&Value> = mixed
        .iter()
        .filter(|f| branch_of(f).starts_with("draco/group/"))
        .collect();
    assert_eq!(
        grouped.len(),
        1,
        "only the new volume is grouped: {mixed:?}"
    );
    assert_eq!(grouped[0]["resource"], "vol-0b2b2b2b2b2b2b2b2");
    for (before, now) in singles
        .iter()
        .zip(mixed.iter().filter(|f| !grouped.contains(f)))
    {
        assert_eq!(before["change_request"], now["change_request"], "untouched");
    }

    add_volume(&fixtures, "vol-0c3c3c3c3c3c3c3c3");
    remove_volume(&fixtures, "vol-0b2b2b2b2b2b2b2b2");
    scan_as(&draco, &fixtures, "finding");
    let back = volumes(&draco);
    let c = back
        .iter()
        .find(|f| f["resource"] == "vol-0c3c3c3c3c3c3c3c3")
        .expect("the new volume");
    assert!(!branch_of(c).starts_with("draco/group/"), "{c}");
    assert_eq!(c["change_request"]["state"], "open", "{c}");
    let b = back
        .iter()
        .find(|f| f["resource"] == "vol-0b2b2b2b2b2b2b2b2")
        .expect("the grouped volume");
    assert_eq!(b["status"], "resolved", "{b}");
    assert_eq!(b["change_request"]["state"], "closed", "{b}");
    let branches = git(&draco.repository(), &["branch", "--list", "draco/group/*"]);
    assert!(branches.is_empty(), "the group is withdrawn: {branches}");
    draco.ok(&["audit", "verify"]);
}

/// A decision on a group in flight (claimed, not yet carried out) is not
/// undone by a stale `failed` row of the same branch whose finding resolves:
/// the pull request stays open for the approval to be carried out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_row_resolving_does_not_close_a_group_under_a_decision_in_flight() {
    use crate::github::TOKEN;
    use crate::github_standin::StandIn;
    use draco::domain::{ChangeRequestState, DecisionRecord};

    let standin = StandIn::start(TOKEN).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let app = grouped_app(&standin, dir.path()).await;
    app.scan(chrono::Utc::now()).await.expect("scan");
    let group = volume_group(&app).await;
    let branch = group[0].branch.clone();
    fail_at_a_stale_head(dir.path(), group[0].id).await;
    // Ada's approval is claimed; carrying it out is still to come.
    let decision = DecisionRecord {
        approve: true,
        by: "Ada Lovelace".into(),
        channel: "cli".into(),
        at: chrono::Utc::now(),
        reason: None,
    };
    assert!(
        app.store
            .claim_decision(group[1].id, &group[1].head_commit, &decision)
            .await
            .expect("claim")
    );
    // The stale row's volume goes away; a scan runs.
    let stale = app
        .store
        .finding(group[0].finding_id)
        .await
        .expect("read")
        .expect("the finding");
    remove_volume(&dir.path().join("fixtures"), &stale.finding.resource);
    app.scan(chrono::Utc::now()).await.expect("scan");
    let pull = standin
        .pulls()
        .into_iter()
        .find(|p| p.head == branch)
        .expect("the pull request");
    assert_eq!(pull.state, "open", "closed under Ada's approval");
    // Ada's approval is carried out, for the two findings she approved.
    crate::support::approve_in_process(&app, group[1].finding_id, "Ada Lovelace")
        .await
        .expect("carried out");
    let after = app
        .store
        .change_requests_on_branch("github", &branch)
        .await
        .expect("read");
    let mut states: Vec<_> = after.iter().map(|c| (c.finding_id, c.state)).collect();
    let mut expected = vec![
        (group[0].finding_id, ChangeRequestState::Closed),
        (group[1].finding_id, ChangeRequestState::Merged),
        (group[2].finding_id, ChangeRequestState::Merged),
    ];
    states.sort_by_key(|s| s.0);
    expected.sort_by_key(|s| s.0);
    assert_eq!(states, expected);
}

/// Webhook deliveries about a group's pull request move every finding's
/// row of it and audit each, with who did it: a merge by hand on GitHub
/// (after Draco's own synchronize, which changes nothing), and a late
/// delivery about the merged pull request then changes nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_about_a_group_pull_request_move_and_audit_every_finding() {
    use crate::github::{TOKEN, signed};
    use crate::github_standin::{REPOSITORY, StandIn, pull_number};
    use draco::domain::ChangeRequestState;
    use draco::store::OutsideChangeKind;

    let standin = StandIn::start(TOKEN).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let app = grouped_app(&standin, dir.path()).await;
    let server = draco::server::spawn_with(
        app.clone(),
        ([127, 0, 0, 1], 0).into(),
        draco::server::Limits::default(),
    )
    .await
    .expect("the server binds");
    let http = reqwest::Client::new();
    let deliver = |delivery: String, body: Vec<u8>| {
        let request = http
            .post(format!("http://{}/webhooks/github", server.addr))
            .header("X-GitHub-Event", "pull_request")
            .header("X-GitHub-Delivery", delivery)
            .header("Content-Type", "application/json")
            .header("X-Hub-Signature-256", signed(&body).expect("signed"))
            .body(body);
        async move { request.send().await.expect("the server answers").status() }
    };
    app.scan(chrono::Utc::now()).await.expect("scan");
    let crs = app.store.change_requests().await.expect("read");
    let mut by_branch: std::collections::BTreeMap<&str, Vec<_>> = Default::default();
    for c in &crs {
        by_branch
            .entry(c.branch.as_str())
            .or_default()
            .push(c.clone());
    }
    let (branch, rows) = by_branch
        .into_iter()
        .max_by_key(|(_, rows)| rows.len())
        .expect("change requests");
    assert!(rows.len() >= 2, "a group of several findings: {crs:?}");
    let lead = &rows[0];
    let event = |action: &str, head: &str, merged: Option<&str>, sender: &str| {
        let number = pull_number(&lead.location);
        serde_json::to_vec(&serde_json::json!({
            "action": action,
            "number": number,
            "pull_request": {
                "number": number, "state": if action == "closed" { "closed" } else { "open" },
                "merged": merged.is_some(), "merge_commit_sha": merged,
                "head": { "ref": branch, "sha": head, "repo": { "full_name": REPOSITORY } },
                "base": { "ref": "main" },
            },
            "repository": { "full_name": REPOSITORY },
            "sender": { "login": sender },
        }))
        .expect("json")
    };
    let own = event("synchronize", &lead.head_commit, None, "draco-bot");
    let merged = event("closed", &lead.head_commit, Some("feedface"), "carol");
    let late = event("closed", &lead.head_commit, None, "bob");
    for (i, body) in [own, merged, late].into_iter().enumerate() {
        assert_eq!(deliver(format!("g-{i}"), body).await, 202);
    }
    draco::events::process_pending(&*app.store, Some(&app.deciding()), chrono::Utc::now())
        .await
        .expect("process");
    let after = app
        .store
        .change_requests_on_branch("github", branch)
        .await
        .expect("read");
    assert_eq!(after.len(), rows.len());
    for c in &after {
        assert_eq!(c.state, ChangeRequestState::Merged, "{c:?}");
        assert_eq!(c.outside_change, Some(OutsideChangeKind::Merged), "{c:?}");
        assert_eq!(c.merge_commit.as_deref(), Some("feedface"), "{c:?}");
    }
    let events = app.store.audit_events(None).await.expect("audit");
    let merges: Vec<&str> = events
        .iter()
        .filter(|e| e.actor == "github:carol" && e.action == "change_request.outside_merged")
        .map(|e| e.subject.as_str())
        .collect();
    assert_eq!(
        merges.len(),
        rows.len(),
        "one audit event per finding: {merges:?}"
    );
    for c in &rows {
        assert!(merges.contains(&format!("finding:{}", c.finding_id).as_str()));
    }
    assert!(
        !events.iter().any(|e| e.actor == "github:bob"),
        "a late close of a merged pull request changes nothing"
    );
    let master = draco::compose::master_key(&app.loaded, &app.database, &app.data_dir)
        .expect("the master key");
    let key = draco::compose::audit_key(&*app.store, &master)
        .await
        .expect("the audit key");
    draco::audit::verify(&events, Some(&key), None).expect("chain intact");
    assert!(events.last().expect("events").keyed);
    server.shutdown().await.expect("the server stops");
}

/// A finding of an open group changes (its volume grows: a higher severity
/// and impact): the group's change request is brought up to date in one new
/// commit, every row moves to it, and the branch holds it.
#[test]
fn a_changed_finding_moves_its_whole_group_to_one_new_commit() {
    let draco = Draco::new();
    let fixtures = draco.path("fixtures");
    copy_tree(&demo_fixtures(), &fixtures);
    add_volume(&fixtures, "vol-0a1a1a1a1a1a1a1a1");
    scan(&draco, &fixtures);
    let before = volumes(&draco);
    assert_eq!(before.len(), 2);
    let head = before[0]["change_request"]["head_commit"]
        .as_str()
        .expect("a head")
        .to_owned();
    let branch = before[0]["change_request"]["branch"]
        .as_str()
        .expect("a branch")
        .to_owned();
    edit_volumes(&fixtures, |volumes| {
        for v in volumes
            .iter_mut()
            .filter(|v| v["VolumeId"] == "vol-0a1a1a1a1a1a1a1a1")
        {
            v["Size"] = serde_json::json!(16_000);
        }
    });
    scan(&draco, &fixtures);
    let after = volumes(&draco);
    let grown = after
        .iter()
        .find(|f| f["resource"] == "vol-0a1a1a1a1a1a1a1a1")
        .expect("the grown volume");
    let old = before
        .iter()
        .find(|f| f["resource"] == "vol-0a1a1a1a1a1a1a1a1")
        .expect("the volume");
    assert_ne!(grown["severity"], old["severity"], "{grown}");
    let tip = git(&draco.repository(), &["rev-parse", &branch]);
    assert_ne!(tip, head, "a new commit");
    for f in &after {
        assert_eq!(f["change_request"]["state"], "open", "{f}");
        assert_eq!(f["change_request"]["head_commit"], tip.as_str(), "{f}");
    }
    let log = git(
        &draco.repository(),
        &["rev-list", &format!("{head}..{branch}")],
    );
    assert_eq!(log.lines().count(), 1, "one commit for the group: {log}");
    draco.ok(&["audit", "verify"]);
}
