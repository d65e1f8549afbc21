//! Approvals by SMS, end to end on loopback: a scan opens change requests,
//! Draco texts each approver a code through a Twilio stand-in (speaking the
//! Messages API: form-encoded, basic auth, `201` with a Message SID), and a
//! correctly signed reply on `POST /webhooks/twilio` decides. Every bad
//! case of the issue changes nothing and is audited.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use draco::compose::{App, SourceChoice};
use draco::sources::fixtures::FixtureSet;
use secrecy::SecretString;
use serde_json::Value;

use crate::support::{free_port, git};

const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const AUTH_TOKEN: &str = "twilio-auth-token-for-tests-0123";
const FROM: &str = "+15550001111";
const ADA: &str = "+15551234567";
const BOB: &str = "+15557654321";

/// One message the stand-in received.
#[derive(Debug, Clone)]
pub struct Sent {
    pub to: String,
    pub from: String,
    pub body: String,
}

/// A Twilio stand-in: `POST /2010-04-01/Accounts/{sid}/Messages.json`,
/// answering `201` with a Message SID when the basic auth is the account's,
/// `401` otherwise (Twilio error 20003).
pub struct TwilioStandIn {
    pub addr: SocketAddr,
    sent: Arc<Mutex<Vec<Sent>>>,
}

impl TwilioStandIn {
    pub async fn start() -> Self {
        let sent: Arc<Mutex<Vec<Sent>>> = Arc::default();
        let app = Router::new()
            .route("/2010-04-01/Accounts/{sid}/Messages.json", post(messages))
            .with_state(sent.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, sent }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn sent(&self) -> Vec<Sent> {
        self.sent.lock().expect("lock").clone()
    }
}

async fn messages(
    State(sent): State<Arc<Mutex<Vec<Sent>>>>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    use base64::Engine as _;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT_SID}:{AUTH_TOKEN}"))
    );
    let authorised = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == expected);
    let form_encoded = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if sid != ACCOUNT_SID || !authorised || !form_encoded {
        return (
            StatusCode::UNAUTHORIZED,
            r#"{"code": 20003, "message": "Authenticate", "status": 401}"#.into(),
        );
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let message = Sent {
        to: form.get("To").cloned().unwrap_or_default(),
        from: form.get("From").cloned().unwrap_or_default(),
        body: form.get("Body").cloned().unwrap_or_default(),
    };
    let mut all = sent.lock().expect("lock");
    all.push(message);
    (
        StatusCode::CREATED,
        format!(r#"{{"sid": "SM{:032x}", "status": "queued"}}"#, all.len()),
    )
}

/// The configuration: Ada and Bob reachable by SMS, two approvals for a
/// critical change, one otherwise.
fn config(port: u16, twilio: &str, approval: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"

[twilio]
api_url = "{twilio}"
account_sid = "{ACCOUNT_SID}"
from = "{FROM}"

[approval]
notify = ["sms"]
quorum = {{ critical = 2, high = 1, medium = 1, low = 1 }}
{approval}

[[approvers]]
name = "Ada Lovelace"
phone = "{ADA}"
[[approvers]]
name = "Bob Hopper"
phone = "{BOB}"
severities = ["critical", "high"]
"#
    )
}

pub struct SmsApp {
    pub app: Arc<App>,
    pub twilio: TwilioStandIn,
    pub port: u16,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
    server: Option<draco::server::Running>,
}

impl SmsApp {
    pub async fn start() -> Self {
        Self::start_with("").await
    }

    /// [`SmsApp::start`] with more `[approval]` settings.
    pub async fn start_with(approval: &str) -> Self {
        let twilio = TwilioStandIn::start().await;
        let port = free_port();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("draco.toml");
        std::fs::write(&path, config(port, &twilio.url(), approval)).expect("write config");
        let (app, server) = Self::build(&dir, port).await;
        Self {
            app,
            twilio,
            port,
            http: reqwest::Client::new(),
            dir,
            server: Some(server),
        }
    }

