//! [`ModelLedger`] in SQL (both backends): the `llm_usage` and `advice_cache` tables.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use super::{Backend, corrupt};
use crate::remediate::Recommendation;
use crate::store::{ModelLedger, StoreError, timestamp};

#[async_trait]
impl ModelLedger for Backend {
    async fn cached_advice(
        &self,
        cache_key: &str,
        fingerprint: &str,
    ) -> Result<Option<Recommendation>, StoreError> {
        let text: Option<String> = sqlx::query_scalar(
            "SELECT recommendation FROM advice_cache WHERE cache_key = $1 AND fingerprint = $2",
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
            "INSERT INTO advice_cache (cache_key, fingerprint, recommendation, created_at) VALUES ($1, $2, $3, $4)
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
        // Added here, saturating: the sum overflows a 64-bit integer on the
        // way (PostgreSQL refuses it, SQLite turns it into a float).
        let row: Option<(i64, i64, i64)> = sqlx::query_as(
            "SELECT requests, input_tokens, output_tokens FROM llm_usage WHERE provider = $1 AND day = $2",
        )
        .bind(provider.to_owned())
        .bind(day.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let (requests, input, output) = row.unwrap_or((0, 0, 0));
        let count = |n: i64| n.max(0) as u64;
        Ok((count(requests), count(input).saturating_add(count(output))))
    }

    async fn add_llm_usage(
        &self,
        provider: &str,
        day: NaiveDate,
        input_tokens: u64,
        output_tokens: u64,
    ) -> Result<(), StoreError> {
        // Counts saturate at i64::MAX (9223372036854775807, the column's
        // largest value on both backends) instead of failing the call.
        let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        sqlx::query(
            "INSERT INTO llm_usage (provider, day, requests, input_tokens, output_tokens) VALUES ($1, $2, 1, $3, $4)
             ON CONFLICT (provider, day) DO UPDATE SET
               requests = CASE WHEN llm_usage.requests >= 9223372036854775807
                   THEN llm_usage.requests ELSE llm_usage.requests + 1 END,
               input_tokens = CASE WHEN llm_usage.input_tokens > 9223372036854775807 - excluded.input_tokens
                   THEN 9223372036854775807 ELSE llm_usage.input_tokens + excluded.input_tokens END,
               output_tokens = CASE WHEN llm_usage.output_tokens > 9223372036854775807 - excluded.output_tokens
                   THEN 9223372036854775807 ELSE llm_usage.output_tokens + excluded.output_tokens END",
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
