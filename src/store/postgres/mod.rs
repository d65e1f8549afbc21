//! The store on PostgreSQL, for several replicas sharing one database.
//!
//! The aggregates' SQL is the SQLite backend's (`store::sql`), compiled
//! here against PostgreSQL's driver. What differs lives in this file:
//! connecting, migrating (`migrations/postgres/`), the write lock and the
//! scan lock.
//!
//! Every write transaction takes one transaction-scoped advisory lock
//! first (`pg_advisory_xact_lock`), so writers run one after the other as
//! they do on SQLite (`BEGIN IMMEDIATE`): the guarantees the aggregates rely
//! on (a vote and the decision it completes in one step, the audit chain
//! appended in commit order, a scan and an approval at the same moment both
//! kept) hold unchanged, on every replica. Reads do not wait (MVCC). Each
//! statement after the lock sees every transaction committed before it took
//! the lock (READ COMMITTED takes a snapshot per statement,
//! <https://www.postgresql.org/docs/current/transaction-iso.html>).

// Deliberately the same files as the SQLite backend's modules (clippy's
// `duplicate_mod` guards against doing this by accident).
#[path = "../sql/approvals.rs"]
#[allow(clippy::duplicate_mod)]
mod approvals;
#[path = "../sql/audit_log.rs"]
#[allow(clippy::duplicate_mod)]
mod audit_log;
#[path = "../sql/change_requests.rs"]
#[allow(clippy::duplicate_mod)]
mod change_requests;
#[path = "../sql/common.rs"]
#[allow(clippy::duplicate_mod)]
mod common;
#[path = "../sql/decisions.rs"]
#[allow(clippy::duplicate_mod)]
mod decisions;
#[path = "../sql/deliveries.rs"]
#[allow(clippy::duplicate_mod)]
mod deliveries;
#[path = "../sql/leases.rs"]
#[allow(clippy::duplicate_mod)]
mod leases;
#[path = "../sql/model_ledger.rs"]
#[allow(clippy::duplicate_mod)]
mod model_ledger;
#[path = "../sql/purge.rs"]
#[allow(clippy::duplicate_mod)]
mod purge;
#[path = "../sql/retention.rs"]
#[allow(clippy::duplicate_mod)]
mod retention;
#[path = "../sql/scans.rs"]
#[allow(clippy::duplicate_mod)]
mod scans;
#[path = "../sql/sealed.rs"]
#[allow(clippy::duplicate_mod)]
mod sealed;

mod scratch;

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool, Postgres, Transaction};

use super::location::PostgresUrl;
use super::{Readiness, SCAN_LOCK_POLL, ScanLock, StoreError};
use common::{append_audit, corrupt, finding_subject, text};
pub use scratch::ScratchDatabase;

/// The driver the shared aggregate code (`store::sql`) is compiled against here.
type Db = sqlx::Postgres;
type DbRow = sqlx::postgres::PgRow;
type DbConnection = sqlx::PgConnection;
type Backend = PostgresStore;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Every table of the schema Draco uses, by name (for `draco purge --all`).
const TABLES_SQL: &str = "SELECT table_name::text FROM information_schema.tables
     WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name";

/// Advisory lock keys (64-bit, per database): "draco" in ASCII, then a
/// number per lock, so that they cannot meet another program's keys by chance.
const WRITE_LOCK: i64 = 0x6472_6163_6f00_0001;
const SCAN_LOCK: i64 = 0x6472_6163_6f00_0002;

/// Connections per replica: the daemon's jobs, the webhook handlers and the
/// approval pages share them; writers queue on the write lock anyway.
const MAX_CONNECTIONS: u32 = 8;

/// How long a request waits for a free connection, or for a new one to be
/// made, before it fails (and `/readyz` says not ready).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct PostgresStore {
    pub(in crate::store) pool: PgPool,
    options: PgConnectOptions,
    display: String,
    audit_key: super::AuditKeySlot,
}

impl PostgresStore {
    /// Connects to the database `url` names and brings its schema up to
    /// date. Replicas starting at once migrate one at a time (sqlx's
    /// migrator holds an advisory lock while it migrates); a database whose
    /// schema is newer than this build's is refused before anything is written.
    ///
    /// Errors: [`StoreError::Connect`] (unreachable, refused credentials,
    /// the database does not exist), [`StoreError::Newer`],
    /// [`StoreError::Migrate`]. No message holds the password.
    pub async fn connect(url: &PostgresUrl) -> Result<Self, StoreError> {
        let display = url.display();
        let failed = |message: String| StoreError::Connect {
            location: display.clone(),
            message,
        };
        // Per session (libpq's `options`): a writer gives up on the write
        // lock after 10 s as SQLite's busy timeout does instead of queueing
        // for ever behind a stuck replica; a transaction left open by a
        // replica that froze is ended after a minute; and the server drops
        // a connection whose host vanished within about 30 s, releasing what
        // it held, instead of the kernel's two hours.
        // A URL sqlx cannot use is a configuration error, not an outage:
        // not retried.
        let options = url
            .connect_options()
            .map_err(|e| StoreError::Open {
                path: display.clone(),
                message: e.to_string(),
            })?
            .options([
                ("lock_timeout", "10s"),
                ("idle_in_transaction_session_timeout", "60s"),
                ("tcp_keepalives_idle", "15"),
                ("tcp_keepalives_interval", "5"),
                ("tcp_keepalives_count", "3"),
            ]);
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .idle_timeout(Some(super::sqlite::IDLE_CONNECTION * 6))
            .connect_with(options.clone())
            .await
            .map_err(|e| failed(e.to_string()))?;
        let store = Self {
            pool,
            options,
            display,
            audit_key: super::AuditKeySlot::default(),
        };
        store.refuse_newer_schema().await?;
        // sqlx's migrator holds an advisory lock while it migrates; the
        // session's `lock_timeout` would make a replica starting beside a
        // long migration give up after 10 s instead of waiting its turn.
        // So it migrates on a connection of its own without it (a later
        // `-c` setting wins over an earlier one).
        let migrating = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(store.options.clone().options([("lock_timeout", "0")]))
            .await
            .map_err(|e| StoreError::Connect {
                location: store.display.clone(),
                message: e.to_string(),
            })?;
        let migrated = MIGRATOR.run(&migrating).await;
        migrating.close().await;
        migrated.map_err(|e| StoreError::Migrate(e.to_string()))?;
        Ok(store)
    }

