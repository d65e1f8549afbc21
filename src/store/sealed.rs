//! Sealed secrets as a store aggregate: what [`crate::seal`] sealed, by
//! name. The store never sees a key or a plaintext.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::seal::Sealed;

#[async_trait]
pub trait SealedSecrets: Send + Sync {
    /// The sealed secret `name`, if there is one.
    async fn sealed(&self, name: &str) -> Result<Option<Sealed>, StoreError>;
    /// Stores `sealed` as `name` unless there is one already (two replicas
    /// creating the same secret at once: the first one wins). `false` when
    /// there was one; then read it back.
    async fn seal_if_absent(
        &self,
        name: &str,
        sealed: &Sealed,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Every sealed secret, by name.
    async fn all_sealed(&self) -> Result<Vec<(String, Sealed)>, StoreError>;
    /// Replaces every sealed secret with its re-sealed form, in one
    /// transaction with its audit event (`secrets.rotated`, the key ids
    /// only), if and only if each is still sealed as `before` says (no
    /// other rotation ran in between). `false`, with nothing changed, when
    /// one was not.
    async fn reseal_all(
        &self,
        before: &[(String, Sealed)],
        after: &[(String, Sealed)],
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
}
