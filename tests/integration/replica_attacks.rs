//! Attacks on several `draco run` replicas sharing one PostgreSQL database
//! (the replica work of issue 14): forged and replayed webhooks spread over
//! replicas, `kill -9` and `SIGSTOP` at each step of an ask, a scan and a
//! merge, database sessions terminated and tables locked, hostile input on
//! every route. Each test asserts what must hold (one merge per approval,
//! no message, pull request or merge twice, nothing lost, every refusal
//! audited), so a failing one names a defect.
//!
//! Needs PostgreSQL (`DRACO_TEST_POSTGRES_URL`, by default the server on
//! 127.0.0.1:5432): skipped with a message without it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use draco::store::ScratchDatabase;
use secrecy::SecretString;
use sqlx::Connection as _;

use crate::github::{TOKEN, github_env, signed};
use crate::github_standin::{REPOSITORY, StandIn};
use crate::support::{Draco, demo_fixtures, free_port};

const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const AUTH_TOKEN: &str = "twilio-auth-token-for-tests-0123";
const ADA: &str = "+15551234567";
const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const TTL_SECS: u64 = 3;

// ---------------------------------------------------------------------
// A Twilio stand-in that records each message when it arrives and answers
// after a delay (so a replica can be killed while it waits).

#[derive(Debug, Clone)]
struct Text {
    to: String,
    body: String,
}

#[derive(Clone, Default)]
struct TwilioState {
    texts: Arc<Mutex<Vec<Text>>>,
    latency: Arc<Mutex<Duration>>,
}

struct SlowTwilio {
    addr: SocketAddr,
    state: TwilioState,
}

impl SlowTwilio {
    async fn start() -> Self {
        let state = TwilioState::default();
        let app = Router::new()
            .route(
                "/2010-04-01/Accounts/{sid}/Messages.json",
                post(twilio_message),
            )
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, state }
    }
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    fn texts(&self) -> Vec<Text> {
        self.state.texts.lock().expect("lock").clone()
    }
    fn set_latency(&self, latency: Duration) {
        *self.state.latency.lock().expect("lock") = latency;
    }
}

