//! Google Gemini API, `models.generateContent` (v1beta).
//!
//! Documented wire format relied on (ai.google.dev/api/generate-content,
//! ai.google.dev/gemini-api/docs/structured-output, and the field docs of
//! Google's own `google-genai` SDKs):
//! - `POST {base}/v1beta/models/{model}:generateContent`, key in the
//!   `x-goog-api-key` header (the `?key=` query form is also accepted by
//!   Google but would put the key in every logged URL).
//! - request: `systemInstruction.parts[].text`, `contents[].role` = `user`,
//!   `contents[].parts[].text`, `generationConfig.{responseMimeType,
//!   responseJsonSchema, maxOutputTokens, temperature}`.
//!   `responseJsonSchema` is "an alternative to `responseSchema` that accepts
//!   JSON Schema" (`responseSchema` takes Google's OpenAPI-3.0 subset with
//!   upper-case types), so our schema goes in unconverted;
//!   `responseMimeType: application/json` is required with it.
//! - response: `candidates[0].content.parts[].text` (parts flagged
//!   `thought: true` are the model's reasoning, skipped),
//!   `candidates[0].finishReason` (`STOP`, `MAX_TOKENS`, `SAFETY`,
//!   `RECITATION`, `LANGUAGE`, `OTHER`, `BLOCKLIST`, `PROHIBITED_CONTENT`,
//!   `SPII`, `MALFORMED_FUNCTION_CALL`, `IMAGE_SAFETY`, …),
//!   `promptFeedback.blockReason` (set when the prompt was blocked and no
//!   candidate returned), `usageMetadata.{promptTokenCount,
//!   candidatesTokenCount, thoughtsTokenCount}`, `modelVersion`.
//! - errors: `{"error": {"code", "message", "status"}}`.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Client, Url};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::http::{Call, endpoint, parse_json_text};
use super::{ChatProvider, ChatRequest, ChatResponse, LlmError, Redacted, Usage, check_request};

const NAME: &str = "gemini";

/// Gemini over the Generative Language API.
#[derive(Debug)]
pub struct GeminiProvider {
    client: Client,
    url: Url,
    model: String,
    /// Marked sensitive: its `Debug` prints `Sensitive`, and hyper keeps it out of HPACK tables.
    key_header: HeaderValue,
    api_key: SecretString,
    timeout: Duration,
}

impl GeminiProvider {
    pub const DEFAULT_BASE_URL: &'static str = "https://generativelanguage.googleapis.com";
    /// A default only: fast, cheap, supports `responseJsonSchema`.
    pub const DEFAULT_MODEL: &'static str = "gemini-2.5-flash";

    pub fn new(
        client: Client,
        base_url: &str,
        model: &str,
        api_key: SecretString,
        timeout: Duration,
    ) -> Result<Self, LlmError> {
        // Accept the resource name form (`models/gemini-2.5-flash`) too.
        let model = model.strip_prefix("models/").unwrap_or(model);
        let path_safe = !model.is_empty()
            && model
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !path_safe {
            return Err(LlmError::Config(format!(
                "Gemini model `{model}` must be a model id like `gemini-2.5-flash` (letters, digits, `-`, `_`, `.`)"
            )));
        }
        let url = endpoint(base_url, &format!("/v1beta/models/{model}:generateContent"))?;
        Ok(Self {
            client,
            url,
            model: model.to_owned(),
            key_header: super::settings::key_header(&api_key)?,
            api_key,
            timeout,
        })
    }
}

#[async_trait]
impl ChatProvider for GeminiProvider {
    fn name(&self) -> &str {
        NAME
    }

    fn model(&self) -> &str {
        &self.model
    }

    #[tracing::instrument(name = "gemini.generate_content", skip_all, fields(model = %self.model), err(Display, level = "warn"))]
    async fn complete(&self, request: &Redacted<ChatRequest>) -> Result<ChatResponse, LlmError> {
        let request = request.get();
        check_request(NAME, request)?;
        let body = GenerateContentRequest {
            system_instruction: Content {
                role: None,
                parts: [TextPart {
                    text: &request.system,
                }],
            },
            contents: [Content {
                role: Some("user"),
                parts: [TextPart {
                    text: &request.prompt,
                }],
            }],
            generation_config: GenerationConfig {
                response_mime_type: "application/json",
                response_json_schema: &request.schema,
                max_output_tokens: request.max_output_tokens,
                temperature: request.temperature,
            },
        };
        let mut headers = HeaderMap::new();
        headers.insert("x-goog-api-key", self.key_header.clone());
        let answer: GenerateContentResponse = Call {
            provider: NAME,
            client: &self.client,
            url: &self.url,
            headers,
            timeout: self.timeout,
            secret: Some(&self.api_key),
        }
        .post_json(&body)
        .await?;
        interpret(answer, &self.model)
    }
}

