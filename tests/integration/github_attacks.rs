//! Attacks on the GitHub backend and its webhook receiver (review of issue
//! 12). Each test states the behaviour that should hold; a failing one is a
//! confirmed defect.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use draco::domain::ChangeRequestState;
use draco::gitops::config::parse_repository;
use draco::gitops::github::api::{Auth, GitHubApi, RetryPolicy};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::github::{TOKEN, WEBHOOK_SECRET, app_on_fixtures, github_env, signed, webhook_app};
use crate::github_standin::{PullState, REPOSITORY, StandIn};
use crate::harness::TestApp;
use crate::support::{Draco, describe};

/// A signed delivery, as GitHub sends it; the status code.
async fn deliver(app: &TestApp, event: &str, delivery: &str, body: &[u8]) -> u16 {
    crate::github::deliver(app, event, delivery, body, signed(body))
        .await
        .as_u16()
}

// ---- webhooks: events are matched to a change request by branch name only ----

/// Anyone who can open a pull request on the repository (on a public
/// repository: anyone) can open one from a fork whose branch is named like
/// Draco's (`draco/...` is visible in Draco's own pull requests) and close
/// it. GitHub signs that delivery like any other; its `repository` is the
/// managed one and its `head.ref` is Draco's branch name, but `head.repo` is
/// the fork and the pull request is not Draco's. Draco's change request must
/// stay open (and a scan, which reads GitHub back, must not leave it closed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_pull_request_named_like_a_draco_branch_does_not_close_or_fail_dracos_change_request()
 {
    let (app, standin) = webhook_app().await;
    app.app.scan(chrono::Utc::now()).await.expect("scan");
    let crs = app.app.store.change_requests().await.expect("read");
    let (closed_target, pushed_target) = (crs[0].clone(), crs[1].clone());
    let pulls_before = standin.pulls();

    let fork_event = |action: &str, branch: &str, number: u64| {
        serde_json::to_vec(&json!({
            "action": action,
            "number": number,
            "pull_request": {
                "number": number,
                "html_url": format!("https://github.com/{REPOSITORY}/pull/{number}"),
                "state": if action == "closed" { "closed" } else { "open" },
                "merged": false, "merge_commit_sha": null,
                "head": { "ref": branch, "sha": "badc0ffee0ddf00dbadc0ffee0ddf00dbadc0ffe",
                          "label": format!("mallory:{branch}"),
                          "repo": { "full_name": "mallory/cloud-remediations" } },
                "base": { "ref": "main", "repo": { "full_name": REPOSITORY } },
            },
            "repository": { "full_name": REPOSITORY },
            "sender": { "login": "mallory" },
        }))
        .expect("json")
    };
    // Mallory's pull request #900 from her fork: closed by her.
    let close = fork_event("closed", &closed_target.branch, 900);
    let status = deliver(&app, "pull_request", "fork-1", &close).await;
    assert!(matches!(status, 202 | 204), "{status}");
    // Mallory's pull request #901 from her fork: she pushes to it.
    let push = fork_event("synchronize", &pushed_target.branch, 901);
    let status = deliver(&app, "pull_request", "fork-2", &push).await;
    assert!(matches!(status, 202 | 204), "{status}");
    draco::events::process_pending(
        &*app.app.store,
        Some(&app.app.deciding()),
        chrono::Utc::now(),
    )
    .await
    .expect("process");
    // Draco's own pull requests were not touched on GitHub.
    assert_eq!(standin.pulls().len(), pulls_before.len());
    assert!(standin.pulls().iter().all(|p| p.state == "open"));

    // The next scan reads GitHub back.
    app.app.scan(chrono::Utc::now()).await.expect("scan");
    let crs = app.app.store.change_requests().await.expect("read");
    let find = |b: &str| crs.iter().find(|c| c.branch == b).cloned().expect("cr");
    assert_eq!(
        find(&closed_target.branch).state,
        ChangeRequestState::Open,
        "a fork's pull request closed Draco's change request: {:?}",
        find(&closed_target.branch)
    );
    assert_eq!(
        find(&pushed_target.branch).outside_change,
        None,
        "a push to a fork's branch was taken for a push to Draco's: {:?}",
        find(&pushed_target.branch)
    );
    app.stop().await;
}

// ---- the backend: "the newest pull request from the branch" is taken for Draco's ----

