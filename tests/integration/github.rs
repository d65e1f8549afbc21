//! The GitHub backend against a loopback stand-in of GitHub's REST API
//! (`github_standin`), and the webhook receiver on the daemon's server.

use std::process::Output;
use std::time::Duration;

use draco::gitops::config::{GitHubConfig, parse_repository};
use draco::gitops::github::api::{Auth, GitHubApi, RetryPolicy, TreeEntry};
use draco::gitops::github::backend::GitHubChangeRequests;
use draco::gitops::github::signature;
use draco::gitops::{ChangeFile, ChangeRequests, GitOpsError, NewChangeRequest};
use draco::redact::{Redacted, Redactor};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::github_standin::{REPOSITORY, StandIn};
use crate::harness::spawn_app;
use crate::support::{Draco, describe};

pub(crate) const TOKEN: &str = "github_pat_11AAAAAAA0standin0token0for0tests";
pub(crate) const WEBHOOK_SECRET: &str = "webhook-secret-for-tests";

/// The environment that selects the GitHub backend on `standin`.
pub(crate) fn github_env(standin: &StandIn) -> Vec<(&'static str, String)> {
    vec![
        ("DRACO_GITOPS_BACKEND", "github".to_owned()),
        ("DRACO_GITOPS_GITHUB_API_URL", standin.url()),
        ("DRACO_GITOPS_GITHUB_REPOSITORY", REPOSITORY.to_owned()),
        (
            "DRACO_GITOPS_GITHUB_REVIEWERS",
            "ada-l,acme/platform".to_owned(),
        ),
        ("DRACO_GITHUB_TOKEN", TOKEN.to_owned()),
        ("DRACO_GITHUB_WEBHOOK_SECRET", WEBHOOK_SECRET.to_owned()),
    ]
}

