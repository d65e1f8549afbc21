//! The read-only dashboard on `draco run`'s listener: every page rendered
//! from a demo data dir, hostile stored text escaped, the security headers,
//! no cookie without authentication, the login with it; and the pages in a
//! real browser (Debian's headless chromium), with a screenshot left under
//! the target directory.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use draco::compose::{App, SourceChoice};
use draco::server;
use draco::sources::fixtures::FixtureSet;
use reqwest::redirect::Policy;

use crate::support::{BIN, Draco, PLANTED, approve_in_process, describe};

/// The operator token the authenticated tests use.
const TOKEN: &str = "dashboard-test-token-0123456789";
/// A finding title with markup and control characters, planted in the
/// database as an attacker who named a resource would.
const HOSTILE_TITLE: &str = "<script>alert('pwned')</script> \u{202e}evil\u{1b}[31m";

/// `draco demo` on a fresh data dir, then the application built on that
/// data dir in this process and served on a loopback port.
struct Served {
    addr: std::net::SocketAddr,
    app: Arc<App>,
    running: Option<server::Running>,
    _draco: Draco,
}

impl Served {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `GET path` with `http`; a failed request fails the test.
    async fn get(&self, http: &reqwest::Client, path: &str) -> reqwest::Response {
        http.get(self.url(path)).send().await.expect("an answer")
    }

    /// The body of `GET path`.
    async fn text(&self, http: &reqwest::Client, path: &str) -> String {
        self.get(http, path)
            .await
            .text()
            .await
            .expect("a text body")
    }

    async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await.expect("the server stops");
        }
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("an HTTP client")
}

/// The demo's data dir, a hostile title planted, one approval and one
/// refusal recorded, served with `env` as the configuration.
async fn serve_demo(env: &[(&str, &str)]) -> Served {
    let draco = Draco::new();
    let out = draco
        .command()
        .arg("demo")
        .output()
        .expect("draco demo runs");
    assert!(out.status.success(), "draco demo: {}", describe(&out));
    let data_dir = draco.data_dir();

    // Hostile text stored as a detector never would (rows may predate
    // neutralising, or come from an older build).
    let db = data_dir.join("draco.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open the demo database");
    sqlx::query("UPDATE findings SET title = ? WHERE kind = 'ebs_unattached'")
        .bind(HOSTILE_TITLE)
        .execute(&pool)
        .await
        .expect("plant a hostile title");
    pool.close().await;

    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let loaded = draco::config::load(None, &env).expect("the configuration loads");
    let app = App::build(
        loaded,
        data_dir,
        SourceChoice::Fixtures(FixtureSet::EmbeddedDemo),
    )
    .await
    .expect("the application builds on the demo data dir");

    // One decision and one refusal, so the finding page has both.
    let snapshot = finding_id(&app, "snapshot_public").await;
    approve_in_process(&app, snapshot, "Ada")
        .await
        .expect("Ada approves the public snapshot's change");
    app.store
        .audit_refusal(
            "sms:+1555•••••67",
            "approval.refused",
            &format!("finding:{snapshot}"),
            &serde_json::json!({"channel": "sms", "why": "wrong code <b>"}),
            Utc::now(),
        )
        .await
        .expect("a refusal is recorded");

    let running = server::spawn(app.clone(), ([127, 0, 0, 1], 0).into())
        .await
        .expect("the server binds a loopback port");
    Served {
        addr: running.addr,
        app,
        running: Some(running),
        _draco: draco,
    }
}

async fn finding_id(app: &App, kind: &str) -> draco::domain::FindingId {
    app.store
        .findings()
        .await
        .expect("findings")
        .into_iter()
        .find(|f| f.finding.kind.as_str() == kind)
        .unwrap_or_else(|| panic!("the demo plants a {kind} finding"))
        .id
}

