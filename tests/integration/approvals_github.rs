//! Approvals by GitHub pull request review and `/draco` comment commands,
//! through signed webhook deliveries to the real receiver and through the
//! reconciliation pass (a review whose webhook was lost), against the
//! GitHub stand-in.

use std::collections::HashMap;
use std::sync::Arc;

use draco::compose::{App, SourceChoice};
use draco::sources::fixtures::FixtureSet;
use serde_json::{Value, json};

use crate::github::{TOKEN, github_env, signed};
use crate::github_standin::{REPOSITORY, StandIn};

const APPROVERS: &str = r#"
[approval]
quorum = { critical = 2, high = 1, medium = 1, low = 1 }

[[approvers]]
name = "Ada Lovelace"
github = "ada-l"
[[approvers]]
name = "Bob Hopper"
github = "bob-h"
"#;

pub(crate) struct ReviewApp {
    pub(crate) app: Arc<App>,
    pub(crate) standin: StandIn,
    url: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
    server: Option<draco::server::Running>,
}

impl ReviewApp {
    async fn start() -> Self {
        Self::start_with(APPROVERS).await
    }

    /// [`ReviewApp::start`] with another `[approval]` and `[[approvers]]`.
    pub(crate) async fn start_with(approvers: &str) -> Self {
        let standin = StandIn::start(TOKEN).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("draco.toml");
        std::fs::write(&path, approvers).expect("config");
        let env: HashMap<String, String> = github_env(&standin)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let loaded = draco::config::load(Some(&path), &env).expect("config loads");
        let app = App::build(
            loaded,
            dir.path().join("data"),
            SourceChoice::Fixtures(FixtureSet::EmbeddedDemo),
        )
        .await
        .expect("app");
        let server = draco::server::spawn(app.clone(), ([127, 0, 0, 1], 0).into())
            .await
            .expect("bind");
        Self {
            url: format!("http://{}/webhooks/github", server.addr),
            app,
            standin,
            http: reqwest::Client::new(),
            _dir: dir,
            server: Some(server),
        }
    }

    /// Posts a signed delivery, then processes what was stored.
    pub(crate) async fn deliver(&self, event: &str, delivery: &str, body: &Value) -> u16 {
        let bytes = serde_json::to_vec(body).expect("json");
        let status = self
            .http
            .post(&self.url)
            .header("X-GitHub-Event", event)
            .header("X-GitHub-Delivery", delivery)
            .header("X-Hub-Signature-256", signed(&bytes).expect("signature"))
            .header("Content-Type", "application/json")
            .body(bytes)
            .send()
            .await
            .expect("answer")
            .status()
            .as_u16();
        draco::events::process_pending(
            &*self.app.store,
            Some(&self.app.deciding()),
            chrono::Utc::now(),
        )
        .await
        .expect("processed");
        status
    }

    pub(crate) async fn finding(&self, id: i64) -> Value {
        let findings = self.app.store.findings().await.expect("findings");
        let crs = self.app.store.change_requests().await.expect("crs");
        findings
            .iter()
            .map(|f| draco::report::finding_json(f, crs.iter().find(|c| c.finding_id == f.id)))
            .find(|f| f["id"] == id)
            .expect("finding")
    }

    /// A finding of `severity` with its pull request number and head.
    pub(crate) async fn pick(&self, severity: &str) -> (i64, u64, String, String) {
        let findings = self.app.store.findings().await.expect("findings");
        let crs = self.app.store.change_requests().await.expect("crs");
        for f in findings {
            if f.finding.severity.as_str() != severity {
                continue;
            }
            if let Some(cr) = crs
                .iter()
                .find(|c| c.finding_id == f.id && c.state.is_pending())
            {
                let number = cr
                    .location
                    .rsplit('/')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("a pull request number");
                return (
                    f.id.get(),
                    number,
                    cr.branch.clone(),
                    cr.head_commit.clone(),
                );
            }
        }
        panic!("no {severity} finding waiting");
    }

    pub(crate) async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            let _ = server.shutdown().await;
        }
    }
}

pub(crate) fn review(
    action: &str,
    login: &str,
    state: &str,
    commit: &str,
    number: u64,
    branch: &str,
) -> Value {
    json!({
        "action": action,
        "review": { "user": { "login": login, "type": if login.ends_with("[bot]") { "Bot" } else { "User" } },
                    "state": state, "commit_id": commit, "body": "" },
        "pull_request": { "number": number, "user": { "login": "draco-bot" },
                          "head": { "ref": branch, "sha": commit, "repo": { "full_name": REPOSITORY } } },
        "repository": { "full_name": REPOSITORY },
        "sender": { "login": login },
    })
}

