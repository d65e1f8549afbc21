//! The daemon's HTTP server: health, readiness, metrics, and `draco run`
//! serving them while it scans.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::harness::{spawn_app, spawn_app_with};
use crate::support::{Draco, describe, free_port};

#[tokio::test]
async fn healthz_answers_while_the_process_runs() {
    let app = spawn_app(&[]).await;
    let response = app.get("/healthz").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "ok\n");
    app.stop().await;
}

#[tokio::test]
async fn readyz_is_200_when_migrated_and_503_with_the_reason_otherwise() {
    let app = spawn_app(&[]).await;
    assert_eq!(app.get("/readyz").await.status(), 200);

    // A schema this build does not know (a newer Draco migrated it).
    let db = draco::app::database_path(&app.app.data_dir);
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99990101, 'from the future', 1, x'00', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 503);
    let body = response.text().await.unwrap();
    assert_eq!(body, "not ready: database not migrated\n");
    assert!(
        !body.contains("99990101"),
        "internals are not shown: {body}"
    );

    // The database gone: unreachable, and still no internals.
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 99990101")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    assert_eq!(app.get("/readyz").await.status(), 200);
    app.app.store.close().await;
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.text().await.unwrap(),
        "not ready: database unreachable\n"
    );
    assert_eq!(app.get("/healthz").await.status(), 200, "still alive");
    app.stop().await;
}

/// The value of the sample with exactly these labels, as Prometheus' text
/// format writes it (`name{labels} value`).
fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

