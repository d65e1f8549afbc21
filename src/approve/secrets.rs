//! Approval codes and link tokens: made from the operating system's CSPRNG,
//! sent once, stored only as keyed digests (HMAC-SHA256 under the approval
//! key, itself sealed in the database under the master key, which is not),
//! and compared in constant time.
//!
//! A stolen database therefore yields neither a usable code nor a link: a
//! six-digit code's plain hash could be reversed by trying all 10⁶ values,
//! its keyed digest cannot without the key.

use std::path::Path;

use base64::Engine as _;
use hmac::{KeyInit, Mac};

/// Digits in an SMS code (the floor; with at most 5 wrong codes an
/// hour per approver, a guess succeeds with odds of 5 in 10⁶ an hour).
pub const CODE_DIGITS: u32 = 6;

/// Random bytes in a link token (256 bits).
const TOKEN_BYTES: usize = 32;

/// Where Draco before sealed secrets kept the key, inside the data
/// directory: imported once, then removed.
pub const KEY_FILE: &str = "approval.key";

/// The approval key's name among the sealed secrets.
pub const SEALED_NAME: &str = "approval_key";

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("cannot read or create the approval key {path}: {message}")]
    Key { path: String, message: String },
    #[error("the approval key: {0}")]
    Sealed(String),
    #[error("the operating system's random source failed: {0}")]
    Random(String),
}

/// The key codes and tokens are digested under. Never printed.
pub struct ApprovalKey([u8; 32]);

impl std::fmt::Debug for ApprovalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApprovalKey(…)")
    }
}

fn random<const N: usize>() -> Result<[u8; N], SecretsError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| SecretsError::Random(e.to_string()))?;
    Ok(bytes)
}

impl ApprovalKey {
    /// The approval key, sealed in the database under the master key:
    /// every replica uses the same one, and a stolen database yields no
    /// code or link without the master key. Created on first use (two
    /// replicas starting at once agree on one); a key an earlier Draco kept
    /// in the data directory (`legacy`, [`KEY_FILE`]) is sealed in and the
    /// file removed, so pending codes and links keep working.
    ///
    /// Errors: the master key is not the one that sealed it (named, nothing
    /// overwritten), the store fails, the legacy file is not a key.
    pub async fn load_or_create(
        store: &dyn crate::store::SealedSecrets,
        master: &crate::seal::MasterKey,
        legacy: &Path,
    ) -> Result<Self, SecretsError> {
        let failed = |message: String| SecretsError::Key {
            path: legacy.display().to_string(),
            message,
        };
        let key = crate::store::sealed::load_or_create_key(store, master, SEALED_NAME, || {
            match std::fs::read(legacy) {
                Ok(bytes) if bytes.len() == 32 => Ok(zeroize::Zeroizing::new(bytes)),
                Ok(_) => Err(format!(
                    "{}: not a 32-byte key: restore it from a backup, or delete it (every pending code and link then stops working)",
                    legacy.display()
                )),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => random::<32>()
                    .map(|k| zeroize::Zeroizing::new(k.to_vec()))
                    .map_err(|e| e.to_string()),
                Err(e) => Err(format!("{}: {}", legacy.display(), e.kind())),
            }
        })
        .await
        .map_err(|e| SecretsError::Sealed(e.to_string()))?;
        let key = Self(*key);
        // Sealed in the database now: the clear copy goes.
        match std::fs::remove_file(legacy) {
            Ok(()) => tracing::info!(
                path = %legacy.display(),
                "the approval key is now sealed in the database; its file was removed"
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(failed(e.kind().to_string())),
        }
        Ok(key)
    }

    /// A key for tests.
    pub fn from_bytes(key: [u8; 32]) -> Self {
        Self(key)
    }

    fn mac(&self, purpose: &str, parts: &[&str]) -> hmac::Hmac<sha2::Sha256> {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.0)
            .expect("HMAC takes a key of any length");
        mac.update(purpose.as_bytes());
        for part in parts {
            mac.update(&[0]);
            mac.update(part.as_bytes());
        }
        mac
    }

    /// The stored form of an SMS code sent to `approver`.
    pub fn code_digest(&self, approver: &str, code: &str) -> String {
        hex::encode(
            self.mac("draco sms code", &[approver, code])
                .finalize()
                .into_bytes(),
        )
    }

    /// The stored form of a link token.
    pub fn link_digest(&self, token: &str) -> String {
        hex::encode(
            self.mac("draco link token", &[token])
                .finalize()
                .into_bytes(),
        )
    }

    /// The anti-forgery token the confirmation page of the link with
    /// `link_digest` embeds: `nonce.mac`, checked by [`Self::check_form_token`].
    pub fn form_token(&self, link_digest: &str) -> Result<String, SecretsError> {
        let nonce = hex::encode(random::<16>()?);
        let mac = self.mac("draco approval form", &[link_digest, &nonce]);
        Ok(format!(
            "{nonce}.{}",
            hex::encode(mac.finalize().into_bytes())
        ))
    }

