//! Deciding, before anything is written, whether an existing SQLite file is
//! a Draco database.
//!
//! The inspection reads through a read-only connection: opening for writing
//! with Draco's options would switch the file to WAL mode, which rewrites
//! its header, and a foreign file must be left as it was.

use std::path::Path;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, SqliteConnection};

use super::MIGRATOR;

/// SQLite's extended result codes for "this file needs crash recovery, which
/// a read-only connection cannot run" (<https://www.sqlite.org/rescode.html>):
/// `SQLITE_READONLY_RECOVERY` (264, a WAL index to rebuild),
/// `SQLITE_READONLY_ROLLBACK` (776, a hot rollback journal to play back) and
/// `SQLITE_READONLY_CANTINIT` (1288, a shared-memory file to initialise).
const NEEDS_RECOVERY: [&str; 3] = ["264", "776", "1288"];

/// `SQLITE_READONLY_ROLLBACK`: a hot rollback journal to play back.
const HOT_JOURNAL: &str = "776";

/// Why the read-only inspection stopped.
enum Failure {
    /// A process died mid-transaction and SQLite must recover the file
    /// first; `journal` when that means playing a rollback journal back
    /// into it (rather than rebuilding a WAL index).
    NeedsRecovery { journal: bool },
    /// Not a Draco database, or not readable: the message says why.
    Refused(String),
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        let code = e.as_database_error().and_then(|d| d.code());
        if let Some(code) = code.filter(|c| NEEDS_RECOVERY.contains(&c.as_ref())) {
            Self::NeedsRecovery {
                journal: code.as_ref() == HOT_JOURNAL,
            }
        } else {
            Self::Refused(e.to_string())
        }
    }
}

/// Checks that the existing SQLite file at `path` holds no tables, or
/// Draco's with only Draco's migrations applied (byte-identical checksums).
///
/// When a process was killed mid-transaction (a hot rollback journal, or a
/// WAL index to rebuild), SQLite's own crash recovery runs first, then the
/// inspection is repeated. Errors: why the file is not usable, for
/// `StoreError::Unusable`.
pub(super) async fn check_is_draco(path: &Path) -> Result<(), String> {
    match inspect(path).await {
        Ok(()) => Ok(()),
        Err(Failure::Refused(message)) => Err(message),
        Err(Failure::NeedsRecovery { journal }) => {
            if journal && !journal_can_be_its_own(path) {
                return Err(format!(
                    "a rollback journal beside it ({}-journal) holds an unfinished transaction, but the database is in WAL mode with data, which writes through no rollback journal: the journal is not its own, and playing it back would corrupt it. Nothing was changed; move the journal aside",
                    path.display()
                ));
            }
            recover(path)
                .await
                .map_err(|e| format!("its crash recovery failed: {e}"))?;
            inspect(path).await.map_err(|failure| match failure {
                Failure::NeedsRecovery { .. } => {
                    "it still needs crash recovery after SQLite ran it".into()
                }
                // Say so: the file is not exactly as it was found.
                Failure::Refused(message) => format!(
                    "{message}; SQLite first rolled back a transaction a crashed writer had left in it, as any SQLite client opening it would"
                ),
            })
        }
    }
}

/// Whether a hot rollback journal may belong to the database at `path`. A
/// database in WAL mode (header bytes 18 and 19 are 2,
/// <https://www.sqlite.org/fileformat.html#file_format_version_numbers>)
/// writes through a rollback journal only when it is switched to WAL, while
/// it is one page long (Draco's first open); beside a longer one, the
/// journal came from elsewhere (a copy, another database's leftovers).
fn journal_can_be_its_own(path: &Path) -> bool {
    use std::io::Read as _;
    let mut header = [0u8; 20];
    let read = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut header));
    let Ok(metadata) = std::fs::metadata(path) else {
        return false;
    };
    if read.is_err() {
        return true;
    }
    let wal = header[18] == 2 && header[19] == 2;
    // Bytes 16–17: the page size, big-endian, 1 meaning 65536.
    let page = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65_536,
        n => u64::from(n),
    };
    !wal || metadata.len() <= page
}

async fn inspect(path: &Path) -> Result<(), Failure> {
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .connect()
        .await?;
    let verdict = verdict(&mut conn).await;
    let _ = conn.close().await;
    verdict
}

async fn verdict(conn: &mut SqliteConnection) -> Result<(), Failure> {
    // Every schema object, not only tables: a file holding only a view or
    // a trigger is somebody's too.
    let objects: Vec<(String, String)> = sqlx::query_as(
        "SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name",
    )
    .fetch_all(&mut *conn)
    .await?;
    if objects.is_empty() {
        return Ok(());
    }
    if !objects
        .iter()
        .any(|(kind, name)| kind == "table" && name == "_sqlx_migrations")
    {
        let tables: Vec<&str> = objects
            .iter()
            .filter(|(kind, _)| kind == "table")
            .map(|(_, name)| name.as_str())
            .collect();
        return Err(Failure::Refused(if tables.is_empty() {
            let others: Vec<String> = objects.iter().map(|(k, n)| format!("{k} {n}")).collect();
            format!("it holds other objects ({})", others.join(", "))
        } else {
            format!("it holds other tables ({})", tables.join(", "))
        }));
    }
    // Another program built on sqlx has a `_sqlx_migrations` table too:
    // every migration applied must be one of Draco's, byte for byte.
    let applied: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations")
            .fetch_all(&mut *conn)
            .await?;
    for (version, checksum) in &applied {
        let ours = MIGRATOR
            .iter()
            .any(|m| m.version == *version && m.checksum.as_ref() == checksum.as_slice());
        if !ours {
            return Err(Failure::Refused(format!(
                "its migration {version} is not one of this Draco's (another program's database, or a newer Draco's)"
            )));
        }
    }
    Ok(())
}

/// Runs SQLite's crash recovery: the first read on a read-write connection
/// rolls back a hot journal or rebuilds the WAL index
/// (<https://www.sqlite.org/atomiccommit.html#hot_journals>). That is what
/// any SQLite client, the `sqlite3` shell included, does on its first read,
/// so it brings a foreign file back to its last commit and changes nothing
/// its owner would not expect. The connection sets no journal mode and no
/// other persistent pragma (sqlx's defaults set only `foreign_keys`, which
/// lasts as long as the connection), so the file keeps its journal mode.
async fn recover(path: &Path) -> Result<(), sqlx::Error> {
    let mut conn = SqliteConnectOptions::new().filename(path).connect().await?;
    let read: Result<i64, _> = sqlx::query_scalar("SELECT count(*) FROM sqlite_master")
        .fetch_one(&mut conn)
        .await;
    let _ = conn.close().await;
    read.map(|_| ())
}
