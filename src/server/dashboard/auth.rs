//! The dashboard's optional authentication: an operator token, typed once
//! on a login page, then a session cookie.
//!
//! Sessions live in this process's memory only (nothing about them is in
//! the database): a random 256-bit id in the cookie, its SHA-256 digest as
//! the key of the session map, an expiry. A restart, or another replica,
//! asks for the token again; that is the price of keeping no password or
//! session in the database. The token is compared in constant time
//! (`subtle`) over SHA-256 digests, so neither its content nor its length
//! shows in the time an answer takes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The one cookie the dashboard sets, and only when authentication is on.
pub const SESSION_COOKIE: &str = "draco_session";
/// How long a session lasts from login.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at once; past it the oldest is dropped (a flood of logins
/// with the right token cannot grow memory without bound).
const MAX_SESSIONS: usize = 1024;

/// The shortest operator token accepted (the config check refuses shorter).
pub const MIN_TOKEN_CHARS: usize = 16;

/// Why a token is refused (the token itself is never repeated).
pub fn check_token(token: &SecretString) -> Result<(), String> {
    let token = token.expose_secret();
    if token.chars().count() < MIN_TOKEN_CHARS {
        return Err(format!(
            "the dashboard token is too short: at least {MIN_TOKEN_CHARS} characters (e.g. `openssl rand -hex 32`)"
        ));
    }
    if token.chars().any(char::is_whitespace) {
        return Err("the dashboard token holds whitespace".into());
    }
    Ok(())
}

/// What the dashboard's routes check a request against.
pub struct DashboardAuth {
    /// SHA-256 of the operator token; `None`: authentication is off (the
    /// config check allowed it: loopback only).
    token_digest: Option<[u8; 32]>,
    /// Session id digest → expiry.
    sessions: Mutex<HashMap<[u8; 32], Instant>>,
    /// Whether the cookie is `Secure` (`server.public_url` is https).
    secure_cookie: bool,
    /// Wrong tokens per client address.
    throttle: super::throttle::LoginThrottle,
}

impl std::fmt::Debug for DashboardAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DashboardAuth")
            .field("token", &self.token_digest.map(|_| "(set)"))
            .field("secure_cookie", &self.secure_cookie)
            .finish_non_exhaustive()
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl DashboardAuth {
    /// Authentication with `token` (on), or none (`None`: off).
    pub fn new(token: Option<&SecretString>, secure_cookie: bool) -> Self {
        DashboardAuth {
            token_digest: token.map(|t| digest(t.expose_secret().as_bytes())),
            sessions: Mutex::new(HashMap::new()),
            secure_cookie,
            throttle: super::throttle::LoginThrottle::default(),
        }
    }

    /// The wrong-token counts the login page checks first.
    pub fn throttle(&self) -> &super::throttle::LoginThrottle {
        &self.throttle
    }

    /// Whether a login is needed.
    pub fn required(&self) -> bool {
        self.token_digest.is_some()
    }

    /// Whether `candidate` is the operator token: compared in constant time
    /// over both digests. Always false when authentication is off.
    pub fn token_matches(&self, candidate: &str) -> bool {
        match &self.token_digest {
            Some(expected) => bool::from(digest(candidate.as_bytes()).ct_eq(expected)),
            None => false,
        }
    }

    /// A new session: its id (for the cookie), recorded with its expiry.
    pub fn open_session(&self, now: Instant) -> Result<String, getrandom::Error> {
        let mut id = [0u8; 32];
        getrandom::fill(&mut id)?;
        let id = hex::encode(id);
        let mut sessions = self.lock();
        sessions.retain(|_, expiry| *expiry > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions.iter().min_by_key(|(_, e)| **e).map(|(k, _)| *k)
        {
            sessions.remove(&oldest);
        }
        sessions.insert(digest(id.as_bytes()), now + SESSION_LIFETIME);
        Ok(id)
    }

    /// Whether `id` names a live session.
    pub fn session_valid(&self, id: &str, now: Instant) -> bool {
        let key = digest(id.as_bytes());
        let mut sessions = self.lock();
        match sessions.get(&key) {
            Some(expiry) if *expiry > now => true,
            Some(_) => {
                sessions.remove(&key);
                false
            }
            None => false,
        }
    }

    /// Ends the session `id` (logout).
    pub fn close_session(&self, id: &str) {
        self.lock().remove(&digest(id.as_bytes()));
    }

    /// The `Set-Cookie` value that carries session `id`.
    pub fn session_cookie(&self, id: &str) -> String {
        format!(
            "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
            SESSION_LIFETIME.as_secs(),
            self.secure()
        )
    }

    /// The `Set-Cookie` value that removes the session cookie.
    pub fn cleared_cookie(&self) -> String {
        format!(
            "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
            self.secure()
        )
    }

    fn secure(&self) -> &'static str {
        if self.secure_cookie { "; Secure" } else { "" }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Instant>> {
        self.sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> DashboardAuth {
        DashboardAuth::new(Some(&SecretString::from("a-long-operator-token")), true)
    }

    #[test]
    fn only_the_exact_token_matches() {
        let auth = auth();
        assert!(auth.token_matches("a-long-operator-token"));
        assert!(!auth.token_matches("a-long-operator-toke"));
        assert!(!auth.token_matches("a-long-operator-token "));
        assert!(!auth.token_matches(""));
        let off = DashboardAuth::new(None, false);
        assert!(!off.required());
        assert!(!off.token_matches(""), "no token: nothing logs in");
    }

    #[test]
    fn sessions_expire_and_close() {
        let auth = auth();
        let now = Instant::now();
        let id = auth.open_session(now).unwrap();
        assert_eq!(id.len(), 64);
        assert!(auth.session_valid(&id, now));
        assert!(!auth.session_valid("forged", now));
        assert!(!auth.session_valid(&id, now + SESSION_LIFETIME));
        let id = auth.open_session(now).unwrap();
        auth.close_session(&id);
        assert!(!auth.session_valid(&id, now));
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_over_https() {
        let cookie = auth().session_cookie("abc");
        assert!(cookie.starts_with("draco_session=abc; Path=/; HttpOnly; SameSite=Strict"));
        assert!(cookie.ends_with("; Secure"));
        let plain = DashboardAuth::new(Some(&SecretString::from("x".repeat(20))), false);
        assert!(!plain.session_cookie("abc").contains("Secure"));
    }

    #[test]
    fn short_or_spaced_tokens_are_refused() {
        assert!(check_token(&SecretString::from("short")).is_err());
        assert!(check_token(&SecretString::from("sixteen chars ok")).is_err());
        assert!(check_token(&SecretString::from("0123456789abcdef")).is_ok());
    }
}
