//! Several replicas on one PostgreSQL database (issue 14): three `draco
//! run` processes share a throwaway database, the GitHub stand-in (slowed
//! down so that a scan takes seconds) and the Twilio stand-in. The replica
//! holding the scan lease is killed with SIGKILL half-way through its scan;
//! another must take the lease over within its time to live and finish the
//! scan, and every pull request, message and merge must happen exactly once.
//!
//! Needs PostgreSQL (`DRACO_TEST_POSTGRES_URL`, by default the server on
//! 127.0.0.1:5432): skipped with a message without it, a failure under
//! `CI=true`.

use std::collections::BTreeMap;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use draco::store::ScratchDatabase;
use secrecy::SecretString;
use sqlx::Connection as _;

use crate::approvals_sms::TwilioStandIn;
use crate::github::{TOKEN, github_env};
use crate::github_standin::StandIn;
use crate::support::{Draco, demo_fixtures, free_port};

const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const AUTH_TOKEN: &str = "twilio-auth-token-for-tests-0123";
const ADA: &str = "+15551234567";
/// `replicas.lease_ttl_secs` in this test.
const TTL: Duration = Duration::from_secs(3);
/// 32 bytes, base64: the master key every replica shares.
const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// A throwaway database, or `None` with a message (a panic under `CI=true`).
async fn scratch_database() -> Option<ScratchDatabase> {
    ScratchDatabase::for_test("draco_replicas", "the replica takeover tests").await
}

struct Replica {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn logs(replicas: &[Replica]) -> String {
    replicas
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

async fn rows(url: &str, sql: &'static str) -> Vec<(String, String)> {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    let rows = sqlx::query_as(sql)
        .fetch_all(&mut conn)
        .await
        .expect("query");
    let _ = conn.close().await;
    rows
}

/// Polls `check` every 100 ms until it gives `Some`, for at most `limit`.
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

async fn signed_yes(port: u16, public_port: u16, code: &str, sid: &str) -> String {
    // Every replica checks the signature against the public URL, as behind
    // one Kubernetes Service.
    let url = format!("http://127.0.0.1:{public_port}/webhooks/twilio");
    let params: Vec<(String, String)> = [
        ("Body", format!("YES {code}")),
        ("From", ADA.to_owned()),
        ("MessageSid", sid.to_owned()),
        ("To", "+15550001111".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let signature =
        draco::channels::twilio::signature(&SecretString::from(AUTH_TOKEN), &url, &params);
    reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/webhooks/twilio"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", signature)
        .body(
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&params)
                .finish(),
        )
        .send()
        .await
        .expect("answer")
        .text()
        .await
        .expect("text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_scan_is_taken_over_and_nothing_happens_twice() {
    let Some(database) = scratch_database().await else {
        return;
    };
    let database_url = database.url().display();
    let standin = StandIn::start(TOKEN).await;
    // A slow GitHub: the demo's eight pull requests take seconds to open.
    standin.set_latency(Duration::from_millis(120));
    let twilio = TwilioStandIn::start().await;
    let draco = Draco::new();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let config = draco.path("replicas.toml");
    std::fs::write(
        &config,
        format!(
            r#"
database_url = "{database_url}"
# Only at start (--scan-on-start) in this test.
schedule = "0 0 0 1 1 *"

[replicas]
lease_ttl_secs = {ttl}

[server]
public_url = "http://127.0.0.1:{public}"

[twilio]
api_url = "{twilio}"
account_sid = "{ACCOUNT_SID}"
from = "+15550001111"

[approval]
notify = ["sms"]
quorum = {{ critical = 1, high = 1, medium = 1, low = 1 }}

[[approvers]]
name = "Ada Lovelace"
phone = "{ADA}"
"#,
            ttl = TTL.as_secs(),
            public = ports[0],
            twilio = twilio.url(),
        ),
    )
    .expect("config");

    let mut replicas: Vec<Replica> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let log = draco.path(&format!("replica-{i}.log"));
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_draco"));
            for (key, _) in std::env::vars() {
                if key.starts_with("DRACO_") {
                    cmd.env_remove(key);
                }
            }
            for (k, v) in github_env(&standin) {
                cmd.env(k, v);
            }
            cmd.env("DRACO_CONFIG", &config)
                .env("DRACO_LOG", "info")
                .env("DRACO_TWILIO_AUTH_TOKEN", AUTH_TOKEN)
                .env("DRACO_MASTER_KEY", MASTER_KEY)
                .env("DRACO_SOURCE_KIND", "fixtures")
                .env("DRACO_SOURCE_FIXTURES_DIR", demo_fixtures())
                .env("DRACO_SERVER_LISTEN", format!("127.0.0.1:{port}"))
                .arg("--data-dir")
                .arg(draco.path(&format!("replica-{i}")))
                .args(["run", "--scan-on-start"])
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("log file"));
            Replica {
                child: cmd.spawn().expect("draco run starts"),
                port: *port,
                log,
            }
        })
        .collect();

