//! [`SealedSecrets`] in SQL (both backends): the `sealed_secrets` table.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::Row;

use super::{Backend, append_audit};
use crate::seal::Sealed;
use crate::store::sealed::SealedSecrets;
use crate::store::{StoreError, timestamp};

#[async_trait]
impl SealedSecrets for Backend {
    async fn sealed(&self, name: &str) -> Result<Option<Sealed>, StoreError> {
        let row =
            sqlx::query("SELECT key_id, nonce, ciphertext FROM sealed_secrets WHERE name = $1")
                .bind(name.to_owned())
                .fetch_optional(&self.pool)
                .await?;
        row.map(|row| {
            Ok(Sealed {
                key_id: row.try_get("key_id")?,
                nonce: row.try_get("nonce")?,
                ciphertext: row.try_get("ciphertext")?,
            })
        })
        .transpose()
    }

    async fn seal_if_absent(
        &self,
        name: &str,
        sealed: &Sealed,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO sealed_secrets (name, key_id, nonce, ciphertext, sealed_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name.to_owned())
        .bind(sealed.key_id.clone())
        .bind(sealed.nonce.clone())
        .bind(sealed.ciphertext.clone())
        .bind(timestamp(at))
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if inserted {
            append_audit(
                &self.audit_key,
                &mut tx,
                "draco",
                "secret.sealed",
                &format!("secret:{name}"),
                &json!({ "key_id": sealed.key_id }),
                at,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(inserted)
    }

    async fn all_sealed(&self) -> Result<Vec<(String, Sealed)>, StoreError> {
        let rows =
            sqlx::query("SELECT name, key_id, nonce, ciphertext FROM sealed_secrets ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("name")?,
                    Sealed {
                        key_id: row.try_get("key_id")?,
                        nonce: row.try_get("nonce")?,
                        ciphertext: row.try_get("ciphertext")?,
                    },
                ))
            })
            .collect()
    }

    async fn reseal_all(
        &self,
        before: &[(String, Sealed)],
        after: &[(String, Sealed)],
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let stored: Vec<(String, String, Vec<u8>, Vec<u8>)> = sqlx::query_as(
            "SELECT name, key_id, nonce, ciphertext FROM sealed_secrets ORDER BY name",
        )
        .fetch_all(&mut *tx)
        .await?;
        let unchanged = stored.len() == before.len()
            && stored
                .iter()
                .zip(before)
                .all(|((name, key_id, nonce, ciphertext), (b_name, b))| {
                    name == b_name
                        && *key_id == b.key_id
                        && *nonce == b.nonce
                        && *ciphertext == b.ciphertext
                });
        if !unchanged {
            return Ok(false);
        }
        for (name, sealed) in after {
            sqlx::query(
                "UPDATE sealed_secrets SET key_id = $1, nonce = $2, ciphertext = $3, sealed_at = $4 WHERE name = $5",
            )
            .bind(sealed.key_id.clone())
            .bind(sealed.nonce.clone())
            .bind(sealed.ciphertext.clone())
            .bind(timestamp(at))
            .bind(name.clone())
            .execute(&mut *tx)
            .await?;
        }
        let from: Vec<&str> = before.iter().map(|(_, s)| s.key_id.as_str()).collect();
        let to: Vec<&str> = after.iter().map(|(_, s)| s.key_id.as_str()).collect();
        append_audit(
            &self.audit_key,
            &mut tx,
            "draco",
            "secrets.rotated",
            "secrets",
            &json!({ "secrets": after.len(), "from": from, "to": to }),
            at,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}
