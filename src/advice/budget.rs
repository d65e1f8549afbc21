//! The model budget kept in the database, so that limits hold across
//! restarts and across replicas sharing one database.

use async_trait::async_trait;
use chrono::Utc;

use crate::remediate::llm::{Budget, BudgetLimits, LlmError, Usage};
use crate::store::ModelLedger;

/// [`Budget`] over a [`ModelLedger`]: reads and adds each provider's daily
/// usage in the database.
pub struct StoreBudget<S> {
    store: S,
    limits: BudgetLimits,
}

impl<S> StoreBudget<S> {
    pub fn new(store: S, limits: BudgetLimits) -> Self {
        Self { store, limits }
    }
}

impl<S> std::fmt::Debug for StoreBudget<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreBudget")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl<S: ModelLedger> Budget for StoreBudget<S> {
    async fn check(&self, provider: &str, estimated_tokens: u64) -> Result<(), LlmError> {
        // A budget that cannot be read is treated as spent: the template
        // advisor takes over rather than spending blind.
        let (requests, tokens) = self
            .store
            .llm_usage(provider, Utc::now().date_naive())
            .await
            .map_err(|e| LlmError::BudgetUnavailable(e.to_string()))?;
        self.limits
            .check(provider, requests, tokens, estimated_tokens)
    }

    async fn record(&self, provider: &str, usage: Usage) {
        let day = Utc::now().date_naive();
        if let Err(error) = self
            .store
            .add_llm_usage(provider, day, usage.input_tokens, usage.output_tokens)
            .await
        {
            tracing::warn!(%error, provider, "cannot record model usage in the database");
        }
    }
}
