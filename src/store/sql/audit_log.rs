//! [`AuditLog`] in SQL. The table refuses updates and deletes (triggers).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::Row;

use super::{Backend, append_audit, corrupt};
use crate::audit::AuditEvent;
use crate::store::{AuditLog, StoreError};

#[async_trait]
impl AuditLog for Backend {
    async fn audit(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        details: &Value,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        append_audit(
            &self.audit_key,
            &mut tx,
            actor,
            action,
            subject,
            details,
            at,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn audit_events(&self, subject: Option<&str>) -> Result<Vec<AuditEvent>, StoreError> {
        let rows = match subject {
            Some(s) => {
                sqlx::query("SELECT * FROM audit_events WHERE subject = $1 ORDER BY seq")
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
                    keyed: row.try_get("keyed")?,
                    payload_digest: row.try_get("payload_digest")?,
                    purged_at: row.try_get("purged_at")?,
                })
            })
            .collect()
    }

    async fn audit_head(&self) -> Result<Option<crate::audit::Anchor>, StoreError> {
        let head: Option<(i64, String)> =
            sqlx::query_as("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await?;
        Ok(head.map(|(seq, hash)| crate::audit::Anchor { seq, hash }))
    }
}
