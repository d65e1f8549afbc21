use std::process::Stdio;

use crate::support::{Draco, describe, git, stderr};

#[test]
fn approve_merges_the_branch_into_main() {
    let draco = Draco::new();
    draco.ok(&["demo"]);
    let id = draco.finding_id("sg_open_admin_port");
    let finding = draco.finding(id);
    let branch = finding["change_request"]["branch"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let head = git(&draco.repository(), &["rev-parse", &branch]);

    let out = draco.ok(&["approve", &id.to_string(), "--as", "Ada Lovelace"]);
    assert!(out.contains("merged"), "{out}");

    let repo = draco.repository();
    // The approved commit is now part of main, through a merge commit naming the approver.
    let ancestor = std::process::Command::new("git")
        .args(["--git-dir"])
        .arg(&repo)
        .args(["merge-base", "--is-ancestor", &head, "main"])
        .status()
        .expect("git runs");
    assert!(ancestor.success(), "approved commit is not in main");
    let message = git(&repo, &["log", "-1", "--format=%B", "main"]);
    assert!(
        message.contains("Approved by Ada Lovelace via cli"),
        "{message}"
    );
    let parents = git(&repo, &["log", "-1", "--format=%P", "main"]);
    assert_eq!(parents.split_whitespace().count(), 2, "a merge commit");
    let files = git(&repo, &["ls-tree", "-r", "--name-only", "main"]);
    assert!(files.contains("remediation.sh"), "{files}");

    let after = draco.finding(id);
    assert_eq!(after["status"], "approved");
    assert_eq!(after["change_request"]["state"], "merged");
    assert_eq!(after["change_request"]["decided_by"], "Ada Lovelace");
    draco.ok(&["audit", "verify"]);
}

#[test]
fn reject_closes_without_merging() {
    let draco = Draco::new();
    draco.ok(&["demo"]);
    let id = draco.finding_id("snapshot_public");
    let finding = draco.finding(id);
    let branch = finding["change_request"]["branch"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let main_before = git(&draco.repository(), &["rev-parse", "main"]);

    draco.ok(&[
        "reject",
        &id.to_string(),
        "--as",
        "Bob",
        "--reason",
        "the partner still reads it",
    ]);

    let repo = draco.repository();
    assert_eq!(
        git(&repo, &["rev-parse", "main"]),
        main_before,
        "main must not move"
    );
    let heads = git(
        &repo,
        &["for-each-ref", "--format=%(refname)", "refs/heads"],
    );
    assert!(!heads.contains(&branch), "branch still open: {heads}");
    let closed = git(
        &repo,
        &["for-each-ref", "--format=%(refname)", "refs/closed"],
    );
    assert!(
        closed.contains(&branch),
        "rejected commit not kept for the record: {closed}"
    );

    let after = draco.finding(id);
    assert_eq!(after["status"], "rejected");
    assert_eq!(after["change_request"]["state"], "closed");
    let shown = draco.ok(&["show", &id.to_string()]);
    assert!(shown.contains("the partner still reads it"), "{shown}");
}

#[test]
fn a_decision_is_single_use() {
    let draco = Draco::new();
    draco.ok(&["demo"]);
    let id = draco.finding_id("ebs_unattached").to_string();
    draco.ok(&["approve", &id, "--as", "Ada"]);

    let again = draco.run(&["approve", &id, "--as", "Mallory"]);
    assert_eq!(again.status.code(), Some(1), "{}", describe(&again));
    assert!(
        stderr(&again).contains("already approved by Ada"),
        "{}",
        describe(&again)
    );

    let reject = draco.run(&["reject", &id, "--as", "Mallory", "--reason", "x"]);
    assert_eq!(reject.status.code(), Some(1), "{}", describe(&reject));
}

#[test]
fn concurrent_approvals_merge_once() {
    let draco = Draco::new();
    draco.ok(&["demo"]);
    let id = draco.finding_id("eip_unassociated").to_string();
    let children: Vec<_> = ["Ada", "Grace", "Linus", "Barbara"]
        .iter()
        .map(|name| {
            draco
                .command()
                .args(["approve", &id, "--as", name])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().expect("wait"))
        .collect();
    let succeeded = outputs.iter().filter(|o| o.status.success()).count();
    assert_eq!(
        succeeded,
        1,
        "{:#?}",
        outputs.iter().map(describe).collect::<Vec<_>>()
    );
    let merges = git(&draco.repository(), &["rev-list", "--merges", "main"]);
    assert_eq!(merges.lines().count(), 1, "exactly one merge commit");
    draco.ok(&["audit", "verify"]);
}

#[test]
fn approving_an_unknown_finding_is_a_usage_error() {
    let draco = Draco::new();
    draco.ok(&["demo"]);
    let out = draco.run(&["approve", "9999", "--as", "Ada"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        stderr(&out).contains("no finding 9999"),
        "{}",
        describe(&out)
    );
}

#[test]
fn a_rejection_needs_a_reason_and_a_name() {
    let draco = Draco::new();
    draco.ok(&["demo"]);
    let numeric_id = draco.finding_id("cost_spike");
    let id = numeric_id.to_string();
    let out = draco.run(&["reject", &id, "--as", "Ada", "--reason", "   "]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let out = draco.run(&["approve", &id, "--as", " "]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    // Nothing was decided by those attempts.
    let f = draco.finding(numeric_id);
    assert_eq!(f["change_request"]["state"], "open");
}

#[test]
fn a_branch_moved_after_review_is_not_merged() {
    let draco = Draco::new();
    draco.ok(&["demo"]);
    let id = draco.finding_id("ebs_unencrypted");
    let finding = draco.finding(id);
    let branch = finding["change_request"]["branch"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let repo = draco.repository();
    // Someone pushes another commit on the branch after the proposal was recorded.
    let tree = git(&repo, &["rev-parse", &format!("{branch}^{{tree}}")]);
    let head = git(&repo, &["rev-parse", &branch]);
    let sneaky = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(&repo)
        .args(["commit-tree", &tree, "-p", &head, "-m", "sneaky"])
        .env("GIT_AUTHOR_NAME", "m")
        .env("GIT_AUTHOR_EMAIL", "m@example.invalid")
        .env("GIT_COMMITTER_NAME", "m")
        .env("GIT_COMMITTER_EMAIL", "m@example.invalid")
        .output()
        .expect("git");
    let sneaky = String::from_utf8_lossy(&sneaky.stdout).trim().to_owned();
    git(
        &repo,
        &["update-ref", &format!("refs/heads/{branch}"), &sneaky],
    );
    let main_before = git(&repo, &["rev-parse", "main"]);

    let out = draco.run(&["approve", &id.to_string(), "--as", "Ada"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        stderr(&out).contains("not at the approved commit")
            && stderr(&out).contains("marked failed"),
        "{}",
        describe(&out)
    );
    assert_eq!(git(&repo, &["rev-parse", "main"]), main_before);

    // Not stuck: visible as failed, with no approval recorded …
    let f = draco.finding(id);
    assert_eq!(f["change_request"]["state"], "failed", "{f}");
    assert_eq!(f["status"], "open", "{f}");
    assert!(f["change_request"]["decided_by"].is_null(), "{f}");
    // … re-proposed by the next scan on Draco's own commit (the pushed one is kept aside) …
    draco.ok(&["demo"]);
    let f = draco.finding(id);
    assert_eq!(f["change_request"]["state"], "open", "{f}");
    let new_head = git(&repo, &["rev-parse", &branch]);
    assert_ne!(new_head, sneaky);
    assert_eq!(
        git(
            &repo,
            &["rev-parse", &format!("refs/failed/{branch}/{sneaky}")]
        ),
        sneaky
    );
    // … and approvable again.
    draco.ok(&["approve", &id.to_string(), "--as", "Ada"]);
    assert_eq!(draco.finding(id)["change_request"]["state"], "merged");
    assert_eq!(draco.findings().len(), 8, "no duplicate finding");
    draco.ok(&["audit", "verify"]);
}

#[test]
fn approving_after_the_repository_was_removed_fails_visibly_and_recovers() {
    let draco = Draco::new();
    draco.ok(&["demo"]);
    let id = draco.finding_id("snapshot_public");
    std::fs::remove_dir_all(draco.repository()).unwrap();

    let out = draco.run(&["approve", &id.to_string(), "--as", "Ada"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(stderr(&out).contains("marked failed"), "{}", describe(&out));
    let f = draco.finding(id);
    assert_eq!(f["change_request"]["state"], "failed", "{f}");

    // Rejecting is possible too (decided again), and so is the next scan.
    draco.ok(&["demo"]);
    assert_eq!(draco.finding(id)["change_request"]["state"], "open");
    let out = draco.ok(&["approve", &id.to_string(), "--as", "Ada"]);
    assert!(out.contains("merged"), "{out}");
    draco.ok(&["audit", "verify"]);
}

/// A merge done but not recorded (a crash, or a store error after the
/// merge): completing it later records that approval's own merge commit,
/// not whatever main points at by then.
#[tokio::test(flavor = "multi_thread")]
async fn a_resumed_approval_records_its_own_merge_commit() {
    use chrono::Utc;
    use draco::domain::{DecisionRecord, FindingId};
    use draco::store::{ChangeRequestStore, DecisionStore, SqliteStore};

    let draco = Draco::new();
    draco.ok(&["demo"]);
    let first = draco.finding_id("ebs_unattached");
    let later = draco.finding_id("eip_unassociated");
    let store = SqliteStore::open(&draco.data_dir().join("draco.db"))
        .await
        .unwrap();
    let cr = store
        .change_request_for_finding(FindingId::new(first))
        .await
        .unwrap()
        .unwrap();
    let decision = DecisionRecord {
        approve: true,
        by: "Ada".into(),
        channel: "cli".into(),
        at: Utc::now(),
        reason: None,
    };
    assert!(
        store
            .claim_decision(cr.id, &cr.head_commit, &decision)
            .await
            .unwrap()
    );
    store.close().await;
    let out = draco.run(&["approve", &first.to_string(), "--as", "Ada"]);
    assert!(out.status.success(), "{}", describe(&out));
    let own_merge = draco.finding(first)["change_request"]["merge_commit"]
        .as_str()
        .unwrap()
        .to_owned();
    // Main moves on; then `first` is found approved-but-unrecorded again
    // (as after a crash between merge and record) and completed once more.
    draco.ok(&["approve", &later.to_string(), "--as", "Bob"]);
    let main_now = git(&draco.repository(), &["rev-parse", "main"]);
    assert_ne!(main_now, own_merge);
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        draco.data_dir().join("draco.db").display()
    ))
    .await
    .unwrap();
    sqlx::query("UPDATE change_requests SET state = 'approved', merge_commit = NULL WHERE id = ?")
        .bind(cr.id)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    draco.ok(&["approve", &first.to_string(), "--as", "Ada"]);
    assert_eq!(
        draco.finding(first)["change_request"]["merge_commit"],
        own_merge.as_str(),
        "the approval's own merge, not main's head {main_now}"
    );
}

/// A crash between recording an approval and merging leaves it "approved";
/// the approver finishes it at once, anyone else only once it is abandoned.
#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_approval_is_finished_by_its_approver_or_once_abandoned() {
    use chrono::{Duration, Utc};
    use draco::domain::{DecisionRecord, FindingId};
    use draco::store::{ChangeRequestStore, DecisionStore};

    let draco = Draco::new();
    draco.ok(&["demo"]);
    let fresh = draco.finding_id("ebs_unattached");
    let stale = draco.finding_id("eip_unassociated");
    let store = crate::support::unlocked_store(&draco.data_dir()).await;
    for (finding, at) in [
        (fresh, Utc::now()),
        (stale, Utc::now() - Duration::minutes(10)),
    ] {
        let cr = store
            .change_request_for_finding(FindingId::new(finding))
            .await
            .expect("query")
            .expect("a change request");
        let decision = DecisionRecord {
            approve: true,
            by: "Ada".into(),
            channel: "cli".into(),
            at,
            reason: None,
        };
        assert!(
            store
                .claim_decision(cr.id, &cr.head_commit, &decision)
                .await
                .expect("claim")
        );
    }
    store.close().await;

    let out = draco.run(&["approve", &fresh.to_string(), "--as", "Bob"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        stderr(&out).contains("already approved by Ada"),
        "{}",
        describe(&out)
    );
    let out = draco.ok(&["approve", &fresh.to_string(), "--as", "Ada"]);
    assert!(
        out.contains("completing an approval recorded earlier"),
        "{out}"
    );

    let out = draco.ok(&["approve", &stale.to_string(), "--as", "Bob"]);
    assert!(
        out.contains("by Ada (completing"),
        "the merge is Ada's decision, whoever finishes it: {out}"
    );
    let merges = git(&draco.repository(), &["rev-list", "--merges", "main"]);
    assert_eq!(merges.lines().count(), 2);
    draco.ok(&["audit", "verify"]);
}

/// An approval that came by SMS or mail link is spent when it is claimed:
/// if the process dies before merging, no new vote can finish it. The
/// approvals job does, once the decision is abandoned, and only then.
#[tokio::test(flavor = "multi_thread")]
async fn the_approvals_job_finishes_abandoned_decisions_and_leaves_fresh_ones() {
    use chrono::{Duration, Utc};
    use draco::approve::finish_abandoned;
    use draco::domain::{ChangeRequestState, DecisionRecord, FindingId};
    use draco::gitops::local::LocalGit;
    use draco::store::{ChangeRequestStore, DecisionStore};

    let draco = Draco::new();
    draco.ok(&["demo"]);
    let fresh = draco.finding_id("ebs_unattached");
    let approved = draco.finding_id("eip_unassociated");
    let rejected = draco.finding_id("snapshot_public");
    let main_before = git(&draco.repository(), &["rev-parse", "main"]);
    let store = crate::support::unlocked_store(&draco.data_dir()).await;
    let git_backend = LocalGit::open_or_init(&draco.repository())
        .await
        .expect("the demo's repository");
    for (finding, approve, at) in [
        (fresh, true, Utc::now() - Duration::seconds(30)),
        (approved, true, Utc::now() - Duration::minutes(10)),
        (rejected, false, Utc::now() - Duration::minutes(10)),
    ] {
        let cr = store
            .change_request_for_finding(FindingId::new(finding))
            .await
            .expect("query")
            .expect("a change request");
        let decision = DecisionRecord {
            approve,
            by: "Ada".into(),
            channel: "sms".into(),
            at,
            reason: (!approve).then(|| "not this one".to_owned()),
        };
        assert!(
            store
                .claim_decision(cr.id, &cr.head_commit, &decision)
                .await
                .expect("claim")
        );
    }

    let finished = finish_abandoned(&store, &git_backend, Utc::now())
        .await
        .expect("finish");
    let states: Vec<_> = finished
        .iter()
        .map(|o| (o.change_request.finding_id.get(), o.change_request.state))
        .collect();
    assert_eq!(states.len(), 2, "{states:?}");
    assert!(states.contains(&(approved, ChangeRequestState::Merged)));
    assert!(states.contains(&(rejected, ChangeRequestState::Closed)));
    assert!(finished.iter().all(|o| o.resumed));
    let fresh_cr = store
        .change_request_for_finding(FindingId::new(fresh))
        .await
        .expect("query")
        .expect("a change request");
    assert_eq!(
        fresh_cr.state,
        ChangeRequestState::Approved,
        "a decision 30 s old may still be in flight: left to its process"
    );
    // Once is enough: a second run finds nothing to do.
    let again = finish_abandoned(&store, &git_backend, Utc::now())
        .await
        .expect("finish");
    assert!(again.is_empty(), "{again:?}");
    store.close().await;

    let merges = git(
        &draco.repository(),
        &["rev-list", "--merges", &format!("{main_before}..main")],
    );
    assert_eq!(merges.lines().count(), 1, "one merge: the approved one");
    let message = git(&draco.repository(), &["log", "-1", "--format=%B", "main"]);
    assert!(message.contains("Approved by Ada via sms"), "{message}");
    draco.ok(&["audit", "verify"]);
}

#[test]
fn the_cli_decides_only_as_someone_in_the_approver_directory() {
    let draco = Draco::new();
    draco.ok(&["demo"]);
    let id = draco.finding_id("ebs_unattached").to_string();
    let out = draco.run(&["approve", &id, "--as", "Someone Else"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        stderr(&out).contains("approver directory"),
        "{}",
        describe(&out)
    );
    let finding = draco.finding(id.parse().expect("id"));
    assert_ne!(finding["change_request"]["state"], "merged");
    assert_eq!(
        finding["change_request"]["approvals"],
        serde_json::json!([])
    );
}

#[test]
fn a_critical_change_needs_its_quorum_from_the_cli_too() {
    let draco = Draco::new();
    let config = draco.path("quorum.toml");
    std::fs::write(
        &config,
        "[approval]\nquorum = { critical = 2, high = 2, medium = 2, low = 2 }\n[[approvers]]\nname = \"Ada\"\n[[approvers]]\nname = \"Bob\"\n",
    )
    .expect("config");
    draco.ok(&["demo"]);
    let id = draco.finding_id("ebs_unattached").to_string();
    let config = config.to_str().expect("path");
    let first = draco.ok(&["--config", config, "approve", &id, "--as", "Ada"]);
    assert!(first.contains("1 of 2"), "{first}");
    let again = draco.ok(&["--config", config, "approve", &id, "--as", "ada"]);
    assert!(
        again.contains("already approved"),
        "the same person twice: {again}"
    );
    assert_ne!(
        draco.finding(id.parse().expect("id"))["change_request"]["state"],
        "merged"
    );
    let second = draco.ok(&["--config", config, "approve", &id, "--as", "Bob"]);
    assert!(second.contains("merged"), "{second}");
    let shown = draco.ok(&["--config", config, "show", &id]);
    assert!(shown.contains("approval by Ada via cli"), "{shown}");
    assert!(shown.contains("approval.counted"), "{shown}");
}
