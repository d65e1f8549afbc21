//! What Draco leaves on disk: private modes, and other programs' files
//! left exactly as they were.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Draco, describe};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn the_data_dir_database_and_repository_are_private_to_the_owner() {
    let draco = Draco::new();
    draco.ok(&["demo"]);
    let data = draco.data_dir();
    assert_eq!(mode(&data), 0o700);
    for file in ["draco.db", "draco.db-wal", "draco.db.lock", "draco.db.scan"] {
        let path = data.join(file);
        if path.exists() {
            assert_eq!(mode(&path), 0o600, "{file}");
        }
    }
    assert_eq!(mode(&data.join("draco.db")), 0o600);
    // Every file of the change-request repository: no group or other bits.
    let mut stack = vec![draco.repository()];
    let mut seen = 0;
    while let Some(dir) = stack.pop() {
        assert_eq!(mode(&dir) & 0o077, 0, "{}", dir.display());
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                seen += 1;
                assert_eq!(mode(&path) & 0o077, 0, "{}", path.display());
            }
        }
    }
    assert!(seen > 10, "the repository has objects");
}

/// A database another sqlx-based program made: it has `_sqlx_migrations`
/// too, with its own migrations.
#[tokio::test]
async fn another_sqlx_programs_database_is_refused_and_left_unchanged() {
    let draco = Draco::new();
    std::fs::create_dir_all(draco.data_dir()).unwrap();
    let db = draco.data_dir().join("draco.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", db.display()))
        .await
        .unwrap();
    for statement in [
        "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
         installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL, \
         checksum BLOB NOT NULL, execution_time BIGINT NOT NULL)",
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (1, 'their schema', 1, x'0102', 1)",
        "CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)",
    ] {
        sqlx::query(statement).execute(&pool).await.unwrap();
    }
    pool.close().await;
    let before = std::fs::read(&db).unwrap();

    let out = draco.run(&["demo"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a Draco database"), "{err}");
    assert_eq!(std::fs::read(&db).unwrap(), before, "not one byte changed");
    assert!(!db.with_extension("db-wal").exists(), "not switched to WAL");
}

/// Runs a Python writer on `db` that switches to `journal_mode` ("" keeps the
/// file's), begins a transaction, writes enough to spill pages out of its
/// one-page cache (into the database file behind a rollback journal, or into
/// the WAL), and is SIGKILLed before it commits: the state a `kill -9` leaves.
fn killed_mid_transaction(db: &Path, journal_mode: &str) {
    const WRITER: &str = r#"
import os, sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
if sys.argv[2]:
    conn.execute("PRAGMA journal_mode=" + sys.argv[2]).fetchone()
conn.execute("PRAGMA cache_size=1")
conn.execute("BEGIN IMMEDIATE")
conn.execute("CREATE TABLE scratch (x BLOB)")
for _ in range(200):
    conn.execute("INSERT INTO scratch VALUES (randomblob(4000))")
os.kill(os.getpid(), 9)
"#;
    let status = Command::new("python3")
        .arg("-c")
        .arg(WRITER)
        .arg(db)
        .arg(journal_mode)
        .status()
        .expect("python3 runs");
    assert_eq!(
        status.signal(),
        Some(9),
        "the writer died before committing"
    );
}

/// The file beside `db` with this suffix (`-journal`, `-wal`).
fn beside(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Bytes 18 and 19 of the header: 1 for a rollback journal, 2 for WAL
/// (<https://www.sqlite.org/fileformat.html#file_format_version_numbers>).
fn format_versions(db: &Path) -> (u8, u8) {
    let bytes = std::fs::read(db).unwrap();
    (bytes[18], bytes[19])
}

/// The one write of Draco's database that goes through a rollback journal is
/// the switch of a new, empty file to WAL on the first open. SQLite writes
/// the journal header, then page 1 (a WAL-mode header, no tables), then
/// unlinks the journal (seen with `strace` on `PRAGMA journal_mode=WAL`); a
/// `kill -9` before the unlink leaves exactly these two files. A read-only
/// inspection cannot roll the hot journal back (SQLITE_READONLY_ROLLBACK).
#[tokio::test]
async fn a_first_open_killed_before_its_journal_was_unlinked_is_rolled_back_and_opens() {
    let draco = Draco::new();
    std::fs::create_dir_all(draco.data_dir()).unwrap();
    let db = draco.data_dir().join("draco.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&db)
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
    sqlx::SqlitePool::connect_with(options)
        .await
        .unwrap()
        .close()
        .await;
    assert_eq!(std::fs::metadata(&db).unwrap().len(), 4096, "page 1 only");
    // The journal's header (<https://www.sqlite.org/fileformat.html#the_rollback_journal>):
    // magic, 0 pages recorded, nonce, 0 pages before the transaction, sector
    // size 512, page size 4096, padded to the sector.
    let mut journal = vec![0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7];
    for field in [0u32, 0x2583_0fab, 0, 512, 4096] {
        journal.extend_from_slice(&field.to_be_bytes());
    }
    journal.resize(512, 0);
    std::fs::write(beside(&db, "-journal"), journal).unwrap();

    draco.ok(&["demo"]);
    assert_eq!(draco.findings().len(), 8);
    assert_eq!(
        format_versions(&db),
        (2, 2),
        "Draco's database is in WAL mode"
    );
    assert!(
        !beside(&db, "-journal").exists(),
        "the journal was rolled back"
    );
}

#[test]
fn a_draco_database_in_rollback_mode_with_a_hot_journal_opens_with_its_data() {
    let draco = Draco::new();
    draco.ok(&["demo"]);
    let db = draco.data_dir().join("draco.db");
    killed_mid_transaction(&db, "delete");
    assert!(beside(&db, "-journal").exists(), "a hot journal is left");

    assert_eq!(draco.findings().len(), 8);
    assert_eq!(format_versions(&db), (2, 2), "back in WAL mode");
    draco.ok(&["audit", "verify"]);
}

/// Draco's own mode: the killed writer leaves uncommitted frames in the WAL
/// and a shared-memory index that the next open rebuilds.
#[test]
fn a_draco_database_whose_wal_writer_was_killed_opens_with_its_data() {
    let draco = Draco::new();
    draco.ok(&["demo"]);
    let db = draco.data_dir().join("draco.db");
    killed_mid_transaction(&db, "");
    assert!(beside(&db, "-wal").exists(), "uncommitted frames are left");

    assert_eq!(draco.findings().len(), 8);
    let second = draco.ok(&["demo"]);
    assert!(second.contains("0 new, 8 unchanged"), "{second}");
}

/// Another program's database left with a hot journal: SQLite's own
/// recovery brings it back to its last commit, byte for byte, and Draco then
/// refuses it as foreign without switching it to WAL.
#[test]
fn a_foreign_database_with_a_hot_journal_is_rolled_back_refused_and_left_in_its_mode() {
    let draco = Draco::new();
    std::fs::create_dir_all(draco.data_dir()).unwrap();
    let db = draco.data_dir().join("draco.db");
    let made = Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3, sys\n\
             conn = sqlite3.connect(sys.argv[1])\n\
             conn.execute('CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)')\n\
             conn.executemany('INSERT INTO invoices (total) VALUES (?)', [(i,) for i in range(500)])\n\
             conn.commit()\n",
        )
        .arg(&db)
        .status()
        .expect("python3 runs");
    assert!(made.success());
    let committed = std::fs::read(&db).unwrap();
    killed_mid_transaction(&db, "");
    assert!(beside(&db, "-journal").exists(), "a hot journal is left");
    assert_ne!(
        std::fs::read(&db).unwrap(),
        committed,
        "the writer spilled into the file"
    );

    let out = draco.run(&["demo"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("it holds other tables (invoices)"), "{err}");
    assert_eq!(
        std::fs::read(&db).unwrap(),
        committed,
        "back to its last commit"
    );
    assert_eq!(
        format_versions(&db),
        (1, 1),
        "still in rollback-journal mode"
    );
    assert!(!beside(&db, "-wal").exists(), "not switched to WAL");
    assert!(
        !beside(&db, "-journal").exists(),
        "the journal was rolled back"
    );
}

/// A rollback journal that is not the database's own (copied in beside a
/// Draco database in WAL mode, which writes through none once it holds
/// data): playing it back would overwrite Draco's pages with another file's.
/// Refused with nothing changed; with the journal moved aside, all is there.
#[test]
fn a_stray_rollback_journal_beside_a_draco_database_is_refused_untouched() {
    let draco = Draco::new();
    draco.ok(&["demo"]);
    let db = draco.data_dir().join("draco.db");
    // Another database's hot journal.
    let other_dir = tempfile::tempdir().unwrap();
    let other = other_dir.path().join("other.db");
    let made = Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3, sys\n\
             conn = sqlite3.connect(sys.argv[1])\n\
             conn.execute('CREATE TABLE t (x)')\n\
             conn.commit()\n",
        )
        .arg(&other)
        .status()
        .expect("python3 runs");
    assert!(made.success());
    killed_mid_transaction(&other, "");
    std::fs::copy(beside(&other, "-journal"), beside(&db, "-journal")).unwrap();
    let before = std::fs::read(&db).unwrap();

    let out = draco.run(&["findings"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not its own"), "{err}");
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "the database is untouched"
    );
    assert!(
        beside(&db, "-journal").exists(),
        "the journal is left for the operator"
    );

    std::fs::remove_file(beside(&db, "-journal")).unwrap();
    assert_eq!(draco.findings().len(), 8);
    draco.ok(&["audit", "verify"]);
}

#[test]
fn bench_store_measures_upserts_and_audit_appends() {
    let out = crate::support::Draco::new().ok(&[
        "bench",
        "store",
        "--findings",
        "200",
        "--audit-events",
        "50",
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(report["backend"], "sqlite");
    assert_eq!(report["findings"], 200);
    for field in [
        "inserts_per_sec",
        "updates_per_sec",
        "audit_appends_per_sec",
    ] {
        assert!(
            report[field].as_f64().is_some_and(|v| v > 0.0),
            "{field}: {report}"
        );
    }
}
