//! The embedded default store: one SQLite file in WAL mode.
//!
//! One file per aggregate trait; this one opens the database (refusing a
//! file that is not Draco's), migrates it, and holds what they share: the
//! audit append that every write transaction ends with.

// The aggregates' SQL is written once for both backends (`$N`
// placeholders, SQL both dialects accept) and compiled here against SQLite's
// driver: see `store::sql`.
#[path = "../sql/approvals.rs"]
mod approvals;
#[path = "../sql/audit_log.rs"]
mod audit_log;
#[path = "../sql/change_requests.rs"]
mod change_requests;
#[path = "../sql/common.rs"]
mod common;
#[path = "../sql/decisions.rs"]
mod decisions;
#[path = "../sql/deliveries.rs"]
mod deliveries;
mod inspect;
#[path = "../sql/leases.rs"]
mod leases;
#[path = "../sql/model_ledger.rs"]
mod model_ledger;
#[path = "../sql/purge.rs"]
mod purge;
#[path = "../sql/retention.rs"]
mod retention;
#[path = "../sql/scans.rs"]
mod scans;
#[path = "../sql/sealed.rs"]
mod sealed;

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

use super::{Readiness, SCAN_LOCK_POLL, ScanLock, StoreError};
use common::{append_audit, corrupt, finding_subject, text};

/// The driver the shared aggregate code (`store::sql`) is compiled against here.
type Db = sqlx::Sqlite;
type DbRow = sqlx::sqlite::SqliteRow;
type DbConnection = sqlx::SqliteConnection;
type Backend = SqliteStore;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Every table, by name (for `draco purge --all`).
const TABLES_SQL: &str = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name";

const SQLITE_MAGIC: &[u8] = b"SQLite format 3\0";

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    path: std::path::PathBuf,
    audit_key: super::AuditKeySlot,
}

