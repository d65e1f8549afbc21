use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Draco, describe, free_port};

#[test]
fn daemon_scans_on_schedule_and_stops_cleanly_on_sigterm() {
    let draco = Draco::new();
    let mut child = draco
        .command_on_demo_fixtures()
        .env("DRACO_SCHEDULE", "* * * * * *")
        .env("DRACO_SERVER_LISTEN", "127.0.0.1:0")
        .env("DRACO_LOG", "info")
        .arg("run")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("daemon starts");

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut scanned = false;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("daemon exited early with {status}");
        }
        let out = draco.run(&["findings", "--json"]);
        if out.status.success()
            && String::from_utf8_lossy(&out.stdout)
                .matches("\"fingerprint\"")
                .count()
                == 8
        {
            scanned = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    let killed = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if child.try_wait().ok().flatten().is_none() {
        let _ = child.kill();
        panic!("daemon did not stop within 20 s of SIGTERM");
    }
    let out = child.wait_with_output().expect("output");
    assert!(scanned, "no scheduled scan completed: {}", describe(&out));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("SIGTERM received") && log.contains("shutting down"),
        "{log}"
    );
    assert!(!log.contains("ERROR"), "{log}");
}

/// A model endpoint that accepts connections and never answers; the count
/// of connections tells that a scan is waiting on it.
fn silent_model() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&seen);
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    (port, seen)
}

fn daemon_waiting_on_a_silent_model(draco: &Draco, grace_secs: u32) -> std::process::Child {
    daemon_on_a_silent_model_listening(draco, grace_secs, "127.0.0.1:0")
}