fn comment(action: &str, login: &str, body: &str, number: u64) -> Value {
    json!({
        "action": action,
        "issue": { "number": number, "pull_request": { "url": "x" } },
        "comment": { "user": { "login": login, "type": "User" }, "body": body,
                     "created_at": chrono::Utc::now().to_rfc3339() },
        "repository": { "full_name": REPOSITORY },
        "sender": { "login": login },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_approvers_review_of_the_proposed_commit_counts() {
    let review_app = ReviewApp::start().await;
    review_app.app.scan(chrono::Utc::now()).await.expect("scan");
    let (id, number, branch, head) = review_app.pick("high").await;
    let older = "0123456789abcdef0123456789abcdef01234567";

    let refused = [
        (
            "by the pull request's author",
            review("submitted", "draco-bot", "approved", &head, number, &branch),
        ),
        (
            "by a bot",
            review(
                "submitted",
                "ada-l[bot]",
                "approved",
                &head,
                number,
                &branch,
            ),
        ),
        (
            "by someone not an approver",
            review("submitted", "mallory", "approved", &head, number, &branch),
        ),
        (
            "on an older commit",
            review("submitted", "ada-l", "approved", older, number, &branch),
        ),
        (
            "a comment",
            review("submitted", "ada-l", "commented", &head, number, &branch),
        ),
        (
            "an edited review",
            review("edited", "ada-l", "approved", &head, number, &branch),
        ),
    ];
    for (i, (what, body)) in refused.iter().enumerate() {
        let status = review_app
            .deliver("pull_request_review", &format!("refused-{i}"), body)
            .await;
        assert_eq!(status, 202, "{what}");
        let finding = review_app.finding(id).await;
        assert!(
            finding["change_request"]["state"] == "open"
                || finding["change_request"]["state"] == "awaiting_approval",
            "{what}: {finding}"
        );
        assert_eq!(finding["change_request"]["approvals"], json!([]), "{what}");
    }
    // An edited comment never decides, nor a comment from a non-approver.
    review_app
        .deliver(
            "issue_comment",
            "c-1",
            &comment("edited", "ada-l", "/draco approve", number),
        )
        .await;
    review_app
        .deliver(
            "issue_comment",
            "c-2",
            &comment("created", "mallory", "/draco approve", number),
        )
        .await;
    assert_eq!(
        review_app.finding(id).await["change_request"]["approvals"],
        json!([])
    );

    let status = review_app
        .deliver(
            "pull_request_review",
            "ok-1",
            &review("submitted", "ada-l", "approved", &head, number, &branch),
        )
        .await;
    assert_eq!(status, 202);
    let merged = review_app.finding(id).await;
    assert_eq!(merged["change_request"]["state"], "merged", "{merged}");
    assert_eq!(
        merged["change_request"]["approvals"][0]["channel"],
        "github"
    );
    let pull = review_app
        .standin
        .pulls()
        .into_iter()
        .find(|p| p.number == number)
        .expect("pull");
    assert!(pull.merged, "merged on GitHub");

    // The next scan says on the pull request whether the finding is gone
    // (here it is not: the fixtures did not change), once.
    review_app.app.scan(chrono::Utc::now()).await.expect("scan");
    review_app.app.scan(chrono::Utc::now()).await.expect("scan");
    let pull = review_app
        .standin
        .pulls()
        .into_iter()
        .find(|p| p.number == number)
        .expect("pull");
    let notes: Vec<_> = pull
        .comments
        .iter()
        .filter(|c| c.contains(&format!("still sees finding {id}")))
        .collect();
    assert_eq!(notes.len(), 1, "{:?}", pull.comments);

    let audit = review_app
        .app
        .store
        .audit_events(None)
        .await
        .expect("audit");
    let refusals = audit
        .iter()
        .filter(|e| e.action == "approval.refused")
        .count();
    assert!(refusals >= 5, "every refused review is audited: {refusals}");
    review_app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dismissed_review_withdraws_and_a_lost_review_counts_at_the_next_scan() {
    let review_app = ReviewApp::start().await;
    review_app.app.scan(chrono::Utc::now()).await.expect("scan");
    let (id, number, branch, head) = review_app.pick("critical").await;

    review_app
        .deliver(
            "pull_request_review",
            "a-1",
            &review("submitted", "ada-l", "approved", &head, number, &branch),
        )
        .await;
    let one = review_app.finding(id).await;
    assert_eq!(one["change_request"]["approvals"][0]["state"], "counted");
    assert_ne!(
        one["change_request"]["state"], "merged",
        "a critical change needs two"
    );

    review_app
        .deliver(
            "pull_request_review",
            "a-2",
            &review("dismissed", "ada-l", "dismissed", &head, number, &branch),
        )
        .await;
    let withdrawn = review_app.finding(id).await;
    assert_eq!(
        withdrawn["change_request"]["approvals"][0]["state"], "withdrawn",
        "{withdrawn}"
    );

    // Bob's approval arrives by webhook; Ada approves again but that
    // delivery is lost: the next scan reads the reviews back.
    review_app
        .deliver(
            "pull_request_review",
            "b-1",
            &review("submitted", "bob-h", "approved", &head, number, &branch),
        )
        .await;
    assert_ne!(
        review_app.finding(id).await["change_request"]["state"],
        "merged"
    );
    review_app
        .standin
        .add_review(number, "ada-l", "APPROVED", &head);
    review_app
        .standin
        .add_review(number, "bob-h", "APPROVED", &head);
    review_app.app.scan(chrono::Utc::now()).await.expect("scan");
    let merged = review_app.finding(id).await;
    assert_eq!(merged["change_request"]["state"], "merged", "{merged}");
    assert_eq!(
        merged["change_request"]["decided_by"], "Bob Hopper, Ada Lovelace",
        "{merged}"
    );
    review_app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draco_reject_comment_by_an_approver_closes_the_pull_request() {
    let review_app = ReviewApp::start().await;
    review_app.app.scan(chrono::Utc::now()).await.expect("scan");
    let (id, number, _, _) = review_app.pick("high").await;
    let status = review_app
        .deliver(
            "issue_comment",
            "c-9",
            &comment(
                "created",
                "ada-l",
                "/draco reject not during the freeze",
                number,
            ),
        )
        .await;
    assert_eq!(status, 202);
    let closed = review_app.finding(id).await;
    assert_eq!(closed["change_request"]["state"], "closed", "{closed}");
    let pull = review_app
        .standin
        .pulls()
        .into_iter()
        .find(|p| p.number == number)
        .expect("pull");
    assert_eq!(pull.state, "closed");
    assert!(
        pull.comments
            .iter()
            .any(|c| c.contains("not during the freeze") && c.contains("via github")),
        "closed with the reason: {:?}",
        pull.comments
    );
    review_app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comment_written_before_the_current_commit_and_a_dismissal_that_came_first_never_count() {
    let review_app = ReviewApp::start().await;
    review_app.app.scan(chrono::Utc::now()).await.expect("scan");
    let (id, number, branch, head) = review_app.pick("high").await;

    // Written an hour before the commit was proposed (delivered late).
    let mut old = comment("created", "ada-l", "/draco approve", number);
    old["comment"]["created_at"] =
        json!((chrono::Utc::now() - chrono::TimeDelta::hours(1)).to_rfc3339());
    review_app.deliver("issue_comment", "late-1", &old).await;
    assert_eq!(
        review_app.finding(id).await["change_request"]["approvals"],
        json!([])
    );
    let mut undated = comment("created", "ada-l", "/draco approve", number);
    undated["comment"]
        .as_object_mut()
        .expect("comment")
        .remove("created_at");
    review_app
        .deliver("issue_comment", "late-2", &undated)
        .await;
    assert_eq!(
        review_app.finding(id).await["change_request"]["approvals"],
        json!([])
    );

    // Review 77 dismissed, and only then its submission delivered.
    let mut dismissed = review("dismissed", "ada-l", "dismissed", &head, number, &branch);
    dismissed["review"]["id"] = json!(77);
    review_app
        .deliver("pull_request_review", "d-77", &dismissed)
        .await;
    let mut submitted = review("submitted", "ada-l", "approved", &head, number, &branch);
    submitted["review"]["id"] = json!(77);
    review_app
        .deliver("pull_request_review", "s-77", &submitted)
        .await;
    let still = review_app.finding(id).await;
    assert_eq!(still["change_request"]["approvals"], json!([]), "{still}");
    assert_ne!(still["change_request"]["state"], "merged");

    // A fresh comment now does count.
    review_app
        .deliver(
            "issue_comment",
            "now-1",
            &comment("created", "ada-l", "/draco approve", number),
        )
        .await;
    assert_eq!(
        review_app.finding(id).await["change_request"]["state"],
        "merged"
    );
    review_app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_nobody_decides_expires_even_when_nobody_was_messaged() {
    let review_app = ReviewApp::start().await;
    let t0 = chrono::Utc::now();
    review_app.app.scan(t0).await.expect("scan");
    let (id, number, branch, head) = review_app.pick("critical").await;
    review_app
        .deliver(
            "pull_request_review",
            "a-1",
            &review("submitted", "ada-l", "approved", &head, number, &branch),
        )
        .await;
    let follow_up = |at| {
        let app = review_app.app.clone();
        async move {
            draco::notify::follow_up(&*app.store, &app.notifier, &*app.change_requests, at)
                .await
                .expect("follow-up")
        }
    };
    assert_eq!(
        follow_up(t0 + chrono::TimeDelta::hours(71)).await.expired,
        0
    );
    assert!(follow_up(t0 + chrono::TimeDelta::hours(73)).await.expired >= 1);
    let expired = review_app.finding(id).await;
    assert_eq!(expired["change_request"]["state"], "expired", "{expired}");
    let pull = review_app
        .standin
        .pulls()
        .into_iter()
        .find(|p| p.number == number)
        .expect("pull");
    assert_eq!(pull.state, "closed", "the expired pull request is closed");
    // Bob's approval now decides nothing.
    let status = review_app
        .deliver(
            "pull_request_review",
            "b-1",
            &review("submitted", "bob-h", "approved", &head, number, &branch),
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(
        review_app.finding(id).await["change_request"]["state"],
        "expired"
    );
    review_app.stop().await;
}