/// Someone with write access opens a second pull request from Draco's branch
/// (GitHub allows several from one head, to different bases), e.g. into a
/// `legacy` branch, and closes it. Draco's own pull request is still open,
/// but the scan reads back the newest pull request from the branch and
/// records Draco's change request as closed by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_pull_request_from_a_draco_branch_is_not_taken_for_dracos_when_reading_back() {
    let standin = StandIn::start(TOKEN).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_on_fixtures(&standin, dir.path(), &[], |_| {}).await;
    app.scan(chrono::Utc::now()).await.expect("scan");
    let crs = app.store.change_requests().await.expect("read");
    let target = crs[0].clone();
    add_pull(&standin, &target.branch, "legacy", "closed");

    app.scan(chrono::Utc::now()).await.expect("scan");
    let cr = app
        .store
        .change_request_for_finding(target.finding_id)
        .await
        .expect("read")
        .expect("cr");
    let own = standin
        .pulls()
        .into_iter()
        .find(|p| p.head == target.branch && p.base == "main")
        .expect("Draco's pull request");
    assert_eq!(own.state, "open", "Draco's pull request is still open");
    assert_eq!(
        cr.state,
        ChangeRequestState::Open,
        "recorded closed because another pull request from the branch was closed: {cr:?}"
    );
}

/// The same second pull request, left open: approving Draco's change request
/// must merge Draco's pull request into the base it was proposed on, not
/// the newest pull request from the branch (into `legacy`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approving_merges_dracos_own_pull_request_not_the_newest_one_from_its_branch() {
    let standin = StandIn::start(TOKEN).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_on_fixtures(&standin, dir.path(), &[], |_| {}).await;
    app.scan(chrono::Utc::now()).await.expect("scan");
    let crs = app.store.change_requests().await.expect("read");
    let target = crs[0].clone();
    {
        let mut repo = standin.repo.lock().expect("lock");
        let legacy = repo.refs["main"].clone();
        repo.refs.insert("legacy".into(), legacy);
    }
    add_pull(&standin, &target.branch, "legacy", "open");

    let outcome = crate::support::approve_in_process(&app, target.finding_id, "Ada Lovelace").await;
    let pulls = standin.pulls();
    let own = pulls
        .iter()
        .find(|p| p.head == target.branch && p.base == "main")
        .expect("Draco's pull request");
    let other = pulls
        .iter()
        .find(|p| p.head == target.branch && p.base == "legacy")
        .expect("the other pull request");
    assert!(
        !other.merged,
        "Draco merged someone else's pull request into `legacy` (outcome {outcome:?})"
    );
    assert!(own.merged, "Draco's own pull request was not merged");
}

/// Adds a pull request from `head` into `base`, by someone else, as the newest.
fn add_pull(standin: &StandIn, head: &str, base: &str, state: &str) {
    let mut repo = standin.repo.lock().expect("lock");
    let number = repo.pulls.len() as u64 + 1;
    repo.pulls.push(PullState {
        number,
        title: "mine now".into(),
        body: String::new(),
        head: head.to_owned(),
        base: base.to_owned(),
        state: state.to_owned(),
        merged: false,
        merge_commit: None,
        labels: vec![],
        reviewers: vec![],
        comments: vec![],
    });
}

// ---- rate limits: a malformed header from GitHub ----

/// `x-ratelimit-reset` is read as an `i64` and the current time subtracted
/// unchecked: a value near `i64::MIN` panics (debug builds, the test
/// profile) or wraps (release). A garbled header must be an error, never a
/// panic: `reconcile` is not under the scan's `catch_unwind`.
#[tokio::test]
async fn an_absurd_rate_limit_reset_is_an_error_not_a_panic() {
    let standin = StandIn::start(TOKEN).await;
    let api = GitHubApi::new(
        &standin.url(),
        parse_repository(REPOSITORY).expect("repository"),
        &Auth::Token(SecretString::from(TOKEN.to_owned())),
        RetryPolicy {
            secondary_wait: Duration::from_millis(50),
            max_wait: Duration::from_secs(5),
            max_attempts: 3,
            transient_wait: Duration::from_millis(10),
        },
    )
    .expect("client");
    standin.fail_next(
        "GET",
        "/git/ref/heads/main",
        403,
        &[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "-9223372036854775808"),
        ],
        "API rate limit exceeded",
    );
    let handle = tokio::spawn(async move { api.branch_head("main").await.map(|_| ()) });
    let joined = handle.await;
    assert!(
        joined.is_ok(),
        "reading a branch panicked on x-ratelimit-reset: {:?}",
        joined.err()
    );
}

// ---- the per-scan limit ----

