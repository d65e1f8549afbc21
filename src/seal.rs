//! Secrets at rest: what Draco must keep in its database that is secret
//! (the approval key today) is sealed with AES-256-GCM (RustCrypto's
//! `aes-gcm`) under a master key that never enters the database: from
//! `DRACO_MASTER_KEY`, the file `secrets.key_file` names, or, for the
//! embedded SQLite default only, `master.key` in the data directory.
//!
//! Each sealed value has its own random 96-bit nonce and is bound to its
//! name (the name is the AEAD's associated data), so a ciphertext moved to
//! another row does not open. Each carries the id of the key that sealed
//! it, so a wrong key is told apart from damaged data and named.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use hmac::Mac;
use zeroize::Zeroizing;

/// Bytes in a master key (AES-256).
pub const KEY_BYTES: usize = 32;
/// Bytes in a nonce (AES-GCM's 96 bits, NIST SP 800-38D §8.2).
const NONCE_BYTES: usize = 12;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error(
        "the master key must be {KEY_BYTES} random bytes written as base64 (44 characters) or hex (64); make one with `openssl rand -base64 32`"
    )]
    KeyFormat,
    #[error(
        "the secret `{name}` was sealed with master key {sealed_with}, and the master key given is {given}: give the key it was sealed with (DRACO_MASTER_KEY or secrets.key_file); nothing was changed"
    )]
    WrongKey {
        name: String,
        sealed_with: String,
        given: String,
    },
    #[error(
        "the secret `{name}` does not open under master key {key_id}, which sealed it: the stored value was altered or damaged"
    )]
    Damaged { name: String, key_id: String },
    #[error("the operating system's random source failed: {0}")]
    Random(String),
}

/// The key secrets are sealed under. Never printed; wiped on drop.
pub struct MasterKey {
    key: Zeroizing<[u8; KEY_BYTES]>,
    id: String,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.id)
    }
}

/// A sealed value as stored: who sealed it, its nonce and ciphertext
/// (with GCM's 16-byte tag at its end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

impl MasterKey {
    /// A key from its text form: 32 bytes as base64 (standard alphabet,
    /// padded) or hex, surrounding whitespace ignored. Errors:
    /// [`SealError::KeyFormat`] (the message never repeats the text).
    pub fn parse(text: &str) -> Result<Self, SealError> {
        let text = text.trim();
        let bytes = if text.len() == 2 * KEY_BYTES {
            hex::decode(text).map_err(|_| SealError::KeyFormat)?
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|_| SealError::KeyFormat)?
        };
        let key: [u8; KEY_BYTES] = bytes.try_into().map_err(|_| SealError::KeyFormat)?;
        Ok(Self::from_bytes(key))
    }

    /// A new random key. Errors: [`SealError::Random`].
    pub fn generate() -> Result<Self, SealError> {
        let mut key = [0u8; KEY_BYTES];
        getrandom::fill(&mut key).map_err(|e| SealError::Random(e.to_string()))?;
        Ok(Self::from_bytes(key))
    }

    pub fn from_bytes(key: [u8; KEY_BYTES]) -> Self {
        let key = Zeroizing::new(key);
        // An id that names the key without revealing it: the first 8 bytes
        // of HMAC-SHA256(key, "draco master key id"), as hex.
        let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::KeyInit>::new_from_slice(key.as_ref())
            .expect("HMAC takes a key of any length");
        mac.update(b"draco master key id");
        let id = hex::encode(&mac.finalize().into_bytes()[..8]);
        Self { key, id }
    }

    /// The key's text form (base64), for writing a new key to its file.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(self.key.as_ref()))
    }

    /// The key's id (16 hex digits), safe to print.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seals `plaintext` as the secret `name`. Errors: [`SealError::Random`].
    pub fn seal(&self, name: &str, plaintext: &[u8]) -> Result<Sealed, SealError> {
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).map_err(|e| SealError::Random(e.to_string()))?;
        let cipher = Aes256Gcm::new_from_slice(self.key.as_ref()).expect("a 256-bit key");
        let ciphertext = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| SealError::Random("AES-GCM refused to seal".into()))?;
        Ok(Sealed {
            key_id: self.id.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }

    /// Opens the secret `name`. Errors: [`SealError::WrongKey`] when another
    /// key sealed it, [`SealError::Damaged`] when it does not authenticate.
    pub fn open(&self, name: &str, sealed: &Sealed) -> Result<Zeroizing<Vec<u8>>, SealError> {
        if sealed.key_id != self.id {
            return Err(SealError::WrongKey {
                name: name.to_owned(),
                sealed_with: sealed.key_id.clone(),
                given: self.id.clone(),
            });
        }
        let damaged = || SealError::Damaged {
            name: name.to_owned(),
            key_id: self.id.clone(),
        };
        let nonce: [u8; NONCE_BYTES] = sealed.nonce.as_slice().try_into().map_err(|_| damaged())?;
        let cipher = Aes256Gcm::new_from_slice(self.key.as_ref()).expect("a 256-bit key");
        cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: name.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| damaged())
    }
}