impl SqliteStore {
    /// Opens (creating if absent) the database file and brings its schema up to date.
    /// An existing file that is not a Draco database is refused, never rewritten.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        // Several processes may open a new data dir at once (the daemon and a
        // `draco findings`): inspecting, creating and migrating happen under
        // an exclusive lock so that exactly one of them migrates.
        let lock_path = path.with_extension("db.lock");
        let lock_display = lock_path.display().to_string();
        let lock = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
            let file = private_file(&lock_path)?;
            file.lock()?;
            Ok(file)
        })
        .await
        .map_err(|e| StoreError::Open {
            path: lock_display.clone(),
            message: e.to_string(),
        })?
        .map_err(|e| StoreError::Open {
            path: lock_display,
            message: format!("cannot take the migration lock: {e}"),
        })?;
        let opened = Self::open_locked(path).await;
        drop(lock);
        opened
    }

    async fn open_locked(path: &Path) -> Result<Self, StoreError> {
        let display = path.display().to_string();
        let unusable = |message: String| StoreError::Unusable {
            path: display.clone(),
            message,
        };
        // A symbolic link would send the inspection, SQLite's crash recovery
        // and every write to a file Draco did not create, past the checks
        // that keep it from touching another program's database.
        if let Ok(metadata) = std::fs::symlink_metadata(path) {
            let message = if metadata.file_type().is_symlink() {
                Some(
                    "it is a symbolic link, and Draco follows none to its database: keep draco.db a regular file and set data_dir to where it should live",
                )
            } else if !metadata.is_file() {
                // A FIFO would block the header read for ever.
                Some("it is not a regular file (a directory, a pipe or a device)")
            } else {
                None
            };
            if let Some(message) = message {
                return Err(StoreError::Open {
                    path: display.clone(),
                    message: message.into(),
                });
            }
        }
        let existed = path.exists();
        if existed {
            let header = read_header(path).map_err(|e| StoreError::Open {
                path: display.clone(),
                message: e.to_string(),
            })?;
            if !header.is_empty() && !header.starts_with(SQLITE_MAGIC) {
                return Err(unusable("not an SQLite file".into()));
            }
            inspect::check_is_draco(path).await.map_err(unusable)?;
        }
        if !existed {
            // Created for the owner only (SQLite gives its -wal and -shm
            // files the database file's permissions).
            private_file(path).map_err(|e| StoreError::Open {
                path: display.clone(),
                message: e.to_string(),
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // Decisions and merges must survive a power cut: in WAL mode
            // NORMAL may lose the last commits, FULL syncs each one
            // (<https://www.sqlite.org/pragma.html#pragma_synchronous>).
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            // Deleted content (retention, `draco purge`) is overwritten
            // with zeros instead of lingering in free pages
            // (<https://www.sqlite.org/pragma.html#pragma_secure_delete>).
            .pragma("secure_delete", "ON")
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            // The daemon is idle for hours between scans: connections (and
            // their page caches and threads) idle for IDLE_CONNECTION are
            // closed, and reopened on demand (opening an SQLite file takes
            // well under a millisecond).
            .idle_timeout(Some(IDLE_CONNECTION))
            .connect_with(options)
            .await
            .map_err(|e| {
                if existed {
                    unusable(e.to_string())
                } else {
                    StoreError::Open {
                        path: display.clone(),
                        message: e.to_string(),
                    }
                }
            })?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Migrate(e.to_string()))?;
        Ok(Self {
            pool,
            path: path.to_owned(),
            audit_key: super::AuditKeySlot::default(),
        })
    }

    /// A transaction that holds SQLite's write lock from its first statement
    /// (`BEGIN IMMEDIATE`). A deferred transaction that reads and then writes
    /// fails with "database is locked" when another connection wrote in
    /// between, whatever the busy timeout; taking the lock first makes it wait
    /// its turn instead (<https://www.sqlite.org/lang_transaction.html>).
    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// After a purge: the write-ahead log, which may still hold page images
    /// from before the deletion, is checkpointed into the file and
    /// truncated to nothing (`secure_delete` zeroed the deleted content in
    /// the pages themselves).
    pub(crate) async fn compact_storage(&self) -> Result<(), StoreError> {
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Takes the lock that serialises scans on this database across
    /// processes, waiting up to `wait` for a scan in progress to finish.
    ///
    /// The lock is an advisory exclusive lock (`flock`) on `draco.db.scan`
    /// beside the database: the operating system releases it when its holder
    /// exits, even by `kill -9`, so a `running` scan seen by the holder was
    /// necessarily left by a process that died. Errors:
    /// [`StoreError::ScanBusy`] when `wait` runs out, [`StoreError::ScanLock`]
    /// when the lock file cannot be opened.
    pub async fn lock_scans(&self, wait: Duration) -> Result<ScanLock, StoreError> {
        let path = self.path.with_extension("db.scan");
        let display = path.display().to_string();
        let failed = |message: String| StoreError::ScanLock {
            path: display.clone(),
            message,
        };
        let file = private_file(&path).map_err(|e| failed(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(ScanLock::file(file)),
                Err(std::fs::TryLockError::WouldBlock) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(StoreError::ScanBusy {
                            waited_secs: wait.as_secs(),
                        });
                    }
                    tokio::time::sleep(SCAN_LOCK_POLL).await;
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(failed(e.to_string())),
            }
        }
    }
}

/// `Ok` when the database answers and every migration this build knows has
/// been applied successfully. Errors: the database cannot be reached
/// ([`StoreError::Database`]), or its schema is behind or ahead of this
/// build ([`StoreError::Migrate`]).
#[async_trait]
impl Readiness for SqliteStore {
    async fn check_ready(&self) -> Result<(), StoreError> {
        common::migrations_current(&self.pool, &MIGRATOR).await
    }
}

/// Opens `path` for writing, creating it 0600 (owner only) if absent; an
/// existing file keeps its content and mode. A symbolic link is not
/// followed (`O_NOFOLLOW`: the open fails), so the lock files cannot be
/// turned into a way to create files elsewhere.
/// How long a database connection may stay idle before it is closed; the
/// daemon gives the memory back to the system after that too
/// (`daemon::memory::release_idle_memory`).
pub const IDLE_CONNECTION: Duration = Duration::from_secs(10);

fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

fn read_header(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut header = vec![0u8; SQLITE_MAGIC.len()];
    let n = file.read(&mut header)?;
    header.truncate(n);
    Ok(header)
}

#[async_trait]
impl super::DatabaseStore for SqliteStore {
    async fn lock_scans(&self, wait: Duration) -> Result<ScanLock, StoreError> {
        SqliteStore::lock_scans(self, wait).await
    }

    async fn close(&self) {
        SqliteStore::close(self).await;
    }

    async fn clock(&self) -> Result<chrono::DateTime<chrono::Utc>, StoreError> {
        Ok(chrono::Utc::now())
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn install_audit_key(&self, key: crate::audit::AuditKey) -> bool {
        self.audit_key.set(key).is_ok()
    }

    fn installed_audit_key(&self) -> Option<&crate::audit::AuditKey> {
        self.audit_key.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn many_openers_of_a_new_database_all_succeed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("draco.db");
        let openers: Vec<_> = (0..6)
            .map(|_| {
                let path = path.clone();
                tokio::spawn(async move { SqliteStore::open(&path).await.map(|_| ()) })
            })
            .collect();
        for opener in openers {
            opener.await.expect("task").expect("every opener succeeds");
        }
    }

    #[tokio::test]
    async fn a_database_path_that_is_a_symbolic_link_is_refused_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Another program's SQLite file, reached through a link at Draco's path.
        let theirs = dir.path().join("theirs.db");
        let bytes = b"SQLite format 3\0 and whatever else".to_vec();
        std::fs::write(&theirs, &bytes).expect("write");
        let link = dir.path().join("draco.db");
        std::os::unix::fs::symlink(&theirs, &link).expect("symlink");
        let error = match SqliteStore::open(&link).await {
            Ok(_) => panic!("a symbolic link was opened"),
            Err(e) => e.to_string(),
        };
        assert!(error.contains("symbolic link"), "{error}");
        assert_eq!(std::fs::read(&theirs).expect("read"), bytes);
        // A link to nowhere is not followed to create a file either.
        let dangling = dir.path().join("dangling.db");
        std::os::unix::fs::symlink(dir.path().join("absent.db"), &dangling).expect("symlink");
        assert!(SqliteStore::open(&dangling).await.is_err());
        assert!(!dir.path().join("absent.db").exists());
        // Nor is a lock file that is a link.
        let fresh = dir.path().join("fresh.db");
        let elsewhere = dir.path().join("elsewhere");
        std::os::unix::fs::symlink(&elsewhere, dir.path().join("fresh.db.lock")).expect("symlink");
        assert!(SqliteStore::open(&fresh).await.is_err());
        assert!(!elsewhere.exists(), "a file was created through the link");
    }

    #[tokio::test]
    async fn a_file_holding_only_a_view_is_somebody_elses_and_left_alone() {
        use sqlx::Connection as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("draco.db");
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let mut conn = sqlx::SqliteConnection::connect_with(&options)
            .await
            .expect("create");
        sqlx::query("CREATE VIEW answers AS SELECT 42 AS answer")
            .execute(&mut conn)
            .await
            .expect("view");
        conn.close().await.expect("close");
        let before = std::fs::read(&path).expect("read");
        let error = match SqliteStore::open(&path).await {
            Ok(_) => panic!("a file with another program's view was taken over"),
            Err(e) => e.to_string(),
        };
        assert!(error.contains("other objects (view answers)"), "{error}");
        assert_eq!(std::fs::read(&path).expect("read"), before);
    }

    #[tokio::test]
    async fn a_database_path_that_is_a_pipe_is_refused_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("draco.db");
        let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: mkfifo(3) with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        // Without the check the header read blocks for ever (no writer).
        let opened =
            tokio::time::timeout(std::time::Duration::from_secs(10), SqliteStore::open(&fifo))
                .await
                .expect("answered at once");
        let error = match opened {
            Ok(_) => panic!("a pipe was opened as a database"),
            Err(e) => e.to_string(),
        };
        assert!(error.contains("not a regular file"), "{error}");
    }
}