async fn twilio_message(State(state): State<TwilioState>, body: Bytes) -> (StatusCode, String) {
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let n = {
        let mut texts = state.texts.lock().expect("lock");
        texts.push(Text {
            to: form.get("To").cloned().unwrap_or_default(),
            body: form.get("Body").cloned().unwrap_or_default(),
        });
        texts.len()
    };
    let latency = *state.latency.lock().expect("lock");
    tokio::time::sleep(latency).await;
    (
        StatusCode::CREATED,
        format!(r#"{{"sid": "SM{n:032x}", "status": "queued"}}"#),
    )
}

// ---------------------------------------------------------------------
// Several replicas on one scratch database.

struct Replica {
    child: Child,
    port: u16,
    log: PathBuf,
    alive: bool,
}

impl Drop for Replica {
    fn drop(&mut self) {
        if self.alive {
            // SAFETY: kill(2) on our own child, not reaped yet.
            unsafe {
                libc::kill(self.child.id() as i32, libc::SIGCONT);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Cluster {
    _database: ScratchDatabase,
    db: String,
    standin: StandIn,
    twilio: SlowTwilio,
    draco: Draco,
    config: PathBuf,
    ports: Vec<u16>,
    replicas: Vec<Replica>,
    scan_on_start: bool,
}

struct Options {
    replicas: usize,
    scan_on_start: bool,
    lock_wait_secs: u64,
    approval_extra: &'static str,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            replicas: 3,
            scan_on_start: true,
            lock_wait_secs: 120,
            approval_extra: "",
        }
    }
}

impl Cluster {
    async fn start(options: Options) -> Option<Cluster> {
        let database =
            ScratchDatabase::for_test("draco_attacks", "the replica attack tests").await?;
        let db = database.url().display();
        let standin = StandIn::start(TOKEN).await;
        let twilio = SlowTwilio::start().await;
        let draco = Draco::new();
        let ports: Vec<u16> = (0..options.replicas).map(|_| free_port()).collect();
        let config = draco.path("replicas.toml");
        std::fs::write(
            &config,
            format!(
                r#"
database_url = "{db}"
schedule = "0 0 0 1 1 *"

[replicas]
lease_ttl_secs = {TTL_SECS}

[scan]
lock_wait_secs = {lock_wait}

[server]
public_url = "http://127.0.0.1:{public}"

[twilio]
api_url = "{twilio}"
account_sid = "{ACCOUNT_SID}"
from = "+15550001111"

[approval]
notify = ["sms"]
quorum = {{ critical = 1, high = 1, medium = 1, low = 1 }}
{extra}

[[approvers]]
name = "Ada Lovelace"
phone = "{ADA}"
github = "ada-l"
"#,
                lock_wait = options.lock_wait_secs,
                public = ports[0],
                twilio = twilio.url(),
                extra = options.approval_extra,
            ),
        )
        .expect("config");
        let mut cluster = Cluster {
            _database: database,
            db,
            standin,
            twilio,
            draco,
            config,
            ports,
            replicas: Vec::new(),
            scan_on_start: options.scan_on_start,
        };
        for i in 0..options.replicas {
            let replica = cluster.spawn(i);
            cluster.replicas.push(replica);
        }
        for i in 0..options.replicas {
            cluster.wait_ready(i).await;
        }
        Some(cluster)
    }

    fn spawn(&self, i: usize) -> Replica {
        let log = self.draco.path(&format!("replica-{i}.log"));
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_draco"));
        for (key, _) in std::env::vars() {
            if key.starts_with("DRACO_") {
                cmd.env_remove(key);
            }
        }
        for (k, v) in github_env(&self.standin) {
            cmd.env(k, v);
        }
        cmd.env("DRACO_CONFIG", &self.config)
            .env("DRACO_LOG", "info")
            .env("DRACO_TWILIO_AUTH_TOKEN", AUTH_TOKEN)
            .env("DRACO_MASTER_KEY", MASTER_KEY)
            .env("DRACO_SOURCE_KIND", "fixtures")
            .env("DRACO_SOURCE_FIXTURES_DIR", demo_fixtures())
            .env(
                "DRACO_SERVER_LISTEN",
                format!("127.0.0.1:{}", self.ports[i]),
            )
            .arg("--data-dir")
            .arg(self.draco.path(&format!("replica-{i}")))
            .arg("run");
        if self.scan_on_start {
            cmd.arg("--scan-on-start");
        }
        cmd.stdout(Stdio::null()).stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .expect("log file"),
        );
        Replica {
            child: cmd.spawn().expect("draco run starts"),
            port: self.ports[i],
            log,
            alive: true,
        }
    }

    async fn wait_ready(&self, i: usize) {
        let port = self.replicas[i].port;
        let ready = wait_for(Duration::from_secs(60), || async move {
            let status = reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
                .await
                .ok()
                .map(|r| r.status().as_u16());
            (status == Some(200)).then_some(())
        })
        .await;
        assert!(ready.is_some(), "replica {i} never ready\n{}", self.logs());
    }

    fn logs(&self) -> String {
        self.replicas
            .iter()
            .map(|r| {
                format!(
                    "--- replica on port {} ---\n{}",
                    r.port,
                    std::fs::read_to_string(&r.log).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.replicas[i].log).unwrap_or_default()
    }

    fn signal(&self, i: usize, signal: i32) {
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(self.replicas[i].child.id() as i32, signal);
        }
    }

    fn kill(&mut self, i: usize) {
        self.replicas[i].child.kill().expect("SIGKILL");
        self.replicas[i].child.wait().expect("reaped");
        self.replicas[i].alive = false;
    }

    /// The index of the replica holding lease `job`.
    async fn holder(&self, job: &'static str) -> Option<usize> {
        let holder: Option<String> =
            scalar_opt(&self.db, "SELECT holder FROM leases WHERE job = $1", job).await;
        let holder = holder?;
        self.replicas
            .iter()
            .position(|r| r.alive && holder.contains(&format!("-{}-", r.child.id())))
    }

    /// Posts an SMS reply to replica `i`, signed for the public URL.
    async fn sms(&self, i: usize, from: &str, body: &str, sid: &str) -> (u16, String) {
        let url = format!("http://127.0.0.1:{}/webhooks/twilio", self.ports[0]);
        let params = sms_params(from, body, sid);
        let signature =
            draco::channels::twilio::signature(&SecretString::from(AUTH_TOKEN), &url, &params);
        self.sms_raw(
            i,
            &form(&params),
            Some(&signature),
            "application/x-www-form-urlencoded",
        )
        .await
    }

    async fn sms_raw(
        &self,
        i: usize,
        body: &str,
        signature: Option<&str>,
        content_type: &str,
    ) -> (u16, String) {
        let mut request = reqwest::Client::new()
            .post(format!(
                "http://127.0.0.1:{}/webhooks/twilio",
                self.replicas[i].port
            ))
            .header("content-type", content_type)
            .body(body.to_owned());
        if let Some(signature) = signature {
            request = request.header("X-Twilio-Signature", signature);
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.text().await.unwrap_or_default())
            }
            // The replica died with the request (kill -9 tests).
            Err(error) => (0, error.to_string()),
        }
    }

    /// Posts a GitHub delivery to replica `i`.
    async fn github(
        &self,
        i: usize,
        event: &str,
        delivery: &str,
        body: &[u8],
        signature: Option<String>,
    ) -> u16 {
        let mut request = reqwest::Client::new()
            .post(format!(
                "http://127.0.0.1:{}/webhooks/github",
                self.replicas[i].port
            ))
            .header("X-GitHub-Event", event)
            .header("X-GitHub-Delivery", delivery)
            .header("Content-Type", "application/json")
            .body(body.to_vec());
        if let Some(signature) = signature {
            request = request.header("X-Hub-Signature-256", signature);
        }
        request.send().await.expect("answer").status().as_u16()
    }

    fn count_requests(&self, method: &str, suffix: &str) -> usize {
        self.standin
            .requests()
            .iter()
            .filter(|r| r.method == method && r.path.ends_with(suffix))
            .count()
    }

    fn merges(&self) -> usize {
        self.standin
            .requests()
            .iter()
            .filter(|r| r.method == "PUT" && r.path.ends_with("/merge"))
            .count()
    }

    /// Waits for the scan to end `ok` and every demo pull request's text.
    async fn wait_for_texts(&self, n: usize, limit: Duration) -> Vec<Text> {
        wait_for(limit, || async {
            let texts = self.twilio.texts();
            (texts.len() >= n).then_some(texts)
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "only {} texts: {:?}\n{}",
                self.twilio.texts().len(),
                self.twilio.texts(),
                self.logs()
            )
        })
    }

    /// The code of the text about pull request `number`.
    fn code_for(&self, number: u64) -> String {
        let link = format!("/pull/{number} ");
        let text = self
            .twilio
            .texts()
            .into_iter()
            .rev()
            .find(|t| t.body.contains(&link))
            .unwrap_or_else(|| panic!("no text about pull request {number}"));
        code_in(&text.body)
    }

    async fn audit_whys(&self, action: &'static str) -> Vec<String> {
        let rows: Vec<(String,)> = query_rows(
            &self.db,
            "SELECT details FROM audit_events WHERE action = $1 ORDER BY seq",
            action,
        )
        .await;
        rows.into_iter().map(|(d,)| d).collect()
    }
}

fn code_in(body: &str) -> String {
    let at = body.find("Reply YES ").expect("a code") + "Reply YES ".len();
    body[at..at + 6].to_owned()
}

fn sms_params(from: &str, body: &str, sid: &str) -> Vec<(String, String)> {
    vec![
        ("Body".to_owned(), body.to_owned()),
        ("From".to_owned(), from.to_owned()),
        ("MessageSid".to_owned(), sid.to_owned()),
        ("To".to_owned(), "+15550001111".to_owned()),
    ]
}