/// Runs the binary off the async runtime, so the stand-in keeps answering.
async fn draco_run(draco: &Draco, env: &[(&'static str, String)], args: &[&str]) -> Output {
    let mut cmd = draco.command();
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.args(args);
    tokio::task::spawn_blocking(move || cmd.output().expect("draco runs"))
        .await
        .expect("the command thread")
}

async fn findings(draco: &Draco, env: &[(&'static str, String)]) -> Vec<Value> {
    let out = draco_run(draco, env, &["findings", "--json"]).await;
    assert!(out.status.success(), "{}", describe(&out));
    serde_json::from_slice::<Vec<Value>>(&out.stdout).expect("findings --json is an array")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_opens_one_pull_request_per_finding_and_approval_merges_the_approved_commit() {
    let standin = StandIn::start(TOKEN).await;
    let env = github_env(&standin);
    let draco = Draco::new();
    let out = draco_run(&draco, &env, &["demo"]).await;
    assert!(out.status.success(), "{}", describe(&out));

    let findings = findings(&draco, &env).await;
    let with_cr: Vec<&Value> = findings
        .iter()
        .filter(|f| f["change_request"].is_object())
        .collect();
    assert!(with_cr.len() >= 3, "{findings:?}");
    let pulls = standin.pulls();
    assert_eq!(pulls.len(), with_cr.len(), "one pull request per finding");
    let mut charts = 0;
    for f in &with_cr {
        let cr = &f["change_request"];
        assert_eq!(cr["backend"], "github");
        let branch = cr["branch"].as_str().expect("branch");
        let pull = pulls
            .iter()
            .find(|p| p.head == branch)
            .unwrap_or_else(|| panic!("no pull request from {branch}"));
        assert_eq!(
            cr["location"].as_str(),
            Some(format!("https://github.com/{REPOSITORY}/pull/{}", pull.number).as_str())
        );
        assert_eq!(
            cr["head_commit"].as_str(),
            standin.branch_head(branch).as_deref()
        );
        assert_eq!(pull.base, "main", "the repository's default branch");
        let severity = f["severity"].as_str().expect("severity");
        assert!(
            pull.labels.contains(&"draco".to_owned()),
            "{:?}",
            pull.labels
        );
        assert!(
            pull.labels.contains(&format!("draco:{severity}")),
            "{:?}",
            pull.labels
        );
        assert_eq!(pull.reviewers, ["ada-l", "team:platform"]);
        let id = f["id"].as_i64().expect("id");
        for part in [
            format!("draco approve {id} --as"),
            "**Rollback.**".to_owned(),
            "**Blast radius.**".to_owned(),
            "**Privacy.** No model was asked".to_owned(),
        ] {
            assert!(
                pull.body.contains(&part),
                "{part} missing from {}",
                pull.body
            );
        }
        let files = standin.files(branch);
        if f["kind"].as_str().is_some_and(|k| k.starts_with("cost_")) {
            charts += 1;
            let chart = files
                .iter()
                .find(|(p, _)| p.ends_with("/chart.svg"))
                .map(|(p, svg)| (p.clone(), svg.clone()))
                .unwrap_or_else(|| panic!("no chart on {branch}: {:?}", files.keys()));
            assert!(
                chart.1.starts_with("<svg") && chart.1.contains("</svg>"),
                "{}",
                chart.1
            );
            let image = format!(
                "]({}/{REPOSITORY}/blob/{branch}/{}?raw=true)",
                standin.url(),
                chart.0
            );
            assert!(
                pull.body.contains(&image),
                "{image} missing from {}",
                pull.body
            );
        }
        assert!(files.contains_key("README.md"), "built on the base tree");
        let names: Vec<&String> = files.keys().collect();
        assert!(
            names.iter().any(|p| p.ends_with("/EVIDENCE.md"))
                && names.iter().any(|p| p.contains("/remediation."))
                && names.iter().any(|p| p.contains("/rollback.")),
            "{names:?}"
        );
    }

    assert!(charts >= 1, "the demo has a cost finding with a chart");

    // The webhook secret never travels to GitHub, in a header or a body.
    for r in standin.requests() {
        assert!(
            r.headers.iter().all(|(_, v)| !v.contains(WEBHOOK_SECRET))
                && !String::from_utf8_lossy(&r.body).contains(WEBHOOK_SECRET),
            "{} {}",
            r.method,
            r.path
        );
    }

    // A second scan opens nothing new.
    let posts_before = count(&standin, "POST", "/pulls");
    let out = draco_run(&draco, &env, &["demo"]).await;
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(standin.pulls().len(), pulls.len());
    assert_eq!(count(&standin, "POST", "/pulls"), posts_before);

    // Approval merges exactly the proposed commit.
    let first = with_cr[0];
    let id = first["id"].as_i64().expect("id").to_string();
    let branch = first["change_request"]["branch"].as_str().expect("branch");
    let out = draco_run(&draco, &env, &["approve", &id, "--as", "Ada Lovelace"]).await;
    assert!(out.status.success(), "{}", describe(&out));
    let merged = standin
        .pulls()
        .into_iter()
        .find(|p| p.head == branch)
        .expect("pull");
    assert!(merged.merged, "merged on GitHub");
    let merge_put = standin
        .requests()
        .into_iter()
        .find(|r| r.method == "PUT" && r.path.ends_with("/merge"))
        .expect("a merge request");
    let body: Value = serde_json::from_slice(&merge_put.body).expect("json");
    assert_eq!(body["sha"], first["change_request"]["head_commit"]);
    assert_eq!(body["merge_method"], "squash");

    // A branch someone else pushed to is not merged: the approval was for
    // another commit.
    let second = with_cr[1];
    let branch = second["change_request"]["branch"].as_str().expect("branch");
    standin.push_foreign_commit(branch);
    let id = second["id"].as_i64().expect("id").to_string();
    let out = draco_run(&draco, &env, &["approve", &id, "--as", "Ada Lovelace"]).await;
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        !standin
            .pulls()
            .into_iter()
            .find(|p| p.head == branch)
            .expect("pull")
            .merged
    );
}

pub(crate) fn count(standin: &StandIn, method: &str, suffix: &str) -> usize {
    standin
        .requests()
        .iter()
        .filter(|r| r.method == method && r.path.split('?').next().unwrap_or("").ends_with(suffix))
        .count()
}

fn api(standin: &StandIn, policy: RetryPolicy) -> GitHubApi {
    GitHubApi::new(
        &standin.url(),
        parse_repository(REPOSITORY).expect("repository"),
        &Auth::Token(SecretString::from(TOKEN.to_owned())),
        policy,
    )
    .expect("client")
}

fn quick() -> RetryPolicy {
    RetryPolicy {
        secondary_wait: Duration::from_millis(50),
        max_wait: Duration::from_secs(5),
        max_attempts: 3,
        transient_wait: Duration::from_millis(10),
    }
}

fn request(branch: &str) -> Redacted<NewChangeRequest> {
    let request = NewChangeRequest {
        branch: branch.to_owned(),
        title: "[draco] close port 22".to_owned(),
        body: "what and why".to_owned(),
        files: vec![ChangeFile {
            path: "remediations/x/remediation.sh".to_owned(),
            contents: "#!/bin/sh\necho fix\n".to_owned(),
            executable: true,
        }],
        labels: vec!["draco:high".to_owned()],
        chart: None,
    };
    Redactor::default()
        .publishable(&request, &GitHubConfig::default().publish_redact)
        .expect("publishable")
}

#[tokio::test]
async fn a_crash_between_opening_and_recording_finds_the_pull_request_instead_of_opening_another() {
    let standin = StandIn::start(TOKEN).await;
    let backend = GitHubChangeRequests::new(api(&standin, quick()), &GitHubConfig::default());
    let first = backend
        .open(&request("draco/sg-open-abc123"))
        .await
        .expect("open");
    assert!(first.created);
    // The process died before the store recorded `first`: the next scan asks again.
    let again = backend
        .open(&request("draco/sg-open-abc123"))
        .await
        .expect("open");
    assert!(!again.created);
    assert_eq!(again.head_commit, first.head_commit);
    assert_eq!(again.location, first.location);
    assert_eq!(standin.pulls().len(), 1);

    // A branch left without a pull request (a crash before it was opened)
    // is reused, not refused.
    let api = api(&standin, quick());
    let base = api.branch_head("main").await.expect("read").expect("main");
    api.create_branch("draco/sg-open-def456", &base)
        .await
        .expect("branch");
    let opened = backend
        .open(&request("draco/sg-open-def456"))
        .await
        .expect("open");
    assert!(opened.created);
    assert_eq!(
        standin.branch_head("draco/sg-open-def456").as_deref(),
        Some(opened.head_commit.as_str())
    );
    assert_eq!(standin.pulls().len(), 2);
}

#[tokio::test]
async fn rate_limits_are_waited_out_and_unknown_outcomes_of_creations_are_not_replayed() {
    let standin = StandIn::start(TOKEN).await;
    let api = api(&standin, quick());
    // Primary limit: remaining 0, reset in a second.
    let reset = (chrono::Utc::now().timestamp() + 1).to_string();
    standin.fail_next(
        "POST",
        "/git/trees",
        403,
        &[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", &reset),
        ],
        "API rate limit exceeded",
    );
    // Secondary limit with retry-after.
    standin.fail_next(
        "POST",
        "/git/trees",
        429,
        &[("retry-after", "1")],
        "You have exceeded a secondary rate limit",
    );
    let started = std::time::Instant::now();
    let base = api.branch_head("main").await.expect("read").expect("main");
    let base_tree = api.commit(&base).await.expect("read").tree;
    let entry = TreeEntry {
        path: "hello.txt".into(),
        mode: "100644",
        kind: "blob",
        content: "hello".into(),
    };
    api.create_tree(&base_tree, &[entry])
        .await
        .expect("created after waiting");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited for the reset"
    );
    assert_eq!(count(&standin, "POST", "/git/trees"), 3);

    // A refusal that is not a rate limit names the missing permission.
    standin.fail_next(
        "POST",
        "/git/refs",
        403,
        &[],
        "Resource not accessible by personal access token",
    );
    let error = api
        .create_branch("draco/x", "0123")
        .await
        .expect_err("refused");
    assert!(
        matches!(
            error,
            GitOpsError::Permission {
                permission: "contents: write",
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("`contents: write`"), "{error}");

    // A pull request whose creation failed with an unknown outcome is not
    // created again blindly.
    let base = api.branch_head("main").await.expect("read").expect("main");
    api.create_branch("draco/y", &base).await.expect("branch");
    standin.fail_next("POST", "/pulls", 502, &[], "Bad Gateway");
    let error = api
        .create_pull("t", "draco/y", "main", "b")
        .await
        .expect_err("failed");
    assert!(
        matches!(
            error,
            GitOpsError::GitHub {
                status: Some(502),
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(count(&standin, "POST", "/pulls"), 1, "not replayed");
    // Not a word of the token in any error.
    assert!(!error.to_string().contains(TOKEN));
}

#[tokio::test]
async fn wrong_credentials_are_one_clear_error() {
    let standin = StandIn::start("another-token").await;
    let api = api(&standin, quick());
    let error = api.repository_info().await.expect_err("refused");
    assert!(error.to_string().contains("401"), "{error}");
    assert!(!error.to_string().contains(TOKEN), "{error}");
}

// ---- the webhook receiver ----

pub(crate) async fn webhook_app() -> (crate::harness::TestApp, StandIn) {
    let standin = StandIn::start(TOKEN).await;
    let env = github_env(&standin);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    (spawn_app(&env).await, standin)
}

pub(crate) async fn deliver(
    app: &crate::harness::TestApp,
    event: &str,
    delivery: &str,
    body: &[u8],
    signature: Option<String>,
) -> reqwest::StatusCode {
    let mut request = app
        .http
        .post(app.url("/webhooks/github"))
        .header("X-GitHub-Event", event)
        .header("X-GitHub-Delivery", delivery)
        .header("Content-Type", "application/json")
        .body(body.to_vec());
    if let Some(signature) = signature {
        request = request.header("X-Hub-Signature-256", signature);
    }
    request.send().await.expect("the server answers").status()
}

pub(crate) fn signed(body: &[u8]) -> Option<String> {
    Some(signature::sign(
        &SecretString::from(WEBHOOK_SECRET.to_owned()),
        body,
    ))
}

fn pull_request_event(repository: &str, branch: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "action": "synchronize",
        "number": 1,
        "pull_request": { "number": 1, "state": "open", "merged": false,
                          "head": { "ref": branch, "sha": "abc",
                                    "repo": { "full_name": repository } } },
        "repository": { "full_name": repository },
        "sender": { "login": "mallory" },
    }))
    .expect("json")
}

#[tokio::test]
async fn webhook_deliveries_are_authenticated_before_anything_is_read_and_stored_once() {
    let (app, _standin) = webhook_app().await;
    let event = pull_request_event(REPOSITORY, "draco/sg-open-admin-port-abc123");

    // Missing, malformed, forged, or signed with a stale secret: 401.
    assert_eq!(
        deliver(&app, "pull_request", "d-1", &event, None).await,
        401
    );
    assert_eq!(
        deliver(
            &app,
            "pull_request",
            "d-1",
            &event,
            Some("sha256=zz".into())
        )
        .await,
        401
    );
    let mut forged = signed(&event).expect("signature");
    forged.replace_range(forged.len() - 2.., "00");
    assert_eq!(
        deliver(&app, "pull_request", "d-1", &event, Some(forged)).await,
        401
    );
    let stale = signature::sign(&SecretString::from("the old secret".to_owned()), &event);
    assert_eq!(
        deliver(&app, "pull_request", "d-1", &event, Some(stale)).await,
        401
    );
    // A signature over other bytes (the body changed in transit).
    let mut altered = event.clone();
    altered.push(b' ');
    assert_eq!(
        deliver(&app, "pull_request", "d-1", &altered, signed(&event)).await,
        401
    );
    assert!(
        app.app
            .store
            .pending_deliveries(10)
            .await
            .expect("read")
            .is_empty()
    );

    // Signed but not JSON: 400.
    assert_eq!(
        deliver(
            &app,
            "pull_request",
            "d-2",
            b"{not json",
            signed(b"{not json")
        )
        .await,
        400
    );
    // ping: 200; an event Draco does not act on: 204; another repository
    // or a branch Draco did not open: 204. None of them stored.
    let ping = br#"{"zen":"Keep it logically awesome.","hook_id":1}"#;
    assert_eq!(deliver(&app, "ping", "d-3", ping, signed(ping)).await, 200);
    let issues = br#"{"action":"opened"}"#;
    assert_eq!(
        deliver(&app, "issues", "d-4", issues, signed(issues)).await,
        204
    );
    let other = pull_request_event("acme/other-repo", "draco/sg-open-admin-port-abc123");
    assert_eq!(
        deliver(&app, "pull_request", "d-5", &other, signed(&other)).await,
        204
    );
    let foreign_branch = pull_request_event(REPOSITORY, "feature/login");
    assert_eq!(
        deliver(
            &app,
            "pull_request",
            "d-6",
            &foreign_branch,
            signed(&foreign_branch)
        )
        .await,
        204
    );
    assert!(
        app.app
            .store
            .pending_deliveries(10)
            .await
            .expect("read")
            .is_empty()
    );

    // A genuine delivery is stored before the answer; a redelivery changes nothing.
    assert_eq!(
        deliver(&app, "pull_request", "d-7", &event, signed(&event)).await,
        202
    );
    assert_eq!(
        deliver(&app, "pull_request", "d-7", &event, signed(&event)).await,
        200
    );
    let pending = app.app.store.pending_deliveries(10).await.expect("read");
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].delivery_id, "d-7");
    assert_eq!(pending[0].body, event, "stored exactly as received");

    // Larger than any pull_request event: refused before it is buffered whole.
    let huge = vec![b' '; 2 * 1024 * 1024];
    assert_eq!(
        deliver(&app, "pull_request", "d-8", &huge, signed(&huge)).await,
        413
    );
    app.stop().await;
}

#[tokio::test]
async fn githubs_published_signature_vector_passes_the_check() {
    // GitHub Docs, "Validating webhook deliveries": secret "It's a Secret to
    // Everybody", payload "Hello, World!". The payload is not a JSON event,
    // so a receiver configured with that secret answers 400, not 401: the
    // signature itself was accepted.
    let standin = StandIn::start(TOKEN).await;
    let mut env = github_env(&standin);
    for (k, v) in env.iter_mut() {
        if *k == "DRACO_GITHUB_WEBHOOK_SECRET" {
            *v = "It's a Secret to Everybody".to_owned();
        }
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = spawn_app(&env).await;
    let published =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17".to_owned();
    assert_eq!(
        deliver(
            &app,
            "pull_request",
            "v-1",
            b"Hello, World!",
            Some(published.clone())
        )
        .await,
        400
    );
    assert_eq!(
        deliver(
            &app,
            "pull_request",
            "v-2",
            b"Hello, World?",
            Some(published)
        )
        .await,
        401
    );
    app.stop().await;
}

#[tokio::test]
async fn without_the_github_backend_the_route_does_not_exist() {
    let app = spawn_app(&[]).await;
    let body = br#"{}"#;
    assert_eq!(deliver(&app, "ping", "x", body, signed(body)).await, 404);
    app.stop().await;
}

/// A `pull_request` event about the change request `cr` (its pull request
/// number read from its location).
fn event(
    action: &str,
    cr: &draco::store::StoredChangeRequest,
    head: &str,
    merged: Option<&str>,
    sender: &str,
) -> Vec<u8> {
    let number = crate::github_standin::pull_number(&cr.location);
    serde_json::to_vec(&json!({
        "action": action,
        "number": number,
        "pull_request": {
            "number": number, "state": if action == "closed" { "closed" } else { "open" },
            "merged": merged.is_some(), "merge_commit_sha": merged,
            "head": { "ref": cr.branch, "sha": head, "repo": { "full_name": REPOSITORY } },
            "base": { "ref": "main" },
        },
        "repository": { "full_name": REPOSITORY },
        "sender": { "login": sender },
    }))
    .expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_merges_and_closes_on_github_are_reflected_and_a_pushed_branch_is_proposed_again() {
    use draco::domain::ChangeRequestState;
    use draco::store::OutsideChangeKind;

    let (app, standin) = webhook_app().await;
    app.app.scan(chrono::Utc::now()).await.expect("scan");
    let crs = app.app.store.change_requests().await.expect("read");
    assert!(crs.len() >= 3, "{crs:?}");
    let (pushed, closed, merged) = (&crs[0], &crs[1], &crs[2]);

    // Draco's own head in a synchronize changes nothing.
    let own = event(
        "synchronize",
        pushed,
        &pushed.head_commit,
        None,
        "draco-bot",
    );
    assert_eq!(
        deliver(&app, "pull_request", "e-0", &own, signed(&own)).await,
        202
    );
    // Someone else pushes, closes, merges.
    let foreign = standin.push_foreign_commit(&pushed.branch);
    let push = event("synchronize", pushed, &foreign, None, "mallory");
    let close = event("closed", closed, &closed.head_commit, None, "bob");
    let merge = event(
        "closed",
        merged,
        &merged.head_commit,
        Some("feedface"),
        "carol",
    );
    for (i, body) in [push, close, merge].iter().enumerate() {
        assert_eq!(
            deliver(
                &app,
                "pull_request",
                &format!("e-{}", i + 1),
                body,
                signed(body)
            )
            .await,
            202
        );
    }
    let processed = draco::events::process_pending(
        &*app.app.store,
        Some(&app.app.deciding()),
        chrono::Utc::now(),
    )
    .await
    .expect("process");
    assert_eq!(processed, 4);
    // Processing again finds nothing to do.
    assert_eq!(
        draco::events::process_pending(
            &*app.app.store,
            Some(&app.app.deciding()),
            chrono::Utc::now()
        )
        .await
        .expect("process"),
        0
    );

    let by_branch = |crs: &[draco::store::StoredChangeRequest], b: &str| {
        crs.iter().find(|c| c.branch == b).cloned().expect("cr")
    };
    let crs = app.app.store.change_requests().await.expect("read");
    let p = by_branch(&crs, &pushed.branch);
    assert_eq!(p.state, ChangeRequestState::Superseded);
    assert_eq!(p.outside_change, Some(OutsideChangeKind::Pushed));
    let c = by_branch(&crs, &closed.branch);
    assert_eq!(c.state, ChangeRequestState::Closed);
    assert_eq!(c.outside_change, Some(OutsideChangeKind::Closed));
    let m = by_branch(&crs, &merged.branch);
    assert_eq!(m.state, ChangeRequestState::Merged);
    assert_eq!(m.outside_change, Some(OutsideChangeKind::Merged));
    assert_eq!(m.merge_commit.as_deref(), Some("feedface"));

    // Audited, with who did it.
    let events = draco::store::AuditLog::audit_events(&*app.app.store, None)
        .await
        .expect("audit");
    let actions: Vec<String> = events
        .iter()
        .map(|e| format!("{} {}", e.actor, e.action))
        .collect();
    for expected in [
        "github:mallory change_request.outside_pushed",
        "github:bob change_request.outside_closed",
        "github:carol change_request.outside_merged",
    ] {
        assert!(actions.iter().any(|a| a == expected), "{actions:?}");
    }

    // Reopened with another head: nothing; with the head Draco proposed:
    // open and approvable again.
    let wrong = event("reopened", closed, "0123456789abcdef", None, "bob");
    let right = event("reopened", closed, &closed.head_commit, None, "bob");
    for (id, body) in [("e-4", &wrong), ("e-5", &right)] {
        assert_eq!(
            deliver(&app, "pull_request", id, body, signed(body)).await,
            202
        );
    }
    draco::events::process_pending(
        &*app.app.store,
        Some(&app.app.deciding()),
        chrono::Utc::now(),
    )
    .await
    .expect("process");
    let crs = app.app.store.change_requests().await.expect("read");
    let c = by_branch(&crs, &closed.branch);
    assert_eq!(c.state, ChangeRequestState::Open);
    assert_eq!(c.outside_change, None);
    let events = draco::store::AuditLog::audit_events(&*app.app.store, None)
        .await
        .expect("audit");
    assert_eq!(
        events
            .iter()
            .filter(|e| e.action == "change_request.outside_reopened")
            .count(),
        1,
        "only the reopening with Draco's head counts"
    );

    // The next scan proposes the pushed one again: a fresh commit of
    // Draco's on the same branch and pull request, said in a comment.
    let pulls_before = standin.pulls().len();
    app.app.scan(chrono::Utc::now()).await.expect("scan");
    let crs = app.app.store.change_requests().await.expect("read");
    let p = by_branch(&crs, &pushed.branch);
    assert_eq!(p.state, ChangeRequestState::Open);
    assert_eq!(p.outside_change, None);
    assert_ne!(p.head_commit, foreign);
    assert_eq!(
        standin.branch_head(&pushed.branch).as_deref(),
        Some(p.head_commit.as_str())
    );
    assert_eq!(standin.pulls().len(), pulls_before, "the same pull request");
    let pull = standin
        .pulls()
        .into_iter()
        .find(|x| x.head == pushed.branch)
        .expect("pull");
    assert!(
        pull.comments.iter().any(|c| c.contains("re-proposed")),
        "{:?}",
        pull.comments
    );
    app.stop().await;
}

/// Personal values planted in the fixtures' tags and descriptions: none of
/// them may reach GitHub, in any path, header or body.
const PLANTED: [&str; 8] = [
    "priya.raman@northwind-example.com",
    "Priya Raman",
    "Ada Lovelace",
    "+1 415 555 0134",
    "4111 1111 1111 1111",
    "203.0.113.77",
    "ghp_R8sPq2LmN4xV7tY1wZ3kB6cD9fG0hJ2aK5eM",
    "AKIAIOSFODNN7EXAMPLE",
];

/// Plants more personal values in the fixtures: a person and a phone in a
/// Contact tag, a card, a home IP and credentials in a group description a
/// finding's evidence shows, a name in a rule's range description.
fn plant_personal_values(fixtures: &std::path::Path) {
    let file = fixtures.join("ec2/402917364518/us-east-1.json");

    let mut ec2: Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("json");
    let groups = ec2["SecurityGroups"].as_array_mut().expect("groups");
    for group in groups.iter_mut() {
        group["Tags"]
            .as_array_mut()
            .expect("tags")
            .push(json!({"Key": "Contact", "Value": "Ada Lovelace, +1 415 555 0134"}));
        group["Description"] = json!(
            "card 4111 1111 1111 1111; token ghp_R8sPq2LmN4xV7tY1wZ3kB6cD9fG0hJ2aK5eM; key AKIAIOSFODNN7EXAMPLE; admin at home on 203.0.113.77"
        );
        for permission in group["IpPermissions"].as_array_mut().expect("perms") {
            permission["IpRanges"]
                .as_array_mut()
                .expect("ranges")
                .push(json!({"CidrIp": "198.51.100.0/24", "Description": "Ada Lovelace's office"}));
        }
    }
    std::fs::write(&file, serde_json::to_vec_pretty(&ec2).expect("json")).expect("write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_personal_or_secret_reaches_github() {
    let standin = StandIn::start(TOKEN).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_on_fixtures(&standin, dir.path(), &[], plant_personal_values).await;
    let report = app.scan(chrono::Utc::now()).await.expect("scan");
    assert!(report.change_requests_opened.len() >= 3, "{report:?}");

    let requests = standin.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.method == "POST" && r.path.ends_with("/pulls"))
    );
    let mut sent = String::new();
    for r in &requests {
        sent.push_str(&r.path);
        for (k, v) in &r.headers {
            sent.push_str(&format!("\n{k}: {v}"));
        }
        sent.push('\n');
        // JSON bodies escape nothing in these values; decode anyway so an
        // escaped form cannot hide one.
        match serde_json::from_slice::<Value>(&r.body) {
            Ok(v) => sent.push_str(&v.to_string()),
            Err(_) => sent.push_str(&String::from_utf8_lossy(&r.body)),
        }
        sent.push('\n');
    }
    for value in PLANTED {
        assert!(!sent.contains(value), "{value} was sent to GitHub");
    }
    // Identifiers the change needs do go: the resource, the account.
    assert!(sent.contains("sg-0a1f3c5e7b9d24680"));
    assert!(sent.contains("402917364518"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_check_shows_the_backend_without_secrets_and_checks_access_when_asked() {
    let standin = StandIn::start(TOKEN).await;
    let env = github_env(&standin);
    let draco = Draco::new();
    let out = draco_run(&draco, &env, &["config", "check"]).await;
    assert!(out.status.success(), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("GitHub pull requests in acme/cloud-remediations"),
        "{text}"
    );
    assert!(text.contains("fine-grained token"), "{text}");
    assert!(text.contains("never published: email"), "{text}");
    assert!(
        !text.contains(TOKEN) && !text.contains(WEBHOOK_SECRET),
        "{text}"
    );
    assert!(
        standin.requests().is_empty(),
        "offline by default: no call to GitHub"
    );

    let out = draco_run(&draco, &env, &["config", "check", "--online"]).await;
    assert!(out.status.success(), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("acme/cloud-remediations is readable"),
        "{text}"
    );
    assert_eq!(standin.requests().len(), 1, "one read call");

    let mut wrong = env.clone();
    for (k, v) in wrong.iter_mut() {
        if *k == "DRACO_GITHUB_TOKEN" {
            *v = "github_pat_wrong_token_value".to_owned();
        }
    }
    let out = draco_run(&draco, &wrong, &["config", "check", "--online"]).await;
    assert!(!out.status.success());
    let all = describe(&out);
    assert!(all.contains("401"), "{all}");
    assert!(!all.contains("github_pat_wrong_token_value"), "{all}");
}

/// The application on a copy of the demo fixtures (`dir/fixtures`, copied
/// and passed to `edit` once) with the GitHub backend on `standin`, `extra`
/// added to the environment.
pub(crate) async fn app_on_fixtures(
    standin: &StandIn,
    dir: &std::path::Path,
    extra: &[(&str, &str)],
    edit: impl FnOnce(&std::path::Path),
) -> std::sync::Arc<draco::compose::App> {
    use draco::compose::{App, SourceChoice};
    use draco::sources::fixtures::FixtureSet;
    let fixtures = dir.join("fixtures");
    if !fixtures.exists() {
        crate::support::copy_tree(&crate::support::demo_fixtures(), &fixtures);
        edit(&fixtures);
    }
    let mut env: std::collections::HashMap<String, String> = github_env(standin)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    for (k, v) in extra {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    let loaded = draco::config::load(None, &env).expect("config");
    App::build(
        loaded,
        dir.join("data"),
        SourceChoice::Fixtures(FixtureSet::Directory(fixtures)),
    )
    .await
    .expect("app")
}

/// [`app_on_fixtures`] as it is, with the fixtures' path to change between scans.
async fn github_app_on_fixtures(
    standin: &StandIn,
    dir: &std::path::Path,
) -> (std::sync::Arc<draco::compose::App>, std::path::PathBuf) {
    (
        app_on_fixtures(standin, dir, &[], |_| {}).await,
        dir.join("fixtures"),
    )
}

/// Opens or closes port 22 to the world on the demo's bastion group.
fn set_bastion_open(fixtures: &std::path::Path, open: bool) {
    let file = fixtures.join("ec2/402917364518/us-east-1.json");
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_scan_reconciles_with_github_withdraws_resolved_findings_and_reproposes_returning_ones()
 {
    use draco::domain::ChangeRequestState;
    use draco::store::OutsideChangeKind;

    let standin = StandIn::start(TOKEN).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, fixtures) = github_app_on_fixtures(&standin, dir.path()).await;
    app.scan(chrono::Utc::now()).await.expect("scan");
    let crs = app.store.change_requests().await.expect("read");
    let branch_of = |kind: &str| {
        crs.iter()
            .find(|c| c.branch.starts_with(&format!("draco/{kind}-")))
            .map(|c| c.branch.clone())
            .unwrap_or_else(|| panic!("no {kind} change request"))
    };
    let (bastion, closed, merged, pushed, deleted) = (
        branch_of("sg-open-admin-port"),
        branch_of("snapshot-public"),
        branch_of("ebs-unencrypted"),
        branch_of("ebs-unattached"),
        branch_of("eip-unassociated"),
    );

    // On GitHub, with every webhook lost: closed, merged, pushed to,
    // closed with its branch deleted.
    standin.close_by_hand(&closed, false);
    let merge_commit = standin.merge_by_hand(&merged);
    let foreign = standin.push_foreign_commit(&pushed);
    standin.close_by_hand(&deleted, true);
    // And the bastion's port is closed in the cloud.
    set_bastion_open(&fixtures, false);
    let pulls_before = standin.pulls().len();
    app.scan(chrono::Utc::now()).await.expect("scan");

    let crs = app.store.change_requests().await.expect("read");
    let cr = |b: &str| crs.iter().find(|c| c.branch == b).cloned().expect("cr");
    assert_eq!(cr(&closed).state, ChangeRequestState::Closed);
    assert_eq!(cr(&closed).outside_change, Some(OutsideChangeKind::Closed));
    assert_eq!(cr(&merged).state, ChangeRequestState::Merged);
    assert_eq!(
        cr(&merged).merge_commit.as_deref(),
        Some(merge_commit.as_str())
    );
    // Pushed to: Draco's proposal is back on the branch, as a new commit.
    assert_eq!(cr(&pushed).state, ChangeRequestState::Open);
    assert_ne!(cr(&pushed).head_commit, foreign);
    assert_eq!(
        standin.branch_head(&pushed).as_deref(),
        Some(cr(&pushed).head_commit.as_str())
    );
    // Deleted: recreated, as a new pull request.
    assert_eq!(cr(&deleted).state, ChangeRequestState::Open);
    assert!(standin.branch_head(&deleted).is_some());
    // The bastion finding resolved itself: its pull request is closed with a note.
    assert_eq!(cr(&bastion).state, ChangeRequestState::Closed);
    assert_eq!(
        cr(&bastion).reason.as_deref(),
        Some("the finding resolved itself")
    );
    let pull = |b: &str| {
        standin
            .pulls()
            .into_iter()
            .rfind(|p| p.head == b)
            .expect("pull")
    };
    assert_eq!(pull(&bastion).state, "closed");
    assert!(
        pull(&bastion)
            .comments
            .iter()
            .any(|c| c.contains("resolved itself"))
    );
    assert_eq!(
        standin.pulls().len(),
        pulls_before + 1,
        "only the deleted one is opened again"
    );

    // The port is opened again: the finding comes back, and with it a new pull request.
    set_bastion_open(&fixtures, true);
    app.scan(chrono::Utc::now()).await.expect("scan");
    let crs = app.store.change_requests().await.expect("read");
    let again = crs.iter().find(|c| c.branch == bastion).expect("cr");
    assert_eq!(again.state, ChangeRequestState::Open);
    let bastion_pulls: Vec<_> = standin
        .pulls()
        .into_iter()
        .filter(|p| p.head == bastion)
        .collect();
    assert_eq!(
        bastion_pulls.len(),
        2,
        "a new pull request for the returning finding"
    );
    assert_eq!(bastion_pulls[1].state, "open");
    assert!(
        again
            .location
            .ends_with(&format!("/pull/{}", bastion_pulls[1].number))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_finding_updates_its_pull_request_in_place_and_voids_the_old_head() {
    use draco::domain::ChangeRequestState;

    let standin = StandIn::start(TOKEN).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, fixtures) = github_app_on_fixtures(&standin, dir.path()).await;
    app.scan(chrono::Utc::now()).await.expect("scan");
    let before = app
        .store
        .change_requests()
        .await
        .expect("read")
        .into_iter()
        .find(|c| c.branch.starts_with("draco/ebs-unattached-"))
        .expect("the unattached volume's change request");
    let pulls_before = standin.pulls().len();

    // The unattached volume grows from 500 to 2000 GiB: four times the cost.
    let file = fixtures.join("ec2/402917364518/eu-west-1.json");
    let mut ec2: Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("json");
    for volume in ec2["Volumes"].as_array_mut().expect("volumes") {
        if volume["VolumeId"] == "vol-0e4f6a8b0c2d4e6f8" {
            volume["Size"] = json!(2000);
        }
    }
    std::fs::write(&file, serde_json::to_vec_pretty(&ec2).expect("json")).expect("write");
    let report = app.scan(chrono::Utc::now()).await.expect("scan");
    assert_eq!(
        report.outcome.changed,
        vec![before.finding_id],
        "{report:?}"
    );

    let after = app
        .store
        .change_request_for_finding(before.finding_id)
        .await
        .expect("read")
        .expect("cr");
    assert_eq!(after.state, ChangeRequestState::Open);
    assert_ne!(after.head_commit, before.head_commit, "a new commit");
    assert_eq!(
        standin.branch_head(&before.branch).as_deref(),
        Some(after.head_commit.as_str())
    );
    assert_eq!(after.location, before.location, "the same pull request");
    assert_eq!(standin.pulls().len(), pulls_before, "no new pull request");
    let pull = standin
        .pulls()
        .into_iter()
        .find(|p| p.head == before.branch)
        .expect("pull");
    assert!(
        pull.comments
            .iter()
            .any(|c| c.contains("the finding changed")),
        "{:?}",
        pull.comments
    );
    let evidence = standin
        .files(&before.branch)
        .into_iter()
        .find(|(p, _)| p.ends_with("EVIDENCE.md"))
        .expect("evidence")
        .1;
    assert!(evidence.contains("2000"), "{evidence}");

    // A scan with nothing new changes nothing.
    let report = app.scan(chrono::Utc::now()).await.expect("scan");
    assert!(report.outcome.changed.is_empty());
    assert_eq!(
        standin.branch_head(&before.branch).as_deref(),
        Some(after.head_commit.as_str())
    );
}
