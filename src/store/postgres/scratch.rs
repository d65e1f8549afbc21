//! A database made for one run on a PostgreSQL server (the conformance
//! suite's tests, `draco bench store --postgres`), dropped afterwards.

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::{ConnectOptions, Connection, Executor};

use crate::store::{PostgresUrl, StoreError};

/// A fresh, empty database on a server, dropped with every connection to
/// it (`DROP DATABASE … WITH (FORCE)`, PostgreSQL 13 and later) when this
/// is dropped, also while a test panics. Needs the `CREATEDB` privilege.
pub struct ScratchDatabase {
    server: PostgresUrl,
    name: String,
    url: PostgresUrl,
}

impl ScratchDatabase {
    /// Creates `<prefix>_<pid>_<n>_<random>` on the server `server` names
    /// (its URL's database is only connected to, to create the new one).
    /// `prefix` is lowercase letters and underscores.
    ///
    /// Errors: [`StoreError::Connect`] when the server cannot be reached or
    /// refuses to create the database.
    pub async fn create(server: &PostgresUrl, prefix: &str) -> Result<Self, StoreError> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let failed = |message: String| StoreError::Connect {
            location: server.display(),
            message,
        };
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            return Err(failed(format!("`{prefix}` is not a database name prefix")));
        }
        let name = format!(
            "{prefix}_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            fastrand::u32(..)
        );
        let mut admin = server
            .connect_options()
            .map_err(|e| failed(e.to_string()))?
            .connect()
            .await
            .map_err(|e| failed(e.to_string()))?;
        // The name is ours, made of [a-z_0-9] only: safe to splice.
        let created = admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await;
        let _ = admin.close().await;
        created.map_err(|e| failed(format!("cannot create the database {name}: {e}")))?;
        Ok(Self {
            url: server.with_database(&name),
            server: server.clone(),
            name,
        })
    }

    /// Where the new database is.
    pub fn url(&self) -> &PostgresUrl {
        &self.url
    }

    /// For a test: a database on the server `DRACO_TEST_POSTGRES_URL`
    /// names ([`TEST_SERVER`] by default), or `None` after printing that
    /// the test (`what`) was skipped and why, when no server answers within
    /// 10 s. Under `CI=true` it panics instead, so CI cannot skip it.
    pub async fn for_test(prefix: &str, what: &str) -> Option<Self> {
        let admin = std::env::var("DRACO_TEST_POSTGRES_URL").unwrap_or_else(|_| TEST_SERVER.into());
        let server = match crate::store::DatabaseLocation::resolve(Some(&admin), None, ".".as_ref())
        {
            Ok(crate::store::DatabaseLocation::Postgres(url)) => url,
            other => panic!("DRACO_TEST_POSTGRES_URL is not a PostgreSQL URL: {other:?}"),
        };
        let created = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            Self::create(&server, prefix),
        )
        .await;
        let why = match created {
            Ok(Ok(db)) => return Some(db),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no answer within 10 s".to_owned(),
        };
        let message = format!("PostgreSQL at {admin} cannot be used ({why})");
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{message}; CI must run {what}");
        }
        eprintln!("skipped: {message}; set DRACO_TEST_POSTGRES_URL to run {what}");
        None
    }
}

/// The server tests use by default: the local one, user `postgres`, trust
/// authentication (its maintenance database; each test creates its own).
pub const TEST_SERVER: &str = "postgres://postgres@127.0.0.1:5432/postgres";

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let Ok(options) = self.server.connect_options() else {
            return;
        };
        let name = self.name.clone();
        // Dropping needs async I/O, and the caller's runtime may be gone or
        // unwinding: a thread of its own with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut admin = options.connect().await.ok()?;
                admin
                    .execute(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .await
                    .ok()?;
                admin.close().await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("could not drop the scratch database {}", self.name);
        }
    }
}