fn form(params: &[(String, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

fn sid(n: u32) -> String {
    format!("SM{n:032x}")
}

async fn wait_for<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if let Some(found) = check().await {
            return Some(found);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

async fn connect(url: &str) -> sqlx::PgConnection {
    sqlx::PgConnection::connect(url).await.expect("connect")
}

async fn scalar(url: &str, sql: &'static str) -> i64 {
    let mut conn = connect(url).await;
    let n: i64 = sqlx::query_scalar(sql)
        .fetch_one(&mut conn)
        .await
        .expect("query");
    let _ = conn.close().await;
    n
}

async fn scalar_opt(url: &str, sql: &'static str, arg: &str) -> Option<String> {
    let mut conn = connect(url).await;
    let found: Option<String> = sqlx::query_scalar(sql)
        .bind(arg.to_owned())
        .fetch_optional(&mut conn)
        .await
        .expect("query");
    let _ = conn.close().await;
    found
}

async fn query_rows(url: &str, sql: &'static str, arg: &str) -> Vec<(String,)> {
    let mut conn = connect(url).await;
    let rows: Vec<(String,)> = sqlx::query_as(sql)
        .bind(arg.to_owned())
        .fetch_all(&mut conn)
        .await
        .expect("query");
    let _ = conn.close().await;
    rows
}

async fn texts_per_pull(cluster: &Cluster) -> BTreeMap<u64, usize> {
    let mut per_pull = BTreeMap::new();
    for pull in cluster.standin.pulls() {
        let link = format!("/pull/{} ", pull.number);
        let n = cluster
            .twilio
            .texts()
            .iter()
            .filter(|t| t.body.contains(&link) && !t.body.contains("Reminder"))
            .count();
        per_pull.insert(pull.number, n);
    }
    per_pull
}

fn creates_per_branch(cluster: &Cluster) -> BTreeMap<String, usize> {
    let mut per_branch = BTreeMap::new();
    for pull in cluster.standin.pulls() {
        *per_branch.entry(pull.head.clone()).or_default() += 1;
    }
    per_branch
}

fn merged_answer(text: &str) -> bool {
    text.contains("approved and merged")
}

// ---------------------------------------------------------------------
// 1. Forged and replayed webhooks across replicas.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack1_sms_yes_raced_and_replayed_across_replicas_merges_once() {
    let Some(cluster) = Cluster::start(Options::default()).await else {
        return;
    };
    let texts = cluster.wait_for_texts(8, Duration::from_secs(90)).await;
    assert!(texts.iter().all(|t| t.to == ADA));
    let pulls = cluster.standin.pulls();
    let (a, b) = (pulls[0].number, pulls[1].number);

    // A: one Twilio delivery (one MessageSid) reaching all three replicas
    // at the same instant (Twilio retrying through a load balancer).
    let code_a = cluster.code_for(a);
    let yes_a = format!("YES {code_a}");
    let sid_a = sid(0xa1);
    let (r0, r1, r2) = tokio::join!(
        cluster.sms(0, ADA, &yes_a, &sid_a),
        cluster.sms(1, ADA, &yes_a, &sid_a),
        cluster.sms(2, ADA, &yes_a, &sid_a),
    );
    let answers = [&r0, &r1, &r2];
    eprintln!("same sid on three replicas: {answers:?}");
    assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
    assert_eq!(
        answers.iter().filter(|(_, t)| merged_answer(t)).count(),
        1,
        "{answers:?}"
    );
    // B: three different messages carrying the same code, one per replica.
    let code_b = cluster.code_for(b);
    let yes_b = format!("YES {code_b}");
    let (sid_b1, sid_b2, sid_b3) = (sid(0xb1), sid(0xb2), sid(0xb3));
    let (s0, s1, s2) = tokio::join!(
        cluster.sms(0, ADA, &yes_b, &sid_b1),
        cluster.sms(1, ADA, &yes_b, &sid_b2),
        cluster.sms(2, ADA, &yes_b, &sid_b3),
    );
    let answers_b = [&s0, &s1, &s2];
    eprintln!("same code, three sids, three replicas: {answers_b:?}");
    assert_eq!(
        answers_b.iter().filter(|(_, t)| merged_answer(t)).count(),
        1,
        "{answers_b:?}"
    );
    // Replayed later to another replica: nothing more.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let replay_a = cluster.sms(2, ADA, &yes_a, &sid(0xa1)).await;
    let replay_b = cluster.sms(0, ADA, &yes_b, &sid(0xb2)).await;
    let reuse_b = cluster.sms(1, ADA, &yes_b, &sid(0xb9)).await;
    eprintln!("replays: {replay_a:?} {replay_b:?} {reuse_b:?}");
    assert!(
        !merged_answer(&replay_a.1) && !merged_answer(&replay_b.1) && !merged_answer(&reuse_b.1)
    );

    // Forged: no signature, a wrong one, one for another host, one for the
    // replica's own address (not the public URL).
    let params = sms_params(
        ADA,
        &format!("YES {}", cluster.code_for(pulls[2].number)),
        &sid(0xc1),
    );
    let body = form(&params);
    let token = SecretString::from(AUTH_TOKEN);
    let other_host =
        draco::channels::twilio::signature(&token, "https://evil.example/webhooks/twilio", &params);
    let own_address = draco::channels::twilio::signature(
        &token,
        &format!("http://127.0.0.1:{}/webhooks/twilio", cluster.ports[1]),
        &params,
    );
    let wrong_token = draco::channels::twilio::signature(
        &SecretString::from("not-the-auth-token-000000000000"),
        &format!("http://127.0.0.1:{}/webhooks/twilio", cluster.ports[0]),
        &params,
    );
    let form_type = "application/x-www-form-urlencoded";
    for (what, signature) in [
        ("none", None),
        ("garbage", Some("bm90IGEgc2lnbmF0dXJl")),
        ("another host", Some(other_host.as_str())),
        ("the replica's own address", Some(own_address.as_str())),
        ("another auth token", Some(wrong_token.as_str())),
    ] {
        let (status, _) = cluster.sms_raw(1, &body, signature, form_type).await;
        assert_eq!(status, 401, "signature {what}");
    }

    // Exactly two merges, each pull request merged once.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let puts = cluster.merges();
    let mut states = Vec::new();
    for n in [a, b] {
        states.push(
            scalar_opt(
                &cluster.db,
                "SELECT state FROM change_requests WHERE location LIKE '%/pull/' || $1",
                &n.to_string(),
            )
            .await,
        );
    }
    eprintln!("merge requests sent to GitHub: {puts}; change requests: {states:?}");
    assert_eq!(
        states,
        vec![Some("merged".to_owned()), Some("merged".to_owned())],
        "both approved changes recorded merged"
    );
    assert_eq!(puts, 2, "two approvals, two merge requests");
    let merged: Vec<u64> = cluster
        .standin
        .pulls()
        .iter()
        .filter(|p| p.merged)
        .map(|p| p.number)
        .collect();
    assert_eq!(merged, vec![a, b]);
    // Every refused answer audited: two duplicate deliveries of A and the
    // replay of A and B are replays; B's two losers and its reuse are
    // refused for the used code or the decided change.
    let refused = cluster.audit_whys("approval.refused").await;
    eprintln!("refusals: {refused:#?}");
    let replays = refused
        .iter()
        .filter(|d| d.contains("already handled"))
        .count();
    assert_eq!(replays, 4, "{refused:#?}");
    let others = refused.len() - replays;
    assert!(others >= 3, "B's losers and reuse audited: {refused:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack1_github_review_replayed_across_replicas_merges_once() {
    let Some(cluster) = Cluster::start(Options::default()).await else {
        return;
    };
    cluster.wait_for_texts(8, Duration::from_secs(90)).await;
    let pull = cluster.standin.pulls()[0].clone();
    let head = cluster.standin.branch_head(&pull.head).expect("head");
    let review = serde_json::json!({
        "action": "submitted",
        "review": { "id": 4242, "user": { "login": "ada-l", "type": "User" },
                    "state": "approved", "commit_id": head, "body": "" },
        "pull_request": { "number": pull.number, "user": { "login": "draco-bot" },
                          "head": { "ref": pull.head, "sha": head, "repo": { "full_name": REPOSITORY } } },
        "repository": { "full_name": REPOSITORY },
        "sender": { "login": "ada-l" },
    });
    let bytes = serde_json::to_vec(&review).expect("json");
    let deliveries_before = scalar(&cluster.db, "SELECT COUNT(*) FROM webhook_deliveries").await;
    // Forged first: nothing stored.
    let forged = [
        cluster
            .github(0, "pull_request_review", "d-forged-1", &bytes, None)
            .await,
        cluster
            .github(
                1,
                "pull_request_review",
                "d-forged-2",
                &bytes,
                Some("sha256=00".into()),
            )
            .await,
        cluster
            .github(
                2,
                "pull_request_review",
                "d-forged-3",
                &bytes,
                Some(draco::gitops::github::signature::sign(
                    &SecretString::from("another-secret"),
                    &bytes,
                )),
            )
            .await,
    ];
    assert_eq!(forged, [401, 401, 401]);
    assert_eq!(
        scalar(&cluster.db, "SELECT COUNT(*) FROM webhook_deliveries").await,
        deliveries_before
    );
    // One delivery to three replicas at once.
    let (a, b, c) = tokio::join!(
        cluster.github(0, "pull_request_review", "d-1", &bytes, signed(&bytes)),
        cluster.github(1, "pull_request_review", "d-1", &bytes, signed(&bytes)),
        cluster.github(2, "pull_request_review", "d-1", &bytes, signed(&bytes)),
    );
    eprintln!("one delivery on three replicas: {a} {b} {c}");
    let mut statuses = [a, b, c];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 200, 202]);
    let merged = wait_for(Duration::from_secs(20), || async {
        cluster
            .standin
            .pulls()
            .iter()
            .any(|p| p.number == pull.number && p.merged)
            .then_some(())
    })
    .await;
    assert!(
        merged.is_some(),
        "the review merged nothing\n{}",
        cluster.logs()
    );
    // Replayed later: the same delivery id to another replica, and the
    // same signed body under fresh delivery ids (the id is not signed).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let again = cluster
        .github(2, "pull_request_review", "d-1", &bytes, signed(&bytes))
        .await;
    assert_eq!(again, 200);
    for (i, id) in ["d-2", "d-3"].iter().enumerate() {
        let status = cluster
            .github(i, "pull_request_review", id, &bytes, signed(&bytes))
            .await;
        eprintln!("replay under a new delivery id {id}: {status}");
    }
    // Processed (or found to change nothing) within the poll.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let unprocessed = scalar(
        &cluster.db,
        "SELECT COUNT(*) FROM webhook_deliveries WHERE processed_at IS NULL",
    )
    .await;
    eprintln!("deliveries not yet processed: {unprocessed}");
    assert_eq!(cluster.merges(), 1, "one approval, one merge");
    let votes = scalar(
        &cluster.db,
        "SELECT COUNT(*) FROM approvals WHERE channel = 'github'",
    )
    .await;
    assert_eq!(votes, 1, "the replayed review counted once");
}

// ---------------------------------------------------------------------
// Wrong-code guesses spread over replicas: the lockout is per approver,
// whichever replica checks.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack1_wrong_code_guesses_spread_over_replicas_stay_within_the_lockout() {
    let Some(cluster) = Cluster::start(Options {
        scan_on_start: false,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    // 5 is the default approval.max_wrong_codes_per_hour.
    let limit = 5;
    let mut guesses = Vec::new();
    for n in 0..30u32 {
        let replica = (n % 3) as usize;
        let body = format!("YES {:06}", 100_000 + n * 7919);
        guesses.push((replica, body, sid(0x1000 + n)));
    }
    let answers = futures_join_all(&cluster, &guesses).await;
    let wrong = answers
        .iter()
        .filter(|(_, t)| t.contains("that code is not valid"))
        .count();
    let locked = answers
        .iter()
        .filter(|(_, t)| t.contains("too many wrong codes"))
        .count();
    let counted = scalar(&cluster.db, "SELECT COUNT(*) FROM approval_failures").await;
    eprintln!(
        "30 guesses over 3 replicas: {wrong} checked against the store, {locked} locked out, {counted} counted"
    );
    assert!(
        wrong <= limit,
        "{wrong} guesses were checked, the lockout allows {limit}"
    );
}

async fn futures_join_all(
    cluster: &Cluster,
    guesses: &[(usize, String, String)],
) -> Vec<(u16, String)> {
    let mut handles = Vec::new();
    for (replica, body, sid) in guesses {
        handles.push(cluster.sms(*replica, ADA, body, sid));
    }
    let mut out = Vec::new();
    // All at once.
    let results = futures_util_join(handles).await;
    out.extend(results);
    out
}

async fn futures_util_join<F: std::future::Future<Output = (u16, String)>>(
    futures: Vec<F>,
) -> Vec<(u16, String)> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut results = vec![None; set.len()];
    let mut pending: Vec<usize> = (0..set.len()).collect();
    std::future::poll_fn(|cx| {
        pending.retain(|&i| match set[i].as_mut().poll(cx) {
            std::task::Poll::Ready(r) => {
                results[i] = Some(r);
                false
            }
            std::task::Poll::Pending => true,
        });
        if pending.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    results.into_iter().map(|r| r.expect("answered")).collect()
}

// ---------------------------------------------------------------------
// 2. kill -9 at each step of an ask, and during a merge.

/// The scan lease holder is killed while Twilio holds its first approval
/// text (the ask is `sending`); the other replicas ask the rest. No pull
/// request opened twice, no text sent twice, every pull request asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack2_killed_during_the_twilio_send_nothing_twice_nothing_lost() {
    let Some(mut cluster) = Cluster::start(Options::default()).await else {
        return;
    };
    cluster.twilio.set_latency(Duration::from_secs(3));
    let first = wait_for(Duration::from_secs(90), || async {
        (!cluster.twilio.texts().is_empty()).then_some(())
    })
    .await;
    assert!(first.is_some(), "no text\n{}", cluster.logs());
    let victim = cluster.holder("scan").await.expect("a scan lease holder");
    cluster.kill(victim);
    let killed = Instant::now();
    cluster.twilio.set_latency(Duration::ZERO);
    let sending: Vec<(String,)> = query_rows(
        &cluster.db,
        "SELECT delivery FROM approval_asks WHERE delivery = $1",
        "sending",
    )
    .await;
    eprintln!(
        "killed replica {victim} with its first text in flight; asks left sending: {}",
        sending.len()
    );
    // The approvals follow-up (every 60 s on its lease holder) asks what
    // the killed scan did not.
    let all = wait_for(Duration::from_secs(150), || async {
        let per = texts_per_pull(&cluster).await;
        (per.len() == 8 && per.values().all(|n| *n >= 1)).then_some(per)
    })
    .await;
    let per = texts_per_pull(&cluster).await;
    eprintln!(
        "texts per pull request {:.1} s after the kill: {per:?}",
        killed.elapsed().as_secs_f64()
    );
    // Long enough for a duplicate to show.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let per = texts_per_pull(&cluster).await;
    assert!(per.values().all(|n| *n <= 1), "a text sent twice: {per:?}");
    assert!(
        all.is_some(),
        "a pull request never asked: {per:?}\n{}",
        cluster.logs()
    );
    let branches = creates_per_branch(&cluster);
    assert!(branches.values().all(|n| *n == 1), "{branches:?}");
    assert_eq!(cluster.count_requests("POST", "/pulls"), 8);
}

/// The replica carrying out an SMS approval is killed while GitHub holds
/// its merge request. The approval was claimed; it must still end merged,
/// exactly once (by the approver answering again, or by Draco itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack2_killed_during_the_merge_merges_once_eventually() {
    let Some(mut cluster) = Cluster::start(Options::default()).await else {
        return;
    };
    cluster.wait_for_texts(8, Duration::from_secs(90)).await;
    let pull = cluster.standin.pulls()[0].clone();
    let code = cluster.code_for(pull.number);
    let yes = format!("YES {code}");
    cluster.standin.set_latency(Duration::from_secs(3));
    let arrivals_before = cluster.standin.arrivals().len();
    let target = 1;
    let sid_d1 = sid(0xd1);
    let (answer, ()) = tokio::join!(cluster.sms(target, ADA, &yes, &sid_d1), async {
        let put = wait_for(Duration::from_secs(20), || async {
            cluster.standin.arrivals()[arrivals_before..]
                .iter()
                .any(|(m, p)| m == "PUT" && p.ends_with("/merge"))
                .then_some(())
        })
        .await;
        assert!(put.is_some(), "no merge request\n{}", cluster.log(target));
        cluster.signal(target, libc::SIGKILL);
    });
    let killed = Instant::now();
    cluster.replicas[target].child.wait().expect("reaped");
    cluster.replicas[target].alive = false;
    cluster.standin.set_latency(Duration::ZERO);
    eprintln!("answer of the killed replica: {answer:?}");
    let state = scalar_opt(
        &cluster.db,
        "SELECT state FROM change_requests WHERE location LIKE '%/pull/' || $1",
        &pull.number.to_string(),
    )
    .await;
    eprintln!(
        "change request after the kill: {state:?}; merged on GitHub: {}",
        cluster.standin.pulls()[0].merged
    );
    // The approver, told nothing, answers again (a new message).
    let retry = cluster.sms(2, ADA, &yes, &sid(0xd2)).await;
    eprintln!("the approver answers again: {retry:?}");
    // Draco's own follow-up finishes a decision left undone for
    // ABANDONED_AFTER (2 min). Rather than wait those 2 minutes, the
    // decision is made 3 minutes old in the store; the approvals job runs
    // every minute (APPROVALS_TICK) from each replica's start, so it comes
    // within a minute.
    let backdated = {
        let mut conn = connect(&cluster.db).await;
        let n = sqlx::query(
            "UPDATE change_requests
             SET decided_at = to_char((decided_at::timestamptz - interval '3 minutes') AT TIME ZONE 'UTC',
                                      'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')
             WHERE state = 'approved'",
        )
        .execute(&mut conn)
        .await
        .expect("backdate")
        .rows_affected();
        let _ = conn.close().await;
        n
    };
    eprintln!("decisions made 3 minutes old: {backdated}");
    let merged = wait_for(Duration::from_secs(75), || async {
        cluster
            .standin
            .pulls()
            .iter()
            .any(|p| p.number == pull.number && p.merged)
            .then_some(())
    })
    .await;
    let state = scalar_opt(
        &cluster.db,
        "SELECT state FROM change_requests WHERE location LIKE '%/pull/' || $1",
        &pull.number.to_string(),
    )
    .await;
    let puts = cluster
        .standin
        .arrivals()
        .iter()
        .filter(|(m, p)| m == "PUT" && p.ends_with("/merge"))
        .count();
    eprintln!(
        "{:.1} s after the kill: change request {state:?}, merge requests {puts}, merged on GitHub {}",
        killed.elapsed().as_secs_f64(),
        merged.is_some()
    );
    assert!(
        merged.is_some(),
        "an approved change never merged (state {state:?})"
    );
    assert_eq!(state.as_deref(), Some("merged"));
}

// ---------------------------------------------------------------------
// 3. The lease holder frozen (SIGSTOP) past its lease, then woken.

/// What happened around a scan lease holder frozen (SIGSTOP) past its
/// lease and both of the new holder's waits for the scan lock, then woken.
struct Frozen {
    /// Every pull request opened within 30 s of the wake.
    finished: bool,
    /// Pull requests opened per branch.
    branches: BTreeMap<String, usize>,
    /// GitHub writes that arrived between SIGCONT and the woken replica
    /// logging that it lost the lease.
    writes_after_wake: Vec<(String, String)>,
    summary: String,
}

async fn freeze_the_scan_holder_past_its_lease() -> Option<Frozen> {
    let cluster = Cluster::start(Options {
        replicas: 2,
        lock_wait_secs: 5,
        ..Options::default()
    })
    .await?;
    cluster.standin.set_latency(Duration::from_millis(200));
    let first = wait_for(Duration::from_secs(90), || async {
        (!cluster.standin.pulls().is_empty()).then_some(())
    })
    .await;
    assert!(first.is_some(), "no pull request\n{}", cluster.logs());
    let frozen = cluster.holder("scan").await.expect("holder");
    let other = 1 - frozen;
    cluster.signal(frozen, libc::SIGSTOP);
    let pulls_at_stop = cluster.standin.pulls().len();
    // Longer than the lease's time to live plus both of the new holder's
    // waits for the scan lock (5 s each here: the takeover's, then the
    // --scan-on-start scan's), with a margin: the new holder has given up
    // on the lock before the frozen one wakes, whatever the scheduling.
    let freeze = Duration::from_secs(TTL_SECS + 1 + 2 * 5 + 6);
    let stopped_at = Instant::now();
    tokio::time::sleep(freeze).await;
    let holder_now = cluster.holder("scan").await;
    let mutating_before = cluster
        .standin
        .arrivals()
        .iter()
        .filter(|(m, _)| m != "GET")
        .count();
    eprintln!(
        "frozen replica {frozen} at {pulls_at_stop} pull requests; scan lease now held by {holder_now:?}; pull requests while frozen: {}",
        cluster.standin.pulls().len()
    );
    assert_eq!(
        holder_now,
        Some(other),
        "the lease moved\n{}",
        cluster.logs()
    );
    cluster.signal(frozen, libc::SIGCONT);
    let woken = Instant::now();
    eprintln!(
        "woken after {:.1} s frozen",
        stopped_at.elapsed().as_secs_f64()
    );
    // Wait for the woken replica to say it lost the lease.
    let lost = wait_for(Duration::from_secs(20), || {
        let log = cluster.log(frozen);
        async move { log.contains("scan lease lost mid-scan").then_some(()) }
    })
    .await;
    let mutating_after: Vec<(String, String)> = cluster.standin.arrivals()[..]
        .iter()
        .filter(|(m, _)| m != "GET")
        .skip(mutating_before)
        .cloned()
        .collect();
    eprintln!(
        "woken: lost the lease {:?} after SIGCONT; GitHub writes between SIGCONT and then: {mutating_after:?}",
        lost.map(|()| woken.elapsed())
    );
    // Let things settle and finish: every pull request once, scan resumed.
    // GitHub's latency only served to catch the holder mid-scan.
    cluster.standin.set_latency(Duration::ZERO);
    let finished = wait_for(Duration::from_secs(30), || async {
        (cluster.standin.pulls().len() == 8).then_some(())
    })
    .await;
    let scans: Vec<(String,)> = query_rows(
        &cluster.db,
        "SELECT status FROM scans WHERE status <> $1 ORDER BY id",
        "",
    )
    .await;
    let branches = creates_per_branch(&cluster);
    eprintln!(
        "{:.1} s after the wake: {} pull requests, scans {scans:?}, creates per branch {branches:?}",
        woken.elapsed().as_secs_f64(),
        cluster.standin.pulls().len()
    );
    Some(Frozen {
        finished: finished.is_some(),
        branches,
        writes_after_wake: mutating_after,
        summary: format!(
            "{} of 8 pull requests, scans {scans:?}\n{}",
            cluster.standin.pulls().len(),
            cluster.logs()
        ),
    })
}

/// D5: the new holder gives up on the scan lock while the frozen one holds
/// it; the frozen one, woken, marks its scan interrupted. The new holder
/// must still resume it (not wait for the next scheduled scan), and open
/// nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack3_a_frozen_scan_holder_woken_after_losing_its_lease() {
    let Some(frozen) = freeze_the_scan_holder_past_its_lease().await else {
        return;
    };
    assert!(
        frozen.branches.values().all(|n| *n == 1),
        "a pull request opened twice: {:?}",
        frozen.branches
    );
    assert!(
        frozen.finished,
        "the interrupted scan was never resumed: {}",
        frozen.summary
    );
}

