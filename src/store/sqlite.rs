//! The embedded default store: one SQLite file in WAL mode.

use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Value, json};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, Row, Sqlite, SqlitePool, Transaction};

use super::{
    ChangeRequestState, Coverage, DecisionRecord, RecordOutcome, ScanRecord, ScanStatus, Store,
    StoreError, StoredChangeRequest, StoredFinding, parse_timestamp, timestamp,
};
use crate::audit::{AuditEvent, GENESIS, chain_hash};
use crate::domain::{
    AccountId, ChangeRequestId, Finding, FindingId, FindingKind, FindingStatus, Fingerprint,
    ScanId, Severity,
};
use crate::gitops::OpenedChangeRequest;
use crate::remediate::{Format, Proposal, Recommendation, Risk};
use crate::sources::CostPoint;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

const SQLITE_MAGIC: &[u8] = b"SQLite format 3\0";

/// How often a waiting scan retries the scan lock.
const SCAN_LOCK_POLL: Duration = Duration::from_millis(100);

/// Held while a scan runs; dropping it lets the next scan start.
#[derive(Debug)]
pub struct ScanLock {
    _file: std::fs::File,
}

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    path: std::path::PathBuf,
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
        let existed = path.exists();
        if existed {
            let header = read_header(path).map_err(|e| StoreError::Open {
                path: display.clone(),
                message: e.to_string(),
            })?;
            if !header.is_empty() && !header.starts_with(SQLITE_MAGIC) {
                return Err(unusable("not an SQLite file".into()));
            }
        }
        if existed {
            // Inspect read-only first: opening for writing would switch the
            // file to WAL mode, which rewrites its header.
            let probe = SqliteConnectOptions::new().filename(path).read_only(true);
            let mut conn = probe.connect().await.map_err(|e| unusable(e.to_string()))?;
            let tables: Vec<String> =
                sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
                    .fetch_all(&mut conn)
                    .await
                    .map_err(|e| unusable(e.to_string()))?;
            if !tables.is_empty() && !tables.iter().any(|t| t == "_sqlx_migrations") {
                let _ = conn.close().await;
                return Err(unusable(format!(
                    "it holds other tables ({})",
                    tables.join(", ")
                )));
            }
            // Another program built on sqlx has a `_sqlx_migrations` table
            // too: every migration applied must be one of Draco's, byte for byte.
            let applied: Vec<(i64, Vec<u8>)> = if tables.is_empty() {
                Vec::new()
            } else {
                sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations")
                    .fetch_all(&mut conn)
                    .await
                    .map_err(|e| unusable(e.to_string()))?
            };
            let _ = conn.close().await;
            for (version, checksum) in &applied {
                let ours = MIGRATOR
                    .iter()
                    .any(|m| m.version == *version && m.checksum.as_ref() == checksum.as_slice());
                if !ours {
                    return Err(unusable(format!(
                        "its migration {version} is not one of this Draco's (another program's database, or a newer Draco's)"
                    )));
                }
            }
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
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
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
        })
    }

    /// A transaction that holds SQLite's write lock from its first statement
    /// (`BEGIN IMMEDIATE`). A deferred transaction that reads and then writes
    /// fails with "database is locked" when another connection wrote in
    /// between, whatever the busy timeout; taking the lock first makes it wait
    /// its turn instead (<https://www.sqlite.org/lang_transaction.html>).
    pub(crate) async fn begin_immediate(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    pub async fn close(&self) {
        self.pool.close().await;
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
                Ok(()) => return Ok(ScanLock { _file: file }),
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

    /// `Ok` when the database answers and every migration this build knows
    /// has been applied successfully. Errors: the database cannot be reached
    /// ([`StoreError::Database`]), or its schema is behind or ahead of this
    /// build ([`StoreError::Migrate`]).
    pub async fn check_ready(&self) -> Result<(), StoreError> {
        let applied: Vec<i64> = sqlx::query_scalar(
            "SELECT version FROM _sqlx_migrations WHERE success = 1 ORDER BY version",
        )
        .fetch_all(&self.pool)
        .await?;
        let known: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
        if applied == known {
            Ok(())
        } else {
            Err(StoreError::Migrate(format!(
                "schema at migrations {applied:?}, this build expects {known:?}"
            )))
        }
    }
}

/// Opens `path` for writing, creating it 0600 (owner only) if absent; an
/// existing file keeps its content and mode.
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
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

async fn append_audit(
    tx: &mut Transaction<'_, Sqlite>,
    actor: &str,
    action: &str,
    subject: &str,
    details: &Value,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let prev: Option<String> =
        sqlx::query_scalar("SELECT hash FROM audit_events ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut **tx)
            .await?;
    let prev = prev.unwrap_or_else(|| GENESIS.to_owned());
    let at = timestamp(at);
    let hash = chain_hash(&prev, &at, actor, action, subject, details);
    sqlx::query(
        "INSERT INTO audit_events (at, actor, action, subject, details, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(at)
    .bind(actor.to_owned())
    .bind(action.to_owned())
    .bind(subject.to_owned())
    .bind(details.to_string())
    .bind(prev)
    .bind(hash)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn finding_subject(id: FindingId) -> String {
    format!("finding:{id}")
}

const FINDING_COLUMNS: &str = "id, fingerprint, kind, severity, title, resource, account, region, expected, actual, impact_usd_monthly, evidence, status, first_seen_at, last_seen_at, resolved_at";

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

fn finding_from_row(row: &SqliteRow) -> Result<StoredFinding, StoreError> {
    let kind: String = row.try_get("kind")?;
    let severity: String = row.try_get("severity")?;
    let account: String = row.try_get("account")?;
    let status: String = row.try_get("status")?;
    let evidence: String = row.try_get("evidence")?;
    let first_seen_at: String = row.try_get("first_seen_at")?;
    let last_seen_at: String = row.try_get("last_seen_at")?;
    let resolved_at: Option<String> = row.try_get("resolved_at")?;
    Ok(StoredFinding {
        id: row.try_get("id")?,
        finding: Finding {
            kind: FindingKind::from_str(&kind).map_err(|e| corrupt("finding kind", e))?,
            severity: Severity::from_str(&severity).map_err(|e| corrupt("finding severity", e))?,
            title: row.try_get("title")?,
            resource: row.try_get("resource")?,
            account: AccountId::parse(&account).map_err(|e| corrupt("finding account", e))?,
            region: row.try_get("region")?,
            expected: row.try_get("expected")?,
            actual: row.try_get("actual")?,
            impact_usd_monthly: row.try_get("impact_usd_monthly")?,
            evidence: serde_json::from_str(&evidence)
                .map_err(|e| corrupt("finding evidence", e))?,
            fingerprint: Fingerprint::from_stored(row.try_get("fingerprint")?),
        },
        status: FindingStatus::from_str(&status).map_err(|e| corrupt("finding status", e))?,
        first_seen_at: parse_timestamp("finding first seen", &first_seen_at)?,
        last_seen_at: parse_timestamp("finding last seen", &last_seen_at)?,
        resolved_at: resolved_at
            .map(|t| parse_timestamp("finding resolved", &t))
            .transpose()?,
    })
}

fn scan_from_row(row: &SqliteRow) -> Result<ScanRecord, StoreError> {
    let status: String = row.try_get("status")?;
    let started_at: String = row.try_get("started_at")?;
    let finished_at: Option<String> = row.try_get("finished_at")?;
    let summary: Option<String> = row.try_get("summary")?;
    Ok(ScanRecord {
        id: row.try_get("id")?,
        source: row.try_get("source")?,
        started_at: parse_timestamp("scan start", &started_at)?,
        finished_at: finished_at
            .map(|t| parse_timestamp("scan end", &t))
            .transpose()?,
        status: ScanStatus::parse(&status)?,
        errors: summary
            .and_then(|s| serde_json::from_str::<Value>(&s).ok())
            .map(|s| summary_errors(&s))
            .unwrap_or_default(),
    })
}

/// The error lines of a stored scan summary: parts that could not be read
/// (`scan_errors`), findings that got no change request (`failures`), and
/// the error of a failed scan (`error`).
fn summary_errors(summary: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    if let Some(error) = summary.get("error").and_then(Value::as_str) {
        errors.push(error.to_owned());
    }
    for key in ["scan_errors", "failures"] {
        for item in summary
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let line = match item {
                Value::String(s) => s.clone(),
                Value::Object(fields) => fields
                    .iter()
                    .map(|(k, v)| match v {
                        Value::String(s) => format!("{k}: {s}"),
                        other => format!("{k}: {other}"),
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other.to_string(),
            };
            errors.push(line);
        }
    }
    errors
}

fn change_request_from_row(row: &SqliteRow) -> Result<StoredChangeRequest, StoreError> {
    let state: String = row.try_get("state")?;
    let opened_at: String = row.try_get("opened_at")?;
    let decided_at: Option<String> = row.try_get("decided_at")?;
    Ok(StoredChangeRequest {
        id: row.try_get("id")?,
        finding_id: row.try_get("finding_id")?,
        backend: row.try_get("backend")?,
        branch: row.try_get("branch")?,
        head_commit: row.try_get("head_commit")?,
        location: row.try_get("location")?,
        state: ChangeRequestState::parse(&state)?,
        opened_at: parse_timestamp("change request opened", &opened_at)?,
        decided_by: row.try_get("decided_by")?,
        decision_channel: row.try_get("decision_channel")?,
        decided_at: decided_at
            .map(|t| parse_timestamp("change request decided", &t))
            .transpose()?,
        reason: row.try_get("reason")?,
        merge_commit: row.try_get("merge_commit")?,
        failure: row.try_get("failure")?,
    })
}

fn enum_to_str<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        _ => String::new(),
    }
}

fn enum_from_str<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T, StoreError> {
    serde_json::from_value(Value::String(s.to_owned())).map_err(|e| corrupt(what, e))
}

#[async_trait]
impl Store for SqliteStore {
    async fn begin_scan(&self, source: &str, at: DateTime<Utc>) -> Result<ScanId, StoreError> {
        let mut tx = self.begin_immediate().await?;
        let id: ScanId = sqlx::query_scalar(
            "INSERT INTO scans (source, started_at, status) VALUES (?, ?, 'running') RETURNING id",
        )
        .bind(source.to_owned())
        .bind(timestamp(at))
        .fetch_one(&mut *tx)
        .await?;
        append_audit(
            &mut tx,
            "draco",
            "scan.started",
            &format!("scan:{id}"),
            &json!({ "source": source }),
            at,
        )
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn finish_scan(
        &self,
        scan_id: ScanId,
        status: ScanStatus,
        summary: &Value,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_immediate().await?;
        sqlx::query("UPDATE scans SET finished_at = ?, status = ?, summary = ? WHERE id = ?")
            .bind(timestamp(at))
            .bind(status.as_str())
            .bind(summary.to_string())
            .bind(scan_id)
            .execute(&mut *tx)
            .await?;
        append_audit(
            &mut tx,
            "draco",
            "scan.finished",
            &format!("scan:{scan_id}"),
            &json!({ "status": status, "summary": summary }),
            at,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn interrupt_abandoned_scans(
        &self,
        at: DateTime<Utc>,
    ) -> Result<Vec<ScanId>, StoreError> {
        let mut tx = self.begin_immediate().await?;
        let ids: Vec<ScanId> = sqlx::query_scalar(
            "UPDATE scans SET status = 'interrupted', finished_at = ? WHERE status = 'running' RETURNING id",
        )
        .bind(timestamp(at))
        .fetch_all(&mut *tx)
        .await?;
        for id in &ids {
            append_audit(
                &mut tx,
                "draco",
                "scan.interrupted",
                &format!("scan:{id}"),
                &json!({ "reason": "its process ended before the scan finished" }),
                at,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(ids)
    }

    async fn scans(&self, limit: u32) -> Result<Vec<ScanRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, source, started_at, finished_at, status, summary FROM scans ORDER BY id DESC LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(scan_from_row).collect()
    }

    async fn save_cost_points(&self, points: &[CostPoint]) -> Result<u64, StoreError> {
        let mut tx = self.begin_immediate().await?;
        let mut changed = 0;
        for p in points {
            // Only rows that are new or restated count as changed.
            let result = sqlx::query(
                "INSERT INTO cost_points (account_id, service, day, amount_usd, estimated) VALUES (?, ?, ?, ?, ?)
                 ON CONFLICT (account_id, service, day) DO UPDATE SET amount_usd = excluded.amount_usd, estimated = excluded.estimated
                 WHERE cost_points.amount_usd IS NOT excluded.amount_usd OR cost_points.estimated IS NOT excluded.estimated",
            )
            .bind(p.account.as_str().to_owned())
            .bind(p.service.clone())
            .bind(p.day.to_string())
            .bind(p.amount_usd)
            .bind(p.estimated)
            .execute(&mut *tx)
            .await?;
            changed += result.rows_affected();
        }
        tx.commit().await?;
        Ok(changed)
    }

    async fn cost_points_since(&self, day: NaiveDate) -> Result<Vec<CostPoint>, StoreError> {
        let rows: Vec<(String, String, String, f64, bool)> = sqlx::query_as(
            "SELECT account_id, service, day, amount_usd, estimated FROM cost_points WHERE day >= ? ORDER BY day, account_id, service",
        )
        .bind(day.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(account, service, day, amount_usd, estimated)| {
                Ok(CostPoint {
                    day: NaiveDate::parse_from_str(&day, "%Y-%m-%d")
                        .map_err(|e| corrupt("cost day", e))?,
                    account: AccountId::parse(&account).map_err(|e| corrupt("cost account", e))?,
                    service,
                    amount_usd,
                    estimated,
                })
            })
            .collect()
    }

    async fn last_cost_day(&self) -> Result<Option<NaiveDate>, StoreError> {
        let day: Option<String> = sqlx::query_scalar("SELECT MAX(day) FROM cost_points")
            .fetch_one(&self.pool)
            .await?;
        day.map(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").map_err(|e| corrupt("cost day", e)))
            .transpose()
    }

    async fn record_findings(
        &self,
        scan_id: ScanId,
        findings: &[Finding],
        coverage: &Coverage,
        at: DateTime<Utc>,
    ) -> Result<RecordOutcome, StoreError> {
        let now = timestamp(at);
        let mut tx = self.begin_immediate().await?;
        let mut outcome = RecordOutcome::default();
        let mut seen = HashSet::new();
        for f in findings {
            seen.insert(f.fingerprint.as_str().to_owned());
            let existing: Option<(FindingId, String)> =
                sqlx::query_as("SELECT id, status FROM findings WHERE fingerprint = ?")
                    .bind(f.fingerprint.as_str().to_owned())
                    .fetch_optional(&mut *tx)
                    .await?;
            match existing {
                None => {
                    let id: FindingId = sqlx::query_scalar(
                        "INSERT INTO findings (fingerprint, kind, severity, title, resource, account, region, expected, actual, impact_usd_monthly, evidence, status, first_seen_at, last_seen_at, first_scan_id, last_scan_id)
                         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?, ?, ?, ?) RETURNING id",
                    )
                    .bind(f.fingerprint.as_str().to_owned())
                    .bind(f.kind.as_str())
                    .bind(f.severity.as_str())
                    .bind(f.title.clone())
                    .bind(f.resource.clone())
                    .bind(f.account.as_str().to_owned())
                    .bind(f.region.clone())
                    .bind(f.expected)
                    .bind(f.actual)
                    .bind(f.impact_usd_monthly)
                    .bind(f.evidence.to_string())
                    .bind(now.clone())
                    .bind(now.clone())
                    .bind(scan_id)
                    .bind(scan_id)
                    .fetch_one(&mut *tx)
                    .await?;
                    append_audit(&mut tx, "draco", "finding.detected", &finding_subject(id),
                        &json!({ "kind": f.kind, "severity": f.severity, "fingerprint": f.fingerprint, "scan": scan_id }), at).await?;
                    outcome.new.push(id);
                }
                Some((id, status)) => {
                    let reopened = status == FindingStatus::Resolved.as_str();
                    sqlx::query(
                        "UPDATE findings SET kind = ?, severity = ?, title = ?, resource = ?, region = ?, expected = ?, actual = ?, impact_usd_monthly = ?, evidence = ?,
                         last_seen_at = ?, last_scan_id = ?, resolved_at = NULL,
                         status = CASE WHEN status = 'resolved' THEN 'open' ELSE status END
                         WHERE id = ?",
                    )
                    .bind(f.kind.as_str())
                    .bind(f.severity.as_str())
                    .bind(f.title.clone())
                    .bind(f.resource.clone())
                    .bind(f.region.clone())
                    .bind(f.expected)
                    .bind(f.actual)
                    .bind(f.impact_usd_monthly)
                    .bind(f.evidence.to_string())
                    .bind(now.clone())
                    .bind(scan_id)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    if reopened {
                        append_audit(
                            &mut tx,
                            "draco",
                            "finding.reopened",
                            &finding_subject(id),
                            &json!({ "scan": scan_id }),
                            at,
                        )
                        .await?;
                        outcome.reopened.push(id);
                    } else {
                        outcome.unchanged.push(id);
                    }
                }
            }
        }
        let present: Vec<(FindingId, String, String, Option<String>)> = sqlx::query_as(
            "SELECT id, fingerprint, account, region FROM findings WHERE status != 'resolved'",
        )
        .fetch_all(&mut *tx)
        .await?;
        for (id, fingerprint, account, region) in present {
            if !seen.contains(&fingerprint) && coverage.covers(&account, region.as_deref()) {
                sqlx::query(
                    "UPDATE findings SET status = 'resolved', resolved_at = ? WHERE id = ?",
                )
                .bind(now.clone())
                .bind(id)
                .execute(&mut *tx)
                .await?;
                append_audit(
                    &mut tx,
                    "draco",
                    "finding.resolved",
                    &finding_subject(id),
                    &json!({ "scan": scan_id }),
                    at,
                )
                .await?;
                outcome.resolved.push(id);
            }
        }
        tx.commit().await?;
        Ok(outcome)
    }

    async fn findings(&self) -> Result<Vec<StoredFinding>, StoreError> {
        let sql = format!("SELECT {FINDING_COLUMNS} FROM findings ORDER BY id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(finding_from_row).collect()
    }

    async fn finding(&self, id: FindingId) -> Result<Option<StoredFinding>, StoreError> {
        let sql = format!("SELECT {FINDING_COLUMNS} FROM findings WHERE id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(finding_from_row).transpose()
    }

    async fn findings_without_change_request(&self) -> Result<Vec<StoredFinding>, StoreError> {
        let sql = format!(
            "SELECT {FINDING_COLUMNS} FROM findings f WHERE f.status = 'open'
             AND NOT EXISTS (SELECT 1 FROM change_requests c WHERE c.finding_id = f.id AND c.state != 'failed')
             ORDER BY f.id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(finding_from_row).collect()
    }

    async fn save_proposal(
        &self,
        finding_id: FindingId,
        proposal: &Proposal,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let advice = proposal
            .advice
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| corrupt("proposal advice", e))?;
        let mut tx = self.begin_immediate().await?;
        sqlx::query(
            "INSERT INTO proposals (finding_id, advisor, template_id, summary, risk, changes, blast_radius, format, body, rollback, created_at, advice)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (finding_id) DO UPDATE SET advisor = excluded.advisor, template_id = excluded.template_id, summary = excluded.summary,
               risk = excluded.risk, changes = excluded.changes, blast_radius = excluded.blast_radius, format = excluded.format,
               body = excluded.body, rollback = excluded.rollback, created_at = excluded.created_at, advice = excluded.advice",
        )
        .bind(finding_id)
        .bind(proposal.advisor.clone())
        .bind(proposal.template_id.clone())
        .bind(proposal.summary.clone())
        .bind(proposal.risk.as_str())
        .bind(proposal.changes.clone())
        .bind(proposal.blast_radius.clone())
        .bind(enum_to_str(&proposal.format))
        .bind(proposal.body.clone())
        .bind(proposal.rollback.clone())
        .bind(timestamp(at))
        .bind(advice)
        .execute(&mut *tx)
        .await?;
        let fallback = proposal
            .advice
            .as_ref()
            .and_then(|a| a.fallback_reason.clone());
        append_audit(&mut tx, "draco", "proposal.created", &finding_subject(finding_id),
            &json!({ "advisor": proposal.advisor, "template": proposal.template_id, "risk": proposal.risk, "fallback_reason": fallback }), at).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn proposal(&self, finding_id: FindingId) -> Result<Option<Proposal>, StoreError> {
        let row = sqlx::query("SELECT advisor, template_id, summary, risk, changes, blast_radius, format, body, rollback, advice FROM proposals WHERE finding_id = ?")
            .bind(finding_id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let risk: String = row.try_get("risk")?;
        let format: String = row.try_get("format")?;
        Ok(Some(Proposal {
            advisor: row.try_get("advisor")?,
            template_id: row.try_get("template_id")?,
            summary: row.try_get("summary")?,
            risk: enum_from_str::<Risk>("proposal risk", &risk)?,
            changes: row.try_get("changes")?,
            blast_radius: row.try_get("blast_radius")?,
            format: enum_from_str::<Format>("proposal format", &format)?,
            body: row.try_get("body")?,
            rollback: row.try_get("rollback")?,
            advice: row
                .try_get::<Option<String>, _>("advice")?
                .map(|a| serde_json::from_str(&a))
                .transpose()
                .map_err(|e| corrupt("proposal advice", e))?,
        }))
    }

    async fn record_change_request(
        &self,
        finding_id: FindingId,
        backend: &str,
        opened: &OpenedChangeRequest,
        at: DateTime<Utc>,
    ) -> Result<ChangeRequestId, StoreError> {
        let mut tx = self.begin_immediate().await?;
        // A failed change request is re-proposed in place: one row per
        // finding, its history in the audit log.
        let id: Option<ChangeRequestId> = sqlx::query_scalar(
            "INSERT INTO change_requests (finding_id, backend, branch, head_commit, location, state, opened_at)
             VALUES (?, ?, ?, ?, ?, 'open', ?)
             ON CONFLICT (finding_id) DO UPDATE SET backend = excluded.backend, branch = excluded.branch,
                 head_commit = excluded.head_commit, location = excluded.location, state = 'open',
                 opened_at = excluded.opened_at, decided_by = NULL, decision_channel = NULL,
                 decided_at = NULL, reason = NULL, merge_commit = NULL, completed_at = NULL, failure = NULL
             WHERE change_requests.state = 'failed'
             RETURNING id",
        )
        .bind(finding_id)
        .bind(backend.to_owned())
        .bind(opened.branch.clone())
        .bind(opened.head_commit.clone())
        .bind(opened.location.clone())
        .bind(timestamp(at))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = id else {
            return Err(StoreError::Corrupt(format!(
                "finding {finding_id} already has a change request that is not failed"
            )));
        };
        sqlx::query(
            "UPDATE findings SET status = 'awaiting_approval' WHERE id = ? AND status = 'open'",
        )
        .bind(finding_id)
        .execute(&mut *tx)
        .await?;
        append_audit(&mut tx, "draco", "change_request.opened", &finding_subject(finding_id),
            &json!({ "change_request": id, "backend": backend, "branch": opened.branch, "head_commit": opened.head_commit }), at).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn change_request_for_finding(
        &self,
        finding_id: FindingId,
    ) -> Result<Option<StoredChangeRequest>, StoreError> {
        let row = sqlx::query("SELECT * FROM change_requests WHERE finding_id = ?")
            .bind(finding_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(change_request_from_row).transpose()
    }

    async fn change_requests(&self) -> Result<Vec<StoredChangeRequest>, StoreError> {
        let rows = sqlx::query("SELECT * FROM change_requests ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(change_request_from_row).collect()
    }

    async fn claim_decision(
        &self,
        change_request_id: ChangeRequestId,
        decision: &DecisionRecord,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_immediate().await?;
        let state = if decision.approve {
            "approved"
        } else {
            "rejected"
        };
        let claimed = sqlx::query(
            "UPDATE change_requests SET state = ?, decided_by = ?, decision_channel = ?, decided_at = ?, reason = ?, failure = NULL
             WHERE id = ? AND state IN ('open', 'failed')",
        )
        .bind(state)
        .bind(decision.by.clone())
        .bind(decision.channel.clone())
        .bind(timestamp(decision.at))
        .bind(decision.reason.clone())
        .bind(change_request_id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !claimed {
            tx.rollback().await?;
            return Ok(false);
        }
        let finding_id: FindingId =
            sqlx::query_scalar("SELECT finding_id FROM change_requests WHERE id = ?")
                .bind(change_request_id)
                .fetch_one(&mut *tx)
                .await?;
        append_audit(&mut tx, &decision.by, &format!("change_request.{state}"), &finding_subject(finding_id),
            &json!({ "change_request": change_request_id, "channel": decision.channel, "reason": decision.reason }), decision.at).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn fail_change_request(
        &self,
        change_request_id: ChangeRequestId,
        failure: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_immediate().await?;
        let finding_id: Option<FindingId> = sqlx::query_scalar(
            "UPDATE change_requests SET state = 'failed', failure = ?
             WHERE id = ? AND state IN ('open', 'approved', 'rejected', 'failed') RETURNING finding_id",
        )
        .bind(failure.to_owned())
        .bind(change_request_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(finding_id) = finding_id else {
            // Merged or closed meanwhile: nothing failed.
            tx.rollback().await?;
            return Ok(());
        };
        sqlx::query(
            "UPDATE findings SET status = 'open' WHERE id = ? AND status IN ('awaiting_approval', 'approved', 'rejected')",
        )
        .bind(finding_id)
        .execute(&mut *tx)
        .await?;
        append_audit(
            &mut tx,
            "draco",
            "change_request.failed",
            &finding_subject(finding_id),
            &json!({ "change_request": change_request_id, "failure": failure }),
            at,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn complete_decision(
        &self,
        change_request_id: ChangeRequestId,
        merge_commit: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_immediate().await?;
        let row: Option<(FindingId, String)> =
            sqlx::query_as("SELECT finding_id, state FROM change_requests WHERE id = ?")
                .bind(change_request_id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some((finding_id, state)) = row else {
            return Err(StoreError::Corrupt(format!(
                "change request {change_request_id} vanished"
            )));
        };
        let (done, finding_status, action) = match ChangeRequestState::parse(&state)? {
            ChangeRequestState::Approved => {
                ("merged", FindingStatus::Approved, "change_request.merged")
            }
            ChangeRequestState::Rejected => {
                ("closed", FindingStatus::Rejected, "change_request.closed")
            }
            // Already carried out: nothing to record twice.
            ChangeRequestState::Merged | ChangeRequestState::Closed => return Ok(()),
            ChangeRequestState::Open | ChangeRequestState::Failed => {
                return Err(StoreError::Corrupt(format!(
                    "change request {change_request_id} has no decision to carry out"
                )));
            }
        };
        sqlx::query(
            "UPDATE change_requests SET state = ?, merge_commit = ?, completed_at = ? WHERE id = ?",
        )
        .bind(done)
        .bind(merge_commit.map(str::to_owned))
        .bind(timestamp(at))
        .bind(change_request_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE findings SET status = ? WHERE id = ? AND status != 'resolved'")
            .bind(finding_status.as_str())
            .bind(finding_id)
            .execute(&mut *tx)
            .await?;
        append_audit(
            &mut tx,
            "draco",
            action,
            &finding_subject(finding_id),
            &json!({ "change_request": change_request_id, "merge_commit": merge_commit }),
            at,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn audit(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        details: &Value,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_immediate().await?;
        append_audit(&mut tx, actor, action, subject, details, at).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn audit_events(&self, subject: Option<&str>) -> Result<Vec<AuditEvent>, StoreError> {
        let rows = match subject {
            Some(s) => {
                sqlx::query("SELECT * FROM audit_events WHERE subject = ? ORDER BY seq")
                    .bind(s.to_owned())
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM audit_events ORDER BY seq")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter()
            .map(|row| {
                let details: String = row.try_get("details")?;
                Ok(AuditEvent {
                    seq: row.try_get("seq")?,
                    at: row.try_get("at")?,
                    actor: row.try_get("actor")?,
                    action: row.try_get("action")?,
                    subject: row.try_get("subject")?,
                    details: serde_json::from_str(&details)
                        .map_err(|e| corrupt("audit details", e))?,
                    prev_hash: row.try_get("prev_hash")?,
                    hash: row.try_get("hash")?,
                })
            })
            .collect()
    }

    async fn cached_advice(
        &self,
        cache_key: &str,
        fingerprint: &str,
    ) -> Result<Option<Recommendation>, StoreError> {
        let text: Option<String> = sqlx::query_scalar(
            "SELECT recommendation FROM advice_cache WHERE cache_key = ? AND fingerprint = ?",
        )
        .bind(cache_key.to_owned())
        .bind(fingerprint.to_owned())
        .fetch_optional(&self.pool)
        .await?;
        text.map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(|e| corrupt("cached advice", e))
    }

    async fn cache_advice(
        &self,
        cache_key: &str,
        fingerprint: &str,
        recommendation: &Recommendation,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let text =
            serde_json::to_string(recommendation).map_err(|e| corrupt("advice to cache", e))?;
        sqlx::query(
            "INSERT INTO advice_cache (cache_key, fingerprint, recommendation, created_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (cache_key, fingerprint) DO UPDATE SET recommendation = excluded.recommendation, created_at = excluded.created_at",
        )
        .bind(cache_key.to_owned())
        .bind(fingerprint.to_owned())
        .bind(text)
        .bind(timestamp(at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn llm_usage(&self, provider: &str, day: NaiveDate) -> Result<(u64, u64), StoreError> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT requests, input_tokens + output_tokens FROM llm_usage WHERE provider = ? AND day = ?",
        )
        .bind(provider.to_owned())
        .bind(day.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let (requests, tokens) = row.unwrap_or((0, 0));
        Ok((requests.max(0) as u64, tokens.max(0) as u64))
    }

    async fn add_llm_usage(
        &self,
        provider: &str,
        day: NaiveDate,
        input_tokens: u64,
        output_tokens: u64,
    ) -> Result<(), StoreError> {
        let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        sqlx::query(
            "INSERT INTO llm_usage (provider, day, requests, input_tokens, output_tokens) VALUES (?, ?, 1, ?, ?)
             ON CONFLICT (provider, day) DO UPDATE SET requests = requests + 1,
               input_tokens = input_tokens + excluded.input_tokens, output_tokens = output_tokens + excluded.output_tokens",
        )
        .bind(provider.to_owned())
        .bind(day.to_string())
        .bind(clamp(input_tokens))
        .bind(clamp(output_tokens))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Severity;

    fn finding(resource: &str, region: &str) -> Finding {
        Finding {
            kind: FindingKind::EbsUnencrypted,
            severity: Severity::Medium,
            title: resource.into(),
            resource: resource.into(),
            account: AccountId::parse("123456789012").expect("valid"),
            region: Some(region.into()),
            expected: None,
            actual: None,
            impact_usd_monthly: None,
            evidence: json!({}),
            fingerprint: Fingerprint::of(&[resource, region]),
        }
    }

    fn covering(regions: &[&str]) -> Coverage {
        Coverage {
            cost: false,
            regions: regions
                .iter()
                .map(|r| ("123456789012".to_owned(), (*r).to_owned()))
                .collect(),
        }
    }

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
    async fn only_covered_regions_resolve_findings() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("draco.db"))
            .await
            .expect("open");
        let now = Utc::now();
        let scan = store.begin_scan("test", now).await.expect("scan");
        let both = [finding("vol-a", "us-east-1"), finding("vol-b", "eu-west-1")];
        let outcome = store
            .record_findings(scan, &both, &covering(&["us-east-1", "eu-west-1"]), now)
            .await
            .expect("record");
        assert_eq!(outcome.new.len(), 2);

        // eu-west-1 failed to scan: its finding is neither seen nor resolved.
        let scan = store.begin_scan("test", now).await.expect("scan");
        let outcome = store
            .record_findings(scan, &both[..1], &covering(&["us-east-1"]), now)
            .await
            .expect("record");
        assert!(outcome.resolved.is_empty(), "{outcome:?}");

        // Scanned and gone: resolved.
        let scan = store.begin_scan("test", now).await.expect("scan");
        let outcome = store
            .record_findings(
                scan,
                &both[..1],
                &covering(&["us-east-1", "eu-west-1"]),
                now,
            )
            .await
            .expect("record");
        assert_eq!(outcome.resolved.len(), 1);
        let events = store.audit_events(None).await.expect("audit");
        crate::audit::verify(&events).expect("chain intact");
    }
}