/// With `max_new_per_scan = 1`, a finding whose change request fails every
/// scan (here GitHub refuses one request on its branch each time) is tried
/// first every scan, because a failure uses up the scan's one slot: no
/// other finding ever gets a change request. The queue must move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finding_that_always_fails_does_not_starve_the_queue() {
    let limit = [("DRACO_GITOPS_MAX_NEW_PER_SCAN", "1")];
    // Which finding comes first: learnt on a throw-away copy.
    let first_branch = {
        let standin = StandIn::start(TOKEN).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let app = app_on_fixtures(&standin, dir.path(), &limit, |_| {}).await;
        let report = app.scan(chrono::Utc::now()).await.expect("scan");
        report.change_requests_opened[0].branch.clone()
    };
    let standin = StandIn::start(TOKEN).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_on_fixtures(&standin, dir.path(), &limit, |_| {}).await;
    let mut opened = 0;
    let mut queued = 0;
    for _ in 0..4 {
        standin.fail_next(
            "GET",
            &format!("/git/ref/heads/{first_branch}"),
            422,
            &[],
            "Validation Failed",
        );
        let report = app.scan(chrono::Utc::now()).await.expect("scan");
        opened += report.change_requests_opened.len();
        queued = report.change_requests_queued.len();
        assert_eq!(report.failures.len(), 1, "{report:?}");
    }
    assert!(
        opened > 0,
        "four scans opened no change request: one failing finding holds the only slot, {queued} findings wait behind it forever"
    );
}

// ---- what is published ----

/// A person's name in free text that the evidence carries (the description
/// of the world-open range of a security group rule, a snapshot's
/// description) is published: names are only found after person keys, but
/// `publish_redact` includes `name` and the README says nothing of those
/// kinds is published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_in_a_free_text_description_does_not_reach_github() {
    let standin = StandIn::start(TOKEN).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_on_fixtures(&standin, dir.path(), &[], plant_names).await;
    let report = app.scan(chrono::Utc::now()).await.expect("scan");
    assert!(!report.change_requests_opened.is_empty(), "{report:?}");
    let sent = sent_to(&standin);
    for name in ["Priya Raman", "Ada Lovelace"] {
        assert!(
            !sent.contains(name),
            "{name} was sent to GitHub: {}",
            excerpt(&sent, name)
        );
    }
}

fn plant_names(fixtures: &Path) {
    let file = fixtures.join("ec2/402917364518/us-east-1.json");
    let mut ec2: Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("json");
    for group in ec2["SecurityGroups"].as_array_mut().expect("groups") {
        for permission in group["IpPermissions"].as_array_mut().expect("perms") {
            for range in permission["IpRanges"].as_array_mut().expect("ranges") {
                if range["CidrIp"] == "0.0.0.0/0" {
                    range["Description"] = json!("temporary: Ada Lovelace working from home");
                }
            }
        }
    }
    if let Some(snapshots) = ec2["Snapshots"].as_array_mut() {
        for snapshot in snapshots {
            snapshot["Description"] = json!("backup of Priya Raman's laptop before re-imaging");
        }
    }
    std::fs::write(&file, serde_json::to_vec_pretty(&ec2).expect("json")).expect("write");
    // Snapshots may live in their own file.
    for entry in walk(fixtures) {
        let text = std::fs::read_to_string(&entry).unwrap_or_default();
        if entry != file && text.contains("\"SnapshotId\"") {
            let mut v: Value = match serde_json::from_str(&text) {
                Ok(v) => v,
                Err(_) => continue,
            };
            if let Some(snapshots) = v["Snapshots"].as_array_mut() {
                for snapshot in snapshots {
                    snapshot["Description"] =
                        json!("backup of Priya Raman's laptop before re-imaging");
                }
            }
            std::fs::write(&entry, serde_json::to_vec_pretty(&v).expect("json")).expect("write");
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    out
}

fn sent_to(standin: &StandIn) -> String {
    let mut sent = String::new();
    for r in standin.requests() {
        sent.push_str(&r.path);
        for (k, v) in &r.headers {
            sent.push_str(&format!("\n{k}: {v}"));
        }
        sent.push('\n');
        match serde_json::from_slice::<Value>(&r.body) {
            Ok(v) => sent.push_str(&v.to_string()),
            Err(_) => sent.push_str(&String::from_utf8_lossy(&r.body)),
        }
        sent.push('\n');
    }
    sent
}

fn excerpt(text: &str, needle: &str) -> String {
    let at = text.find(needle).unwrap_or(0);
    let start = text[..at]
        .char_indices()
        .rev()
        .nth(80)
        .map_or(0, |(i, _)| i);
    text[start..].chars().take(200).collect()
}

// ---- secrets in logs ----

/// Trace logs of a scan against GitHub, including failed calls, never hold
/// the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_never_reaches_trace_logs() {
    let standin = StandIn::start(TOKEN).await;
    standin.fail_next("POST", "/pulls", 422, &[], "Validation Failed");
    standin.fail_next("GET", "/git/commits", 500, &[], "oops");
    let draco = Draco::new();
    let mut cmd = draco.command();
    for (k, v) in github_env(&standin) {
        cmd.env(k, v);
    }
    cmd.env("DRACO_LOG", "trace").args(["demo"]);
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("draco runs"))
        .await
        .expect("thread");
    let all = describe(&out);
    assert!(all.len() > 1000, "trace logs were written: {all}");
    assert!(!all.contains(TOKEN), "the token is in the logs");
    assert!(
        !all.contains(WEBHOOK_SECRET),
        "the webhook secret is in the logs"
    );
}

