//! [`Leases`] in SQL (both backends): the `leases` table.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Backend, corrupt};
use crate::store::leases::{LeaseState, Leases};
use crate::store::{StoreError, parse_timestamp, timestamp};

#[async_trait]
impl Leases for Backend {
    async fn acquire_lease(
        &self,
        job: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<LeaseState, StoreError> {
        // Released by its holder between the two statements below: tried
        // again (free then), a few times at most.
        for _ in 0..3 {
            if let Some(state) = self.try_lease(job, holder, now, until).await? {
                return Ok(state);
            }
        }
        Err(corrupt(
            &format!("lease {job}"),
            "taken and released again at every try",
        ))
    }

    async fn release_lease(&self, job: &str, holder: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM leases WHERE job = $1 AND holder = $2")
            .bind(job.to_owned())
            .bind(holder.to_owned())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

impl Backend {
    /// One try of [`Leases::acquire_lease`]; `None` when the lease vanished
    /// between the upsert and the read of its holder.
    async fn try_lease(
        &self,
        job: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<LeaseState>, StoreError> {
        // The conflict branch only fires when the lease is ours or expired;
        // otherwise nothing is returned and the holder is read below.
        // Timestamps are `store::timestamp` text, which sorts as time does.
        let taken: Option<(String, Option<String>)> = sqlx::query_as(
            "INSERT INTO leases (job, holder, acquired_at, expires_at, taken_from)
             VALUES ($1, $2, $3, $4, NULL)
             ON CONFLICT (job) DO UPDATE SET
                 expires_at = excluded.expires_at,
                 acquired_at = CASE WHEN leases.holder = excluded.holder
                     THEN leases.acquired_at ELSE excluded.acquired_at END,
                 taken_from = CASE WHEN leases.holder = excluded.holder
                     THEN leases.taken_from ELSE leases.holder END,
                 holder = excluded.holder
             WHERE leases.holder = excluded.holder OR leases.expires_at <= excluded.acquired_at
             RETURNING holder, taken_from",
        )
        .bind(job.to_owned())
        .bind(holder.to_owned())
        .bind(timestamp(now))
        .bind(timestamp(until))
        .fetch_optional(&self.pool)
        .await?;
        if let Some((_, taken_from)) = taken {
            return Ok(Some(LeaseState::Held { taken_from }));
        }
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT holder, expires_at FROM leases WHERE job = $1")
                .bind(job.to_owned())
                .fetch_optional(&self.pool)
                .await?;
        row.map(|(holder, until)| {
            Ok(LeaseState::HeldBy {
                holder,
                until: parse_timestamp("lease expires_at", &until)?,
            })
        })
        .transpose()
    }
}
