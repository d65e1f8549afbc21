use serde_json::{Value, json};

use crate::support::{Draco, copy_tree, demo_fixtures, describe, stderr};

#[test]
fn a_missing_config_file_is_a_usage_error_naming_it() {
    let draco = Draco::new();
    let path = draco.path("nope.toml");
    let out = draco.run(&["--config", path.to_str().unwrap_or_default(), "demo"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(stderr(&out).contains("nope.toml"), "{}", describe(&out));
    assert!(
        !draco.data_dir().join("draco.db").exists(),
        "nothing may be created"
    );
}

#[test]
fn malformed_toml_names_the_file_and_line() {
    let draco = Draco::new();
    let path = draco.path("draco.toml");
    std::fs::write(
        &path,
        "schedule = \"0 0 6 * * *\"\n[detect.cost\nz_threshold = 5\n",
    )
    .unwrap_or_default();
    let out = draco.run(&[
        "--config",
        path.to_str().unwrap_or_default(),
        "config",
        "check",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = stderr(&out);
    assert!(
        err.contains("draco.toml") && err.contains("line 2"),
        "{err}"
    );
}

#[test]
fn an_unknown_key_names_the_key_and_what_was_expected() {
    let draco = Draco::new();
    let path = draco.path("draco.toml");
    std::fs::write(&path, "[detect.cost]\nz_treshold = 5.0\n").unwrap_or_default();
    let out = draco.run(&["--config", path.to_str().unwrap_or_default(), "demo"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = stderr(&out);
    assert!(
        err.contains("z_treshold") && err.contains("z_threshold"),
        "{err}"
    );
}

#[test]
fn a_bad_environment_override_is_a_usage_error() {
    let draco = Draco::new();
    let out = draco
        .command()
        .env("DRACO_DETECT_COST_Z_THRESHOLD", "very")
        .args(["config", "check"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        stderr(&out).contains("DRACO_DETECT_COST_Z_THRESHOLD"),
        "{}",
        describe(&out)
    );
}

#[test]
fn config_check_masks_secrets() {
    let draco = Draco::new();
    let out = draco
        .command()
        .env("DRACO_LLM_API_KEY", "sk-very-secret-value-42")
        .args(["config", "check"])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", describe(&out));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(!text.contains("sk-very-secret-value-42"), "{text}");
    assert!(
        text.contains(
            "llm.api_key = \"******** (set, from environment variable DRACO_LLM_API_KEY)\""
        ),
        "{text}"
    );
}

#[test]
fn a_secret_in_the_config_file_is_refused() {
    let draco = Draco::new();
    let path = draco.path("draco.toml");
    std::fs::write(&path, "[llm]\napi_key = \"sk-in-the-file\"\n").unwrap_or_default();
    let out = draco.run(&[
        "--config",
        path.to_str().unwrap_or_default(),
        "config",
        "check",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        !stderr(&out).contains("sk-in-the-file"),
        "{}",
        describe(&out)
    );
    assert!(
        stderr(&out).contains("DRACO_LLM_API_KEY"),
        "{}",
        describe(&out)
    );
}

#[test]
fn a_corrupted_database_is_reported_and_left_untouched() {
    let draco = Draco::new();
    std::fs::create_dir_all(draco.data_dir()).unwrap_or_default();
    let db = draco.data_dir().join("draco.db");
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&db, &garbage).unwrap_or_default();

    let out = draco.run(&["demo"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        stderr(&out).contains("draco.db") && stderr(&out).contains("Draco did not write to it"),
        "{}",
        describe(&out)
    );
    assert!(
        std::fs::read(&db).unwrap_or_default() == garbage,
        "the file must not be rewritten"
    );
}

#[test]
fn a_truncated_database_is_reported_and_left_untouched() {
    let draco = Draco::new();
    draco.ok(&["demo"]);
    let db = draco.data_dir().join("draco.db");
    // Fold the WAL back so the file holds everything, then cut it in half.
    let _ = std::fs::remove_file(draco.data_dir().join("draco.db-wal"));
    let _ = std::fs::remove_file(draco.data_dir().join("draco.db-shm"));
    let bytes = std::fs::read(&db).unwrap_or_default();
    let mut broken = bytes[..bytes.len() / 2].to_vec();
    // Smash the page after the header so the schema cannot be read.
    for b in broken.iter_mut().skip(100).take(4000) {
        *b = 0xAB;
    }
    std::fs::write(&db, &broken).unwrap_or_default();

    let out = draco.run(&["findings"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(stderr(&out).contains("draco.db"), "{}", describe(&out));
    assert!(
        std::fs::read(&db).unwrap_or_default() == broken,
        "the file must not be rewritten"
    );
}

#[test]
fn another_programs_sqlite_file_is_not_adopted() {
    let draco = Draco::new();
    std::fs::create_dir_all(draco.data_dir()).unwrap_or_default();
    let db = draco.data_dir().join("draco.db");
    let made = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!("import sqlite3; c=sqlite3.connect({:?}); c.execute('create table invoices(id)'); c.commit()", db.display().to_string()))
        .status()
        .expect("python3 runs");
    assert!(made.success());
    let before = std::fs::read(&db).unwrap_or_default();
    let out = draco.run(&["demo"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(stderr(&out).contains("invoices"), "{}", describe(&out));
    assert!(
        std::fs::read(&db).unwrap_or_default() == before,
        "the file must not be rewritten"
    );
}

/// A fixtures config for `dir`, as an operator writes it.
fn fixtures_config(draco: &Draco, dir: &std::path::Path) -> std::path::PathBuf {
    let config = draco.path("draco.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nkind = \"fixtures\"\nfixtures_dir = {:?}\n",
            dir.display().to_string()
        ),
    )
    .unwrap_or_default();
    config
}

fn scan_json(draco: &Draco, config: &std::path::Path) -> (std::process::Output, Value) {
    let out = draco.run(&[
        "--config",
        config.to_str().unwrap_or_default(),
        "scan",
        "--once",
        "--json",
    ]);
    let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, report)
}

/// `(kind, status)` of every finding, sorted.
fn kinds_and_statuses(findings: &[Value]) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = findings
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap_or_default().to_owned(),
                f["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    pairs.sort();
    pairs
}

#[test]
fn a_bad_cost_row_makes_the_scan_partial_and_posture_is_still_scanned() {
    let draco = Draco::new();
    let fixtures = draco.path("fixtures");
    copy_tree(&demo_fixtures(), &fixtures);
    let config = fixtures_config(&draco, &fixtures);
    let (out, _) = scan_json(&draco, &config);
    assert!(out.status.success(), "{}", describe(&out));
    let before = kinds_and_statuses(&draco.findings());
    assert!(
        before.iter().any(|(k, _)| k.starts_with("cost_")),
        "{before:?}"
    );

    let csv_path = fixtures.join("cost.csv");
    let csv = std::fs::read_to_string(&csv_path).unwrap_or_default();
    let mut lines: Vec<String> = csv.lines().map(str::to_owned).collect();
    lines[41] = "2026-09-07,402917364518,AWS Lambda,forty-two,false".to_owned();
    std::fs::write(&csv_path, lines.join("\n") + "\n").unwrap_or_default();

    let (out, report) = scan_json(&draco, &config);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(report["scan"]["status"], "partial", "{report:#}");
    let errors = report["scan"]["scan_errors"].to_string();
    assert!(
        errors.contains("cost.csv:42") && errors.contains("forty-two"),
        "{errors}"
    );
    assert_eq!(report["scan"]["regions_scanned"], 4, "{report:#}");
    // Nothing from the unreadable file was stored, and nothing was resolved for want of it.
    assert_eq!(report["scan"]["cost_points"], 0);
    assert_eq!(
        report["scan"]["outcome"]["resolved"],
        json!([]),
        "{report:#}"
    );
    assert_eq!(kinds_and_statuses(&draco.findings()), before);
}

#[test]
fn a_garbled_cost_file_on_a_first_scan_still_reports_posture() {
    let draco = Draco::new();
    let fixtures = draco.path("fixtures");
    copy_tree(&demo_fixtures(), &fixtures);
    let garbage: Vec<u8> = (0..2048u32).map(|i| (i * 31 % 253) as u8).collect();
    std::fs::write(fixtures.join("cost.csv"), garbage).unwrap_or_default();
    let config = fixtures_config(&draco, &fixtures);
    let (out, report) = scan_json(&draco, &config);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(report["scan"]["status"], "partial", "{report:#}");
    let errors = report["scan"]["scan_errors"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(errors.len(), 1, "{report:#}");
    assert_eq!(errors[0]["service"], "cost");
    assert!(
        errors[0]["message"].to_string().contains("cost.csv"),
        "{report:#}"
    );
    let kinds: Vec<(String, String)> = kinds_and_statuses(&draco.findings());
    let posture: Vec<&str> = kinds.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        posture,
        vec![
            "ebs_unattached",
            "ebs_unencrypted",
            "eip_unassociated",
            "sg_open_admin_port",
            "snapshot_public"
        ],
        "every planted posture finding, and no cost finding"
    );
}

#[test]
fn a_broken_inventory_file_fails_its_region_alone_and_names_the_file() {
    let draco = Draco::new();
    let fixtures = draco.path("fixtures");
    copy_tree(&demo_fixtures(), &fixtures);
    let inventory = fixtures.join("ec2/730155902847/us-east-1.json");
    std::fs::write(&inventory, "{\"Volumes\": [{\"VolumeId\": 7}]}").unwrap_or_default();
    let out = draco
        .command()
        .env("DRACO_SOURCE_KIND", "fixtures")
        .env("DRACO_SOURCE_FIXTURES_DIR", &fixtures)
        .args(["scan", "--once", "--json"])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", describe(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(report["scan"]["status"], "partial", "{report:#}");
    assert_eq!(report["scan"]["regions_scanned"], 3, "{report:#}");
    let errors = report["scan"]["scan_errors"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(errors.len(), 1, "{report:#}");
    assert_eq!(errors[0]["account"], "730155902847");
    assert_eq!(errors[0]["region"], "us-east-1");
    assert!(
        errors[0]["message"]
            .to_string()
            .contains("730155902847/us-east-1.json"),
        "{report:#}"
    );
}

#[test]
fn scan_and_run_with_only_an_aws_table_refuse_naming_source_kind() {
    let draco = Draco::new();
    let config = draco.path("draco.toml");
    std::fs::write(&config, "[aws]\nregions = [\"us-east-1\"]\n").unwrap_or_default();
    for command in [&["scan", "--once"][..], &["run"], &["config", "check"]] {
        let mut args = vec!["--config", config.to_str().unwrap_or_default()];
        args.extend_from_slice(command);
        let out = draco.run(&args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{command:?}: {}",
            describe(&out)
        );
        let err = stderr(&out);
        assert!(
            err.contains("source.kind") && err.contains("\"aws\""),
            "{command:?}: {err}"
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).is_empty(),
            "{}",
            describe(&out)
        );
        assert!(
            !draco.data_dir().join("draco.db").exists(),
            "nothing may be scanned or created"
        );
    }
    // The demo is still there for whoever asks for it.
    let out = draco.run(&["--config", config.to_str().unwrap_or_default(), "demo"]);
    assert!(out.status.success(), "{}", describe(&out));
}

#[test]
fn scan_with_no_source_says_how_to_configure_one_and_never_scans_the_demo() {
    let draco = Draco::new();
    for command in [&["scan", "--once"][..], &["run", "--scan-on-start"]] {
        let out = draco.run(command);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{command:?}: {}",
            describe(&out)
        );
        let err = stderr(&out);
        assert!(
            err.contains("source.kind") && err.contains("draco demo"),
            "{command:?}: {err}"
        );
        assert!(!draco.data_dir().join("draco.db").exists());
    }
    // A fixtures directory set up but not selected, and fixtures with no directory.
    let fixtures = draco.path("fixtures");
    for (vars, key) in [
        (
            vec![(
                "DRACO_SOURCE_FIXTURES_DIR",
                fixtures.to_str().unwrap_or_default(),
            )],
            "source.kind",
        ),
        (
            vec![("DRACO_SOURCE_KIND", "fixtures")],
            "source.fixtures_dir",
        ),
    ] {
        let out = draco
            .command()
            .envs(vars.iter().copied())
            .args(["scan", "--once"])
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(2), "{vars:?}: {}", describe(&out));
        assert!(stderr(&out).contains(key), "{vars:?}: {}", describe(&out));
    }
}

#[test]
fn scan_without_once_is_a_usage_error() {
    let draco = Draco::new();
    let out = draco.run(&["scan"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(stderr(&out).contains("draco run"), "{}", describe(&out));
}

#[test]
fn reading_before_any_scan_says_what_to_do() {
    let draco = Draco::new();
    let out = draco.run(&["findings"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(stderr(&out).contains("draco demo"), "{}", describe(&out));
}

#[test]
fn an_unknown_subcommand_is_a_usage_error() {
    let draco = Draco::new();
    let out = draco.run(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
}

#[test]
fn config_check_names_the_advisor_that_will_answer() {
    let draco = Draco::new();
    let check = |env: &[(&str, &str)]| {
        let out = draco
            .command()
            .args(["config", "check"])
            .envs(env.iter().copied())
            .output()
            .expect("draco runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr(&out),
        )
    };
    let (code, text, _) = check(&[]);
    assert_eq!(code, Some(0));
    assert!(text.contains("# advisor: template (local"), "{text}");
    let (code, text, _) = check(&[("DRACO_LLM_PROVIDER", "anthropic")]);
    assert_eq!(code, Some(0));
    assert!(text.contains("anthropic needs an API key"), "{text}");
    let (code, text, _) = check(&[
        ("DRACO_LLM_PROVIDER", "openai"),
        ("DRACO_LLM_BASE_URL", "http://127.0.0.1:11434/v1"),
        ("DRACO_LLM_MODEL", "llama3.1"),
    ]);
    assert_eq!(code, Some(0));
    assert!(
        text.contains("# advisor: openai:llama3.1 at http://127.0.0.1:11434/v1"),
        "{text}"
    );
    // A model that could never be reached is a configuration error, found now.
    let (code, _, err) = check(&[
        ("DRACO_LLM_PROVIDER", "openai"),
        ("DRACO_LLM_BASE_URL", "http://models.example.com/v1"),
        ("DRACO_LLM_MODEL", "x"),
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("plain HTTP"), "{err}");
}

#[test]
fn credits_and_refunds_are_stored_negative_and_raise_no_finding_by_themselves() {
    let draco = Draco::new();
    let fixtures = draco.path("fixtures");
    std::fs::create_dir_all(&fixtures).unwrap_or_default();
    let mut csv = String::from("date,account_id,service,amount_usd,estimated\n");
    let start = chrono::NaiveDate::from_ymd_opt(2026, 8, 1).unwrap_or_default();
    for i in 0..120 {
        let day = start + chrono::Duration::days(i);
        csv.push_str(&format!(
            "{day},123456789012,Amazon EC2,{},false\n",
            100 + i % 7
        ));
        let credit = if i == 100 { "-900" } else { "-20.000000004" };
        csv.push_str(&format!("{day},123456789012,Credit,{credit},false\n"));
        if i == 110 {
            csv.push_str(&format!("{day},123456789012,Refund,-250.75,false\n"));
        }
    }
    std::fs::write(fixtures.join("cost.csv"), csv).unwrap_or_default();
    let config = fixtures_config(&draco, &fixtures);
    let (out, report) = scan_json(&draco, &config);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(report["scan"]["status"], "ok", "{report:#}");
    assert_eq!(report["scan"]["cost_points"], 241, "{report:#}");
    assert_eq!(draco.findings(), Vec::<Value>::new());
    let db = draco.data_dir().join("draco.db");
    let sum = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import sqlite3; c=sqlite3.connect({:?}); print(c.execute(\"select min(amount_usd), count(*) from cost_points where amount_usd < 0\").fetchone())",
            db.display().to_string()
        ))
        .output()
        .expect("python3 runs");
    assert_eq!(String::from_utf8_lossy(&sum.stdout).trim(), "(-900.0, 121)");
}

#[test]
fn environment_variables_that_are_not_utf8_give_an_error_not_a_panic() {
    use std::os::unix::ffi::OsStrExt;
    let draco = Draco::new();
    let not_utf8 = std::ffi::OsStr::from_bytes(b"\xff\xfe");
    // Someone else's variable: ignored.
    let out = draco
        .command()
        .env("SOMEONE_ELSES", not_utf8)
        .args(["config", "check"])
        .output()
        .expect("draco runs");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    // One of Draco's: a usage error naming it.
    let out = draco
        .command()
        .env("DRACO_SCHEDULE", not_utf8)
        .args(["config", "check"])
        .output()
        .expect("draco runs");
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("DRACO_SCHEDULE") && err.contains("UTF-8"),
        "{err}"
    );
}

#[test]
fn the_test_suites_corpus_variables_do_not_stop_the_command_line() {
    let draco = Draco::new();
    let out = draco
        .command()
        .env("DRACO_NAB_DIR", "/somewhere/nab")
        .env("DRACO_REALWORLD_DIR", "/somewhere/realworld")
        .args(["config", "check"])
        .output()
        .expect("draco runs");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
}