// ---- reading back: only `open` change requests are read back ----

/// Someone pushes to a Draco branch (its webhook arrives: the change
/// request is `failed`, to be proposed again at the next scan); before that
/// scan, the pull request, foreign commit included, is merged by hand and
/// that webhook is lost. The README promises a missed webhook leaves the
/// store wrong for one scan at most, but `reconcile` reads back only `open`
/// change requests: the merge of a commit nobody approved is never
/// recorded nor audited, and the scan proposes the change again on the
/// merged branch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_by_hand_of_a_failed_change_request_is_read_back_when_its_webhook_was_missed() {
    use draco::store::OutsideChangeKind;

    let (app, standin) = webhook_app().await;
    app.app.scan(chrono::Utc::now()).await.expect("scan");
    let crs = app.app.store.change_requests().await.expect("read");
    let target = crs[0].clone();
    let foreign = standin.push_foreign_commit(&target.branch);
    let number = crate::github_standin::pull_number(&target.location);
    let push = serde_json::to_vec(&json!({
        "action": "synchronize",
        "number": number,
        "pull_request": { "number": number, "state": "open", "merged": false,
                          "head": { "ref": target.branch, "sha": foreign,
                                    "repo": { "full_name": REPOSITORY } } },
        "repository": { "full_name": REPOSITORY },
        "sender": { "login": "mallory" },
    }))
    .expect("json");
    assert_eq!(deliver(&app, "pull_request", "p-1", &push).await, 202);
    draco::events::process_pending(
        &*app.app.store,
        Some(&app.app.deciding()),
        chrono::Utc::now(),
    )
    .await
    .expect("process");
    let cr = app
        .app
        .store
        .change_request_for_finding(target.finding_id)
        .await
        .expect("read")
        .expect("cr");
    assert_eq!(cr.state, ChangeRequestState::Superseded);
    // Merged by hand, webhook lost.
    let merge_commit = standin.merge_by_hand(&target.branch);
    let pulls_before = standin.pulls().len();

    app.app.scan(chrono::Utc::now()).await.expect("scan");
    let cr = app
        .app
        .store
        .change_request_for_finding(target.finding_id)
        .await
        .expect("read")
        .expect("cr");
    assert_eq!(
        (cr.state, cr.outside_change, cr.merge_commit.as_deref()),
        (
            ChangeRequestState::Merged,
            Some(OutsideChangeKind::Merged),
            Some(merge_commit.as_str())
        ),
        "the merge by hand was not read back ({} pull requests before the scan, {} after): {cr:?}",
        pulls_before,
        standin.pulls().len()
    );
    app.stop().await;
}

/// A world-open rule that also lists a specific public address (an
/// office, someone's home, `::/0` beside an IPv6 /128): the remediation
/// revokes every CIDR of the rule, so the address is in the remediation
/// script. Publication replaces it with a placeholder, and the script that
/// is committed, reviewed and merged revokes `<IPV4_1>/32`: it cannot run
/// as approved. A published remediation must be runnable as published (or
/// the change request refused), never carry placeholders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_remediation_never_carries_redaction_placeholders() {
    let standin = StandIn::start(TOKEN).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_on_fixtures(&standin, dir.path(), &[], |fixtures| {
        let file = fixtures.join("ec2/402917364518/us-east-1.json");
        let mut ec2: Value =
            serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("json");
        for group in ec2["SecurityGroups"].as_array_mut().expect("groups") {
            if group["GroupId"] == "sg-0a1f3c5e7b9d24680" {
                group["IpPermissions"][0]["IpRanges"]
                    .as_array_mut()
                    .expect("ranges")
                    .push(json!({"CidrIp": "81.2.69.142/32"}));
                group["IpPermissions"][0]["Ipv6Ranges"] = json!([
                    {"CidrIpv6": "::/0"},
                    {"CidrIpv6": "2a02:8070:abcd:1::1234/128"}
                ]);
            }
        }
        std::fs::write(&file, serde_json::to_vec_pretty(&ec2).expect("json")).expect("write");
    })
    .await;
    app.scan(chrono::Utc::now()).await.expect("scan");
    let crs = app.store.change_requests().await.expect("read");
    let bastion = crs
        .iter()
        .find(|c| c.branch.starts_with("draco/sg-open-admin-port-"))
        .expect("the bastion's change request");
    for (path, contents) in standin.files(&bastion.branch) {
        if path.contains("/remediation.") || path.contains("/rollback.") {
            assert!(
                !contents.contains("<IPV4_") && !contents.contains("<IPV6_"),
                "{path} carries a placeholder:\n{contents}"
            );
        }
    }
}

