//! Webhook deliveries: recorded before the provider is answered, processed
//! from the store afterwards, each at most once.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;

/// Whether a delivery was new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Stored now under this row id; process it.
    New(i64),
    /// The provider sent this delivery id before (a redelivery): nothing
    /// was stored and nothing is to be done.
    Duplicate,
}

/// One stored delivery awaiting processing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: i64,
    /// `github`, later `twilio`, `sendgrid`.
    pub provider: String,
    /// The provider's id of the delivery (GitHub's `X-GitHub-Delivery`).
    pub delivery_id: String,
    /// The event name (GitHub's `X-GitHub-Event`).
    pub event: String,
    pub received_at: DateTime<Utc>,
    /// The raw body, exactly as received and verified.
    pub body: Vec<u8>,
}

#[async_trait]
pub trait DeliveryStore: Send + Sync {
    /// Stores a verified delivery, once per `(provider, delivery_id)`; the
    /// caller answers the provider only after this returns.
    async fn record_delivery(
        &self,
        provider: &str,
        delivery_id: &str,
        event: &str,
        body: &[u8],
        at: DateTime<Utc>,
    ) -> Result<Recorded, StoreError>;
    /// Deliveries not processed yet, oldest first, at most `limit`.
    async fn pending_deliveries(&self, limit: u32) -> Result<Vec<Delivery>, StoreError>;
    /// Claims up to `limit` deliveries not processed yet and not claimed by
    /// another claimant (or whose claim ran out by `now`) for `claimant`
    /// until `until`, oldest first: every replica stores the deliveries it
    /// receives, one processes each. Two claimants never get the same
    /// delivery while its claim runs (one statement, re-checked per row).
    async fn claim_deliveries(
        &self,
        claimant: &str,
        limit: u32,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<Delivery>, StoreError>;
    /// Gives up `claimant`'s claims on deliveries not processed yet (a
    /// clean shutdown: another replica takes them at once rather than when
    /// the claims run out). Returns how many.
    async fn release_claims(&self, claimant: &str) -> Result<u64, StoreError>;
    /// Marks a delivery processed with what came of it (`outcome`: a short
    /// text such as `ignored: not a managed repository`, never the body).
    /// Returns `false` when it was already marked (another worker did it).
    async fn mark_delivery_processed(
        &self,
        id: i64,
        outcome: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
}