/// The master key file inside the data directory, for the embedded SQLite
/// database when no key is configured.
pub const KEY_FILE: &str = "master.key";

#[derive(Debug, thiserror::Error)]
#[error("the master key file {path}: {message}")]
pub struct KeyFileError {
    pub path: String,
    pub message: String,
}

/// Reads the master key from `path`, or creates it (a new random key,
/// base64, mode 0600) when there is none. Errors name the file, never its
/// content.
pub fn load_or_create_key_file(path: &std::path::Path) -> Result<MasterKey, KeyFileError> {
    use std::io::Write as _;
    let failed = |message: String| KeyFileError {
        path: path.display().to_string(),
        message,
    };
    let read = |path: &std::path::Path| -> Result<Option<MasterKey>, KeyFileError> {
        match std::fs::read_to_string(path) {
            Ok(text) => MasterKey::parse(&text)
                .map(Some)
                .map_err(|e| failed(e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(failed(e.kind().to_string())),
        }
    };
    if let Some(key) = read(path)? {
        return Ok(key);
    }
    // Written whole to a private temporary file, then linked into place: a
    // link never replaces an existing file and appears complete, so of two
    // processes starting at once one key wins and the other reads it.
    let key = MasterKey::generate().map_err(|e| failed(e.to_string()))?;
    let dir = path.parent().unwrap_or_else(|| std::path::Path::new("."));
    let mut temporary =
        tempfile::NamedTempFile::new_in(dir).map_err(|e| failed(e.kind().to_string()))?;
    temporary
        .write_all(key.to_base64().as_bytes())
        .and_then(|()| temporary.write_all(b"\n"))
        .and_then(|()| temporary.as_file().sync_all())
        .map_err(|e| failed(e.kind().to_string()))?;
    match std::fs::hard_link(temporary.path(), path) {
        Ok(()) => Ok(key),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            read(path)?.ok_or_else(|| failed("vanished while being created".into()))
        }
        Err(e) => Err(failed(e.kind().to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_file_is_created_private_once_and_read_back() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(KEY_FILE);
        // Many at once (processes starting together): one key, all agree.
        let ids: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| load_or_create_key_file(&path).expect("key").id().to_owned())
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::write(&path, b"short").expect("write");
        let error = load_or_create_key_file(&path)
            .expect_err("refused")
            .to_string();
        assert!(error.contains("32 random bytes"), "{error}");
    }

    #[test]
    fn a_sealed_secret_opens_only_under_its_key_and_its_name() {
        let key = MasterKey::generate().expect("key");
        let sealed = key.seal("approval_key", b"the secret").expect("seal");
        assert!(!sealed.ciphertext.windows(10).any(|w| w == b"the secret"));
        assert_eq!(
            key.open("approval_key", &sealed).expect("open").as_slice(),
            b"the secret"
        );
        // Moved to another name: does not authenticate.
        assert!(matches!(
            key.open("other", &sealed),
            Err(SealError::Damaged { .. })
        ));
        // Another key: named as such, not as damage.
        let other = MasterKey::generate().expect("key");
        match other.open("approval_key", &sealed) {
            Err(SealError::WrongKey {
                sealed_with, given, ..
            }) => {
                assert_eq!(sealed_with, key.id());
                assert_eq!(given, other.id());
            }
            wrong => panic!("{wrong:?}"),
        }
        // One flipped bit.
        let mut flipped = sealed.clone();
        flipped.ciphertext[0] ^= 1;
        assert!(matches!(
            key.open("approval_key", &flipped),
            Err(SealError::Damaged { .. })
        ));
        // Nonces are fresh each time.
        let again = key.seal("approval_key", b"the secret").expect("seal");
        assert_ne!(again.nonce, sealed.nonce);
    }

    #[test]
    fn keys_parse_from_base64_or_hex_and_errors_do_not_repeat_them() {
        let key = MasterKey::generate().expect("key");
        let text = key.to_base64();
        assert_eq!(MasterKey::parse(&text).expect("base64").id(), key.id());
        let hex_text = hex::encode(key.key.as_ref());
        assert_eq!(
            MasterKey::parse(&format!("{hex_text}\n"))
                .expect("hex")
                .id(),
            key.id()
        );
        for bad in ["short", "not base64 at all but long enough to try", ""] {
            let error = MasterKey::parse(bad).expect_err("refused");
            assert_eq!(error, SealError::KeyFormat);
            assert!(bad.is_empty() || !error.to_string().contains(bad));
        }
        assert!(!format!("{key:?}").contains(text.as_str()));
    }
}