#[tokio::test]
async fn metrics_show_scans_findings_and_the_build_in_prometheus_text_format() {
    let app = spawn_app(&[]).await;
    let before = app.get("/metrics").await.text().await.unwrap();
    let ok_before = sample(&before, r#"draco_scans_total{status="ok"}"#).unwrap_or(0.0);

    let report = app.app.scan(Utc::now()).await.expect("the demo scans");
    assert_eq!(report.status.as_str(), "ok");

    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    assert!(
        sample(&text, r#"draco_scans_total{status="ok"}"#).unwrap() >= ok_before + 1.0,
        "{text}"
    );
    assert!(text.contains("# TYPE draco_scans_total counter"), "{text}");
    assert!(
        text.contains("# TYPE draco_scan_duration_seconds histogram"),
        "{text}"
    );
    assert!(text.contains("draco_scan_duration_seconds_count"), "{text}");
    assert!(
        text.contains("draco_cost_explorer_requests_total"),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            &format!(
                r#"draco_build_info{{version="{}"}}"#,
                env!("CARGO_PKG_VERSION")
            )
        ),
        Some(1.0),
        "{text}"
    );
    // The demo plants one public snapshot (critical) — counted as open.
    let findings = app.app.store.findings().await.unwrap();
    let snapshot = findings
        .iter()
        .find(|f| f.finding.kind.as_str() == "snapshot_public")
        .expect("the demo's public snapshot");
    let series = format!(
        r#"draco_findings{{kind="snapshot_public",severity="{}",status="{}"}}"#,
        snapshot.finding.severity.as_str(),
        snapshot.status.as_str()
    );
    assert_eq!(sample(&text, &series), Some(1.0), "{series} in {text}");
    app.stop().await;
}

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

#[test]
fn draco_run_serves_health_readiness_and_metrics_while_it_scans() {
    let draco = Draco::new();
    let port = free_port();
    let mut child = draco
        .command_on_demo_fixtures()
        .env("DRACO_SERVER_LISTEN", format!("127.0.0.1:{port}"))
        .env("DRACO_LOG", "info")
        .args(["run", "--scan-on-start"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("daemon starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut metrics = String::new();
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("daemon exited early with {status}");
        }
        if let Some((200, body)) = http_get(port, "/metrics")
            && sample(&body, r#"draco_scans_total{status="ok"}"#) == Some(1.0)
        {
            metrics = body;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!metrics.is_empty(), "no scan was counted within 30 s");
    assert_eq!(http_get(port, "/healthz").map(|r| r.0), Some(200));
    assert_eq!(http_get(port, "/readyz").map(|r| r.0), Some(200));
    assert_eq!(http_get(port, "/nowhere").map(|r| r.0), Some(404));

    let started = Instant::now();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    let out = child.wait_with_output().expect("daemon output");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        started.elapsed() < Duration::from_secs(11),
        "took {:?}",
        started.elapsed()
    );
    assert!(http_get(port, "/healthz").is_none(), "the port is released");
}

#[test]
fn a_second_daemon_on_a_taken_port_says_which_setting_to_change() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let draco = Draco::new();
    let out = draco
        .command_on_demo_fixtures()
        .env("DRACO_SERVER_LISTEN", format!("127.0.0.1:{port}"))
        .arg("run")
        .output()
        .expect("draco runs");
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("server.listen") && err.contains("DRACO_SERVER_LISTEN"),
        "{err}"
    );
}

/// Reads from a raw connection until the server closes it, or `limit` passes.
/// Returns what was read and whether the server closed the connection.
async fn read_until_closed(stream: &mut tokio::net::TcpStream, limit: Duration) -> (String, bool) {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    let mut buffer = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return (String::from_utf8_lossy(&seen).into_owned(), false),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&seen).into_owned(), true),
            Ok(Ok(n)) => seen.extend_from_slice(&buffer[..n]),
        }
    }
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected_while_others_are_served() {
    use tokio::io::AsyncWriteExt;
    let limits = draco::server::Limits {
        header_read_timeout: Duration::from_secs(1),
        ..draco::server::Limits::default()
    };
    let app = spawn_app_with(&[], limits).await;
    // Slowloris: half a request line and one header, then nothing; and a
    // connection that sends nothing at all.
    let mut slow = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut silent = tokio::net::TcpStream::connect(app.addr).await.unwrap();

    // Meanwhile the server answers everyone else.
    assert_eq!(app.get("/healthz").await.status(), 200);

    // Closed after the header timeout (waited for 20 times as long at most,
    // so a loaded machine does not make this flaky; without the timeout
    // the connection stays open and this fails).
    for (name, stream) in [("slow", &mut slow), ("silent", &mut silent)] {
        let (answer, closed) = read_until_closed(stream, Duration::from_secs(20)).await;
        assert!(closed, "{name} connection still open: {answer:?}");
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "{name}: {answer:?}"
        );
    }
    // A new connection: the test client's pooled one was idle longer than
    // the header timeout too, so the server has closed it.
    let fresh = reqwest::get(app.url("/healthz")).await.expect("answers");
    assert_eq!(fresh.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_and_are_served_when_one_frees() {
    use tokio::io::AsyncWriteExt;
    let limits = draco::server::Limits {
        header_read_timeout: Duration::from_secs(2),
        max_connections: 1,
        // No reserve: the health route would be served on it at once.
        probe_reserve: 0,
        ..draco::server::Limits::default()
    };
    let app = spawn_app_with(&[], limits).await;
    let mut holder = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    holder
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .unwrap();
    // The one connection is taken: a second client is not served yet...
    let waiting = tokio::spawn({
        let url = app.url("/healthz");
        async move { reqwest::get(url).await.map(|r| r.status().as_u16()) }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "served beyond max_connections");
    // ...and is served once the holder is cut off by the header timeout.
    let status = tokio::time::timeout(Duration::from_secs(40), waiting)
        .await
        .expect("served after the slot freed")
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
    let (_, closed) = read_until_closed(&mut holder, Duration::from_secs(20)).await;
    assert!(closed);
    app.stop().await;
}

#[tokio::test]
async fn a_client_that_never_reads_its_answers_is_cut_off_at_the_connection_lifetime() {
    use tokio::io::AsyncWriteExt;
    let limits = draco::server::Limits {
        // Only the lifetime may close it within this test's wait.
        header_read_timeout: Duration::from_secs(600),
        connection_lifetime: Duration::from_secs(2),
        ..draco::server::Limits::default()
    };
    let app = spawn_app_with(&[], limits).await;
    // Enough pipelined requests that the answers fill both socket buffers
    // and the server blocks writing to a client that does not read.
    let mut reader_less = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(8000);
    reader_less.write_all(&request).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    let (answer, closed) = read_until_closed(&mut reader_less, Duration::from_secs(30)).await;
    assert!(closed, "still open after {} bytes", answer.len());
    let answered = answer.matches("HTTP/1.1 200").count();
    assert!(
        answered < 8000,
        "all {answered} answered: the lifetime did not cut it"
    );
    app.stop().await;
}

#[tokio::test]
async fn one_address_cannot_hold_more_than_its_share_of_connections() {
    let limits = draco::server::Limits {
        header_read_timeout: Duration::from_secs(600),
        max_connections_per_client: 2,
        ..draco::server::Limits::default()
    };
    let app = spawn_app_with(&[], limits).await;
    let first = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let _second = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    // Let the server accept both before the third arrives.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut third = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    // Closed at once (without the cap it would wait for its headers for
    // the 600 s header timeout, and this would fail).
    let (_, closed) = read_until_closed(&mut third, Duration::from_secs(20)).await;
    assert!(closed, "a third connection from one address was kept");
    // A slot freed is a slot for the same address again.
    drop(first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fresh = reqwest::get(app.url("/healthz")).await.expect("answers");
    assert_eq!(fresh.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn probes_are_answered_on_the_reserve_when_a_flood_holds_every_connection() {
    use tokio::io::AsyncWriteExt;
    let limits = draco::server::Limits {
        // The flood's idle connections would hold their slots for 600 s.
        header_read_timeout: Duration::from_secs(600),
        max_connections: 2,
        probe_reserve: 2,
        reserve_connections_per_client: 1,
        reserve_header_read_timeout: Duration::from_secs(3),
        ..draco::server::Limits::default()
    };
    let app = spawn_app_with(&[], limits).await;
    let _flood: Vec<_> = idle_connections(app.addr, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Every general slot is taken: a probe is still answered (without the
    // reserve it would wait the 600 s header timeout and this would fail),
    // once: a reserve connection serves one request, so a client that
    // keeps it busy with more cannot hold it.
    let mut probe = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    probe
        .write_all(&b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".repeat(2))
        .await
        .unwrap();
    let (answer, closed) = read_until_closed(&mut probe, Duration::from_secs(20)).await;
    assert!(closed, "the reserve connection stayed open: {answer:?}");
    assert_eq!(answer.matches("HTTP/1.1 200").count(), 1, "{answer:?}");

    // The reserve serves only the health routes.
    let mut other = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    other
        .write_all(b"POST /webhooks/github HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        .await
        .unwrap();
    let (answer, _) = read_until_closed(&mut other, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer:?}"
    );
    drop(other);

    // One address holds at most its share of the reserve: with one idle
    // reserve connection open, its next one is closed at once (else it
    // would wait the 3 s header timeout)...
    let mut idle = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut second = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let (_, closed) = read_until_closed(&mut second, Duration::from_millis(1500)).await;
    assert!(
        closed,
        "a second reserve connection from one address was kept"
    );
    // ...and the idle one is cut after the reserve's header timeout.
    let (_, closed) = read_until_closed(&mut idle, Duration::from_secs(20)).await;
    assert!(closed, "an idle connection kept its reserve slot");
    app.stop().await;
}

/// `n` raw connections that send nothing.
async fn idle_connections(addr: std::net::SocketAddr, n: usize) -> Vec<tokio::net::TcpStream> {
    let mut streams = Vec::with_capacity(n);
    for _ in 0..n {
        streams.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    streams
}

#[tokio::test]
async fn the_health_listener_answers_probes_while_the_main_one_is_flooded() {
    let limits = draco::server::Limits {
        header_read_timeout: Duration::from_secs(600),
        max_connections: 2,
        probe_reserve: 0,
        ..draco::server::Limits::default()
    };
    let app = spawn_app_with(&[], limits).await;
    let health = draco::server::spawn_health(app.app.clone(), ([127, 0, 0, 1], 0).into())
        .await
        .expect("health listener");
    // The main listener is full (and has no reserve here)...
    let _flood = idle_connections(app.addr, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // ...and the health listener answers at once.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let answer = tokio::time::timeout(
            Duration::from_secs(10),
            reqwest::get(format!("http://{}{path}", health.addr)),
        )
        .await
        .expect("answered while the main listener is flooded")
        .expect("answers");
        assert_eq!(answer.status(), 200, "{path}");
    }
    // One request per connection: a client cannot keep a slot busy.
    let mut busy = tokio::net::TcpStream::connect(health.addr).await.unwrap();
    {
        use tokio::io::AsyncWriteExt;
        busy.write_all(&b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".repeat(3))
            .await
            .unwrap();
    }
    let (answer, closed) = read_until_closed(&mut busy, Duration::from_secs(10)).await;
    assert!(closed, "{answer:?}");
    assert_eq!(answer.matches("HTTP/1.1 200").count(), 1, "{answer:?}");
    // It serves nothing else, now or when webhooks and pages join the main router.
    let other = reqwest::Client::new()
        .post(format!("http://{}/webhooks/github", health.addr))
        .send()
        .await
        .expect("answers");
    assert_eq!(other.status(), 404);
    health.shutdown().await.expect("stops");
    app.stop().await;
}

#[test]
fn draco_run_serves_the_health_routes_on_server_health_listen() {
    let draco = Draco::new();
    let (main, health) = (free_port(), free_port());
    let mut child = draco
        .command_on_demo_fixtures()
        .env("DRACO_SERVER_LISTEN", format!("127.0.0.1:{main}"))
        .env("DRACO_SERVER_HEALTH_LISTEN", format!("127.0.0.1:{health}"))
        .args(["run"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("daemon starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    // While the daemon starts (its database is waited for) the listener
    // already answers `503 not ready: starting`: wait for ready.
    let answer = loop {
        let answer = http_get(health, "/readyz");
        if let Some(answer) = answer.as_ref().filter(|a| a.0 == 200) {
            break answer.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the health listener never answered ready: {answer:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(answer.0, 200, "{answer:?}");
    assert_eq!(http_get(health, "/metrics").map(|a| a.0), Some(200));
    assert_eq!(http_get(health, "/nothing").map(|a| a.0), Some(404));
    assert_eq!(http_get(main, "/healthz").map(|a| a.0), Some(200));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("exits");
    assert_eq!(status.code(), Some(0));
}
