//! Approvals by e-mail link, end to end on loopback: through a real SMTP
//! server (aiosmtpd, writing what it receives to a Maildir) and through a
//! SendGrid stand-in speaking v3 `mail/send`. The link is taken from the
//! received message; `GET` changes nothing, only the page's `POST` decides.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use draco::compose::{App, SourceChoice};
use draco::sources::fixtures::FixtureSet;
use serde_json::Value;

use crate::support::{free_port, git};

/// The aiosmtpd release the tests were written against.
const AIOSMTPD: &str = "aiosmtpd==1.4.6";

/// A Python with aiosmtpd: `$AIOSMTPD_PYTHON`, the one `.ci/run` prepares
/// beside the build cache, or a virtualenv made under the target dir. `None`
/// (with why) when none can be had; under CI that is a failure.
fn smtp_python() -> Option<PathBuf> {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = PYTHON.get_or_init(|| {
        if let Ok(path) = std::env::var("AIOSMTPD_PYTHON") {
            return Ok(PathBuf::from(path));
        }
        let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("smtp-venv");
        let python = venv.join("bin/python");
        let has = |python: &Path| {
            Command::new(python)
                .args(["-c", "import aiosmtpd"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if has(&python) {
            return Ok(python);
        }
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .map_err(|e| format!("python3 cannot run: {e}"))?;
        if !made.success() {
            return Err(format!("cannot create a virtualenv at {}", venv.display()));
        }
        let installed = Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                AIOSMTPD,
            ])
            .status()
            .map_err(|e| format!("pip cannot run: {e}"))?;
        if !installed.success() || !has(&python) {
            return Err(format!("cannot install {AIOSMTPD} from PyPI"));
        }
        Ok(python)
    });
    match found {
        Ok(path) => Some(path.clone()),
        Err(why) => {
            assert!(
                std::env::var("CI").is_err(),
                "CI must run the SMTP tests: {why}"
            );
            eprintln!("skipped: no aiosmtpd ({why}); set AIOSMTPD_PYTHON to a Python that has it");
            None
        }
    }
}

/// aiosmtpd on a free loopback port, storing every message in a Maildir.
struct SmtpServer {
    child: Child,
    port: u16,
    maildir: tempfile::TempDir,
}

impl SmtpServer {
    fn start() -> Option<Self> {
        let python = smtp_python()?;
        let port = free_port();
        let maildir = tempfile::tempdir().expect("tempdir");
        let child = Command::new(python)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir.path().join("mail"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("aiosmtpd starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Self {
            child,
            port,
            maildir,
        })
    }

    /// Every message received so far, raw.
    fn messages(&self) -> Vec<String> {
        let new = self.maildir.path().join("mail/new");
        let mut all = Vec::new();
        if let Ok(entries) = std::fs::read_dir(new) {
            for entry in entries.flatten() {
                if let Ok(text) = std::fs::read_to_string(entry.path()) {
                    all.push(text);
                }
            }
        }
        all
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Undoes quoted-printable soft line breaks and `=XX` escapes (RFC 2045
/// §6.7), enough to read links back out of a text part.
fn unquote(raw: &str) -> String {
    let joined = raw.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(byte) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The first link in `text` to `/approve/…` after `label`.
fn link_after(text: &str, label: &str) -> Option<String> {
    let text = unquote(text);
    let at = text.find(label)? + label.len();
    let rest = &text[at..];
    let start = rest.find("http")?;
    let link: String = rest[start..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '"' && *c != '<')
        .collect();
    link.contains("/approve/").then_some(link)
}

fn config(port: u16, email: &str) -> String {
    format!(
        r#"
[server]
public_url = "http://127.0.0.1:{port}"

{email}

[approval]
notify = ["email"]
quorum = {{ critical = 1, high = 1, medium = 1, low = 1 }}

[[approvers]]
name = "Ada Lovelace"
email = "ada@example.com"
"#
    )
}

struct MailApp {
    app: Arc<App>,
    port: u16,
    dir: tempfile::TempDir,
    http: reqwest::Client,
    server: Option<draco::server::Running>,
}

impl MailApp {
    async fn start(email: &str, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, port, &config(port, email), env).await
    }

    async fn start_in(
        dir: tempfile::TempDir,
        port: u16,
        config: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let path = dir.path().join("draco.toml");
        std::fs::write(&path, config).expect("config");
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let loaded = draco::config::load(Some(&path), &env).expect("the configuration loads");
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
        Self {
            app,
            port,
            dir,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            server: Some(server),
        }
    }

    async fn stop(mut self) -> tempfile::TempDir {
        if let Some(server) = self.server.take() {
            let _ = server.shutdown().await;
        }
        self.dir
    }

    async fn finding(&self, kind: &str) -> Value {
        let findings = self.app.store.findings().await.expect("findings");
        let crs = self.app.store.change_requests().await.expect("crs");
        findings
            .iter()
            .map(|f| draco::report::finding_json(f, crs.iter().find(|c| c.finding_id == f.id)))
            .find(|f| f["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind}"))
    }

    /// GETs the link; returns the status, the page, and the form token
    /// and cookie it set.
    async fn open(&self, link: &str) -> (u16, String, Option<(String, String)>) {
        let response = self.http.get(link).send().await.expect("page");
        let status = response.status().as_u16();
        let cookie = response
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::to_owned);
        assert_eq!(
            response
                .headers()
                .get("referrer-policy")
                .and_then(|v| v.to_str().ok()),
            Some("no-referrer")
        );
        let page = response.text().await.unwrap_or_default();
        let token = page.find("name=\"form_token\" value=\"").map(|at| {
            let rest = &page[at + "name=\"form_token\" value=\"".len()..];
            rest[..rest.find('"').unwrap_or(0)].to_owned()
        });
        (status, page, token.zip(cookie))
    }

    async fn confirm(
        &self,
        link: &str,
        form: &[(&str, &str)],
        cookie: Option<&str>,
    ) -> (u16, String) {
        let mut request = self.http.post(link).form(form);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        let response = request.send().await.expect("post");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }
}

fn branch(finding: &Value) -> String {
    finding["change_request"]["branch"]
        .as_str()
        .expect("branch")
        .to_owned()
}

#[tokio::test]
async fn an_smtp_mail_link_shows_a_page_and_only_its_form_decides() {
    let Some(smtp) = SmtpServer::start() else {
        return;
    };
    let email = format!(
        "[email]\ntransport = \"smtp\"\nfrom = \"draco@example.com\"\n[email.smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n",
        smtp.port
    );
    let mail = MailApp::start(&email, &[]).await;
    mail.app.scan(chrono::Utc::now()).await.expect("scan");
    let eip = mail.finding("eip_unassociated").await;
    assert_eq!(eip["change_request"]["state"], "awaiting_approval");
    let deadline = Instant::now() + Duration::from_secs(10);
    let message = loop {
        let found = smtp
            .messages()
            .into_iter()
            .find(|m| unquote(m).contains(&branch(&eip)));
        if let Some(found) = found {
            break found;
        }
        assert!(Instant::now() < deadline, "no mail about {}", branch(&eip));
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(message.contains("ada@example.com"), "{message}");
    let approve = link_after(&message, "Approve:").expect("an approve link");
    assert!(approve.starts_with(&format!("http://127.0.0.1:{}/approve/", mail.port)));

    // A scanner fetching the link (GET, HEAD) decides nothing.
    let (status, page, form) = mail.open(&approve).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Approve this change?"), "{page}");
    let head = mail.http.head(&approve).send().await.expect("head");
    assert_eq!(head.status().as_u16(), 200);
    let still = mail.finding("eip_unassociated").await;
    assert_eq!(still["change_request"]["state"], "awaiting_approval");
    assert_eq!(still["change_request"]["approvals"], serde_json::json!([]));

    // A POST without the page's cookie (a cross-site form) is refused.
    let (token, cookie) = form.expect("the page's form token and cookie");
    let (status, _) = mail
        .confirm(&approve, &[("form_token", &token)], None)
        .await;
    assert_eq!(status, 403);
    let (status, _) = mail
        .confirm(
            &approve,
            &[("form_token", "00.00")],
            Some("draco_form=00.00"),
        )
        .await;
    assert_eq!(status, 403, "a made-up form token");
    assert_eq!(
        mail.finding("eip_unassociated").await["change_request"]["state"],
        "awaiting_approval"
    );

    let (status, page) = mail
        .confirm(&approve, &[("form_token", &token)], Some(&cookie))
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Approved"), "{page}");
    let done = mail.finding("eip_unassociated").await;
    assert_eq!(done["change_request"]["state"], "merged");
    assert_eq!(done["change_request"]["approvals"][0]["channel"], "email");
    let repo = mail.dir.path().join("data/remediations.git");
    let log = git(&repo, &["log", "-1", "--format=%B", "main"]);
    assert!(log.contains("Ada Lovelace via email"), "{log}");

    // Opened again: the page says so.
    let (status, page, form) = mail.open(&approve).await;
    assert_eq!(status, 410);
    assert!(page.contains("used already"), "{page}");
    assert!(form.is_none());
    mail.stop().await;
}

/// What the SendGrid stand-in received.
type Received = Arc<Mutex<Vec<Value>>>;

async fn sendgrid(
    State(received): State<Received>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some("Bearer SG.test-key-0123456789")
    {
        return (
            StatusCode::UNAUTHORIZED,
            r#"{"errors":[{"message":"unauthorized"}]}"#,
        )
            .into_response();
    }
    let Ok(json) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "{}").into_response();
    };
    received.lock().expect("lock").push(json);
    (StatusCode::ACCEPTED, [("X-Message-Id", "sg-message-1")], "").into_response()
}

async fn sendgrid_standin() -> (SocketAddr, Received) {
    let received: Received = Arc::default();
    let app = Router::new()
        .route("/v3/mail/send", post(sendgrid))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, received)
}

#[tokio::test]
async fn a_sendgrid_reject_link_needs_a_reason_and_stale_links_say_so() {
    let (addr, received) = sendgrid_standin().await;
    let email = format!(
        "[email]\ntransport = \"sendgrid\"\nfrom = \"draco@example.com\"\n[email.sendgrid]\napi_url = \"http://{addr}\"\n"
    );
    let mail = MailApp::start(
        &email,
        &[("DRACO_SENDGRID_API_KEY", "SG.test-key-0123456789")],
    )
    .await;
    mail.app.scan(chrono::Utc::now()).await.expect("scan");
    let sent = received.lock().expect("lock").clone();
    assert!(!sent.is_empty(), "nothing sent to SendGrid");
    for body in &sent {
        assert_eq!(body["tracking_settings"]["click_tracking"]["enable"], false);
        assert_eq!(
            body["personalizations"][0]["to"][0]["email"],
            "ada@example.com"
        );
    }
    let eip = mail.finding("eip_unassociated").await;
    let text_of = |body: &Value| {
        body["content"][0]["value"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    let text = sent
        .iter()
        .map(text_of)
        .find(|t| t.contains(&branch(&eip)))
        .expect("a mail about it");
    let reject = link_after(&text, "Reject:").expect("a reject link");
    let (status, page, form) = mail.open(&reject).await;
    assert_eq!(status, 200);
    assert!(page.contains("Reject this change?"), "{page}");
    let (token, cookie) = form.expect("form");
    let (status, _) = mail
        .confirm(
            &reject,
            &[("form_token", &token), ("reason", "  ")],
            Some(&cookie),
        )
        .await;
    assert_eq!(status, 400, "a rejection without a reason");
    let (status, page) = mail
        .confirm(
            &reject,
            &[
                ("form_token", &token),
                ("reason", "the partner still uses it"),
            ],
            Some(&cookie),
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        mail.finding("eip_unassociated").await["change_request"]["state"],
        "closed"
    );

    // Another finding's link, after a new commit on its branch: superseded.
    let other = mail.finding("ebs_unattached").await;
    let text = sent
        .iter()
        .map(text_of)
        .find(|t| t.contains(&branch(&other)))
        .expect("a mail about it");
    let approve = link_after(&text, "Approve:").expect("link");
    let id = draco::domain::FindingId::new(other["id"].as_i64().expect("id"));
    let head = other["change_request"]["head_commit"]
        .as_str()
        .expect("head");
    assert!(
        mail.app
            .store
            .update_change_request(
                id,
                head,
                "0123456789abcdef0123456789abcdef01234567",
                chrono::Utc::now()
            )
            .await
            .expect("update")
    );
    let (status, page, _) = mail.open(&approve).await;
    assert_eq!(status, 410);
    assert!(page.contains("newer commit"), "{page}");

    // An approver removed from the directory: their links stop working.
    let third = mail.finding("snapshot_public").await;
    let text = sent
        .iter()
        .map(text_of)
        .find(|t| t.contains(&branch(&third)))
        .expect("a mail about it");
    let approve = link_after(&text, "Approve:").expect("link");
    let port = mail.port;
    let dir = mail.stop().await;
    let without_ada = config(port, &email).replace(
        "[[approvers]]\nname = \"Ada Lovelace\"\nemail = \"ada@example.com\"\n",
        "[[approvers]]\nname = \"Grace Hopper\"\nemail = \"grace@example.com\"\n",
    );
    let mail = MailApp::start_in(
        dir,
        port,
        &without_ada,
        &[("DRACO_SENDGRID_API_KEY", "SG.test-key-0123456789")],
    )
    .await;
    let (status, page, _) = mail.open(&approve).await;
    assert_eq!(status, 410);
    assert!(page.contains("no longer"), "{page}");
    mail.stop().await;
}