    /// The URL without password, for messages.
    pub fn location(&self) -> &str {
        &self.display
    }

    async fn refuse_newer_schema(&self) -> Result<(), StoreError> {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
            .fetch_one(&self.pool)
            .await?;
        if !exists {
            return Ok(());
        }
        let found: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await?;
        let known = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
        match found {
            Some(found) if found > known => Err(StoreError::Newer {
                location: self.display.clone(),
                found,
                known,
            }),
            _ => Ok(()),
        }
    }

    /// A transaction holding the database-wide write lock from its first
    /// statement: writers on every replica run one after the other, as
    /// SQLite's `BEGIN IMMEDIATE` makes them on one host.
    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        // READ COMMITTED whatever the database's default: each statement
        // after the lock must see what the previous holder committed (a
        // REPEATABLE READ snapshot taken before the wait would not).
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
            .await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WRITE_LOCK)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// After a purge: every table Draco keeps is rewritten (`VACUUM
    /// FULL`), so the deleted rows' old versions leave the table files
    /// instead of waiting for their space to be reused. Copies outside
    /// the database (WAL archives, backups, replicas' logs) are the
    /// operator's to expire.
    pub(crate) async fn compact_storage(&self) -> Result<(), StoreError> {
        let tables: Vec<String> = sqlx::query_scalar(TABLES_SQL).fetch_all(&self.pool).await?;
        for table in tables {
            // A name from the database's own catalogue, quoted.
            let quoted = format!("\"{}\"", table.replace('"', "\"\""));
            sqlx::query(sqlx::AssertSqlSafe(format!("VACUUM FULL {quoted}")))
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Takes the lock that serialises scans on this database across
    /// replicas, waiting up to `wait`: a session advisory lock on a
    /// connection of its own, held by the returned [`ScanLock`]. The server
    /// releases it when that connection ends: dropped, or its process
    /// killed (the socket closes); on a host that vanished, when the
    /// server's TCP keepalive gives up on it, which this connection asks to
    /// be after about 30 s. Session advisory locks need a session of their
    /// own: PgBouncer in transaction mode is not supported. Errors: [`StoreError::ScanBusy`],
    /// [`StoreError::ScanLock`] when no connection can be made.
    pub async fn lock_scans(&self, wait: Duration) -> Result<ScanLock, StoreError> {
        let failed = |message: String| StoreError::ScanLock {
            path: self.display.clone(),
            message,
        };
        let mut conn = self
            .options
            .connect()
            .await
            .map_err(|e| failed(e.to_string()))?;
        // The lock lives as long as this idle connection: the server must
        // not end it for idling (its keepalive settings come with the
        // options: a holder whose host vanished is dropped within ~30 s).
        sqlx::raw_sql("SET idle_session_timeout = 0")
            .execute(&mut conn)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(SCAN_LOCK)
                .fetch_one(&mut conn)
                .await
                .map_err(|e| failed(e.to_string()))?;
            if got {
                return Ok(ScanLock::postgres(conn));
            }
            if tokio::time::Instant::now() >= deadline {
                let _ = conn.close().await;
                return Err(StoreError::ScanBusy {
                    waited_secs: wait.as_secs(),
                });
            }
            tokio::time::sleep(SCAN_LOCK_POLL).await;
        }
    }
}

/// `Ok` when the database answers and every migration this build knows has
/// been applied. Errors: unreachable ([`StoreError::Database`]), or a schema
/// behind or ahead of this build ([`StoreError::Migrate`]).
#[async_trait]
impl Readiness for PostgresStore {
    async fn check_ready(&self) -> Result<(), StoreError> {
        common::migrations_current(&self.pool, &MIGRATOR).await
    }
}

#[async_trait]
impl super::DatabaseStore for PostgresStore {
    async fn lock_scans(&self, wait: Duration) -> Result<ScanLock, StoreError> {
        PostgresStore::lock_scans(self, wait).await
    }

    async fn close(&self) {
        PostgresStore::close(self).await;
    }

    async fn clock(&self) -> Result<chrono::DateTime<chrono::Utc>, StoreError> {
        Ok(sqlx::query_scalar("SELECT clock_timestamp()")
            .fetch_one(&self.pool)
            .await?)
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn install_audit_key(&self, key: crate::audit::AuditKey) -> bool {
        self.audit_key.set(key).is_ok()
    }

    fn installed_audit_key(&self) -> Option<&crate::audit::AuditKey> {
        self.audit_key.get()
    }
}