    // Half-way: the first pull request is open, the others are not yet.
    let first = wait_for(Duration::from_secs(90), || {
        let exited = replicas
            .iter_mut()
            .any(|r| r.child.try_wait().ok().flatten().is_some());
        let opened = !standin.pulls().is_empty();
        async move { (opened || exited).then_some(()) }
    })
    .await;
    assert!(
        replicas
            .iter_mut()
            .all(|r| r.child.try_wait().ok().flatten().is_none()),
        "a replica exited\n{}",
        logs(&replicas)
    );
    assert!(
        first.is_some(),
        "no pull request opened\n{}",
        logs(&replicas)
    );
    let holder = rows(
        &database_url,
        "SELECT job, holder FROM leases WHERE job = 'scan'",
    )
    .await;
    let holder = holder
        .first()
        .map(|(_, h)| h.clone())
        .expect("a scan lease");
    let victim = replicas
        .iter()
        .position(|r| holder.contains(&format!("-{}-", r.child.id())))
        .unwrap_or_else(|| panic!("the lease holder {holder} is none of the replicas"));
    assert!(
        standin.pulls().len() < 8,
        "the scan finished before it could be interrupted; slow the stand-in down"
    );
    let opened_at_kill = standin.pulls().len();
    let mut dead = replicas.remove(victim);
    dead.child.kill().expect("SIGKILL");
    dead.child.wait().expect("reaped");
    let killed_at = Instant::now();

    // Another replica takes the lease over and finishes the scan.
    let finished = wait_for(Duration::from_secs(90), || async {
        let scans = rows(
            &database_url,
            "SELECT status, COALESCE(finished_at, '') FROM scans ORDER BY id",
        )
        .await;
        scans
            .iter()
            .any(|(status, _)| status == "ok" || status == "partial")
            .then_some(scans)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "no replica finished the scan\n{}\n{}",
            logs(&replicas),
            logs(std::slice::from_ref(&dead))
        )
    });
    let statuses: Vec<&str> = finished.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(statuses[0], "interrupted", "the killed scan: {statuses:?}");
    let new_holder = rows(
        &database_url,
        "SELECT job, holder FROM leases WHERE job = 'scan'",
    )
    .await;
    assert_ne!(new_holder[0].1, holder, "the lease moved to a live replica");
    // Taken over within the time to live (plus one renewal period of the
    // replica that noticed, and the time to see it here).
    let took = rows(
        &database_url,
        "SELECT job, acquired_at FROM leases WHERE job = 'scan'",
    )
    .await;
    let acquired = chrono::DateTime::parse_from_rfc3339(&took[0].1).expect("timestamp");
    let since_kill = chrono::Utc::now().signed_duration_since(acquired);
    let kill_ago = chrono::TimeDelta::from_std(killed_at.elapsed()).expect("delta");
    let takeover = kill_ago - since_kill;
    eprintln!(
        "scan lease taken over {:.2} s after the kill (time to live {} s); pull requests open at the kill: {opened_at_kill} of 8",
        takeover.as_seconds_f64(),
        TTL.as_secs()
    );
    assert!(
        takeover
            <= chrono::TimeDelta::from_std(TTL + TTL / 4 + Duration::from_millis(500))
                .expect("delta"),
        "taken over {takeover} after the kill; the lease lasts {TTL:?}"
    );

    // Every finding's pull request exactly once.
    let pulls = standin.pulls();
    assert_eq!(pulls.len(), 8, "one pull request per demo finding");
    let mut per_branch: BTreeMap<String, usize> = BTreeMap::new();
    for pull in &pulls {
        *per_branch.entry(pull.head.clone()).or_default() += 1;
    }
    assert!(per_branch.values().all(|n| *n == 1), "{per_branch:?}");
    let creates = standin
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/pulls"))
        .count();
    assert_eq!(creates, 8, "no pull request was created twice");

    // Every pull request's approval request sent exactly once.
    let sent = wait_for(Duration::from_secs(30), || async {
        let sent = twilio.sent();
        (sent.len() >= 8).then_some(sent)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "the approval requests were not all sent: {:?}\n{}",
            twilio.sent(),
            logs(&replicas)
        )
    });
    // Long enough for a duplicate to show.
    tokio::time::sleep(TTL * 2).await;
    let sent_now = twilio.sent();
    assert_eq!(
        sent_now.len(),
        sent.len(),
        "more messages kept coming: {sent_now:?}"
    );
    for pull in &pulls {
        let link = format!("/pull/{} ", pull.number);
        let asks = sent_now.iter().filter(|m| m.body.contains(&link)).count();
        assert_eq!(
            asks, 1,
            "pull request {} was asked about {asks} times",
            pull.number
        );
    }
    assert_eq!(sent_now.len(), 8);

    // The approver answers twice, on two replicas at once: one merge.
    let pull = &pulls[0];
    let message = sent_now
        .iter()
        .find(|m| m.body.contains(&format!("/pull/{} ", pull.number)))
        .expect("the ask");
    let at = message.body.find("Reply YES ").expect("a code") + "Reply YES ".len();
    let code = message.body[at..at + 6].to_owned();
    let (a, b) = tokio::join!(
        signed_yes(
            replicas[0].port,
            ports[0],
            &code,
            "SM0000000000000000000000000000000a"
        ),
        signed_yes(
            replicas[1].port,
            ports[0],
            &code,
            "SM0000000000000000000000000000000b"
        ),
    );
    let merged_answers = [&a, &b]
        .iter()
        .filter(|t| t.contains("approved and merged"))
        .count();
    assert_eq!(merged_answers, 1, "one answer merges: {a} / {b}");
    let merges = standin
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.path.ends_with(&format!("/pulls/{}/merge", pull.number)))
        .count();
    assert_eq!(merges, 1, "merged once");
    assert!(
        standin
            .pulls()
            .iter()
            .any(|p| p.number == pull.number && p.merged),
        "merged on GitHub"
    );
    drop(replicas);
    drop(dead);
}

