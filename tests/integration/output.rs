//! Output that cannot be written ends with a clear error, not a panic.

use std::process::Stdio;

use crate::support::{Draco, describe};

fn with_closed_stdout(draco: &Draco, args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    draco
        .command()
        .args(args)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .expect("draco runs")
}

#[test]
fn a_closed_pipe_gives_a_clear_error_and_exit_1_not_a_panic() {
    let draco = Draco::new();
    draco.ok(&["demo"]);
    for args in [
        &["audit", "verify"][..],
        &["findings"][..],
        &["findings", "--json"][..],
        &["show", "1"][..],
        &["scans"][..],
        &["config", "check"][..],
    ] {
        let out = with_closed_stdout(&draco, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", describe(&out));
        assert!(
            err.contains("cannot write to standard output"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn a_full_device_gives_a_clear_error() {
    let draco = Draco::new();
    draco.ok(&["demo"]);
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full exists on Linux");
    let out = draco
        .command()
        .args(["findings", "--json"])
        .stdout(Stdio::from(full))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        err.contains("cannot write to standard output") && !err.contains("panicked"),
        "{err}"
    );
}