fn daemon_on_a_silent_model_listening(
    draco: &Draco,
    grace_secs: u32,
    listen: &str,
) -> std::process::Child {
    let (port, seen) = silent_model();
    let child = draco
        .command_on_demo_fixtures()
        .env("DRACO_SERVER_LISTEN", listen)
        .env("DRACO_SERVER_SHUTDOWN_GRACE_SECS", grace_secs.to_string())
        .env("DRACO_LLM_PROVIDER", "openai")
        .env("DRACO_LLM_BASE_URL", format!("http://127.0.0.1:{port}/v1"))
        .env("DRACO_LLM_MODEL", "stand-in")
        .env("DRACO_LLM_API_KEY", "test-key")
        .env("DRACO_LLM_TIMEOUT_SECS", "600")
        .env("DRACO_LOG", "info")
        .args(["run", "--scan-on-start"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("daemon starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the scan never asked the model");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn signal(child: &std::process::Child, name: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(ok.success());
}

fn wait_at_most(child: &mut std::process::Child, limit: Duration) -> Duration {
    let started = Instant::now();
    while child.try_wait().ok().flatten().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("still running {limit:?} after the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

#[test]
fn sigterm_during_a_model_call_that_never_answers_exits_within_the_grace_period() {
    let draco = Draco::new();
    let mut child = daemon_waiting_on_a_silent_model(&draco, 2);
    signal(&child, "TERM");
    let took = wait_at_most(&mut child, Duration::from_secs(10));
    let out = child.wait_with_output().expect("output");
    assert!(
        took <= Duration::from_secs(3),
        "took {took:?}: {}",
        describe(&out)
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("grace period over"), "{log}");
    // Nothing is left `running`: the cancelled scan is marked interrupted.
    let scans: serde_json::Value =
        serde_json::from_str(&draco.ok(&["scans", "--json"])).expect("json");
    assert_eq!(scans[0]["status"], "interrupted", "{scans}");
    draco.ok(&["audit", "verify"]);
}

#[test]
fn one_grace_period_covers_a_stuck_scan_and_a_client_that_never_reads() {
    use std::io::Write;
    let draco = Draco::new();
    let port = free_port();
    let mut child = daemon_on_a_silent_model_listening(&draco, 2, &format!("127.0.0.1:{port}"));
    // A client that pipelines requests and never reads the answers: once
    // both socket buffers are full the server is stuck writing an answer,
    // so its connection stays busy until the server gives up on it. (Its
    // own writes block too, hence a thread; they fail when it is closed.)
    let mut reader_less = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let flood = std::thread::spawn(move || {
        let requests = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(1000);
        while reader_less.write_all(&requests).is_ok() {}
    });
    std::thread::sleep(Duration::from_secs(2));
    signal(&child, "TERM");
    let took = wait_at_most(&mut child, Duration::from_secs(15));
    let out = child.wait_with_output().expect("output");
    // The scan's wait and the connections' wait share one grace period
    // (each with its own would take about twice as long).
    assert!(
        took <= Duration::from_secs(3),
        "took {took:?}: {}",
        describe(&out)
    );
    flood.join().expect("the flood ends with the connection");
}

#[test]
fn a_second_signal_exits_at_once() {
    let draco = Draco::new();
    let mut child = daemon_waiting_on_a_silent_model(&draco, 60);
    signal(&child, "TERM");
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, "INT");
    let took = wait_at_most(&mut child, Duration::from_secs(10));
    let out = child.wait_with_output().expect("output");
    assert!(
        took <= Duration::from_secs(2),
        "took {took:?}: {}",
        describe(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("second signal"),
        "{}",
        describe(&out)
    );
}

#[test]
fn bench_idle_runs_the_daemon_on_the_demo_data_and_reads_its_memory() {
    if !cfg!(target_os = "linux") {
        println!("skipped: `draco bench idle` reads /proc and needs Linux");
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_draco"))
        .args([
            "bench",
            "idle",
            "--scans",
            "2",
            "--interval-secs",
            "1",
            "--settle-ms",
            "300",
            "--json",
        ])
        // An operator's settings must not reach the scratch daemon.
        .env("DRACO_SOURCE_KIND", "aws")
        .env("DRACO_LLM_PROVIDER", "openai")
        .output()
        .expect("draco runs");
    assert!(out.status.success(), "{}", describe(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let samples = report["samples"].as_array().expect("samples");
    assert_eq!(samples.len(), 2, "{report}");
    for sample in samples {
        let rss = sample["rss_kib"].as_u64().expect("rss");
        let peak = sample["peak_kib"].as_u64().expect("peak");
        assert!(rss > 1000 && rss <= peak, "{report}");
    }
    assert_eq!(report["clean_exit"], true, "{report}");
    assert_eq!(report["target_mb"], 30.0, "{report}");
}

#[test]
fn bench_footprint_measures_idle_memory_size_start_up_and_a_generated_scan() {
    if !cfg!(target_os = "linux") {
        println!("skipped: `draco bench footprint` reads /proc and needs Linux");
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_draco"))
        .args([
            "bench",
            "footprint",
            "--idle-scans",
            "1",
            "--starts",
            "2",
            "--accounts",
            "2",
            "--regions",
            "2",
            "--instances",
            "30",
            "--bad-percent",
            "10",
            "--cost-series",
            "6",
            "--cost-days",
            "90",
            "--json",
        ])
        // An operator's settings must not reach the scratch children.
        .env("DRACO_SOURCE_KIND", "aws")
        .env("DRACO_LLM_PROVIDER", "openai")
        .output()
        .expect("draco runs");
    assert!(out.status.success(), "{}", describe(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let binary = std::fs::metadata(env!("CARGO_BIN_EXE_draco"))
        .expect("the binary")
        .len();
    assert_eq!(report["binary_bytes"], binary, "{report}");
    let idle = &report["idle"];
    assert_eq!(idle["scans"], 1, "{report}");
    let rss = idle["rss_mb"].as_f64().expect("rss");
    assert!(
        rss > 1.0 && rss <= idle["peak_mb"].as_f64().expect("peak"),
        "{report}"
    );
    assert_eq!(idle["target_mb"], 30.0, "{report}");
    let starts = report["startup_secs"].as_array().expect("start-ups");
    assert_eq!(starts.len(), 2, "{report}");
    assert!(
        starts
            .iter()
            .all(|s| s.as_f64().is_some_and(|s| s > 0.0 && s < 60.0)),
        "{report}"
    );
    let scan = &report["scan"];
    // 2 × 2 × 30 instances, as many root volumes, 4 groups, spare volumes.
    let resources = scan["resources"].as_u64().expect("resources");
    assert!((244..=400).contains(&resources), "{report}");
    assert_eq!(scan["cost_rows"], 6 * 90, "{report}");
    assert!(scan["findings"].as_u64().is_some_and(|n| n > 0), "{report}");
    assert!(
        scan["seconds"].as_f64().is_some_and(|s| s > 0.0),
        "{report}"
    );
    assert!(
        scan["peak_mb"].as_f64().is_some_and(|m| m > 1.0),
        "{report}"
    );
}

#[test]
fn sigterm_ends_the_daemon_in_time_while_another_process_holds_the_database_lock() {
    let draco = Draco::new();
    let mut child = daemon_waiting_on_a_silent_model(&draco, 2);
    // Another process takes SQLite's write lock and keeps it: marking the
    // cancelled scan interrupted would wait the 10 s busy timeout.
    let db = draco.data_dir().join("draco.db");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let _locked = runtime.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .expect("open");
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut conn)
            .await
            .expect("lock");
        conn
    });
    signal(&child, "TERM");
    let took = wait_at_most(&mut child, Duration::from_secs(20));
    let out = child.wait_with_output().expect("output");
    assert!(
        took <= Duration::from_secs(3),
        "took {took:?}: {}",
        describe(&out)
    );
}

#[test]
fn the_daemon_outlives_a_log_reader_that_goes_away() {
    use std::io::Read;
    let draco = Draco::new();
    let mut child = draco
        .command_on_demo_fixtures()
        .env("DRACO_SERVER_LISTEN", "127.0.0.1:0")
        .env("DRACO_SCHEDULE", "*/1 * * * * *")
        .env("DRACO_LOG", "info")
        .args(["run", "--scan-on-start"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("daemon starts");
    // Read the first log bytes, then close the pipe: every later log line
    // (a scan a second) is written to a closed pipe.
    let mut stderr = child.stderr.take().expect("stderr");
    let mut first = [0u8; 64];
    let _ = stderr.read(&mut first).expect("a log line");
    drop(stderr);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        child.try_wait().expect("status").is_none(),
        "the daemon stopped when its log reader went away: {:?}",
        child.try_wait()
    );
    signal(&child, "TERM");
    wait_at_most(&mut child, Duration::from_secs(15));
    assert_eq!(child.wait().expect("status").code(), Some(0));
}