fn assert_security_headers(response: &reqwest::Response, what: &str) {
    let h = response.headers();
    let get = |name: &str| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{what}: no {name} header"))
            .to_owned()
    };
    let csp = get("content-security-policy");
    for directive in [
        "default-src 'none'",
        "style-src 'self'",
        "img-src 'self' data:",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    ] {
        assert!(
            csp.contains(directive),
            "{what}: CSP {csp} lacks {directive}"
        );
    }
    assert!(
        !csp.contains("script-src"),
        "{what}: no script allowed: {csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{what}: {csp}");
    assert_eq!(get("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(get("referrer-policy"), "no-referrer", "{what}");
    assert_eq!(get("x-frame-options"), "DENY", "{what}");
    assert_eq!(get("cache-control"), "no-store", "{what}");
}

#[tokio::test]
async fn every_page_renders_the_demo_with_headers_and_without_a_cookie() {
    let served = serve_demo(&[]).await;
    let http = client();
    let mut pages = vec!["/".to_owned(), "/scans".to_owned()];
    for f in served.app.store.findings().await.unwrap() {
        pages.push(format!("/findings/{}", f.id));
    }
    pages.push("/assets/dashboard.css".into());
    let mut overview = String::new();
    for page in &pages {
        let response = served.get(&http, page).await;
        assert_eq!(response.status(), 200, "{page}");
        assert_security_headers(&response, page);
        assert!(
            response.headers().get("set-cookie").is_none(),
            "{page}: no cookie without authentication"
        );
        let body = response.text().await.unwrap();
        assert!(!body.contains("<script"), "{page}: no script: {body}");
        if page == "/" {
            overview = body;
        }
    }
    for (kind, resource) in PLANTED {
        assert!(overview.contains(kind), "the overview lists {kind}");
        assert!(
            overview.contains(&resource.replace('\'', "&#x27;")),
            "the overview lists {resource}"
        );
    }
    // The hostile title: escaped, its control and bidi characters shown.
    assert!(overview.contains("&lt;script&gt;alert("), "{overview}");
    assert!(overview.contains("\\u{202e}evil\\u{1b}[31m"), "{overview}");
    assert!(!overview.contains('\u{202e}') && !overview.contains('\u{1b}'));
    // No external asset: only the embedded stylesheet is linked.
    assert!(!overview.contains("http://") && !overview.contains("https://"));
    assert!(overview.contains("href=\"/assets/dashboard.css\""));
    served.stop().await;
}

#[tokio::test]
async fn a_finding_page_shows_its_chart_change_decisions_refusals_and_audit_trail() {
    let served = serve_demo(&[]).await;
    let http = client();
    let spike = finding_id(&served.app, "cost_spike").await;
    let body = served.text(&http, &format!("/findings/{spike}")).await;
    assert!(body.contains("<svg"), "the cost chart is inline: {body}");
    assert!(body.contains("Remediation") && body.contains("Rollback"));
    assert!(body.contains("Audit trail"));
    let svg = served
        .get(&http, &format!("/findings/{spike}/chart.svg"))
        .await;
    assert_eq!(svg.status(), 200);
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    assert!(svg.text().await.unwrap().starts_with("<svg"));

    let snapshot = finding_id(&served.app, "snapshot_public").await;
    let body = served.text(&http, &format!("/findings/{snapshot}")).await;
    assert!(body.contains("approval"), "the decision: {body}");
    assert!(body.contains("Ada"), "who decided: {body}");
    assert!(body.contains("approval.refused"), "the refusal: {body}");
    assert!(body.contains("wrong code &lt;b&gt;"), "escaped: {body}");
    assert!(
        body.contains("draco&#x2f;snapshot-public-"),
        "the branch: {body}"
    );
    assert!(!body.contains("<svg"), "a posture finding has no chart");

    // Filters, an unknown filter value, an unknown finding.
    let filtered = served
        .text(&http, "/?severity=critical&status=approved")
        .await;
    assert!(filtered.contains("snap-0f9e8d7c6b5a49382"), "{filtered}");
    assert!(!filtered.contains("vol-0e4f6a8b0c2d4e6f8"), "{filtered}");
    let bad = served.get(&http, "/?severity=%3Cscript%3E").await;
    assert_eq!(bad.status(), 400);
    assert_security_headers(&bad, "a bad filter");
    let missing = served.get(&http, "/findings/99999").await;
    assert_eq!(missing.status(), 404);
    assert_security_headers(&missing, "a missing finding");

    // The scans page lists the demo's scan.
    let scans = served.text(&http, "/scans").await;
    assert!(scans.contains("<td>ok</td>"), "{scans}");
    served.stop().await;
}

#[tokio::test]
async fn with_a_token_pages_need_a_login_that_sets_exactly_one_strict_http_only_cookie() {
    let served = serve_demo(&[("DRACO_DASHBOARD_TOKEN", TOKEN)]).await;
    let http = client();
    for page in ["/", "/scans", "/findings/1", "/findings/1/chart.svg"] {
        let response = served.get(&http, page).await;
        assert_eq!(response.status(), 303, "{page} without a session");
        assert_eq!(response.headers()["location"], "/login");
        assert_security_headers(&response, page);
        assert!(response.headers().get("set-cookie").is_none());
    }
    // A forged session is no session.
    let forged = http
        .get(served.url("/"))
        .header("cookie", "draco_session=00ff")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 303);

    let form = served.get(&http, "/login").await;
    assert_eq!(form.status(), 200);
    assert_security_headers(&form, "/login");
    assert!(form.headers().get("set-cookie").is_none());

    // Wrong tokens: refused, no cookie.
    for wrong in [
        "",
        "dashboard-test-token-012345678",
        "DASHBOARD-TEST-TOKEN-0123456789",
    ] {
        let refused = http
            .post(served.url("/login"))
            .form(&[("token", wrong)])
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 401, "{wrong:?}");
        assert!(refused.headers().get("set-cookie").is_none());
    }

    let login = http
        .post(served.url("/login"))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303);
    assert_eq!(login.headers()["location"], "/");
    let cookies: Vec<&str> = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(cookies.len(), 1, "exactly one cookie: {cookies:?}");
    let cookie = cookies[0];
    assert!(cookie.starts_with("draco_session="), "{cookie}");
    assert!(cookie.contains("; HttpOnly"), "{cookie}");
    assert!(cookie.contains("; SameSite=Strict"), "{cookie}");
    assert!(cookie.contains("; Path=/"), "{cookie}");
    assert!(!cookie.contains("Secure"), "no https public URL: {cookie}");
    let session = cookie.split(';').next().unwrap().to_owned();

    let page = http
        .get(served.url("/"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers().get("set-cookie").is_none());
    assert!(page.text().await.unwrap().contains("Log out"));

    let logout = http
        .post(served.url("/logout"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 303);
    let after = http
        .get(served.url("/"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 303, "the session ended at logout");
    served.stop().await;
}

#[tokio::test]
async fn an_address_that_keeps_sending_wrong_tokens_is_locked_out_even_with_the_right_one() {
    let served = serve_demo(&[("DRACO_DASHBOARD_TOKEN", TOKEN)]).await;
    let http = client();
    let try_token = |token: &'static str| {
        http.post(served.url("/login"))
            .form(&[("token", token)])
            .send()
    };
    for n in 0..draco::server::dashboard::throttle::MAX_FAILED_LOGINS {
        let refused = try_token("not-the-dashboard-token-0000").await.unwrap();
        assert_eq!(refused.status(), 401, "wrong token {n}");
    }
    for token in ["not-the-dashboard-token-0000", TOKEN] {
        let locked = try_token(token).await.unwrap();
        assert_eq!(locked.status(), 429, "locked out, whatever is sent");
        assert!(locked.headers().get("set-cookie").is_none());
        assert_security_headers(&locked, "a throttled login");
        let retry: u64 = locked.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .expect("Retry-After in seconds");
        let window = draco::server::dashboard::throttle::FAILED_LOGIN_WINDOW.as_secs();
        assert!((window - 60..=window).contains(&retry), "{retry}");
        let page = locked.text().await.unwrap();
        assert!(page.contains("Too many wrong tokens"), "{page}");
        assert!(!page.contains(TOKEN));
    }
    // Pages already open are not affected: the lockout is of the login.
    let health = served.get(&http, "/healthz").await;
    assert_eq!(health.status(), 200);
    served.stop().await;
}

#[test]
fn the_token_is_compared_in_constant_time() {
    let source = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/server/dashboard/auth.rs"),
    )
    .expect("read the dashboard's auth module");
    let compare = source
        .split("pub fn token_matches")
        .nth(1)
        .and_then(|rest| rest.split("\n    }\n").next())
        .expect("token_matches is there");
    assert!(
        compare.contains(".ct_eq("),
        "subtle's ConstantTimeEq: {compare}"
    );
    assert!(
        !compare.contains("=="),
        "no short-circuiting compare: {compare}"
    );
}