/// GitHub unreachable (connection refused) at the next scan: the scan goes
/// on (findings recorded, change requests left as they were), and reading
/// every open change request back does not hold it for long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_with_github_down_does_not_wait_on_every_open_change_request() {
    let standin = StandIn::start(TOKEN).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_on_fixtures(&standin, dir.path(), &[], |_| {}).await;
    app.scan(chrono::Utc::now()).await.expect("scan");
    let before = app.store.change_requests().await.expect("read");
    drop(standin);
    let started = std::time::Instant::now();
    let report = app.scan(chrono::Utc::now()).await.expect("scan");
    let took = started.elapsed();
    println!(
        "scan with GitHub down: {took:?}, {} open change requests",
        before.len()
    );
    assert!(report.findings_detected > 0);
    let after = app.store.change_requests().await.expect("read");
    assert_eq!(
        before.iter().map(|c| c.state).collect::<Vec<_>>(),
        after.iter().map(|c| c.state).collect::<Vec<_>>()
    );
    assert!(took < Duration::from_secs(30), "the scan took {took:?}");
}

/// A finding resolves itself: the scan closes its pull request on GitHub,
/// then records the withdrawal. GitHub's `closed` webhook for Draco's own
/// close is stored and processed at once by the daemon (the receiver wakes
/// the events task), so it can land between the two: the store then says
/// "closed without merging outside Draco", audited as the bot's outside
/// close, and the withdrawal is never recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dracos_own_withdrawal_is_not_recorded_as_a_close_outside_draco_when_its_webhook_is_quick()
{
    let standin = StandIn::start(TOKEN).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_on_fixtures(&standin, dir.path(), &[], |_| {}).await;
    app.scan(chrono::Utc::now()).await.expect("scan");
    let crs = app.store.change_requests().await.expect("read");
    let bastion = crs
        .iter()
        .find(|c| c.branch.starts_with("draco/sg-open-admin-port-"))
        .cloned()
        .expect("the bastion's change request");

    // GitHub, like the real one, sends `closed` as soon as the pull request
    // is closed; the daemon stores and processes it at once.
    let hook_app = Arc::clone(&app);
    let repo = Arc::clone(&standin.repo);
    standin.on_close(Arc::new(move |number| {
        let app = Arc::clone(&hook_app);
        let (branch, sha) = {
            let repo = repo.lock().expect("lock");
            let pull = &repo.pulls[number as usize - 1];
            (
                pull.head.clone(),
                repo.refs.get(&pull.head).cloned().unwrap_or_default(),
            )
        };
        Box::pin(async move {
            let body = serde_json::to_vec(&json!({
                "action": "closed", "number": number,
                "pull_request": { "number": number, "state": "closed", "merged": false,
                                  "merge_commit_sha": null,
                                  "head": { "ref": branch, "sha": sha } },
                "repository": { "full_name": REPOSITORY },
                "sender": { "login": "draco-bot" },
            }))
            .expect("json");
            app.store
                .record_delivery(
                    "github",
                    &format!("close-{number}"),
                    "pull_request",
                    &body,
                    chrono::Utc::now(),
                )
                .await
                .expect("stored");
            draco::events::process_pending(&*app.store, Some(&app.deciding()), chrono::Utc::now())
                .await
                .expect("processed");
        })
    }));

    // The bastion's port is closed in the cloud: the finding resolves.
    let fixtures = dir.path().join("fixtures");
    let file = fixtures.join("ec2/402917364518/us-east-1.json");
    let mut ec2: Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("json");
    for group in ec2["SecurityGroups"].as_array_mut().expect("groups") {
        if group["GroupId"] == "sg-0a1f3c5e7b9d24680" {
            group["IpPermissions"][0]["IpRanges"] = json!([{"CidrIp": "10.0.0.0/8"}]);
        }
    }
    std::fs::write(&file, serde_json::to_vec_pretty(&ec2).expect("json")).expect("write");
    app.scan(chrono::Utc::now()).await.expect("scan");

    let cr = app
        .store
        .change_request_for_finding(bastion.finding_id)
        .await
        .expect("read")
        .expect("cr");
    assert_eq!(cr.state, ChangeRequestState::Closed);
    assert_eq!(
        (cr.reason.as_deref(), cr.outside_change),
        (Some("the finding resolved itself"), None),
        "Draco's own withdrawal recorded as a close outside Draco: {cr:?}"
    );
}

