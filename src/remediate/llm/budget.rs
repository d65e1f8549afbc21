//! Daily (UTC) limits on requests and tokens per provider, checked before a
//! call leaves the host.
//!
//! The trait is async because the durable implementation Draco needs reads
//! and writes its database; [`InMemoryBudget`] is the one for tests and for
//! runs without a database (it forgets on restart).
//!
//! Limits are soft under concurrency: `check` and `record` are separate
//! steps, so calls in flight together may overshoot by what they use between
//! the two. Draco's advisor calls are few and sequential per scan, so a
//! reservation scheme would cost more than it saves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{NaiveDate, Utc};

use super::{BudgetLimitKind, LlmError, Usage};

#[async_trait]
pub trait Budget: Send + Sync + std::fmt::Debug {
    /// `Err(LlmError::BudgetExhausted)` if one more call of about
    /// `estimated_tokens` would go over a daily limit.
    async fn check(&self, provider: &str, estimated_tokens: u64) -> Result<(), LlmError>;
    /// Counts one call and the tokens it was billed (also for failed calls
    /// that were billed: refusals, cut-off or malformed answers).
    async fn record(&self, provider: &str, usage: Usage);
}

/// Per provider, per UTC day. `None` means no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BudgetLimits {
    pub max_requests_per_day: Option<u64>,
    pub max_tokens_per_day: Option<u64>,
}

impl BudgetLimits {
    /// Whether one more call of about `estimated_tokens` fits after what
    /// `provider` has spent today.
    pub fn check(
        &self,
        provider: &str,
        requests: u64,
        tokens: u64,
        estimated_tokens: u64,
    ) -> Result<(), LlmError> {
        let exhausted = |kind, used, limit| LlmError::BudgetExhausted {
            provider: provider.to_owned(),
            kind,
            used,
            limit,
        };
        if let Some(limit) = self.max_requests_per_day
            && requests.saturating_add(1) > limit
        {
            return Err(exhausted(BudgetLimitKind::Requests, requests, limit));
        }
        if let Some(limit) = self.max_tokens_per_day
            && tokens.saturating_add(estimated_tokens) > limit
        {
            return Err(exhausted(BudgetLimitKind::Tokens, tokens, limit));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Spent {
    day: NaiveDate,
    requests: u64,
    tokens: u64,
}

type Today = Arc<dyn Fn() -> NaiveDate + Send + Sync>;

/// Counts in memory.
pub struct InMemoryBudget {
    limits: BudgetLimits,
    spent: Mutex<HashMap<String, Spent>>,
    today: Today,
}

impl std::fmt::Debug for InMemoryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryBudget")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl InMemoryBudget {
    pub fn new(limits: BudgetLimits) -> Self {
        Self::with_calendar(limits, Arc::new(|| Utc::now().date_naive()))
    }

    /// `today` says which UTC day it is; tests pass a settable one.
    pub fn with_calendar(limits: BudgetLimits, today: Today) -> Self {
        Self {
            limits,
            spent: Mutex::new(HashMap::new()),
            today,
        }
    }

    /// What `provider` has used today: `(requests, tokens)`.
    pub fn spent_today(&self, provider: &str) -> (u64, u64) {
        let today = (self.today)();
        self.lock()
            .get(provider)
            .filter(|s| s.day == today)
            .map_or((0, 0), |s| (s.requests, s.tokens))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Spent>> {
        // A panic while holding this lock leaves plain counters behind, still
        // consistent enough to keep counting.
        self.spent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl Budget for InMemoryBudget {
    async fn check(&self, provider: &str, estimated_tokens: u64) -> Result<(), LlmError> {
        let (requests, tokens) = self.spent_today(provider);
        self.limits
            .check(provider, requests, tokens, estimated_tokens)
    }

    async fn record(&self, provider: &str, usage: Usage) {
        let today = (self.today)();
        let mut spent = self.lock();
        let entry = spent.entry(provider.to_owned()).or_insert(Spent {
            day: today,
            requests: 0,
            tokens: 0,
        });
        if entry.day != today {
            *entry = Spent {
                day: today,
                requests: 0,
                tokens: 0,
            };
        }
        entry.requests = entry.requests.saturating_add(1);
        entry.tokens = entry.tokens.saturating_add(usage.total());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};

    fn usage(total: u64) -> Usage {
        Usage {
            input_tokens: total,
            output_tokens: 0,
        }
    }

    #[tokio::test]
    async fn request_limit_counts_recorded_calls() {
        let budget = InMemoryBudget::new(BudgetLimits {
            max_requests_per_day: Some(2),
            max_tokens_per_day: None,
        });
        budget.check("gemini", 10).await.expect("first");
        budget.record("gemini", usage(10)).await;
        budget.record("gemini", usage(10)).await;
        let err = budget.check("gemini", 10).await.expect_err("third");
        assert!(matches!(
            err,
            LlmError::BudgetExhausted {
                kind: BudgetLimitKind::Requests,
                used: 2,
                limit: 2,
                ..
            }
        ));
        // Limits are per provider.
        budget.check("openai", 10).await.expect("other provider");
    }

    #[tokio::test]
    async fn token_limit_includes_the_estimate_and_resets_at_midnight_utc() {
        let day = Arc::new(AtomicI64::new(0));
        let base = NaiveDate::from_ymd_opt(2026, 11, 1).expect("date");
        let clock = Arc::clone(&day);
        let budget = InMemoryBudget::with_calendar(
            BudgetLimits {
                max_requests_per_day: None,
                max_tokens_per_day: Some(1000),
            },
            Arc::new(move || base + chrono::Days::new(clock.load(Ordering::SeqCst) as u64)),
        );
        budget.record("anthropic", usage(900)).await;
        budget
            .check("anthropic", 100)
            .await
            .expect("exactly at the limit");
        let err = budget.check("anthropic", 101).await.expect_err("over");
        assert!(err.to_string().contains("daily token budget"), "{err}");
        day.store(1, Ordering::SeqCst);
        budget.check("anthropic", 1000).await.expect("a new day");
        assert_eq!(budget.spent_today("anthropic"), (0, 0));
    }
}