    /// The application and its server on `dir`'s configuration and data.
    async fn build(dir: &tempfile::TempDir, port: u16) -> (Arc<App>, draco::server::Running) {
        let path = dir.path().join("draco.toml");
        let env: HashMap<String, String> =
            [("DRACO_TWILIO_AUTH_TOKEN".to_owned(), AUTH_TOKEN.to_owned())].into();
        let loaded = draco::config::load(Some(&path), &env).expect("the configuration loads");
        let app = App::build(
            loaded,
            dir.path().join("data"),
            SourceChoice::Fixtures(FixtureSet::EmbeddedDemo),
        )
        .await
        .expect("the application builds");
        let server = draco::server::spawn(app.clone(), ([127, 0, 0, 1], port).into())
            .await
            .expect("the server binds");
        (app, server)
    }

    /// Stops the process's application and starts a new one on the same
    /// data directory, as a daemon restart does.
    pub async fn restart(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = server.shutdown().await;
        }
        self.app.store.close().await;
        let (app, server) = Self::build(&self.dir, self.port).await;
        self.app = app;
        self.server = Some(server);
    }

    pub async fn follow_up(
        &self,
        at: chrono::DateTime<chrono::Utc>,
    ) -> draco::notify::FollowUpReport {
        draco::notify::follow_up(
            &*self.app.store,
            &self.app.notifier,
            &*self.app.change_requests,
            at,
        )
        .await
        .expect("follow-up")
    }

    pub fn webhook_url(&self) -> String {
        format!("http://127.0.0.1:{}/webhooks/twilio", self.port)
    }

    /// Posts an inbound SMS as Twilio would: every parameter of a real
    /// one, signed with the auth token (or `signature` as given).
    pub async fn reply(&self, from: &str, body: &str, signature: Option<&str>) -> (u16, String) {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let sid = format!(
            "SM{:032x}",
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        self.reply_as(&sid, from, body, signature).await
    }

    /// [`SmsApp::reply`] with the given `MessageSid` (a replay repeats one).
    pub async fn reply_as(
        &self,
        sid: &str,
        from: &str,
        body: &str,
        signature: Option<&str>,
    ) -> (u16, String) {
        let params: Vec<(String, String)> = [
            ("AccountSid", ACCOUNT_SID),
            ("ApiVersion", "2010-04-01"),
            ("Body", body),
            ("From", from),
            ("FromCountry", "US"),
            ("MessageSid", sid),
            ("NumMedia", "0"),
            ("NumSegments", "1"),
            ("SmsStatus", "received"),
            ("To", FROM),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let signed = draco::channels::twilio::signature(
            &SecretString::from(AUTH_TOKEN),
            &self.webhook_url(),
            &params,
        );
        let mut request = self
            .http
            .post(self.webhook_url())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(&params)
                    .finish(),
            );
        match signature {
            Some("") => {}
            Some(given) => request = request.header("X-Twilio-Signature", given),
            None => request = request.header("X-Twilio-Signature", signed),
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    pub async fn findings(&self) -> Vec<Value> {
        let findings = self.app.store.findings().await.expect("findings");
        let crs = self.app.store.change_requests().await.expect("crs");
        findings
            .iter()
            .map(|f| {
                let cr = crs.iter().find(|c| c.finding_id == f.id);
                draco::report::finding_json(f, cr)
            })
            .collect()
    }

    pub async fn finding(&self, kind: &str) -> Value {
        self.findings()
            .await
            .into_iter()
            .find(|f| f["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} finding"))
    }

    /// The code in the SMS to `to` about the change on `branch`.
    pub fn code_for(&self, to: &str, branch: &str) -> Option<String> {
        self.twilio
            .sent()
            .into_iter()
            .rev()
            .filter(|m| m.to == to && m.body.contains(branch))
            .filter_map(|m| {
                let at = m.body.find("Reply YES ")? + "Reply YES ".len();
                Some(m.body[at..at + 6].to_owned())
            })
            .next()
    }

    pub async fn audit_actions(&self) -> Vec<(String, String, Value)> {
        self.app
            .store
            .audit_events(None)
            .await
            .expect("audit")
            .into_iter()
            .map(|e| (e.actor, e.action, e.details))
            .collect()
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            let _ = server.shutdown().await;
        }
    }
}

fn branch(finding: &Value) -> String {
    finding["change_request"]["branch"]
        .as_str()
        .expect("a change request")
        .to_owned()
}

#[tokio::test]
async fn a_signed_sms_reply_with_its_code_approves_and_merges_once() {
    let sms = SmsApp::start().await;
    sms.app.scan(chrono::Utc::now()).await.expect("scan");
    let sent = sms.twilio.sent();
    assert!(!sent.is_empty(), "no SMS was sent");
    for m in &sent {
        assert_eq!(m.from, FROM);
        assert!(m.body.starts_with("Draco: "), "{}", m.body);
        assert!(m.body.contains("Reply YES "), "{}", m.body);
        assert!(m.body.contains("Branch draco/"), "{}", m.body);
        assert!(!m.body.contains("/tmp/"), "a host path: {}", m.body);
    }
    // A high finding: one approval is the quorum.
    let eip = sms.finding("eip_unassociated").await;
    assert_eq!(eip["change_request"]["state"], "awaiting_approval", "{eip}");
    // A finding that costs money says how much.
    assert!(
        sent.iter()
            .any(|m| m.body.contains(&branch(&eip)) && m.body.contains("/month")),
        "{sent:?}"
    );
    let branch = branch(&eip);
    let code = sms.code_for(ADA, &branch).expect("Ada got a code for it");

    let first_sid = "SM00000000000000000000000000000001f";
    let (status, twiml) = sms
        .reply_as(first_sid, ADA, &format!("YES {code}"), None)
        .await;
    assert_eq!(status, 200, "{twiml}");
    assert!(twiml.contains("<Response><Message>"), "{twiml}");
    assert!(twiml.contains("approved and merged"), "{twiml}");

    let after = sms.finding("eip_unassociated").await;
    let cr = &after["change_request"];
    assert_eq!(cr["state"], "merged", "{after}");
    assert_eq!(cr["decided_by"], "Ada Lovelace");
    let approvals = cr["approvals"].as_array().expect("approvals");
    assert_eq!(approvals.len(), 1, "{approvals:?}");
    assert_eq!(approvals[0]["approver"], "Ada Lovelace");
    assert_eq!(approvals[0]["channel"], "sms");
    assert_eq!(approvals[0]["state"], "counted");
    assert_eq!(approvals[0]["commit"], cr["head_commit"]);
    let repo = sms.dir.path().join("data/remediations.git");
    let message = git(&repo, &["log", "-1", "--format=%B", "main"]);
    assert!(message.contains("Ada Lovelace via sms"), "{message}");

    // The same reply again (a replay): nothing decided, audited.
    let (status, twiml) = sms.reply(ADA, &format!("YES {code}"), None).await;
    assert_eq!(status, 200);
    assert!(twiml.contains("nothing decided"), "{twiml}");
    let refusals: Vec<_> = sms
        .audit_actions()
        .await
        .into_iter()
        .filter(|(_, action, _)| action == "approval.refused")
        .collect();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    // The very same signed request replayed (its MessageSid again):
    // answered neutrally, handled no further, audited.
    let (status, twiml) = sms
        .reply_as(first_sid, ADA, &format!("YES {code}"), None)
        .await;
    assert_eq!(status, 200);
    assert!(twiml.ends_with("<Response/>"), "{twiml}");
    let refusals = sms
        .audit_actions()
        .await
        .into_iter()
        .filter(|(_, action, _)| action == "approval.refused")
        .count();
    assert_eq!(refusals, 2);
    // The code never reaches the audit log.
    let all = format!("{:?}", sms.audit_actions().await);
    assert!(!all.contains(&code), "the code is in the audit log");
    sms.stop().await;
}

#[tokio::test]
async fn a_critical_change_needs_two_distinct_approvers() {
    let sms = SmsApp::start().await;
    sms.app.scan(chrono::Utc::now()).await.expect("scan");
    let critical = sms
        .findings()
        .await
        .into_iter()
        .find(|f| {
            f["severity"] == "critical" && f["change_request"]["state"] == "awaiting_approval"
        })
        .expect("a critical finding awaiting approval");
    let branch = branch(&critical);
    let id = critical["id"].as_i64().expect("id");
    let ada = sms.code_for(ADA, &branch).expect("Ada was asked");
    let bob = sms.code_for(BOB, &branch).expect("Bob was asked");
    let (_, twiml) = sms.reply(ADA, &format!("YES {ada}"), None).await;
    assert!(twiml.contains("counted (1 of 2)"), "{twiml}");
    let now = sms
        .findings()
        .await
        .into_iter()
        .find(|f| f["id"] == id)
        .expect("finding");
    assert_eq!(
        now["change_request"]["state"], "awaiting_approval",
        "quorum not met yet"
    );
    // Bob cannot use Ada's code, nor Ada approve twice.
    let (_, twiml) = sms.reply(BOB, &format!("YES {ada}"), None).await;
    assert!(twiml.contains("not valid"), "{twiml}");
    let (_, twiml) = sms.reply(BOB, &format!("YES {bob}"), None).await;
    assert!(twiml.contains("approved and merged"), "{twiml}");
    let done = sms
        .findings()
        .await
        .into_iter()
        .find(|f| f["id"] == id)
        .expect("finding");
    assert_eq!(done["change_request"]["state"], "merged");
    assert_eq!(
        done["change_request"]["decided_by"],
        "Ada Lovelace, Bob Hopper"
    );
    sms.stop().await;
}

#[tokio::test]
async fn forged_missing_unknown_and_malformed_replies_change_nothing() {
    let sms = SmsApp::start().await;
    sms.app.scan(chrono::Utc::now()).await.expect("scan");
    let eip = sms.finding("eip_unassociated").await;
    let code = sms.code_for(ADA, &branch(&eip)).expect("code");
    let yes = format!("YES {code}");

    let (status, _) = sms.reply(ADA, &yes, Some("")).await;
    assert_eq!(status, 401, "a missing signature");
    let (status, _) = sms
        .reply(ADA, &yes, Some("RSOYDt4T1cUTdK1PDd93/VVr8B8="))
        .await;
    assert_eq!(status, 401, "a forged signature");
    // Signed over another URL (the Host header, not the public URL).
    let params = vec![
        ("Body".to_owned(), yes.clone()),
        ("From".to_owned(), ADA.to_owned()),
    ];
    let elsewhere = draco::channels::twilio::signature(
        &SecretString::from(AUTH_TOKEN),
        "http://draco.internal:8080/webhooks/twilio",
        &params,
    );
    let response = sms
        .http
        .post(sms.webhook_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", elsewhere)
        .body(format!("Body=YES+{code}&From=%2B15551234567"))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 401);

    // Signed, but without From: malformed.
    let signed = draco::channels::twilio::signature(
        &SecretString::from(AUTH_TOKEN),
        &sms.webhook_url(),
        &[("Body".to_owned(), yes.clone())],
    );
    let response = sms
        .http
        .post(sms.webhook_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", signed)
        .body(format!("Body=YES+{code}"))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 400);

    // A number that is not an approver's: a neutral answer, audited.
    let (status, twiml) = sms.reply("+15559999999", &yes, None).await;
    assert_eq!(status, 200);
    assert!(twiml.ends_with("<Response/>"), "{twiml}");
    let audit = sms.audit_actions().await;
    assert!(
        audit.iter().any(
            |(actor, action, _)| action == "approval.refused" && actor.starts_with("sms:+1555")
        ),
        "{audit:?}"
    );
    assert!(
        !format!("{audit:?}").contains("+15559999999"),
        "the number is masked"
    );

    let still = sms.finding("eip_unassociated").await;
    assert_eq!(still["change_request"]["state"], "awaiting_approval");
    assert_eq!(still["change_request"]["approvals"], serde_json::json!([]));
    sms.stop().await;
}

#[tokio::test]
async fn keywords_never_decide_and_stop_silences_the_number() {
    let sms = SmsApp::start().await;
    sms.app.scan(chrono::Utc::now()).await.expect("scan");
    let eip = sms.finding("eip_unassociated").await;
    let branch = branch(&eip);
    assert!(sms.code_for(ADA, &branch).is_some());

    for keyword in ["STOP", "YES", "START", "HELP", "yes.", "NO"] {
        let (status, _) = sms.reply(ADA, keyword, None).await;
        assert_eq!(status, 200, "{keyword}");
    }
    let still = sms.finding("eip_unassociated").await;
    assert_eq!(still["change_request"]["state"], "awaiting_approval");
    assert_eq!(still["change_request"]["approvals"], serde_json::json!([]));

    // STOP: no more messages to that number, even for new requests.
    let (_, twiml) = sms.reply(ADA, "STOP", None).await;
    assert!(twiml.ends_with("<Response/>"), "{twiml}");
    assert!(sms.app.store.is_opted_out(ADA).await.expect("read"));
    let (_, twiml) = sms.reply(ADA, "START", None).await;
    assert!(twiml.contains("A bare YES approves nothing"), "{twiml}");
    assert!(!sms.app.store.is_opted_out(ADA).await.expect("read"));
    sms.stop().await;
}

#[tokio::test]
async fn wrong_codes_lock_the_approver_out_for_an_hour() {
    let sms = SmsApp::start().await;
    sms.app.scan(chrono::Utc::now()).await.expect("scan");
    let eip = sms.finding("eip_unassociated").await;
    let code = sms.code_for(ADA, &branch(&eip)).expect("code");
    let wrong = if code == "000000" { "000001" } else { "000000" };
    for _ in 0..5 {
        let (_, twiml) = sms.reply(ADA, &format!("YES {wrong}"), None).await;
        assert!(twiml.contains("not valid"), "{twiml}");
    }
    let (_, twiml) = sms.reply(ADA, &format!("YES {code}"), None).await;
    assert!(twiml.contains("too many wrong codes"), "{twiml}");
    let still = sms.finding("eip_unassociated").await;
    assert_eq!(still["change_request"]["state"], "awaiting_approval");
    let audit = sms.audit_actions().await;
    assert!(
        audit
            .iter()
            .any(|(_, action, _)| action == "approval.locked_out"),
        "{audit:?}"
    );
    sms.stop().await;
}

#[tokio::test]
async fn a_rejection_needs_a_reason_and_closes() {
    let sms = SmsApp::start().await;
    sms.app.scan(chrono::Utc::now()).await.expect("scan");
    let eip = sms.finding("eip_unassociated").await;
    let code = sms.code_for(ADA, &branch(&eip)).expect("code");
    let (_, twiml) = sms.reply(ADA, &format!("NO {code}"), None).await;
    assert!(twiml.contains("needs a reason"), "{twiml}");
    let (_, twiml) = sms
        .reply(ADA, &format!("NO {code} the partner still uses it"), None)
        .await;
    assert!(twiml.contains("rejected"), "{twiml}");
    let after = sms.finding("eip_unassociated").await;
    assert_eq!(after["change_request"]["state"], "closed", "{after}");
    assert_eq!(after["status"], "rejected");
    sms.stop().await;
}

#[tokio::test]
async fn a_restart_between_the_sms_and_the_reply_loses_nothing() {
    let mut sms = SmsApp::start().await;
    sms.app.scan(chrono::Utc::now()).await.expect("scan");
    let eip = sms.finding("eip_unassociated").await;
    let code = sms.code_for(ADA, &branch(&eip)).expect("code");
    sms.restart().await;
    let (_, twiml) = sms.reply(ADA, &format!("YES {code}"), None).await;
    assert!(twiml.contains("approved and merged"), "{twiml}");
    sms.stop().await;
}

#[tokio::test]
async fn a_reminder_at_half_time_escalation_then_expiry() {
    let sms = SmsApp::start_with("expires_after_hours = 4").await;
    let t0 = chrono::Utc::now();
    sms.app.scan(t0).await.expect("scan");
    // A high finding: Ada is its first approver, Bob the next.
    let high = sms
        .findings()
        .await
        .into_iter()
        .find(|f| f["severity"] == "high" && f["change_request"]["state"] == "awaiting_approval")
        .expect("a high finding awaiting approval");
    let id = high["id"].clone();
    let branch = branch(&high);
    let first = sms.code_for(ADA, &branch).expect("Ada asked");
    assert!(
        sms.code_for(BOB, &branch).is_none(),
        "Bob is asked only on escalation"
    );

    let hour = chrono::TimeDelta::hours(1);
    assert_eq!(
        sms.follow_up(t0 + hour).await,
        draco::notify::FollowUpReport::default()
    );
    let report = sms.follow_up(t0 + hour * 2).await;
    assert!(report.reminded >= 1, "{report:?}");
    let reminded = sms.code_for(ADA, &branch).expect("a reminder");
    let reminder = sms
        .twilio
        .sent()
        .into_iter()
        .rev()
        .find(|m| m.to == ADA && m.body.contains(&branch))
        .expect("reminder");
    assert!(
        reminder.body.starts_with("Draco: Reminder:"),
        "{}",
        reminder.body
    );
    // Reminded once only.
    let again = sms.follow_up(t0 + hour * 2).await;
    assert_eq!(again.reminded, 0, "{again:?}");
    let report = sms.follow_up(t0 + hour * 3).await;
    assert!(report.escalated >= 1, "{report:?}");
    assert!(
        sms.code_for(BOB, &branch).is_some(),
        "Bob asked on escalation"
    );
    // The first code was replaced by the reminder's.
    if first != reminded {
        let (_, twiml) = sms.reply(ADA, &format!("YES {first}"), None).await;
        assert!(twiml.contains("not valid"), "{twiml}");
    }

    let report = sms.follow_up(t0 + hour * 4).await;
    assert!(report.expired >= 1, "{report:?}");
    let expired = sms
        .findings()
        .await
        .into_iter()
        .find(|f| f["id"] == id)
        .expect("finding");
    assert_eq!(expired["change_request"]["state"], "expired", "{expired}");
    assert_eq!(expired["status"], "open");
    let (_, twiml) = sms.reply(ADA, &format!("YES {reminded}"), None).await;
    assert!(twiml.contains("nothing decided"), "{twiml}");
    let repo = sms.dir.path().join("data/remediations.git");
    let heads = git(
        &repo,
        &["for-each-ref", "--format=%(refname)", "refs/heads"],
    );
    assert!(
        !heads.contains(&branch),
        "the expired branch is closed: {heads}"
    );
    sms.stop().await;
}

#[tokio::test]
async fn the_daily_cap_holds_messages_then_releases_the_most_severe_first() {
    let sms = SmsApp::start_with("max_messages_per_approver_per_day = 2").await;
    let t0 = chrono::Utc::now();
    sms.app.scan(t0).await.expect("scan");
    let to_ada = |sms: &SmsApp| sms.twilio.sent().iter().filter(|m| m.to == ADA).count();
    assert_eq!(to_ada(&sms), 2, "{:?}", sms.twilio.sent());
    let held: usize = {
        let mut held = 0;
        for cr in sms.app.store.change_requests().await.expect("crs") {
            held += sms
                .app
                .store
                .asks(&cr.backend, &cr.branch)
                .await
                .expect("asks")
                .iter()
                .filter(|a| a.delivery == draco::store::approvals::AskDelivery::Held)
                .count();
        }
        held
    };
    assert!(held > 0, "the rest wait");
    let shown = sms.findings().await;
    assert!(
        shown.iter().any(|f| f["change_request"]["asks"]
            .as_array()
            .is_some_and(|asks| asks.iter().any(|a| a["delivery"] == "held"))),
        "draco findings says which asks wait"
    );
    // The first messages went to the most severe changes.
    let findings = sms.findings().await;
    let first = &sms.twilio.sent()[0];
    let about = findings
        .iter()
        .find(|f| {
            f["change_request"]["branch"]
                .as_str()
                .is_some_and(|b| first.body.contains(b))
        })
        .expect("the first message names a change");
    assert_eq!(about["severity"], "critical", "{about}");
    let report = sms.follow_up(t0 + chrono::TimeDelta::hours(25)).await;
    assert!(report.released >= 1, "{report:?}");
    assert!(to_ada(&sms) > 2);
    sms.stop().await;
}
