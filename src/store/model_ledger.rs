//! What models were asked and what they answered: the daily usage that
//! `advice::StoreBudget` checks limits against,
//! and the advice cache (answers kept still redacted, keyed by prompt,
//! provider and model).

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use super::StoreError;
use crate::remediate::Recommendation;

#[async_trait]
pub trait ModelLedger: Send + Sync {
    /// A model's earlier (still redacted) answer for this finding under this
    /// prompt and model.
    async fn cached_advice(
        &self,
        cache_key: &str,
        fingerprint: &str,
    ) -> Result<Option<Recommendation>, StoreError>;
    async fn cache_advice(
        &self,
        cache_key: &str,
        fingerprint: &str,
        recommendation: &Recommendation,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Requests and tokens (input + output) spent with a provider on one UTC day.
    async fn llm_usage(&self, provider: &str, day: NaiveDate) -> Result<(u64, u64), StoreError>;
    async fn add_llm_usage(
        &self,
        provider: &str,
        day: NaiveDate,
        input_tokens: u64,
        output_tokens: u64,
    ) -> Result<(), StoreError>;
}

/// A shared ledger (the daemon's one database, behind an `Arc`) is a ledger.
#[async_trait]
impl<T: ModelLedger + ?Sized> ModelLedger for std::sync::Arc<T> {
    async fn cached_advice(
        &self,
        cache_key: &str,
        fingerprint: &str,
    ) -> Result<Option<Recommendation>, StoreError> {
        (**self).cached_advice(cache_key, fingerprint).await
    }
    async fn cache_advice(
        &self,
        cache_key: &str,
        fingerprint: &str,
        recommendation: &Recommendation,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        (**self)
            .cache_advice(cache_key, fingerprint, recommendation, at)
            .await
    }
    async fn llm_usage(&self, provider: &str, day: NaiveDate) -> Result<(u64, u64), StoreError> {
        (**self).llm_usage(provider, day).await
    }
    async fn add_llm_usage(
        &self,
        provider: &str,
        day: NaiveDate,
        input_tokens: u64,
        output_tokens: u64,
    ) -> Result<(), StoreError> {
        (**self)
            .add_llm_usage(provider, day, input_tokens, output_tokens)
            .await
    }
}
