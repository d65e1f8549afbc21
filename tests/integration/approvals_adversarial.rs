//! Attacks on the approval workflow (issue 13): each test is a way somebody
//! tried to get a change merged, or a decision made, without the approval
//! Draco promises. Each one failed before its fix.

use std::sync::Arc;

use serde_json::Value;

use crate::approvals_sms::SmsApp;

const ADA: &str = "+15551234567";
const BOB: &str = "+15557654321";

fn branch_of(finding: &Value) -> String {
    finding["change_request"]["branch"]
        .as_str()
        .expect("a change request")
        .to_owned()
}

async fn critical_waiting(sms: &SmsApp) -> Value {
    sms.findings()
        .await
        .into_iter()
        .find(|f| {
            f["severity"] == "critical" && f["change_request"]["state"] == "awaiting_approval"
        })
        .expect("a critical finding awaiting approval")
}

async fn by_id(sms: &SmsApp, id: &Value) -> Value {
    sms.findings()
        .await
        .into_iter()
        .find(|f| &f["id"] == id)
        .expect("finding")
}

/// Rewrites the configuration file, then restarts the daemon on it.
async fn reconfigure(sms: &mut SmsApp, from: &str, to: &str) {
    let path = sms.dir.path().join("draco.toml");
    let config = std::fs::read_to_string(&path).expect("config");
    assert!(config.contains(from), "{config}");
    std::fs::write(&path, config.replace(from, to)).expect("config");
    sms.restart().await;
}

/// An approver taken out of `[[approvers]]` no longer decides anything: the
/// approval they gave before their removal does not count toward the
/// quorum either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approver_removed_from_the_directory_no_longer_counts_toward_the_quorum() {
    let mut sms = SmsApp::start().await;
    sms.app.scan(chrono::Utc::now()).await.expect("scan");
    let critical = critical_waiting(&sms).await;
    let id = critical["id"].clone();
    let branch = branch_of(&critical);
    let ada = sms.code_for(ADA, &branch).expect("Ada asked");
    let bob = sms.code_for(BOB, &branch).expect("Bob asked");
    let (_, twiml) = sms.reply(ADA, &format!("YES {ada}"), None).await;
    assert!(twiml.contains("counted (1 of 2)"), "{twiml}");

    // Ada leaves; Carol takes her place in the directory.
    reconfigure(
        &mut sms,
        "name = \"Ada Lovelace\"\nphone = \"+15551234567\"",
        "name = \"Carol Shaw\"\nphone = \"+15550002222\"",
    )
    .await;
    let (_, twiml) = sms.reply(BOB, &format!("YES {bob}"), None).await;
    let after = by_id(&sms, &id).await;
    assert_ne!(
        after["change_request"]["state"], "merged",
        "merged with the approval of somebody no longer an approver: {twiml} {after}"
    );
    assert!(twiml.contains("counted (1 of 2)"), "{twiml}");
    sms.stop().await;
}

/// An approver whose `severities` no longer include the change's: their
/// earlier approval does not count toward its quorum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_by_someone_no_longer_allowed_for_the_severity_does_not_count() {
    let mut sms = SmsApp::start().await;
    sms.app.scan(chrono::Utc::now()).await.expect("scan");
    let critical = critical_waiting(&sms).await;
    let id = critical["id"].clone();
    let branch = branch_of(&critical);
    let ada = sms.code_for(ADA, &branch).expect("Ada asked");
    let bob = sms.code_for(BOB, &branch).expect("Bob asked");
    let (_, twiml) = sms.reply(BOB, &format!("YES {bob}"), None).await;
    assert!(twiml.contains("counted (1 of 2)"), "{twiml}");

    // Bob may now decide high changes only (Cy joins, so that a critical
    // change can still find two).
    reconfigure(
        &mut sms,
        "severities = [\"critical\", \"high\"]",
        "severities = [\"high\"]\n[[approvers]]\nname = \"Cy Young\"\nphone = \"+15550003333\"",
    )
    .await;
    let (_, twiml) = sms.reply(ADA, &format!("YES {ada}"), None).await;
    let after = by_id(&sms, &id).await;
    assert_ne!(
        after["change_request"]["state"], "merged",
        "merged with an approval its giver may no longer give: {twiml} {after}"
    );
    sms.stop().await;
}

