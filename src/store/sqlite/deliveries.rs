//! [`DeliveryStore`] on SQLite: the `webhook_deliveries` table.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::SqliteStore;
use crate::store::deliveries::{Delivery, DeliveryStore, Recorded};
use crate::store::{StoreError, parse_timestamp, timestamp};

#[async_trait]
impl DeliveryStore for SqliteStore {
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
             VALUES (?, ?, ?, ?, ?)
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
             WHERE processed_at IS NULL ORDER BY id LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, provider, delivery_id, event, received_at, body)| {
                Ok(Delivery {
                    id,
                    provider,
                    delivery_id,
                    event,
                    received_at: parse_timestamp("delivery received_at", &received_at)?,
                    body,
                })
            })
            .collect()
    }

    async fn mark_delivery_processed(
        &self,
        id: i64,
        outcome: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET processed_at = ?, outcome = ?
             WHERE id = ? AND processed_at IS NULL",
        )
        .bind(timestamp(at))
        .bind(outcome.to_owned())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_delivery_is_stored_once_processed_once_and_a_redelivery_is_a_duplicate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("draco.db"))
            .await
            .expect("open");
        let at = Utc::now();
        let body = br#"{"action":"closed"}"#;
        let first = store
            .record_delivery("github", "d-1", "pull_request", body, at)
            .await
            .expect("record");
        let Recorded::New(id) = first else {
            panic!("{first:?}")
        };
        // GitHub's "Redeliver" sends the same X-GitHub-Delivery again.
        assert_eq!(
            store
                .record_delivery("github", "d-1", "pull_request", b"{}", at)
                .await
                .expect("record"),
            Recorded::Duplicate
        );
        // The same id from another provider is another delivery.
        assert!(matches!(
            store
                .record_delivery("twilio", "d-1", "sms", b"x", at)
                .await
                .expect("record"),
            Recorded::New(_)
        ));
        let pending = store.pending_deliveries(10).await.expect("pending");
        assert_eq!(pending.len(), 2);
        assert_eq!(pending[0].id, id);
        assert_eq!(pending[0].body, body, "the body exactly as received");
        assert_eq!(pending[0].event, "pull_request");
        assert_eq!(timestamp(pending[0].received_at), timestamp(at));

        assert!(
            store
                .mark_delivery_processed(id, "closed", at)
                .await
                .expect("mark")
        );
        assert!(
            !store
                .mark_delivery_processed(id, "again", at)
                .await
                .expect("mark"),
            "processed at most once"
        );
        let pending = store.pending_deliveries(10).await.expect("pending");
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].provider, "twilio");
    }

    #[tokio::test]
    async fn concurrent_copies_of_one_delivery_store_it_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = std::sync::Arc::new(
            SqliteStore::open(&dir.path().join("draco.db"))
                .await
                .expect("open"),
        );
        let copies: Vec<_> = (0..8)
            .map(|_| {
                let store = std::sync::Arc::clone(&store);
                tokio::spawn(async move {
                    store
                        .record_delivery("github", "same", "ping", b"{}", Utc::now())
                        .await
                })
            })
            .collect();
        let mut new = 0;
        for copy in copies {
            if matches!(copy.await.expect("task").expect("record"), Recorded::New(_)) {
                new += 1;
            }
        }
        assert_eq!(new, 1);
    }
}
