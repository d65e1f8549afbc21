//! Approval codes and link tokens: made from the operating system's CSPRNG,
//! sent once, stored only as keyed digests (HMAC-SHA256 under a key kept in
//! the data directory, not in the database), and compared in constant time.
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

/// The key file inside the data directory.
pub const KEY_FILE: &str = "approval.key";

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("cannot read or create the approval key {path}: {message}")]
    Key { path: String, message: String },
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
    /// Reads the key from `path`, or creates it (32 random bytes, mode
    /// 0600) when there is none. Errors name the file, never its content.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretsError> {
        use std::io::Write as _;
        let failed = |message: String| SecretsError::Key {
            path: path.display().to_string(),
            message,
        };
        let read = |path: &Path| -> Result<Option<Self>, SecretsError> {
            match std::fs::read(path) {
                Ok(bytes) => {
                    let key: [u8; 32] = bytes.try_into().map_err(|_| {
                        failed("not a 32-byte key: restore it from a backup, or delete it (every pending code and link then stops working)".into())
                    })?;
                    Ok(Some(Self(key)))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(failed(e.kind().to_string())),
            }
        };
        if let Some(key) = read(path)? {
            return Ok(key);
        }
        // Written whole to a private temporary file, then linked into place:
        // a link never replaces an existing file and appears complete, so of
        // two processes starting at once one key wins and the other reads
        // it (never a half-written file).
        let key = random::<32>()?;
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        let mut temporary =
            tempfile::NamedTempFile::new_in(dir).map_err(|e| failed(e.kind().to_string()))?;
        temporary
            .write_all(&key)
            .and_then(|()| temporary.as_file().sync_all())
            .map_err(|e| failed(e.kind().to_string()))?;
        match std::fs::hard_link(temporary.path(), path) {
            Ok(()) => Ok(Self(key)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                read(path)?.ok_or_else(|| failed("vanished while being created".into()))
            }
            Err(e) => Err(failed(e.kind().to_string())),
        }
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

    #[test]
    fn the_key_file_is_created_private_and_read_back() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        // Many at once (processes starting together): one key, all agree.
        let keys: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| ApprovalKey::load_or_create(&path).unwrap().link_digest("x"))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.windows(2).all(|w| w[0] == w[1]), "{keys:?}");
        let first = ApprovalKey::load_or_create(&path).unwrap();
        let again = ApprovalKey::load_or_create(&path).unwrap();
        assert_eq!(first.link_digest("x"), again.link_digest("x"));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::write(&path, b"short").unwrap();
        let error = ApprovalKey::load_or_create(&path).unwrap_err().to_string();
        assert!(error.contains("32-byte"), "{error}");
        assert!(!format!("{first:?}").contains('7'));
    }
}
