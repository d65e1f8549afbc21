//! Wrong dashboard tokens, counted per client address: past
//! [`MAX_FAILED_LOGINS`] in [`FAILED_LOGIN_WINDOW`], that address is refused
//! (`429` with `Retry-After`) until the window ends, whatever it sends, so a
//! guesser gets a handful of tries a quarter of an hour instead of as many
//! as the connection limits allow. Throttling failed attempts is what NIST
//! SP 800-63B §5.2.2 asks of a verifier and what OWASP's Authentication
//! Cheat Sheet recommends ("Login Throttling").
//!
//! Written here rather than with a rate-limiting crate: what is limited is
//! failures, not requests (a right token resets its address), and the whole
//! state is one small map.
//!
//! Addresses are counted as the server sees them: IPv4 whole, IPv6 by its
//! /64 (one host is usually given a whole /64, RFC 6177, and could otherwise
//! step through it). Behind a reverse proxy every client shares the proxy's
//! address, so a guesser can keep the login closed for everyone for a
//! window; sessions already open are not affected, nor are approvals.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Wrong tokens one address may send within [`FAILED_LOGIN_WINDOW`].
pub const MAX_FAILED_LOGINS: u32 = 5;
/// The window the failures are counted in, from the first of them.
pub const FAILED_LOGIN_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Addresses remembered at once; past it the stalest record is forgotten
/// (a flood from many addresses cannot grow memory without bound).
const MAX_TRACKED: usize = 4096;

/// Who failed: an IPv4 address, an IPv6 /64, or `None` when the server did
/// not say (requests handed to the router in-process, in tests).
type Client = Option<IpAddr>;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    since: Instant,
}

/// The failure counts; see the module documentation.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<Client, Failures>>,
}

fn client(address: Option<IpAddr>) -> Client {
    address.map(|ip| match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
        },
    })
}

impl LoginThrottle {
    /// `Err(wait)` when `address` has used up its failures: it may try
    /// again after `wait` (at least one second, for `Retry-After`).
    pub fn check(&self, address: Option<IpAddr>, now: Instant) -> Result<(), Duration> {
        let failures = self.lock();
        match failures.get(&client(address)) {
            Some(f) if f.count >= MAX_FAILED_LOGINS => {
                let ends = f.since + FAILED_LOGIN_WINDOW;
                if ends > now {
                    Err((ends - now).max(Duration::from_secs(1)))
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    /// Counts one wrong token from `address`.
    pub fn failed(&self, address: Option<IpAddr>, now: Instant) {
        let mut failures = self.lock();
        let key = client(address);
        if !failures.contains_key(&key) && failures.len() >= MAX_TRACKED {
            failures.retain(|_, f| f.since + FAILED_LOGIN_WINDOW > now);
            if failures.len() >= MAX_TRACKED
                && let Some(stalest) = failures
                    .iter()
                    .min_by_key(|(_, f)| f.since)
                    .map(|(k, _)| *k)
            {
                failures.remove(&stalest);
            }
        }
        let entry = failures.entry(key).or_insert(Failures {
            count: 0,
            since: now,
        });
        if entry.since + FAILED_LOGIN_WINDOW <= now {
            *entry = Failures {
                count: 0,
                since: now,
            };
        }
        entry.count = entry.count.saturating_add(1);
    }

    /// A right token from `address`: its count starts again.
    pub fn succeeded(&self, address: Option<IpAddr>) {
        self.lock().remove(&client(address));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Client, Failures>> {
        self.failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().expect("address"))
    }

    #[test]
    fn the_sixth_wrong_token_in_a_window_is_refused_until_it_ends() {
        let throttle = LoginThrottle::default();
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        for n in 0..u64::from(MAX_FAILED_LOGINS) {
            assert!(throttle.check(ip("192.0.2.7"), at(n)).is_ok(), "try {n}");
            throttle.failed(ip("192.0.2.7"), at(n));
        }
        let wait = throttle
            .check(ip("192.0.2.7"), at(60))
            .expect_err("locked out");
        assert_eq!(wait, FAILED_LOGIN_WINDOW - Duration::from_secs(60));
        assert!(
            throttle.check(ip("192.0.2.8"), at(60)).is_ok(),
            "another address is not affected"
        );
        assert!(
            throttle
                .check(ip("192.0.2.7"), start + FAILED_LOGIN_WINDOW)
                .is_ok(),
            "the window ended"
        );
        // A new window counts from its first failure.
        throttle.failed(ip("192.0.2.7"), start + FAILED_LOGIN_WINDOW);
        assert!(
            throttle
                .check(ip("192.0.2.7"), start + FAILED_LOGIN_WINDOW)
                .is_ok()
        );
    }

    #[test]
    fn a_right_token_resets_the_count() {
        let throttle = LoginThrottle::default();
        let now = Instant::now();
        for _ in 0..MAX_FAILED_LOGINS - 1 {
            throttle.failed(ip("192.0.2.7"), now);
        }
        throttle.succeeded(ip("192.0.2.7"));
        for _ in 0..MAX_FAILED_LOGINS - 1 {
            throttle.failed(ip("192.0.2.7"), now);
        }
        assert!(throttle.check(ip("192.0.2.7"), now).is_ok());
    }

    #[test]
    fn an_ipv6_host_cannot_step_through_its_slash_64() {
        let throttle = LoginThrottle::default();
        let now = Instant::now();
        for n in 0..MAX_FAILED_LOGINS {
            throttle.failed(ip(&format!("2001:db8:1:2::{n:x}")), now);
        }
        assert!(throttle.check(ip("2001:db8:1:2:ffff::1"), now).is_err());
        assert!(throttle.check(ip("2001:db8:1:3::1"), now).is_ok());
        // An IPv4-mapped address is its IPv4 address.
        for _ in 0..MAX_FAILED_LOGINS {
            throttle.failed(ip("::ffff:192.0.2.9"), now);
        }
        assert!(throttle.check(ip("192.0.2.9"), now).is_err());
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_addresses() {
        let throttle = LoginThrottle::default();
        let now = Instant::now();
        for n in 0..(MAX_TRACKED as u32 + 100) {
            throttle.failed(Some(IpAddr::V4(n.into())), now);
        }
        assert!(throttle.lock().len() <= MAX_TRACKED);
    }
}
