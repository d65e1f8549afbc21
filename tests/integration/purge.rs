//! `draco purge`: a finding's planted personal data is gone from every
//! table of the database, from the database's files and from every object
//! of the change-request repository (reachable or not), and the audit
//! chain still verifies.

use std::path::Path;

use serde_json::Value;

use crate::support::{Draco, copy_tree, demo_fixtures, describe, git, stderr};

/// Planted in one volume of the demo fixtures: its id, its owner's
/// address and a phone number under its `Contact` tag.
const RESOURCE: &str = "vol-0feedbeefcafe0123";
const EMAIL: &str = "ada.purge@example.org";
const PHONE: &str = "+15557012345";

/// The demo fixtures with the unencrypted volume's id and its owner
/// replaced by planted values (only that volume carries them).
fn planted_fixtures(draco: &Draco) -> std::path::PathBuf {
    let dir = draco.path("fixtures");
    copy_tree(&demo_fixtures(), &dir);
    let file = dir.join("ec2/730155902847/us-east-1.json");
    let mut inventory: Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("json");
    let volumes = inventory["Volumes"].as_array_mut().expect("volumes");
    let volume = volumes
        .iter_mut()
        .find(|v| v["VolumeId"] == "vol-0c4e6a8b1d3f5e7a9")
        .expect("the unencrypted volume");
    volume["VolumeId"] = RESOURCE.into();
    for tag in volume["Tags"].as_array_mut().expect("tags") {
        match tag["Key"].as_str() {
            Some("Owner") => tag["Value"] = EMAIL.into(),
            Some("Contact") => tag["Value"] = PHONE.into(),
            _ => {}
        }
    }
    std::fs::write(&file, inventory.to_string()).expect("write");
    dir
}

fn scan(draco: &Draco, fixtures: &Path) {
    let out = draco
        .command()
        .env("DRACO_SOURCE_KIND", "fixtures")
        .env("DRACO_SOURCE_FIXTURES_DIR", fixtures)
        .args(["scan", "--once"])
        .output()
        .expect("draco runs");
    assert!(out.status.success(), "scan failed: {}", describe(&out));
}

/// Every text and blob of every table of the SQLite database.
fn every_value(data_dir: &Path) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        use sqlx::Row as _;
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(data_dir.join("draco.db"));
        let pool = sqlx::SqlitePool::connect_with(options).await.expect("open");
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        )
        .fetch_all(&pool)
        .await
        .expect("tables");
        let mut out = String::new();
        for table in tables {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM \"{table}\"")))
                .fetch_all(&pool)
                .await
                .expect("rows");
            for row in rows {
                for i in 0..row.len() {
                    if let Ok(Some(text)) = row.try_get::<Option<String>, _>(i) {
                        out.push_str(&format!("{table}: {text}\n"));
                    } else if let Ok(Some(bytes)) = row.try_get::<Option<Vec<u8>>, _>(i) {
                        out.push_str(&format!("{table}: {}\n", String::from_utf8_lossy(&bytes)));
                    }
                }
            }
        }
        pool.close().await;
        out
    })
}

/// The database's files as bytes (the file and its write-ahead log).
fn database_bytes(data_dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for name in ["draco.db", "draco.db-wal", "draco.db-journal"] {
        if let Ok(content) = std::fs::read(data_dir.join(name)) {
            bytes.extend(content);
        }
    }
    bytes
}

/// Every object of the repository, reachable or not, printed.
fn every_object(repo: &Path) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["cat-file", "--batch-all-objects", "--batch"])
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "{}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn a_purged_merged_finding_leaves_nothing_in_the_database_or_the_repository() {
    let draco = Draco::new();
    let fixtures = planted_fixtures(&draco);
    scan(&draco, &fixtures);
    let findings = draco.findings();
    let planted = findings
        .iter()
        .find(|f| f["resource"] == RESOURCE)
        .and_then(|f| f["id"].as_i64())
        .expect("the planted finding");
    // Approved and merged: main's history holds its files; then another
    // finding is merged on top of it.
    draco.ok(&["approve", &planted.to_string(), "--as", "Ada"]);
    let other = findings
        .iter()
        .filter_map(|f| f["id"].as_i64())
        .find(|id| *id != planted)
        .expect("another finding");
    draco.ok(&["approve", &other.to_string(), "--as", "Bob"]);
    let repo = draco.repository();
    for value in [RESOURCE, EMAIL, PHONE] {
        assert!(
            every_value(&draco.data_dir()).contains(value),
            "{value} was planted in the database"
        );
        assert!(
            every_object(&repo).contains(value),
            "{value} was planted in the repository"
        );
    }
    let other_files = git(&repo, &["ls-tree", "-r", "--name-only", "main"]);

    let out = draco.ok(&["purge", "--finding", &planted.to_string()]);
    assert!(out.contains(&format!("Purged finding {planted}")), "{out}");

    let values = every_value(&draco.data_dir());
    let bytes = database_bytes(&draco.data_dir());
    let objects = every_object(&repo);
    for value in [RESOURCE, EMAIL, PHONE] {
        assert!(!values.contains(value), "{value} is still in a table");
        assert!(
            !contains(&bytes, value),
            "{value} is still in the database files"
        );
        assert!(!objects.contains(value), "{value} is still in a git object");
    }
    // The rest is intact: the other finding, its merge, and the chain.
    assert!(draco.findings().iter().all(|f| f["id"] != planted));
    assert!(draco.findings().iter().any(|f| f["id"] == other));
    let files = git(&repo, &["ls-tree", "-r", "--name-only", "main"]);
    assert!(
        files.lines().count() < other_files.lines().count(),
        "{files}"
    );
    assert!(
        files.lines().count() > 1,
        "the other finding's files stay: {files}"
    );
    let verified = draco.ok(&["audit", "verify"]);
    assert!(verified.contains("hash chain verified"), "{verified}");
    // Its audit trail is tombstones and one `purge` event naming only its id.
    let shown = draco.run(&["show", &planted.to_string()]);
    assert!(!shown.status.success(), "{}", describe(&shown));
}

#[test]
fn purge_all_needs_yes_and_leaves_only_tombstones_and_keys() {
    let draco = Draco::new();
    let fixtures = planted_fixtures(&draco);
    scan(&draco, &fixtures);
    let refused = draco.run(&["purge", "--all"]);
    assert_eq!(refused.status.code(), Some(2), "{}", describe(&refused));
    assert!(stderr(&refused).contains("--yes"), "{}", stderr(&refused));
    assert!(!draco.findings().is_empty(), "nothing was purged");

    draco.ok(&["purge", "--all", "--yes"]);
    assert!(draco.findings().is_empty());
    let values = every_value(&draco.data_dir());
    for value in [RESOURCE, EMAIL, PHONE, "lena.okafor"] {
        assert!(!values.contains(value), "{value} is still in a table");
        assert!(
            !contains(&database_bytes(&draco.data_dir()), value),
            "{value} is still in the database files"
        );
        assert!(
            !every_object(&draco.repository()).contains(value),
            "{value} is still in a git object"
        );
    }
    let verified = draco.ok(&["audit", "verify"]);
    assert!(verified.contains("hash chain verified"), "{verified}");
    // Draco goes on working on the emptied state.
    scan(&draco, &fixtures);
    assert!(!draco.findings().is_empty());
}

#[test]
fn purging_an_unknown_finding_is_a_usage_error() {
    let draco = Draco::new();
    draco.ok(&["demo"]);
    let out = draco.run(&["purge", "--finding", "9999"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(stderr(&out).contains("no finding 9999"), "{}", stderr(&out));
}