#[test]
fn a_dashboard_without_a_token_on_a_public_address_is_a_config_error() {
    let draco = Draco::new();
    let refused = draco
        .command()
        .env("DRACO_SERVER_LISTEN", "0.0.0.0:8080")
        .args(["config", "check"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "{}", describe(&refused));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("server.dashboard_token"), "{err}");
    assert!(err.contains("DRACO_DASHBOARD_TOKEN"), "{err}");

    for env in [
        vec![("DRACO_DASHBOARD_TOKEN", TOKEN)],
        vec![("DRACO_SERVER_DASHBOARD", "false")],
    ] {
        let ok = draco
            .command()
            .env("DRACO_SERVER_LISTEN", "0.0.0.0:8080")
            .envs(env.iter().copied())
            .args(["config", "check"])
            .output()
            .unwrap();
        assert!(ok.status.success(), "{env:?}: {}", describe(&ok));
        assert!(
            !String::from_utf8_lossy(&ok.stdout).contains(TOKEN),
            "the token is never printed"
        );
    }
    let short = draco
        .command()
        .env("DRACO_DASHBOARD_TOKEN", "short")
        .args(["config", "check"])
        .output()
        .unwrap();
    assert_eq!(short.status.code(), Some(2), "{}", describe(&short));
}

/// The cargo target directory (`$CARGO_TARGET_DIR` or `target/`): where
/// the binary under test was built.
fn target_dir() -> PathBuf {
    let bin = PathBuf::from(BIN);
    bin.parent()
        .and_then(|profile| profile.parent())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// Debian's chromium: on PATH, or installed with apt-get when running as
/// root. `Err(why)` when it cannot be had.
fn chromium() -> Result<PathBuf, String> {
    let find = || {
        ["chromium", "chromium-browser"].iter().find_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join(name))
                    .find(|p| p.is_file())
            })
        })
    };
    if let Some(found) = find() {
        return Ok(found);
    }
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let apt = std::process::Command::new("apt-get")
        .arg("--version")
        .output()
        .is_ok();
    if !(root && apt) {
        return Err(
            "chromium is not on PATH, and apt-get as root is not available to install it".into(),
        );
    }
    let _ = std::process::Command::new("apt-get")
        .args(["update", "-qq"])
        .status();
    let installed = std::process::Command::new("apt-get")
        .args(["install", "-y", "-qq", "chromium"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .map_err(|e| format!("apt-get install chromium: {e}"))?;
    if !installed.status.success() {
        return Err(format!(
            "apt-get install chromium failed: {}",
            String::from_utf8_lossy(&installed.stderr)
        ));
    }
    find().ok_or_else(|| "chromium installed but not found on PATH".into())
}

/// Runs headless chromium with `args` then `url`, bounded in time.
async fn headless(
    chromium: &PathBuf,
    profile: &std::path::Path,
    args: &[&str],
    url: &str,
) -> std::process::Output {
    let run = tokio::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("chromium finishes within two minutes")
        .expect("chromium runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_chromium_renders_the_planted_findings_and_a_chart() {
    let browser = match chromium() {
        Ok(path) => path,
        Err(why) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true: the browser test must run: {why}"
            );
            eprintln!("skipped: headless chromium test ({why}); install Debian's chromium");
            return;
        }
    };
    let served = serve_demo(&[]).await;
    let profile = tempfile::tempdir().expect("a browser profile directory");

    let dom = headless(&browser, profile.path(), &["--dump-dom"], &served.url("/")).await;
    assert!(
        dom.status.success(),
        "chromium --dump-dom: {}",
        describe(&dom)
    );
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    for (kind, resource) in PLANTED {
        assert!(dom.contains(kind), "the browser shows {kind}");
        assert!(dom.contains(resource), "the browser shows {resource}");
    }
    assert!(
        !dom.contains("<script>alert"),
        "the hostile title stays text"
    );

    let spike = finding_id(&served.app, "cost_spike").await;
    let finding_url = served.url(&format!("/findings/{spike}"));
    let page = headless(&browser, profile.path(), &["--dump-dom"], &finding_url).await;
    assert!(page.status.success(), "{}", describe(&page));
    let page = String::from_utf8_lossy(&page.stdout).into_owned();
    assert!(
        page.contains("<svg"),
        "the chart renders in the browser: {page}"
    );

    let target = target_dir();
    std::fs::create_dir_all(&target).expect("the target directory");
    for (file, url) in [
        ("dashboard.png", served.url("/")),
        ("dashboard-finding.png", finding_url),
    ] {
        let path = target.join(file);
        let _ = std::fs::remove_file(&path);
        let shot = headless(
            &browser,
            profile.path(),
            &[
                &format!("--screenshot={}", path.display()),
                "--window-size=1280,1600",
            ],
            &url,
        )
        .await;
        assert!(
            shot.status.success(),
            "chromium --screenshot: {}",
            describe(&shot)
        );
        let png = std::fs::read(&path).expect("the screenshot was written");
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 10_000,
            "{} is a real PNG",
            path.display()
        );
        eprintln!("screenshot: {}", path.display());
    }
    served.stop().await;
}