/// The demo as it is, nothing planted: an unassociated Elastic IP's
/// rollback re-allocates its address (`allocate-address --address`), an
/// AWS-owned public address, not personal data; publication replaces it
/// with `<IPV4_1>`, so the committed rollback cannot run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demos_published_remediations_and_rollbacks_carry_no_placeholders() {
    let standin = StandIn::start(TOKEN).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_on_fixtures(&standin, dir.path(), &[], |_| {}).await;
    app.scan(chrono::Utc::now()).await.expect("scan");
    let mut broken = Vec::new();
    for cr in app.store.change_requests().await.expect("read") {
        for (path, contents) in standin.files(&cr.branch) {
            if path.contains("/remediation.") || path.contains("/rollback.") {
                for line in contents.lines().filter(|l| l.contains("<IPV")) {
                    broken.push(format!("{path}: {line}"));
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "placeholders in published scripts:\n{}",
        broken.join("\n")
    );
}

/// Draco merges an approved change request; GitHub merges it, but the
/// answer is lost (a 502 from a proxy, a reset connection). `approve`
/// marks the change request `failed` ("will be proposed again by the next
/// scan"), and the next scan, which does not read failed change requests
/// back, proposes the already merged change again as a new pull request
/// instead of recording the merge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_whose_answer_was_lost_is_recorded_as_merged_not_proposed_again() {
    let standin = StandIn::start(TOKEN).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_on_fixtures(&standin, dir.path(), &[], |_| {}).await;
    app.scan(chrono::Utc::now()).await.expect("scan");
    let target = app.store.change_requests().await.expect("read")[0].clone();
    standin.lose_next_answer("PUT", "/merge");
    let outcome = crate::support::approve_in_process(&app, target.finding_id, "Ada Lovelace").await;
    assert!(outcome.is_err(), "the answer was lost: {outcome:?}");
    assert!(
        standin
            .pulls()
            .iter()
            .any(|p| p.head == target.branch && p.merged),
        "merged on GitHub"
    );
    let pulls_before = standin.pulls().len();

    app.scan(chrono::Utc::now()).await.expect("scan");
    let cr = app
        .store
        .change_request_for_finding(target.finding_id)
        .await
        .expect("read")
        .expect("cr");
    assert_eq!(
        (cr.state, standin.pulls().len()),
        (ChangeRequestState::Merged, pulls_before),
        "the merged change was proposed again: {cr:?}"
    );
}

/// A pull request merged on GitHub by someone else is recorded `merged`,
/// but its finding keeps saying `awaiting_approval`, though nothing awaits
/// an approval any more (Draco's own merge sets `approved`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_outside_draco_does_not_leave_its_finding_awaiting_approval() {
    let standin = StandIn::start(TOKEN).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_on_fixtures(&standin, dir.path(), &[], |_| {}).await;
    app.scan(chrono::Utc::now()).await.expect("scan");
    let target = app.store.change_requests().await.expect("read")[0].clone();
    standin.merge_by_hand(&target.branch);
    app.scan(chrono::Utc::now()).await.expect("scan");
    let cr = app
        .store
        .change_request_for_finding(target.finding_id)
        .await
        .expect("read")
        .expect("cr");
    assert_eq!(cr.state, ChangeRequestState::Merged);
    let finding = app
        .store
        .finding(target.finding_id)
        .await
        .expect("read")
        .expect("finding");
    assert_ne!(
        finding.status.as_str(),
        "awaiting_approval",
        "the finding of a merged change request still awaits approval"
    );
}

/// GitHub opens the pull request but the answer is lost: the scan fails
/// that finding, and the next one finds the open pull request and records
/// it (`created: false`). Labels and reviewers are only added to a pull
/// request Draco saw itself create, so this one never gets them: nobody is
/// asked to review it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_request_whose_creation_answer_was_lost_still_gets_its_labels_and_reviewers() {
    let standin = StandIn::start(TOKEN).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_on_fixtures(
        &standin,
        dir.path(),
        &[("DRACO_GITOPS_GITHUB_REVIEWERS", "ada-l")],
        |_| {},
    )
    .await;
    standin.lose_next_answer("POST", "/pulls");
    let first = app.scan(chrono::Utc::now()).await.expect("scan");
    assert_eq!(first.failures.len(), 1, "{first:?}");
    app.scan(chrono::Utc::now()).await.expect("scan");
    let pulls = standin.pulls();
    assert_eq!(
        pulls.len(),
        app.store.change_requests().await.expect("read").len(),
        "no pull request opened twice"
    );
    for pull in pulls {
        assert!(
            pull.labels.iter().any(|l| l == "draco") && pull.reviewers == ["ada-l"],
            "pull request #{} ({}) has labels {:?} and reviewers {:?}",
            pull.number,
            pull.head,
            pull.labels,
            pull.reviewers
        );
    }
}

// ---- what held ----

