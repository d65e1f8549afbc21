//! `X-Hub-Signature-256`: the signature GitHub sends with every webhook
//! delivery, HMAC-SHA256 of the raw request body keyed with the webhook
//! secret, as `sha256=` and 64 lowercase hex digits (GitHub Docs,
//! "Validating webhook deliveries").
//!
//! Checked over the body's bytes exactly as received, before anything
//! parses them, and compared in constant time (`Mac::verify_slice`), so a
//! forger learns nothing from how long a wrong guess took.

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// The request header that carries the signature.
pub const HEADER: &str = "X-Hub-Signature-256";

const PREFIX: &[u8] = b"sha256=";

/// Why a delivery's signature was refused. The messages name no secret and
/// echo nothing the sender sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no X-Hub-Signature-256 header")]
    Missing,
    #[error("the X-Hub-Signature-256 header is not `sha256=` and 64 hex digits")]
    Malformed,
    #[error("the X-Hub-Signature-256 header does not match the body")]
    Mismatch,
}

/// Checks `header` (the `X-Hub-Signature-256` value, `None` when absent)
/// against `body` keyed with `secret`.
///
/// # Errors
/// [`SignatureError::Missing`], [`SignatureError::Malformed`] (not
/// `sha256=` followed by 64 hex digits; upper-case digits are accepted), or
/// [`SignatureError::Mismatch`].
pub fn verify(
    secret: &SecretString,
    body: &[u8],
    header: Option<&[u8]>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let digits = header
        .strip_prefix(PREFIX)
        .ok_or(SignatureError::Malformed)?;
    let mut tag = [0u8; 32];
    hex::decode_to_slice(digits, &mut tag).map_err(|_| SignatureError::Malformed)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
        .map_err(|_| SignatureError::Mismatch)?;
    mac.update(body);
    mac.verify_slice(&tag).map_err(|_| SignatureError::Mismatch)
}

/// The header value GitHub would send for `body`: for the GitHub stand-in
/// in tests, and for anyone checking a delivery by hand.
pub fn sign(secret: &SecretString, body: &[u8]) -> String {
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published example (GitHub Docs, "Validating webhook deliveries",
    /// section "Testing the webhook payload validation"; also in
    /// `../shared/data/vectors/github_webhook_signature.json`).
    const SECRET: &str = "It's a Secret to Everybody";
    const PAYLOAD: &[u8] = b"Hello, World!";
    const SIGNATURE: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[test]
    fn the_published_example_verifies_and_signs_the_same() {
        assert_eq!(
            verify(&secret(SECRET), PAYLOAD, Some(SIGNATURE.as_bytes())),
            Ok(())
        );
        assert_eq!(sign(&secret(SECRET), PAYLOAD), SIGNATURE);
        // Hex digits in upper case are the same signature.
        let upper = format!("sha256={}", SIGNATURE[7..].to_uppercase());
        assert_eq!(
            verify(&secret(SECRET), PAYLOAD, Some(upper.as_bytes())),
            Ok(())
        );
    }

    #[test]
    fn the_shared_vector_file_verifies_when_present() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/data/vectors/github_webhook_signature.json");
        let Ok(text) = std::fs::read_to_string(&path) else {
            // As every test with an outside corpus: skipped on a user's
            // machine, a failure under CI, so CI always runs it.
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{} not found: under CI=true the shared vectors must be beside the clone",
                path.display()
            );
            println!(
                "skipped: {} not found (the constants above are the same vector)",
                path.display()
            );
            return;
        };
        let vector: serde_json::Value = serde_json::from_str(&text).expect("json");
        let secret = secret(vector["secret"].as_str().expect("secret"));
        let payload = vector["payload"].as_str().expect("payload").as_bytes();
        let header = vector["expected_x_hub_signature_256"]
            .as_str()
            .expect("header");
        assert_eq!(verify(&secret, payload, Some(header.as_bytes())), Ok(()));
        assert_eq!(sign(&secret, payload), header);
    }

    #[test]
    fn anything_else_is_refused() {
        let s = secret(SECRET);
        assert_eq!(verify(&s, PAYLOAD, None), Err(SignatureError::Missing));
        for malformed in [
            "",
            "sha256=",
            "sha1=757107ea0eb2509fc211221cce984b8a37570b6d",
            &SIGNATURE[7..],
            &SIGNATURE[..SIGNATURE.len() - 1],
            &format!("{SIGNATURE}0"),
            &format!("{}zz", &SIGNATURE[..SIGNATURE.len() - 2]),
            &format!(" {SIGNATURE}"),
        ] {
            assert_eq!(
                verify(&s, PAYLOAD, Some(malformed.as_bytes())),
                Err(SignatureError::Malformed),
                "{malformed:?}"
            );
        }
        // A body changed by one byte, a wrong secret, a stale secret.
        assert_eq!(
            verify(&s, b"Hello, World?", Some(SIGNATURE.as_bytes())),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(
                &secret("another secret"),
                PAYLOAD,
                Some(SIGNATURE.as_bytes())
            ),
            Err(SignatureError::Mismatch)
        );
        let flipped = format!("{}8", &SIGNATURE[..SIGNATURE.len() - 1]);
        assert_eq!(
            verify(&s, PAYLOAD, Some(flipped.as_bytes())),
            Err(SignatureError::Mismatch)
        );
        // Signed over other bytes that parse as the same JSON: refused, the
        // check is over the raw body.
        let body = br#"{"action":"closed"}"#;
        let header = sign(&s, body);
        assert_eq!(
            verify(&s, br#"{ "action": "closed" }"#, Some(header.as_bytes())),
            Err(SignatureError::Mismatch)
        );
    }
}