/// D6: the woken replica must not write to GitHub once its lease has
/// expired (by its own clock, the lease was lost 17 s before it woke).
/// It did, before the lease keeper's renewal reported the loss (about
/// 100 ms after SIGCONT); now the lease carries this host's deadline and
/// the scan selects on it first, so it stops before its next step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack3_a_woken_scan_holder_writes_nothing_after_losing_its_lease() {
    let Some(frozen) = freeze_the_scan_holder_past_its_lease().await else {
        return;
    };
    assert!(
        frozen.writes_after_wake.is_empty(),
        "the woken replica wrote to GitHub after losing its lease: {:?}",
        frozen.writes_after_wake
    );
}

// ---------------------------------------------------------------------
// 4. Database trouble.

/// An SMS answer whose processing fails on a database error is answered
/// 503 so that Twilio retries; the retry (same MessageSid) must decide.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack4_an_sms_answer_cut_off_by_the_database_is_decided_on_twilios_retry() {
    let Some(cluster) = Cluster::start(Options {
        replicas: 2,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    cluster.wait_for_texts(8, Duration::from_secs(90)).await;
    let pull = cluster.standin.pulls()[0].clone();
    let yes = format!("YES {}", cluster.code_for(pull.number));
    let mut locker = connect(&cluster.db).await;
    sqlx::query("BEGIN")
        .execute(&mut locker)
        .await
        .expect("begin");
    sqlx::query("LOCK TABLE approval_asks IN ACCESS EXCLUSIVE MODE")
        .execute(&mut locker)
        .await
        .expect("lock");
    let sid_e1 = sid(0xe1);
    let (first, terminated) = tokio::join!(cluster.sms(0, ADA, &yes, &sid_e1), async {
        let mut admin = connect(&cluster.db).await;
        let until = Instant::now() + Duration::from_secs(10);
        let mut done = None;
        while Instant::now() < until {
            let killed: Vec<bool> = sqlx::query_scalar(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = current_database() AND pid <> pg_backend_pid()
                   AND wait_event_type = 'Lock'",
            )
            .fetch_all(&mut admin)
            .await
            .expect("terminate");
            if !killed.is_empty() {
                done = Some(killed.len());
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = admin.close().await;
        done
    });
    sqlx::query("ROLLBACK")
        .execute(&mut locker)
        .await
        .expect("rollback");
    let _ = locker.close().await;
    eprintln!("first delivery: {first:?}; sessions terminated: {terminated:?}");
    assert!(terminated.is_some(), "the answer never waited on the lock");
    assert_eq!(
        first.0, 503,
        "a database failure asks Twilio to retry: {first:?}"
    );
    assert_eq!(cluster.merges(), 0);
    // Twilio retries the same message, to the other replica.
    let retry = cluster.sms(1, ADA, &yes, &sid(0xe1)).await;
    eprintln!("Twilio's retry: {retry:?}");
    let refused = cluster.audit_whys("approval.refused").await;
    eprintln!("refusals: {refused:?}");
    assert!(
        merged_answer(&retry.1),
        "the retry of an answer that failed on the database was not decided: {retry:?}; refusals {refused:?}"
    );
    assert_eq!(cluster.merges(), 1);
}

/// `LOCK TABLE leases` held past the time to live mid-scan, and every
/// replica session terminated mid-scan: the scan finishes, nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack4_leases_locked_then_sessions_terminated_mid_scan() {
    let Some(cluster) = Cluster::start(Options::default()).await else {
        return;
    };
    cluster.standin.set_latency(Duration::from_millis(150));
    let first = wait_for(Duration::from_secs(90), || async {
        (!cluster.standin.pulls().is_empty()).then_some(())
    })
    .await;
    assert!(first.is_some(), "no pull request\n{}", cluster.logs());
    let mut locker = connect(&cluster.db).await;
    sqlx::query("BEGIN")
        .execute(&mut locker)
        .await
        .expect("begin");
    sqlx::query("LOCK TABLE leases IN ACCESS EXCLUSIVE MODE")
        .execute(&mut locker)
        .await
        .expect("lock");
    let locked_at = Instant::now();
    let mut ready = Vec::new();
    while locked_at.elapsed() < Duration::from_secs(TTL_SECS * 3) {
        let mut row = Vec::new();
        for r in &cluster.replicas {
            let status = reqwest::get(format!("http://127.0.0.1:{}/readyz", r.port))
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0);
            row.push(status);
        }
        ready.push(row);
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    let pulls_during_lock = cluster.standin.pulls().len();
    sqlx::query("ROLLBACK")
        .execute(&mut locker)
        .await
        .expect("rollback");
    let _ = locker.close().await;
    eprintln!("readiness during the lock: {ready:?}; pull requests {pulls_during_lock}");
    // Every session of the replicas terminated, a few times, mid-scan.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let n = scalar(
            &cluster.db,
            "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()) t",
        )
        .await;
        eprintln!(
            "terminated {n} sessions at {} pull requests",
            cluster.standin.pulls().len()
        );
    }
    cluster.standin.set_latency(Duration::ZERO);
    let done = wait_for(Duration::from_secs(120), || async {
        let per = texts_per_pull(&cluster).await;
        (cluster.standin.pulls().len() == 8 && per.values().all(|n| *n >= 1)).then_some(())
    })
    .await;
    let scans: Vec<(String,)> = query_rows(
        &cluster.db,
        "SELECT status FROM scans WHERE status <> $1 ORDER BY id",
        "",
    )
    .await;
    let per = texts_per_pull(&cluster).await;
    let branches = creates_per_branch(&cluster);
    eprintln!("after: scans {scans:?}; pull requests {branches:?}; texts {per:?}");
    assert!(branches.values().all(|n| *n == 1), "{branches:?}");
    assert!(per.values().all(|n| *n <= 1), "{per:?}");
    assert!(
        done.is_some(),
        "not every pull request opened and asked: {} pull requests, texts {per:?}, scans {scans:?}\n{}",
        cluster.standin.pulls().len(),
        cluster.logs()
    );
    for (i, r) in cluster.replicas.iter().enumerate() {
        let status = reqwest::get(format!("http://127.0.0.1:{}/readyz", r.port))
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        assert_eq!(status, 200, "replica {i} ready again");
    }
}