/// One person, renamed in the configuration only by case (`Ada Lovelace` →
/// `ada lovelace`, which `draco approve --as` matches either way), is still
/// one approver: approving again under the new spelling does not make two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_person_under_two_spellings_of_a_name_is_counted_once() {
    let mut sms = SmsApp::start().await;
    sms.app.scan(chrono::Utc::now()).await.expect("scan");
    let critical = critical_waiting(&sms).await;
    let id = critical["id"].clone();
    let branch = branch_of(&critical);
    let ada = sms.code_for(ADA, &branch).expect("Ada asked");
    let (_, twiml) = sms.reply(ADA, &format!("YES {ada}"), None).await;
    assert!(twiml.contains("counted (1 of 2)"), "{twiml}");

    reconfigure(
        &mut sms,
        "name = \"Ada Lovelace\"",
        "name = \"ada lovelace\"",
    )
    .await;
    let finding = draco::domain::FindingId::new(id.as_i64().expect("id"));
    let result = draco::approve::decide_from_cli(
        &*sms.app.store,
        sms.app.change_requests.as_ref(),
        &sms.app.notifier.directory,
        &sms.app.notifier.policy.quorum,
        finding,
        &draco::approve::Approver::parse("Ada Lovelace").expect("name"),
        draco::approve::Verdict::Approve,
        None,
        chrono::Utc::now(),
    )
    .await
    .expect("vote");
    let after = by_id(&sms, &id).await;
    assert_ne!(
        after["change_request"]["state"], "merged",
        "one person made a quorum of two: {result:?} {after}"
    );
    sms.stop().await;
}

/// The lockout after 5 wrong codes an hour holds when the guesses arrive
/// all at once: at most 5 are ever checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_wrong_codes_do_not_get_past_the_lockout() {
    let sms = Arc::new(SmsApp::start().await);
    sms.app.scan(chrono::Utc::now()).await.expect("scan");
    let eip = sms.finding("eip_unassociated").await;
    let code = sms.code_for(ADA, &branch_of(&eip)).expect("code");
    let mut guesses = Vec::new();
    for i in 0..20u32 {
        let guess = format!(
            "{:06}",
            (code.parse::<u32>().expect("digits") + 1 + i) % 1_000_000
        );
        let sms = sms.clone();
        guesses.push(tokio::spawn(async move {
            sms.reply(ADA, &format!("YES {guess}"), None).await
        }));
    }
    let mut checked = 0;
    for guess in guesses {
        let (status, twiml) = guess.await.expect("task");
        assert_eq!(status, 200, "{twiml}");
        if twiml.contains("not valid") {
            checked += 1;
        }
    }
    assert!(
        checked <= 5,
        "{checked} guesses were checked against the codes; the lockout allows 5 an hour"
    );
}

/// The pull request's author may not approve it, by review nor by a
/// `/draco approve` comment: Draco's GitHub identity can be a person's
/// account, who is then an approver too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pull_requests_author_cannot_approve_it_by_comment() {
    use crate::approvals_github::ReviewApp;
    use crate::github_standin::REPOSITORY;
    let review_app = ReviewApp::start_with(
        r#"
[approval]
quorum = { critical = 2, high = 1, medium = 1, low = 1 }

[[approvers]]
name = "Drake Author"
github = "draco-bot"
[[approvers]]
name = "Bob Hopper"
github = "bob-h"
"#,
    )
    .await;
    review_app.app.scan(chrono::Utc::now()).await.expect("scan");
    let (id, number, branch, head) = review_app.pick("high").await;
    // As a review: refused already.
    review_app
        .deliver(
            "pull_request_review",
            "author-review",
            &crate::approvals_github::review(
                "submitted",
                "draco-bot",
                "approved",
                &head,
                number,
                &branch,
            ),
        )
        .await;
    assert_eq!(
        review_app.finding(id).await["change_request"]["approvals"],
        serde_json::json!([])
    );
    // As a comment command, on the pull request the author opened.
    let status = review_app
        .deliver(
            "issue_comment",
            "author-comment",
            &serde_json::json!({
                "action": "created",
                "issue": { "number": number, "pull_request": { "url": "x" },
                           "user": { "login": "Draco-Bot", "type": "User" } },
                "comment": { "user": { "login": "draco-bot", "type": "User" },
                             "created_at": chrono::Utc::now().to_rfc3339(),
                             "body": "/draco approve" },
                "repository": { "full_name": REPOSITORY },
                "sender": { "login": "draco-bot" },
            }),
        )
        .await;
    assert_eq!(status, 202);
    let after = review_app.finding(id).await;
    assert_ne!(after["change_request"]["state"], "merged", "{after}");
    assert_eq!(
        after["change_request"]["approvals"],
        serde_json::json!([]),
        "{after}"
    );
    review_app.stop().await;
}
