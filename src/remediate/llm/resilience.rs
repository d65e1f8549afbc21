//! Retries, a circuit breaker and the budget gate, around any provider.
//!
//! Order of a call: budget check (nothing sent when it is spent), breaker
//! (nothing sent while open), then up to `max_attempts` attempts with
//! jittered exponential backoff, honouring `Retry-After`. Only "provider
//! unavailable" errors are retried and counted by the breaker (429, 5xx, 529,
//! timeouts, connection failures); a 4xx, a refusal or a malformed answer is
//! the same on every try, and says nothing about the provider's health.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{Budget, ChatProvider, ChatRequest, ChatResponse, LlmError, Redacted};

/// Time, injectable so tests neither sleep nor race the wall clock.
#[async_trait]
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> Instant;
    async fn sleep(&self, duration: Duration);
}

/// Real time, through tokio (so `#[tokio::test(start_paused = true)]` works too).
#[derive(Debug, Default, Clone, Copy)]
pub struct TokioClock;

#[async_trait]
impl Clock for TokioClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// A clock that moves only when told or slept on, and remembers every sleep.
/// For tests: a wait is asserted exactly, and a real HTTP call is unaffected
/// (tokio's paused time would fire reqwest's timeouts while a socket waits).
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    state: Mutex<(Duration, Vec<Duration>)>,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            state: Mutex::new((Duration::ZERO, Vec::new())),
        }
    }
}

impl ManualClock {
    pub fn advance(&self, by: Duration) {
        self.lock().0 += by;
    }
    /// Every `sleep` so far, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.lock().1.clone()
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, (Duration, Vec<Duration>)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + self.lock().0
    }
    async fn sleep(&self, duration: Duration) {
        let mut state = self.lock();
        state.0 += duration;
        state.1.push(duration);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResiliencePolicy {
    /// Attempts per call, the first included. 1 = no retry.
    pub max_attempts: u32,
    pub backoff_base: Duration,
    /// Caps both the computed backoff and a provider's `Retry-After`.
    pub backoff_max: Duration,
    /// Consecutive failed calls (after their retries) that open the breaker.
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
}

impl ResiliencePolicy {
    /// Wait before attempt `attempt + 1` (attempt counts from 1): the
    /// provider's `Retry-After` if it gave one, else `base · 2^(attempt-1)`
    /// with "equal jitter" (half fixed, half random) so clients that failed
    /// together do not retry together, yet never retry at once.
    fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(asked) = retry_after {
            return asked.min(self.backoff_max);
        }
        let exponent = attempt.saturating_sub(1).min(20);
        let full = self
            .backoff_base
            .saturating_mul(1 << exponent)
            .min(self.backoff_max);
        let half = full / 2;
        let jitter_ms = fastrand::u64(0..=half.as_millis() as u64);
        half + Duration::from_millis(jitter_ms)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BreakerState {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// After the cool-down: one trial call is out; others fail fast.
    HalfOpen,
}

/// A provider wrapped with retries, a circuit breaker and a budget.
#[derive(Debug)]
pub struct Resilient<P> {
    inner: P,
    policy: ResiliencePolicy,
    budget: Arc<dyn Budget>,
    clock: Arc<dyn Clock>,
    breaker: Arc<Mutex<BreakerState>>,
}

impl<P: ChatProvider> Resilient<P> {
    pub fn new(
        inner: P,
        policy: ResiliencePolicy,
        budget: Arc<dyn Budget>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            inner,
            policy,
            budget,
            clock,
            breaker: Arc::new(Mutex::new(BreakerState::Closed { failures: 0 })),
        }
    }

    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// Lets a call through, or says how long until the breaker lets one.
    fn admit(&self) -> Result<TrialGuard, LlmError> {
        let now = self.clock.now();
        let mut state = lock(&self.breaker);
        let open = |retry_in| LlmError::CircuitOpen {
            provider: self.inner.name().to_owned(),
            retry_in,
        };
        match *state {
            BreakerState::Closed { .. } => Ok(TrialGuard::none()),
            BreakerState::Open { until } if now < until => Err(open(until - now)),
            BreakerState::Open { .. } => {
                *state = BreakerState::HalfOpen;
                Ok(TrialGuard::trial(Arc::clone(&self.breaker), now))
            }
            BreakerState::HalfOpen => Err(open(Duration::ZERO)),
        }
    }

    fn settle(&self, guard: TrialGuard, healthy: bool) {
        guard.settled();
        let mut state = lock(&self.breaker);
        if healthy {
            *state = BreakerState::Closed { failures: 0 };
            return;
        }
        let failures = match *state {
            BreakerState::Closed { failures } => failures.saturating_add(1),
            // A failed trial, or a call admitted before the breaker opened.
            BreakerState::HalfOpen | BreakerState::Open { .. } => self.policy.breaker_failures,
        };
        *state = if failures >= self.policy.breaker_failures {
            tracing::warn!(
                provider = self.inner.name(),
                cooldown_secs = self.policy.breaker_cooldown.as_secs(),
                "circuit opened after repeated failures"
            );
            BreakerState::Open {
                until: self.clock.now() + self.policy.breaker_cooldown,
            }
        } else {
            BreakerState::Closed { failures }
        };
    }
}

fn lock(breaker: &Mutex<BreakerState>) -> std::sync::MutexGuard<'_, BreakerState> {
    // The state is a plain enum, valid whatever a panicking holder did.
    breaker.lock().unwrap_or_else(|p| p.into_inner())
}