/// Checks that held: odd webhook input and absurd rate-limit waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_webhook_input_and_absurd_rate_limit_waits_are_handled() {
    let (app, standin) = webhook_app().await;
    app.app.scan(chrono::Utc::now()).await.expect("scan");
    let target = app.app.store.change_requests().await.expect("read")[0].clone();

    // Deeply nested JSON, signed: refused as not an event, no stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(
        deliver(&app, "pull_request", "deep", deep.as_bytes()).await,
        400
    );
    let deep_field = format!(
        r#"{{"repository":{{"full_name":"{REPOSITORY}"}},"x":{}{}}}"#,
        "[".repeat(50_000),
        "]".repeat(50_000)
    );
    // Skipped without recursion (serde_json ignores values iteratively):
    // no pull request in it, so not Draco's, not stored.
    assert_eq!(
        deliver(&app, "pull_request", "deep2", deep_field.as_bytes()).await,
        204
    );

    // Two signature headers, the first forged: refused.
    let body = br#"{"zen":"z"}"#;
    let status = app
        .http
        .post(app.url("/webhooks/github"))
        .header("X-GitHub-Event", "ping")
        .header("X-GitHub-Delivery", "two")
        .header("X-Hub-Signature-256", format!("sha256={}", "0".repeat(64)))
        .header("x-hub-signature-256", signed(body).expect("signed"))
        .body(body.to_vec())
        .send()
        .await
        .expect("answer")
        .status();
    assert_eq!(status, 401);

    // Control characters and bidi in the login: neutralised in the audit log.
    let number = crate::github_standin::pull_number(&target.location);
    let evil = serde_json::to_vec(&json!({
        "action": "closed",
        "pull_request": { "number": number, "merged": false,
                          "head": { "ref": target.branch, "sha": "x",
                                    "repo": { "full_name": REPOSITORY } } },
        "repository": { "full_name": REPOSITORY },
        "sender": { "login": "mal\u{1b}[2J\u{202e}lory\nfake line" },
    }))
    .expect("json");
    assert_eq!(deliver(&app, "pull_request", "evil", &evil).await, 202);
    // The same delivery id with another body: a redelivery, changes nothing.
    let other = pull_body("synchronize", &target.branch);
    assert_eq!(deliver(&app, "pull_request", "evil", &other).await, 200);
    draco::events::process_pending(
        &*app.app.store,
        Some(&app.app.deciding()),
        chrono::Utc::now(),
    )
    .await
    .expect("process");
    let events = draco::store::AuditLog::audit_events(&*app.app.store, None)
        .await
        .expect("audit");
    let actor = events
        .iter()
        .find(|e| e.action == "change_request.outside_closed")
        .map(|e| e.actor.clone())
        .expect("audited");
    assert!(
        !actor.contains('\u{1b}') && !actor.contains('\u{202e}') && !actor.contains('\n'),
        "{actor:?}"
    );

    // Absurd waits fail fast.
    let api = GitHubApi::new(
        &standin.url(),
        parse_repository(REPOSITORY).expect("repository"),
        &Auth::Token(SecretString::from(TOKEN.to_owned())),
        RetryPolicy::default(),
    )
    .expect("client");
    for headers in [
        vec![("retry-after", "999999999")],
        vec![
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "9223372036854775807"),
        ],
    ] {
        standin.fail_next("GET", "/git/ref/heads/main", 429, &headers, "limited");
        let started = std::time::Instant::now();
        let error = api.branch_head("main").await.expect_err("limited");
        assert!(started.elapsed() < Duration::from_secs(2), "{error}");
        assert!(error.to_string().contains("rate limit"), "{error}");
        assert!(!error.to_string().contains(TOKEN));
    }
    app.stop().await;
}

fn pull_body(action: &str, branch: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "action": action,
        "pull_request": { "number": 1, "merged": false,
                          "head": { "ref": branch, "sha": "y", "repo": { "full_name": REPOSITORY } } },
        "repository": { "full_name": REPOSITORY },
        "sender": { "login": "bob" },
    }))
    .expect("json")
}

