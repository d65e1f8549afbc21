//! [`DeliveryStore`] in SQL (both backends): the `webhook_deliveries` table.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Backend, text};
use crate::store::deliveries::{Delivery, DeliveryStore, Recorded};
use crate::store::{StoreError, parse_timestamp, timestamp};

#[async_trait]
impl DeliveryStore for Backend {
    async fn record_delivery(
        &self,
        provider: &str,
        delivery_id: &str,
        event: &str,
        body: &[u8],
        at: DateTime<Utc>,
    ) -> Result<Recorded, StoreError> {
        // One statement: a redelivery racing the first copy inserts nothing.
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO webhook_deliveries (provider, delivery_id, event, received_at, body)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (provider, delivery_id) DO NOTHING
             RETURNING id",
        )
        .bind(provider.to_owned())
        .bind(delivery_id.to_owned())
        .bind(event.to_owned())
        .bind(timestamp(at))
        .bind(body.to_vec())
        .fetch_optional(&self.pool)
        .await?;
        Ok(id.map_or(Recorded::Duplicate, Recorded::New))
    }

    async fn pending_deliveries(&self, limit: u32) -> Result<Vec<Delivery>, StoreError> {
        let rows: Vec<(i64, String, String, String, String, Vec<u8>)> = sqlx::query_as(
            "SELECT id, provider, delivery_id, event, received_at, body FROM webhook_deliveries
             WHERE processed_at IS NULL ORDER BY id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(delivery).collect()
    }

    async fn claim_deliveries(
        &self,
        claimant: &str,
        limit: u32,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<Delivery>, StoreError> {
        // The claimant's own claims are taken again: what a failed round
        // left is retried at its next round, not after the claim runs out.
        // The outer conditions repeat the inner ones: under PostgreSQL's READ
        // COMMITTED a row claimed meanwhile by another replica is re-checked
        // against them after its lock is released, and skipped.
        let mut rows: Vec<(i64, String, String, String, String, Vec<u8>)> = sqlx::query_as(
            "UPDATE webhook_deliveries SET claimed_by = $1, claimed_until = $2
             WHERE id IN (SELECT id FROM webhook_deliveries
                          WHERE processed_at IS NULL AND (claimed_until IS NULL OR claimed_until <= $3 OR claimed_by = $1)
                          ORDER BY id LIMIT $4)
               AND processed_at IS NULL AND (claimed_until IS NULL OR claimed_until <= $3 OR claimed_by = $1)
             RETURNING id, provider, delivery_id, event, received_at, body",
        )
        .bind(text(claimant))
        .bind(timestamp(until))
        .bind(timestamp(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.sort_by_key(|row| row.0);
        rows.into_iter().map(delivery).collect()
    }

    async fn release_claims(&self, claimant: &str) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "UPDATE webhook_deliveries SET claimed_by = NULL, claimed_until = NULL
             WHERE claimed_by = $1 AND processed_at IS NULL",
        )
        .bind(text(claimant))
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    async fn mark_delivery_processed(
        &self,
        id: i64,
        outcome: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET processed_at = $1, outcome = $2
             WHERE id = $3 AND processed_at IS NULL",
        )
        .bind(timestamp(at))
        .bind(text(outcome))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

fn delivery(
    (id, provider, delivery_id, event, received_at, body): (
        i64,
        String,
        String,
        String,
        String,
        Vec<u8>,
    ),
) -> Result<Delivery, StoreError> {
    Ok(Delivery {
        id,
        provider,
        delivery_id,
        event,
        received_at: parse_timestamp("delivery received_at", &received_at)?,
        body,
    })
}
