//! The audit log as a store aggregate: free-standing events and reading the
//! chain back. Every other state change appends its own event in the same
//! transaction; [`crate::audit`] verifies the chain.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::StoreError;
use crate::audit::AuditEvent;

#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Appends a free-standing audit event (e.g. an advisor failure).
    async fn audit(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        details: &Value,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Audit events, oldest first; only those about `subject` when given.
    async fn audit_events(&self, subject: Option<&str>) -> Result<Vec<AuditEvent>, StoreError>;
    /// The newest event's sequence number and hash (the chain's head), to
    /// anchor outside the database; `None` when the log is empty.
    async fn audit_head(&self) -> Result<Option<crate::audit::Anchor>, StoreError>;
}
