//! What can go wrong talking to a model, in terms a caller can act on.
//!
//! Messages never carry the API key or the request body: provider messages
//! are passed through [`crate::llm::http`]'s sanitiser (the key is replaced,
//! the length capped), transport errors are stripped of their URL, and no
//! variant has a field for the prompt.

use std::time::Duration;

use super::Usage;

/// Which daily limit ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetLimitKind {
    Requests,
    Tokens,
}

impl BudgetLimitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetLimitKind::Requests => "request",
            BudgetLimitKind::Tokens => "token",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// The settings cannot make a working provider. Raised by `build`, never mid-call.
    #[error("LLM settings: {0}")]
    Config(String),
    /// The daily budget could not be read (its database is unavailable):
    /// treated as spent, so nothing is sent blind.
    #[error("the model budget cannot be read: {0}")]
    BudgetUnavailable(String),

    /// The request cannot be sent as it is (caught here, before the network).
    #[error("{provider}: the request is invalid: {message}")]
    InvalidRequest {
        provider: &'static str,
        message: String,
    },

    /// 401 or 403. Not retried: the same key will fail the same way.
    #[error(
        "{provider}: the API key was refused (HTTP {status}{detail}); check the key and that it may use this model"
    )]
    Auth {
        provider: &'static str,
        status: u16,
        /// The provider's error type or code, never its free text (some echo part of the key).
        detail: String,
    },

    /// Any other 4xx: the provider understood and refused the request (unknown
    /// model, schema it does not support, …). Not retried.
    #[error("{provider}: HTTP {status}: {message}")]
    Rejected {
        provider: &'static str,
        status: u16,
        message: String,
    },

    /// 429, 500, 502, 503, 504 or 529, still failing after the retries.
    #[error("{provider}: unavailable (HTTP {status}: {message}){}", retry_hint(.retry_after))]
    Unavailable {
        provider: &'static str,
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },

    #[error("{provider}: no answer within {}s; raise the timeout or lower max_output_tokens", .after.as_secs())]
    Timeout {
        provider: &'static str,
        after: Duration,
    },

    /// DNS, TCP or TLS failure before any answer.
    #[error("{provider}: cannot reach the API: {message}")]
    Connect {
        provider: &'static str,
        message: String,
    },

    /// The answer is not what the documented format promises: not JSON, no
    /// candidate, no tool call, a field of the wrong type. Not retried (a
    /// retry costs tokens again and the same prompt tends to fail the same way).
    #[error("{provider}: malformed answer: {message}")]
    Malformed {
        provider: &'static str,
        message: String,
        usage: Option<Usage>,
    },

    /// The model or its safety filter declined (refusal, SAFETY, blocked prompt, content filter).
    #[error("{provider}: the model declined to answer: {reason}")]
    Refused {
        provider: &'static str,
        reason: String,
        usage: Option<Usage>,
    },

    /// The answer hit `max_output_tokens` and is cut off.
    #[error(
        "{provider}: the answer was cut off at max_output_tokens; raise it or shorten the schema"
    )]
    Truncated {
        provider: &'static str,
        usage: Option<Usage>,
    },

    /// Recent calls kept failing; no request is sent until the cool-down ends.
    #[error("{provider}: circuit open after repeated failures; next try in {}s", .retry_in.as_secs().max(1))]
    CircuitOpen {
        provider: String,
        retry_in: Duration,
    },

    #[error(
        "{provider}: the daily {} budget is used up ({used} of {limit}); it resets at 00:00 UTC, or raise the limit",
        .kind.as_str()
    )]
    BudgetExhausted {
        provider: String,
        kind: BudgetLimitKind,
        used: u64,
        limit: u64,
    },
}

fn retry_hint(retry_after: &Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!("; the provider asks to retry after {}s", d.as_secs()),
        None => String::new(),
    }
}

impl LlmError {
    /// Worth another attempt: the provider is overloaded or unreachable, and
    /// the same request may succeed in a moment.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            LlmError::Unavailable { .. } | LlmError::Timeout { .. } | LlmError::Connect { .. }
        )
    }

    /// The wait the provider asked for (`Retry-After`), if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            LlmError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Tokens the provider billed even though the call failed (cut-off,
    /// refused or malformed answers are still paid for), so budgets count them.
    pub fn billed_usage(&self) -> Option<Usage> {
        match self {
            LlmError::Malformed { usage, .. }
            | LlmError::Refused { usage, .. }
            | LlmError::Truncated { usage, .. } => *usage,
            _ => None,
        }
    }
}