    /// Whether `token` was made by [`Self::form_token`] for this link (in
    /// constant time).
    pub fn check_form_token(&self, link_digest: &str, token: &str) -> bool {
        let Some((nonce, given)) = token.split_once('.') else {
            return false;
        };
        let Ok(given) = hex::decode(given) else {
            return false;
        };
        self.mac("draco approval form", &[link_digest, nonce])
            .verify_slice(&given)
            .is_ok()
    }
}

/// A fresh SMS code: [`CODE_DIGITS`] uniformly random digits.
pub fn new_code() -> Result<String, SecretsError> {
    let modulus = 10u32.pow(CODE_DIGITS);
    // Rejection sampling: values above the largest multiple of 10⁶ that
    // fits would make low codes likelier.
    let limit = u32::MAX - u32::MAX % modulus;
    loop {
        let value = u32::from_le_bytes(random::<4>()?);
        if value < limit {
            return Ok(format!(
                "{:0width$}",
                value % modulus,
                width = CODE_DIGITS as usize
            ));
        }
    }
}

/// A fresh link token: 256 random bits, base64url without padding.
pub fn new_link_token() -> Result<String, SecretsError> {
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random::<TOKEN_BYTES>()?))
}

/// Whether `text` could be a link token (so that anything else is refused
/// before the store is asked).
pub fn looks_like_link_token(text: &str) -> bool {
    text.len() == 43
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Constant-time equality of two texts.
pub fn same(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits_and_vary() {
        let codes: std::collections::HashSet<String> =
            (0..200).map(|_| new_code().unwrap()).collect();
        assert!(codes.len() > 190, "codes repeat too often");
        assert!(
            codes
                .iter()
                .all(|c| c.len() == 6 && c.bytes().all(|b| b.is_ascii_digit()))
        );
        let token = new_link_token().unwrap();
        assert!(looks_like_link_token(&token), "{token}");
        assert!(!looks_like_link_token("../../etc/passwd"));
    }

    #[test]
    fn digests_are_keyed_and_bound_to_what_they_cover() {
        let key = ApprovalKey::from_bytes([7; 32]);
        let other = ApprovalKey::from_bytes([8; 32]);
        assert_eq!(
            key.code_digest("Ada", "123456"),
            key.code_digest("Ada", "123456")
        );
        assert_ne!(
            key.code_digest("Ada", "123456"),
            key.code_digest("Bob", "123456")
        );
        assert_ne!(
            key.code_digest("Ada", "123456"),
            other.code_digest("Ada", "123456")
        );
        assert_ne!(key.link_digest("t"), key.code_digest("", "t"));
        let form = key.form_token("digest-a").unwrap();
        assert!(key.check_form_token("digest-a", &form));
        assert!(!key.check_form_token("digest-b", &form));
        assert!(!other.check_form_token("digest-a", &form));
        assert!(!key.check_form_token("digest-a", "nonce.00"));
        assert!(!key.check_form_token("digest-a", ""));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_key_is_sealed_in_the_database_once_and_a_legacy_file_moves_in() {
        use crate::seal::MasterKey;
        use crate::store::{SealedSecrets, SqliteStore};
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(
            SqliteStore::open(&dir.path().join("draco.db"))
                .await
                .unwrap(),
        );
        let master = std::sync::Arc::new(MasterKey::generate().unwrap());
        let legacy = dir.path().join(KEY_FILE);
        // An earlier Draco's key file: its codes keep working after the move.
        std::fs::write(&legacy, [7u8; 32]).unwrap();
        let old = ApprovalKey([7u8; 32]).link_digest("x");
        // Replicas starting at once: one key, all agree.
        let starts: Vec<_> = (0..8)
            .map(|_| {
                let (store, master, legacy) = (store.clone(), master.clone(), legacy.clone());
                tokio::spawn(async move {
                    ApprovalKey::load_or_create(&*store, &master, &legacy)
                        .await
                        .map(|k| k.link_digest("x"))
                })
            })
            .collect();
        for start in starts {
            let digest = start.await.unwrap();
            // A start that found the file gone (moved in by another) made
            // its own key, and lost the race to the sealed one: all the same.
            assert_eq!(digest.unwrap(), old);
        }
        assert!(!legacy.exists(), "the clear copy is removed");
        let sealed = store.sealed(SEALED_NAME).await.unwrap().unwrap();
        assert!(!sealed.ciphertext.windows(32).any(|w| w == [7u8; 32]));
        // Another master key: a clear error, and nothing overwritten.
        let wrong = MasterKey::generate().unwrap();
        let error = ApprovalKey::load_or_create(&*store, &wrong, &legacy)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("was sealed with master key"), "{error}");
        assert_eq!(store.sealed(SEALED_NAME).await.unwrap().unwrap(), sealed);
    }
}
