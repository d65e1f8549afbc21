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

#[derive(Debug, thiserror::Error)]
pub enum SealedKeyError {
    #[error(transparent)]
    Seal(#[from] crate::seal::SealError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Initial(String),
    #[error("the sealed `{0}` is not a 32-byte key")]
    Length(String),
}

/// The 32-byte key sealed as `name`, opened with `master`; when there is
/// none yet, `initial` makes it and it is sealed in (of replicas creating
/// it at once the first wins, and the others read theirs back).
///
/// Errors: `master` did not seal it (named, nothing overwritten), the
/// store fails, `initial` fails or gives other than 32 bytes.
pub async fn load_or_create_key(
    store: &dyn SealedSecrets,
    master: &crate::seal::MasterKey,
    name: &str,
    initial: impl FnOnce() -> Result<zeroize::Zeroizing<Vec<u8>>, String>,
) -> Result<zeroize::Zeroizing<[u8; 32]>, SealedKeyError> {
    let to_key = |bytes: &[u8]| -> Result<zeroize::Zeroizing<[u8; 32]>, SealedKeyError> {
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| SealedKeyError::Length(name.to_owned()))?;
        Ok(zeroize::Zeroizing::new(key))
    };
    if let Some(sealed) = store.sealed(name).await? {
        return to_key(&master.open(name, &sealed)?);
    }
    let bytes = initial().map_err(SealedKeyError::Initial)?;
    let key = to_key(&bytes)?;
    let sealed = master.seal(name, key.as_ref())?;
    if store.seal_if_absent(name, &sealed, Utc::now()).await? {
        return Ok(key);
    }
    let theirs = store
        .sealed(name)
        .await?
        .ok_or_else(|| SealedKeyError::Initial(format!("`{name}` vanished while being created")))?;
    to_key(&master.open(name, &theirs)?)
}
