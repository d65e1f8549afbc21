//! Clients for hosted and local language models that answer in JSON.
//!
//! Three wire formats cover what operators run: Gemini `generateContent`,
//! OpenAI-compatible Chat Completions (OpenAI, Azure OpenAI's v1 endpoint,
//! vLLM, Ollama, llama.cpp) and Anthropic Messages. Each provider turns one
//! [`ChatRequest`] into one structured JSON answer and nothing more: no
//! streaming, no conversation state, no tools beyond the one Anthropic needs
//! to force a schema.
//!
//! The boundary is a type: [`ChatProvider::complete`] takes only a
//! [`Redacted`] request, so nothing reaches a provider without passing the
//! redactor. Retries, the circuit breaker and the daily budget live in
//! [`Resilient`], a wrapper, so the wire clients stay small and testable.

mod anthropic;
mod budget;
mod error;
mod gemini;
mod http;
mod openai;
mod resilience;
mod settings;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use crate::redact::Redacted;

pub use anthropic::AnthropicProvider;
pub use budget::{Budget, BudgetLimits, InMemoryBudget};
pub use error::{BudgetLimitKind, LlmError};
pub use gemini::GeminiProvider;
pub use http::http_client;
pub use openai::OpenAiProvider;
pub use resilience::{Clock, ManualClock, ResiliencePolicy, Resilient, TokioClock};
pub use settings::{
    OpenAiAuth, ProviderKind, ProviderSettings, TokenLimitField, build, build_with,
};

/// What is asked of a model.
///
/// Serialize + Deserialize because the redactor round-trips it through JSON.
/// Only the strings are redacted; `schema` keeps its keys (the redactor keeps
/// object keys) but its string values (descriptions, enum values) pass
/// through the redactor too, so keep secrets out of the schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// Instructions: the system prompt (Gemini `systemInstruction`, OpenAI
    /// `system` message, Anthropic top-level `system`).
    pub system: String,
    /// The user turn. Not called `user`: the redactor treats a string under
    /// a key named `user` (or `owner`, `contact`, …) as a person's name and
    /// would replace the whole prompt with `<NAME_1>`.
    pub prompt: String,
    /// Names the answer's shape for the provider (OpenAI's `json_schema.name`,
    /// Anthropic's tool name). Both accept only `^[a-zA-Z0-9_-]{1,64}$`.
    pub schema_name: String,
    /// JSON Schema of the answer. Write it in the subset all three providers
    /// accept: an object at the root, `additionalProperties: false`, every
    /// property listed in `required` (OpenAI strict mode demands both), no
    /// `$ref` cycles, and only `type`, `properties`, `required`, `items`,
    /// `enum`, `description`, `anyOf` and the numeric/array bounds (Gemini's
    /// `responseJsonSchema` supports no more).
    pub schema: serde_json::Value,
    pub max_output_tokens: u32,
    pub temperature: f32,
}

impl ChatRequest {
    /// A deliberately rough token estimate for budget checks, before the
    /// provider reports the real count: about four bytes of English or JSON
    /// per token for the prompt and schema, plus the whole output allowance.
    /// It overestimates rather than under, which is the safe side for a budget.
    pub fn estimated_tokens(&self) -> u64 {
        let schema_len = self.schema.to_string().len();
        let prompt_bytes = self.system.len() + self.prompt.len() + schema_len;
        (prompt_bytes as u64).div_ceil(4) + u64::from(self.max_output_tokens)
    }
}

/// Tokens billed for one call, as the provider reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    /// Includes reasoning ("thinking") tokens where the provider bills them as output.
    pub output_tokens: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }

    /// Cost at the given list prices (USD per million tokens). An estimate:
    /// cached-input discounts and batch pricing are not modelled.
    pub fn estimated_cost_usd(
        &self,
        price_per_million_input: f64,
        price_per_million_output: f64,
    ) -> f64 {
        (self.input_tokens as f64 * price_per_million_input
            + self.output_tokens as f64 * price_per_million_output)
            / 1_000_000.0
    }
}

/// A structured answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    /// The answer, parsed; the caller checks it against its own types.
    pub json: serde_json::Value,
    pub usage: Usage,
    /// The model that answered, as the provider names it (may carry a version suffix).
    pub model: String,
    /// `gemini`, `openai` or `anthropic`.
    pub provider: &'static str,
}

/// A client for one model at one provider.
#[async_trait]
pub trait ChatProvider: Send + Sync + std::fmt::Debug {
    /// Stable short name: `gemini`, `openai` or `anthropic`. Used as the budget key.
    fn name(&self) -> &str;
    fn model(&self) -> &str;
    async fn complete(&self, request: &Redacted<ChatRequest>) -> Result<ChatResponse, LlmError>;
}

