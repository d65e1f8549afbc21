//! What Draco leaves on disk: private modes, and other programs' files
//! left exactly as they were.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

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
