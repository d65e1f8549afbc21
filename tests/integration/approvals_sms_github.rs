//! The SMS channel with the GitHub backend: the text links the pull
//! request, and a signed `YES <code>` merges it on the GitHub stand-in with
//! the approved commit as the guard.

use std::collections::HashMap;

use draco::compose::{App, SourceChoice};
use draco::sources::fixtures::FixtureSet;
use secrecy::SecretString;

use crate::approvals_sms::TwilioStandIn;
use crate::github::{TOKEN, github_env};
use crate::github_standin::StandIn;
use crate::support::free_port;

const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const AUTH_TOKEN: &str = "twilio-auth-token-for-tests-0123";
const ADA: &str = "+15551234567";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sms_yes_merges_the_pull_request_it_links() {
    let standin = StandIn::start(TOKEN).await;
    let twilio = TwilioStandIn::start().await;
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("draco.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[server]
public_url = "http://127.0.0.1:{port}"

[twilio]
api_url = "{}"
account_sid = "{ACCOUNT_SID}"
from = "+15550001111"

[approval]
notify = ["sms"]
quorum = {{ critical = 1, high = 1, medium = 1, low = 1 }}

[[approvers]]
name = "Ada Lovelace"
phone = "{ADA}"
"#,
            twilio.url()
        ),
    )
    .expect("config");
    let mut env: HashMap<String, String> = github_env(&standin)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    env.insert("DRACO_TWILIO_AUTH_TOKEN".into(), AUTH_TOKEN.into());
    let loaded = draco::config::load(Some(&path), &env).expect("config loads");
    let app = App::build(
        loaded,
        dir.path().join("data"),
        SourceChoice::Fixtures(FixtureSet::EmbeddedDemo),
    )
    .await
    .expect("app");
    let server = draco::server::spawn(app.clone(), ([127, 0, 0, 1], port).into())
        .await
        .expect("bind");
    app.scan(chrono::Utc::now()).await.expect("scan");

    let pull = standin.pulls().into_iter().next().expect("a pull request");
    let link = format!("/pull/{}", pull.number);
    let message = twilio
        .sent()
        .into_iter()
        .find(|m| {
            m.to == ADA && m.body.ends_with("to reject.") && m.body.contains(&format!("{link} "))
        })
        .expect("an SMS linking the pull request");
    let at = message.body.find("Reply YES ").expect("a code") + "Reply YES ".len();
    let code = &message.body[at..at + 6];

    let url = format!("http://127.0.0.1:{port}/webhooks/twilio");
    let params: Vec<(String, String)> = [
        ("Body", format!("YES {code}")),
        ("From", ADA.to_owned()),
        (
            "MessageSid",
            "SM0000000000000000000000000000000a".to_owned(),
        ),
        ("To", "+15550001111".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let signature =
        draco::channels::twilio::signature(&SecretString::from(AUTH_TOKEN), &url, &params);
    let response = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", signature)
        .body(
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&params)
                .finish(),
        )
        .send()
        .await
        .expect("answer");
    let twiml = response.text().await.expect("text");
    assert!(twiml.contains("approved and merged"), "{twiml}");
    let merged = standin
        .pulls()
        .into_iter()
        .find(|p| p.number == pull.number)
        .expect("pull");
    assert!(merged.merged, "merged on GitHub");
    let merges: Vec<_> = standin
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT" && r.path.ends_with(&format!("/pulls/{}/merge", pull.number)))
        .collect();
    assert_eq!(merges.len(), 1, "merged once");
    let body: serde_json::Value = serde_json::from_slice(&merges[0].body).expect("json");
    assert!(
        body["sha"].as_str().is_some_and(|s| s.len() == 40),
        "the approved commit guards the merge: {body}"
    );
    let _ = server.shutdown().await;
}