/// Puts a half-open breaker back to "open, try again now" if the trial call
/// is dropped (cancelled) before it settles, so the breaker cannot stay
/// half-open forever with no trial in flight.
struct TrialGuard {
    trial: Option<(Arc<Mutex<BreakerState>>, Instant)>,
}

impl TrialGuard {
    fn none() -> Self {
        Self { trial: None }
    }
    fn trial(breaker: Arc<Mutex<BreakerState>>, now: Instant) -> Self {
        Self {
            trial: Some((breaker, now)),
        }
    }
    fn settled(mut self) {
        self.trial = None;
    }
}

impl Drop for TrialGuard {
    fn drop(&mut self) {
        if let Some((breaker, now)) = self.trial.take() {
            let mut state = lock(&breaker);
            if *state == BreakerState::HalfOpen {
                *state = BreakerState::Open { until: now };
            }
        }
    }
}

#[async_trait]
impl<P: ChatProvider> ChatProvider for Resilient<P> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn model(&self) -> &str {
        self.inner.model()
    }

    async fn complete(&self, request: &Redacted<ChatRequest>) -> Result<ChatResponse, LlmError> {
        let provider = self.inner.name();
        self.budget
            .check(provider, request.get().estimated_tokens())
            .await?;
        let guard = self.admit()?;
        let max_attempts = self.policy.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            let result = self.inner.complete(request).await;
            let outcome = match &result {
                Ok(_) => "ok",
                Err(error) if error.is_retryable() && attempt < max_attempts => "retried",
                Err(_) => "error",
            };
            metrics::counter!(
                crate::exposition::PROVIDER_REQUESTS_TOTAL,
                "provider" => provider.to_owned(),
                "outcome" => outcome
            )
            .increment(1);
            match result {
                Ok(response) => {
                    self.settle(guard, true);
                    self.budget.record(provider, response.usage).await;
                    return Ok(response);
                }
                Err(error) if error.is_retryable() && attempt < max_attempts => {
                    let wait = self.policy.delay(attempt, error.retry_after());
                    tracing::info!(
                        provider,
                        attempt,
                        wait_ms = wait.as_millis() as u64,
                        error = %error,
                        "retrying"
                    );
                    self.clock.sleep(wait).await;
                    attempt += 1;
                }
                Err(error) => {
                    // Only unavailability counts against the provider's health.
                    self.settle(guard, !error.is_retryable());
                    if let Some(usage) = error.billed_usage() {
                        self.budget.record(provider, usage).await;
                    }
                    return Err(error);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ResiliencePolicy {
        ResiliencePolicy {
            max_attempts: 3,
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(5),
            breaker_failures: 2,
            breaker_cooldown: Duration::from_secs(30),
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let p = policy();
        for _ in 0..100 {
            let first = p.delay(1, None);
            assert!((Duration::from_millis(100)..=Duration::from_millis(200)).contains(&first));
            let third = p.delay(3, None);
            assert!((Duration::from_millis(400)..=Duration::from_millis(800)).contains(&third));
            assert!(p.delay(30, None) <= Duration::from_secs(5));
        }
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let p = policy();
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(3600))),
            Duration::from_secs(5)
        );
    }
}