fn interpret(answer: GenerateContentResponse, model: &str) -> Result<ChatResponse, LlmError> {
    let usage = answer.usage_metadata.map(|u| Usage {
        input_tokens: u.prompt_token_count,
        // Thinking tokens are billed as output.
        output_tokens: u
            .candidates_token_count
            .saturating_add(u.thoughts_token_count),
    });
    if let Some(reason) = answer.prompt_feedback.and_then(|f| f.block_reason) {
        return Err(LlmError::Refused {
            provider: NAME,
            reason: format!("the prompt was blocked (blockReason {reason})"),
            usage,
        });
    }
    let Some(candidate) = answer.candidates.into_iter().next() else {
        return Err(LlmError::Malformed {
            provider: NAME,
            message: "no candidate in the answer".into(),
            usage,
        });
    };
    match candidate.finish_reason.as_deref() {
        None | Some("STOP") => {}
        Some("MAX_TOKENS") => {
            return Err(LlmError::Truncated {
                provider: NAME,
                usage,
            });
        }
        Some(
            reason @ ("SAFETY" | "RECITATION" | "LANGUAGE" | "BLOCKLIST" | "PROHIBITED_CONTENT"
            | "SPII" | "IMAGE_SAFETY"),
        ) => {
            return Err(LlmError::Refused {
                provider: NAME,
                reason: format!("finishReason {reason}"),
                usage,
            });
        }
        Some(other) => {
            return Err(LlmError::Malformed {
                provider: NAME,
                message: format!("generation stopped with finishReason {other}"),
                usage,
            });
        }
    }
    let text: String = candidate
        .content
        .map(|c| c.parts)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| !p.thought)
        .filter_map(|p| p.text)
        .collect();
    let usage = usage.unwrap_or_default();
    if text.trim().is_empty() {
        return Err(LlmError::Malformed {
            provider: NAME,
            message: "the candidate has no text part".into(),
            usage: Some(usage),
        });
    }
    let json = parse_json_text(NAME, &text, usage)?;
    Ok(ChatResponse {
        json,
        usage,
        model: answer.model_version.unwrap_or_else(|| model.to_owned()),
        provider: NAME,
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GenerateContentRequest<'a> {
    system_instruction: Content<'a>,
    contents: [Content<'a>; 1],
    generation_config: GenerationConfig<'a>,
}

#[derive(Serialize)]
struct Content<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    parts: [TextPart<'a>; 1],
}

#[derive(Serialize)]
struct TextPart<'a> {
    text: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GenerationConfig<'a> {
    response_mime_type: &'static str,
    response_json_schema: &'a Value,
    max_output_tokens: u32,
    temperature: f32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateContentResponse {
    #[serde(default)]
    candidates: Vec<Candidate>,
    prompt_feedback: Option<PromptFeedback>,
    usage_metadata: Option<UsageMetadata>,
    model_version: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    content: Option<CandidateContent>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct CandidateContent {
    #[serde(default)]
    parts: Vec<Part>,
}

#[derive(Deserialize)]
struct Part {
    text: Option<String>,
    #[serde(default)]
    thought: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    block_reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
    #[serde(default)]
    thoughts_token_count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<ChatResponse, LlmError> {
        let answer: GenerateContentResponse = serde_json::from_value(value).expect("shape");
        interpret(answer, "gemini-test")
    }

    #[test]
    fn thought_parts_are_skipped_and_thinking_is_billed_as_output() {
        let r = parse(json!({
            "candidates": [{"content": {"role": "model", "parts": [
                {"text": "let me think", "thought": true},
                {"text": "{\"ok\":"}, {"text": "true}"}
            ]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "thoughtsTokenCount": 7}
        }))
        .expect("answer");
        assert_eq!(r.json, json!({"ok": true}));
        assert_eq!(
            r.usage,
            Usage {
                input_tokens: 10,
                output_tokens: 12
            }
        );
        assert_eq!(r.model, "gemini-test");
    }

    #[test]
    fn blocked_prompt_and_safety_stop_are_refusals() {
        let blocked = parse(json!({"promptFeedback": {"blockReason": "SAFETY"}}));
        assert!(
            matches!(blocked, Err(LlmError::Refused { ref reason, .. }) if reason.contains("SAFETY"))
        );
        let safety = parse(json!({"candidates": [{"finishReason": "SAFETY"}]}));
        assert!(matches!(safety, Err(LlmError::Refused { .. })));
    }

    #[test]
    fn max_tokens_is_truncation_and_unknown_stop_is_malformed() {
        let cut = parse(
            json!({"candidates": [{"content": {"parts": [{"text": "{\"a\""}]}, "finishReason": "MAX_TOKENS"}],
            "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4}}),
        );
        assert!(
            matches!(cut, Err(LlmError::Truncated { usage: Some(u), .. }) if u.output_tokens == 4)
        );
        let odd = parse(json!({"candidates": [{"finishReason": "MALFORMED_FUNCTION_CALL"}]}));
        assert!(matches!(odd, Err(LlmError::Malformed { .. })));
        let none = parse(json!({"candidates": []}));
        assert!(matches!(none, Err(LlmError::Malformed { .. })));
    }

    #[test]
    fn model_ids_must_fit_in_the_path() {
        let client = Client::new();
        let key = SecretString::from("k");
        let ok = GeminiProvider::new(
            client.clone(),
            "https://x",
            "models/gemini-2.5-flash",
            key.clone(),
            Duration::from_secs(1),
        );
        assert_eq!(ok.expect("valid").model(), "gemini-2.5-flash");
        let bad = GeminiProvider::new(
            client,
            "https://x",
            "gemini?key=1",
            key,
            Duration::from_secs(1),
        );
        assert!(matches!(bad, Err(LlmError::Config(_))));
    }
}