// ---------------------------------------------------------------------
// 5. Hostile input on every webhook and approval route.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack5_hostile_input_on_every_route_of_a_running_replica() {
    let Some(cluster) = Cluster::start(Options {
        replicas: 2,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    cluster.wait_for_texts(8, Duration::from_secs(90)).await;
    let public = format!("http://127.0.0.1:{}/webhooks/twilio", cluster.ports[0]);
    let token = SecretString::from(AUTH_TOKEN);
    let form_type = "application/x-www-form-urlencoded";
    let sign =
        |params: &[(String, String)]| draco::channels::twilio::signature(&token, &public, params);
    let mut results: Vec<(String, u16)> = Vec::new();

    // Huge bodies.
    let huge = "Body=".to_owned() + &"A".repeat(2 * 1024 * 1024);
    let (s, _) = cluster.sms_raw(1, &huge, Some("x"), form_type).await;
    results.push(("twilio 2 MiB".into(), s));
    assert!(s == 413 || s == 401 || s == 0, "{s}");
    let big_json = format!("{{\"a\":\"{}\"}}", "x".repeat(3 * 1024 * 1024));
    let s = cluster
        .github(
            1,
            "pull_request",
            "huge",
            big_json.as_bytes(),
            signed(big_json.as_bytes()),
        )
        .await;
    results.push(("github 3 MiB signed".into(), s));
    assert_eq!(s, 413);
    // Garbled form encoding, correctly signed over what it decodes to.
    let garbled = "Body=YES%ZZ%2&From=%2B1555%&MessageSid=SM%%%&&&=&To";
    let params: Vec<(String, String)> = url::form_urlencoded::parse(garbled.as_bytes())
        .into_owned()
        .collect();
    let (s, t) = cluster
        .sms_raw(1, garbled, Some(&sign(&params)), form_type)
        .await;
    results.push((format!("garbled form ({t:?})"), s));
    assert!(s < 500, "{s} {t}");
    // Invalid UTF-8 after percent-decoding.
    let bad_utf8 = "Body=YES%20%FF%FE&From=%2B15551234567&MessageSid=SMbad&To=%2B15550001111";
    let params: Vec<(String, String)> = url::form_urlencoded::parse(bad_utf8.as_bytes())
        .into_owned()
        .collect();
    let (s, t) = cluster
        .sms_raw(1, bad_utf8, Some(&sign(&params)), form_type)
        .await;
    results.push((format!("invalid UTF-8 percent-encoded ({t:?})"), s));
    assert!(s < 500, "{s} {t}");
    // Wrong content type, valid signature.
    let code = cluster.code_for(cluster.standin.pulls()[0].number);
    let params = sms_params(ADA, &format!("YES {code}"), &sid(0xf1));
    let (s, _) = cluster
        .sms_raw(1, &form(&params), Some(&sign(&params)), "application/json")
        .await;
    results.push(("wrong content type".into(), s));
    assert_eq!(s, 400);
    // Unicode phone numbers (fullwidth digits, Arabic-Indic digits, a
    // right-to-left override): not an approver, refused and audited.
    for (n, from) in [
        "+１５５５１２３４５６７",
        "+١٥٥٥١٢٣٤٥٦٧",
        "+1555123\u{202e}4567",
        "+15551234567\u{0}",
    ]
    .iter()
    .enumerate()
    {
        let params = sms_params(from, &format!("YES {code}"), &sid(0xf10 + n as u32));
        let (s, t) = cluster
            .sms_raw(0, &form(&params), Some(&sign(&params)), form_type)
            .await;
        results.push((format!("From {from:?}: {t:?}"), s));
        assert!(s == 200 || s == 400, "{s}");
        assert!(!merged_answer(&t), "{from:?} decided: {t}");
    }
    // Missing headers on the GitHub route.
    let body = br#"{"action":"submitted"}"#;
    let s = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{}/webhooks/github",
            cluster.ports[1]
        ))
        .header("X-Hub-Signature-256", signed(body).expect("sig"))
        .body(body.to_vec())
        .send()
        .await
        .expect("answer")
        .status()
        .as_u16();
    results.push(("github without event and delivery headers".into(), s));
    assert_eq!(s, 400);
    // Mail links that are not links, on both replicas.
    for path in [
        "/approve/x",
        "/approve/%00%ff",
        &format!("/approve/{}", "A".repeat(5000)),
    ] {
        for r in &cluster.replicas {
            let s = reqwest::get(format!("http://127.0.0.1:{}{path}", r.port))
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0);
            results.push((format!("GET {}", &path[..path.len().min(24)]), s));
            assert!(s < 500, "{path}: {s}");
        }
    }
    // A YES for a commit that changed: someone pushes to the pull request's
    // branch after the ask; the approval must not merge the new commit.
    let pull = cluster.standin.pulls()[1].clone();
    let code = cluster.code_for(pull.number);
    let foreign = cluster.standin.push_foreign_commit(&pull.head);
    let (s, t) = cluster
        .sms(1, ADA, &format!("YES {code}"), &sid(0xf20))
        .await;
    results.push((format!("YES after a push: {t:?}"), s));
    assert!(!merged_answer(&t), "{t}");
    let merged_foreign = cluster
        .standin
        .pulls()
        .iter()
        .any(|p| p.number == pull.number && p.merged);
    assert!(!merged_foreign, "the pushed commit {foreign} was merged");
    eprintln!("{results:#?}");
    assert_eq!(cluster.merges(), 0, "nothing merged by hostile input");
    // Every replica still answers.
    for r in &cluster.replicas {
        let s = reqwest::get(format!("http://127.0.0.1:{}/readyz", r.port))
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        assert_eq!(s, 200);
    }
}