/// A finding resolves (its pull request #n is withdrawn), comes back, and
/// gets a new pull request on the same branch. A late `closed` delivery of
/// the old pull request #n (GitHub does not promise order; a failed
/// delivery redelivered by hand later) is matched by branch name alone and
/// closes the new change request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_delivery_about_an_older_pull_request_on_the_same_branch_does_not_close_the_new_one()
{
    let standin = StandIn::start(TOKEN).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_on_fixtures(&standin, dir.path(), &[], |_| {}).await;
    app.scan(chrono::Utc::now()).await.expect("scan");
    let bastion = app
        .store
        .change_requests()
        .await
        .expect("read")
        .into_iter()
        .find(|c| c.branch.starts_with("draco/sg-open-admin-port-"))
        .expect("the bastion's change request");
    let old_number: u64 = bastion
        .location
        .rsplit('/')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("number");
    let file = dir.path().join("fixtures/ec2/402917364518/us-east-1.json");
    let set_open = |open: bool| {
        let mut ec2: Value =
            serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("json");
        for group in ec2["SecurityGroups"].as_array_mut().expect("groups") {
            if group["GroupId"] == "sg-0a1f3c5e7b9d24680" {
                group["IpPermissions"][0]["IpRanges"] = if open {
                    json!([{"CidrIp": "0.0.0.0/0"}])
                } else {
                    json!([{"CidrIp": "10.0.0.0/8"}])
                };
            }
        }
        std::fs::write(&file, serde_json::to_vec_pretty(&ec2).expect("json")).expect("write");
    };
    set_open(false);
    app.scan(chrono::Utc::now()).await.expect("scan");
    set_open(true);
    app.scan(chrono::Utc::now()).await.expect("scan");
    let renewed = app
        .store
        .change_request_for_finding(bastion.finding_id)
        .await
        .expect("read")
        .expect("cr");
    assert_eq!(renewed.state, ChangeRequestState::Open);
    assert_ne!(renewed.location, bastion.location, "a new pull request");

    // The old pull request's `closed`, delivered late.
    let late = serde_json::to_vec(&json!({
        "action": "closed",
        "number": old_number,
        "pull_request": {
            "number": old_number,
            "html_url": bastion.location,
            "state": "closed", "merged": false, "merge_commit_sha": null,
            "head": { "ref": bastion.branch, "sha": bastion.head_commit },
        },
        "repository": { "full_name": REPOSITORY },
        "sender": { "login": "draco-bot" },
    }))
    .expect("json");
    app.store
        .record_delivery(
            "github",
            "late-1",
            "pull_request",
            &late,
            chrono::Utc::now(),
        )
        .await
        .expect("stored");
    draco::events::process_pending(&*app.store, Some(&app.deciding()), chrono::Utc::now())
        .await
        .expect("process");
    let cr = app
        .store
        .change_request_for_finding(bastion.finding_id)
        .await
        .expect("read")
        .expect("cr");
    assert_eq!(
        cr.state,
        ChangeRequestState::Open,
        "closed by a late delivery about pull request #{old_number}: {cr:?}"
    );
}

/// Someone with write access changes the base of Draco's pull request to
/// another branch (`legacy`). Approving then merges the approved commit
/// into `legacy` and records the change request merged, though the base
/// branch Draco proposed on never got it; `verify` checks only the head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approving_refuses_a_pull_request_whose_base_was_changed() {
    let standin = StandIn::start(TOKEN).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_on_fixtures(&standin, dir.path(), &[], |_| {}).await;
    app.scan(chrono::Utc::now()).await.expect("scan");
    let target = app.store.change_requests().await.expect("read")[0].clone();
    let main_before = standin.branch_head("main").expect("main");
    {
        let mut repo = standin.repo.lock().expect("lock");
        repo.refs.insert("legacy".into(), main_before.clone());
        for pull in repo.pulls.iter_mut().filter(|p| p.head == target.branch) {
            pull.base = "legacy".into();
        }
    }
    let outcome = crate::support::approve_in_process(&app, target.finding_id, "Ada Lovelace").await;
    let main_after = standin.branch_head("main").expect("main");
    assert!(
        outcome.is_err() || main_after != main_before,
        "recorded merged, but main did not get the change (merged into `legacy`): {outcome:?}"
    );
}

/// Two merges of one approval race (the approver's retry and the approvals
/// job finishing it, or two replicas): GitHub merges the first and answers
/// the second `405` "Pull Request is not mergeable". The loser must read
/// the merge back, not mark a merged change request `failed` (which would
/// make the next scan propose it again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_beaten_by_a_merge_of_the_same_approval_records_that_merge() {
    use draco::domain::DecisionRecord;

    let (app, standin) = webhook_app().await;
    app.app.scan(chrono::Utc::now()).await.expect("scan");
    let target = app.app.store.change_requests().await.expect("read")[0].clone();
    let decision = DecisionRecord {
        approve: true,
        by: "Ada Lovelace".into(),
        channel: "sms".into(),
        at: chrono::Utc::now() - chrono::Duration::minutes(10),
        reason: None,
    };
    assert!(
        app.app
            .store
            .claim_decision(target.id, &target.head_commit, &decision)
            .await
            .expect("claim")
    );
    standin.answer_next_with("PUT", "/merge", 405, "Pull Request is not mergeable");

    let finished = draco::approve::finish_abandoned(
        &*app.app.store,
        app.app.change_requests.as_ref(),
        chrono::Utc::now(),
    )
    .await
    .expect("finish");
    assert_eq!(finished.len(), 1, "{finished:?}");
    let cr = app
        .app
        .store
        .change_request_for_finding(target.finding_id)
        .await
        .expect("read")
        .expect("cr");
    let merged = standin
        .pulls()
        .into_iter()
        .find(|p| p.head == target.branch)
        .expect("the pull request");
    assert!(merged.merged);
    assert_eq!(
        (cr.state, cr.merge_commit.as_deref()),
        (ChangeRequestState::Merged, merged.merge_commit.as_deref()),
        "{cr:?}"
    );
}