/// Forwards connections on `listener` to `target` (PostgreSQL appearing on
/// a port where nothing answered before).
async fn forward(listener: tokio::net::TcpListener, target: std::net::SocketAddr) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_started_before_its_database_waits_unready_then_serves() {
    let Some(database) = scratch_database().await else {
        return;
    };
    let mut url = url::Url::parse(&database.url().display()).expect("a URL");
    let real =
        std::net::SocketAddr::from(([127, 0, 0, 1], url.port().expect("the test server's port")));
    // Nothing listens here yet.
    let db_port = free_port();
    url.set_port(Some(db_port)).expect("port");
    let draco = Draco::new();
    let port = free_port();
    let log = draco.path("run.log");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_draco"));
    for (key, _) in std::env::vars() {
        if key.starts_with("DRACO_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("DRACO_LOG", "info")
        .env("DRACO_DATABASE_URL", url.as_str())
        .env("DRACO_MASTER_KEY", MASTER_KEY)
        .env("DRACO_GITOPS_BACKEND", "github")
        .env("DRACO_GITOPS_GITHUB_API_URL", "http://127.0.0.1:9")
        .env("DRACO_GITOPS_GITHUB_REPOSITORY", "acme/cloud-remediations")
        .env("DRACO_GITHUB_TOKEN", TOKEN)
        .env("DRACO_GITHUB_WEBHOOK_SECRET", "a-webhook-secret-for-tests")
        .env("DRACO_SOURCE_KIND", "fixtures")
        .env("DRACO_SOURCE_FIXTURES_DIR", demo_fixtures())
        .env("DRACO_SERVER_LISTEN", format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(draco.data_dir())
        .arg("run")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"));
    let mut replica = Replica {
        child: cmd.spawn().expect("draco run starts"),
        port,
        log,
    };
    let client = reqwest::Client::new();
    let status = |path: &'static str| {
        let client = client.clone();
        async move {
            client
                .get(format!("http://127.0.0.1:{port}{path}"))
                .send()
                .await
                .ok()
                .map(|r| r.status().as_u16())
        }
    };
    // Alive and not ready, and it stays so (no crash loop).
    let answered = wait_for(Duration::from_secs(20), || async {
        (status("/healthz").await == Some(200)).then_some(())
    })
    .await;
    assert!(
        answered.is_some(),
        "no /healthz\n{}",
        logs(std::slice::from_ref(&replica))
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(status("/readyz").await, Some(503));
    assert_eq!(status("/healthz").await, Some(200));
    assert!(
        replica.child.try_wait().expect("wait").is_none(),
        "the daemon exited while its database was unreachable\n{}",
        logs(std::slice::from_ref(&replica))
    );
    // A webhook meanwhile is told to come back, not that the route is unknown.
    let webhook = client
        .post(format!("http://127.0.0.1:{port}/webhooks/github"))
        .body("{}")
        .send()
        .await
        .expect("answer");
    assert_eq!(webhook.status().as_u16(), 503);
    assert!(webhook.headers().contains_key("retry-after"));

    // It retries with backoff (the first attempt ends with the pool's
    // acquire timeout, 10 s).
    let retrying = wait_for(Duration::from_secs(30), || {
        let text = std::fs::read_to_string(&replica.log).unwrap_or_default();
        async move {
            text.contains("the database cannot be reached; not ready, retrying")
                .then_some(())
        }
    })
    .await;
    assert!(
        retrying.is_some(),
        "no retry logged\n{}",
        logs(std::slice::from_ref(&replica))
    );
    assert_eq!(status("/readyz").await, Some(503));

    // The database appears: the daemon starts and becomes ready.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", db_port))
        .await
        .expect("bind the database's port");
    let forwarder = tokio::spawn(forward(listener, real));
    let ready = wait_for(Duration::from_secs(60), || async {
        (status("/readyz").await == Some(200)).then_some(())
    })
    .await;
    let text = std::fs::read_to_string(&replica.log).unwrap_or_default();
    assert!(ready.is_some(), "never ready\n{text}");
    let _ = replica.port;
    // SIGTERM: a clean exit.
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(replica.child.id() as i32, libc::SIGTERM);
    }
    let exited = wait_for(Duration::from_secs(20), || {
        let done = replica.child.try_wait().ok().flatten();
        async move { done }
    })
    .await
    .expect("exits after SIGTERM");
    assert!(exited.success(), "{exited:?}");
    forwarder.abort();
}