#[async_trait]
impl<P: ChatProvider + ?Sized> ChatProvider for Box<P> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn model(&self) -> &str {
        (**self).model()
    }
    async fn complete(&self, request: &Redacted<ChatRequest>) -> Result<ChatResponse, LlmError> {
        (**self).complete(request).await
    }
}

/// Checks what every provider would reject, so a bad request fails here
/// with a clear message instead of as a provider 400, the same way whichever
/// provider is configured.
fn check_request(provider: &'static str, request: &ChatRequest) -> Result<(), LlmError> {
    check_schema_name(provider, &request.schema_name)?;
    let invalid = |message: &str| {
        Err(LlmError::InvalidRequest {
            provider,
            message: message.to_owned(),
        })
    };
    if request.max_output_tokens == 0 {
        return invalid("max_output_tokens must be at least 1");
    }
    // serde_json writes NaN as `null`; and 0..=1 is the range all three accept.
    if !(0.0..=1.0).contains(&request.temperature) {
        return invalid(
            "temperature must be between 0 and 1 (Anthropic's range; the others accept it too)",
        );
    }
    if !request.schema.is_object() {
        return invalid("schema must be a JSON Schema object");
    }
    Ok(())
}

/// `schema_name` against the rule OpenAI and Anthropic both document:
/// `^[a-zA-Z0-9_-]{1,64}$`.
fn check_schema_name(provider: &'static str, name: &str) -> Result<(), LlmError> {
    let valid = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(LlmError::InvalidRequest {
            provider,
            message: format!("schema_name `{name}` must be 1 to 64 letters, digits, `_` or `-`"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_is_priced_per_million_tokens() {
        let usage = Usage {
            input_tokens: 2_000_000,
            output_tokens: 500_000,
        };
        let cost = usage.estimated_cost_usd(0.30, 2.50);
        assert!((cost - (0.60 + 1.25)).abs() < 1e-9, "{cost}");
    }

    #[test]
    fn estimate_covers_the_whole_output_allowance() {
        let request = ChatRequest {
            system: "s".repeat(400),
            prompt: "u".repeat(400),
            schema_name: "answer".into(),
            schema: serde_json::json!({}),
            max_output_tokens: 1000,
            temperature: 0.0,
        };
        // 802 bytes of prompt and schema → 201 tokens, plus the 1000 allowed.
        assert_eq!(request.estimated_tokens(), 1201);
    }

    #[test]
    fn the_redactor_leaves_draco_s_own_text_in_a_request_alone() {
        // A field named like a person key (`user`, `owner`) would be replaced
        // whole by `<NAME_1>`; plain instructions must come through unchanged.
        let request = ChatRequest {
            system: "Choose one remediation template.".into(),
            prompt: "Which template closes port 22 on <ACCOUNT_ID_1>?".into(),
            schema_name: "draco_remediation".into(),
            schema: serde_json::json!({"type": "object", "description": "the answer"}),
            max_output_tokens: 1,
            temperature: 0.0,
        };
        let (redacted, vault) = crate::redact::Redactor::default()
            .redact(&request)
            .expect("redacts");
        assert_eq!(redacted.get(), &request);
        assert!(vault.is_empty());
    }

    #[test]
    fn requests_every_provider_would_refuse_fail_early() {
        let good = ChatRequest {
            system: "s".into(),
            prompt: "p".into(),
            schema_name: "answer".into(),
            schema: serde_json::json!({"type": "object"}),
            max_output_tokens: 10,
            temperature: 0.2,
        };
        assert!(check_request("gemini", &good).is_ok());
        for bad in [
            ChatRequest {
                temperature: f32::NAN,
                ..good.clone()
            },
            ChatRequest {
                temperature: 1.5,
                ..good.clone()
            },
            ChatRequest {
                max_output_tokens: 0,
                ..good.clone()
            },
            ChatRequest {
                schema: serde_json::json!(true),
                ..good.clone()
            },
        ] {
            assert!(matches!(
                check_request("gemini", &bad),
                Err(LlmError::InvalidRequest { .. })
            ));
        }
    }

    #[test]
    fn schema_names_follow_the_documented_pattern() {
        assert!(check_schema_name("openai", "remediation_choice-1").is_ok());
        assert!(check_schema_name("openai", "").is_err());
        assert!(check_schema_name("openai", "has space").is_err());
        assert!(check_schema_name("openai", &"x".repeat(65)).is_err());
    }
}
