use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Draco, demo_fixtures, describe};

#[test]
fn daemon_scans_on_schedule_and_stops_cleanly_on_sigterm() {
    let draco = Draco::new();
    let mut child = draco
        .command()
        .env("DRACO_SCHEDULE", "* * * * * *")
        .env("DRACO_SERVER_LISTEN", "127.0.0.1:0")
        .env("DRACO_SOURCE_KIND", "fixtures")
        .env("DRACO_SOURCE_FIXTURES_DIR", demo_fixtures())
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
