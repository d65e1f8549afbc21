//! Anthropic Messages API.
//!
//! Structured output the documented way for this API: one tool whose
//! `input_schema` is our schema, forced with `tool_choice`, and the answer is
//! that tool call's `input`. Nothing is executed; the "tool" is a mould.
//!
//! Documented wire format relied on (docs.anthropic.com/en/api/messages,
//! platform.claude.com/docs/en/agents-and-tools/tool-use/define-tools,
//! docs.anthropic.com/en/api/errors, docs.anthropic.com/en/api/versioning):
//! - `POST {base}/v1/messages`, headers `x-api-key`, `anthropic-version:
//!   2023-06-01`, `content-type: application/json`.
//! - request: `model`, `max_tokens` (required), `system` (top level; there is
//!   no system role), `messages[]` of `{role: "user", content}`,
//!   `tools[]` of `{name, description, input_schema}` (name matches
//!   `^[a-zA-Z0-9_-]{1,64}$`), `tool_choice: {type: "tool", name}`, `temperature`.
//! - response: `content[]` blocks; the `{type: "tool_use", name, input}`
//!   block carries the answer; `stop_reason` (`end_turn`, `max_tokens`,
//!   `stop_sequence`, `tool_use`, `pause_turn`, `refusal`);
//!   `usage.{input_tokens, output_tokens, cache_creation_input_tokens,
//!   cache_read_input_tokens}`; `model`.
//! - errors: `{"type": "error", "error": {"type", "message"}, "request_id"}`;
//!   HTTP 529 `overloaded_error` is retryable like 503.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Client, Url};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::http::{Call, endpoint};
use super::{ChatProvider, ChatRequest, ChatResponse, LlmError, Redacted, Usage, check_request};

const NAME: &str = "anthropic";
/// The version this client's request and response shapes follow.
const ANTHROPIC_VERSION: &str = "2023-06-01";

#[derive(Debug)]
pub struct AnthropicProvider {
    client: Client,
    url: Url,
    model: String,
    key_header: HeaderValue,
    api_key: SecretString,
    timeout: Duration,
}

impl AnthropicProvider {
    pub const DEFAULT_BASE_URL: &'static str = "https://api.anthropic.com";
    /// A default only: the fast, low-cost tier, with forced tool use.
    pub const DEFAULT_MODEL: &'static str = "claude-haiku-4-5";

    pub fn new(
        client: Client,
        base_url: &str,
        model: &str,
        api_key: SecretString,
        timeout: Duration,
    ) -> Result<Self, LlmError> {
        if model.trim().is_empty() {
            return Err(LlmError::Config("the Anthropic model name is empty".into()));
        }
        Ok(Self {
            client,
            url: endpoint(base_url, "/v1/messages")?,
            model: model.to_owned(),
            key_header: super::settings::key_header(&api_key)?,
            api_key,
            timeout,
        })
    }
}

#[async_trait]
impl ChatProvider for AnthropicProvider {
    fn name(&self) -> &str {
        NAME
    }

    fn model(&self) -> &str {
        &self.model
    }

    #[tracing::instrument(name = "anthropic.messages", skip_all, fields(model = %self.model), err(Display, level = "warn"))]
    async fn complete(&self, request: &Redacted<ChatRequest>) -> Result<ChatResponse, LlmError> {
        let request = request.get();
        check_request(NAME, request)?;
        let body = MessagesRequest {
            model: &self.model,
            max_tokens: request.max_output_tokens,
            system: &request.system,
            messages: [UserMessage {
                role: "user",
                content: &request.prompt,
            }],
            tools: [Tool {
                name: &request.schema_name,
                description: "Record the answer. Call this exactly once; its input is the whole answer and must follow the schema.",
                input_schema: &request.schema,
            }],
            tool_choice: ToolChoice {
                kind: "tool",
                name: &request.schema_name,
            },
            temperature: request.temperature,
        };
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", self.key_header.clone());
        headers.insert(
            "anthropic-version",
            HeaderValue::from_static(ANTHROPIC_VERSION),
        );
        let answer: MessagesResponse = Call {
            provider: NAME,
            client: &self.client,
            url: &self.url,
            headers,
            timeout: self.timeout,
            secret: Some(&self.api_key),
        }
        .post_json(&body)
        .await?;
        interpret(answer, &request.schema_name, &self.model)
    }
}

fn interpret(answer: MessagesResponse, tool: &str, model: &str) -> Result<ChatResponse, LlmError> {
    let usage = answer.usage.map(|u| Usage {
        // Prompt caching is not used here, but if a proxy turns it on the
        // cached tokens are still input.
        input_tokens: u
            .input_tokens
            .saturating_add(u.cache_creation_input_tokens.unwrap_or(0))
            .saturating_add(u.cache_read_input_tokens.unwrap_or(0)),
        output_tokens: u.output_tokens,
    });
    match answer.stop_reason.as_deref() {
        Some("max_tokens") => {
            return Err(LlmError::Truncated {
                provider: NAME,
                usage,
            });
        }
        Some("refusal") => {
            return Err(LlmError::Refused {
                provider: NAME,
                reason: "stop_reason refusal".into(),
                usage,
            });
        }
        _ => {}
    }
    let input = answer.content.into_iter().find_map(|block| match block {
        ContentBlock::ToolUse { name, input } if name == tool => Some(input),
        _ => None,
    });
    let Some(json) = input else {
        return Err(LlmError::Malformed {
            provider: NAME,
            message: format!(
                "no `{tool}` tool_use block in the answer (stop_reason {})",
                answer.stop_reason.as_deref().unwrap_or("missing")
            ),
            usage,
        });
    };
    Ok(ChatResponse {
        json,
        usage: usage.unwrap_or_default(),
        model: answer.model.unwrap_or_else(|| model.to_owned()),
        provider: NAME,
    })
}

#[derive(Serialize)]
struct MessagesRequest<'a> {
    model: &'a str,
    max_tokens: u32,
    system: &'a str,
    messages: [UserMessage<'a>; 1],
    tools: [Tool<'a>; 1],
    tool_choice: ToolChoice<'a>,
    temperature: f32,
}

#[derive(Serialize)]
struct UserMessage<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Serialize)]
struct Tool<'a> {
    name: &'a str,
    description: &'static str,
    input_schema: &'a Value,
}

#[derive(Serialize)]
struct ToolChoice<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    name: &'a str,
}

#[derive(Deserialize)]
struct MessagesResponse {
    #[serde(default)]
    content: Vec<ContentBlock>,
    stop_reason: Option<String>,
    usage: Option<MessagesUsage>,
    model: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ContentBlock {
    ToolUse {
        name: String,
        input: Value,
    },
    /// `text`, `thinking` and block types added later: not the answer.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct MessagesUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<ChatResponse, LlmError> {
        interpret(serde_json::from_value(value).expect("shape"), "answer", "m")
    }

    #[test]
    fn the_named_tool_call_is_the_answer() {
        let r = parse(json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [{"type": "text", "text": "Here you go"},
                        {"type": "tool_use", "id": "toolu_1", "name": "answer", "input": {"ok": true}}],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 9, "output_tokens": 4, "cache_read_input_tokens": 1}}))
        .expect("answer");
        assert_eq!(r.json, json!({"ok": true}));
        assert_eq!(
            r.usage,
            Usage {
                input_tokens: 10,
                output_tokens: 4
            }
        );
        assert_eq!(r.model, "claude-x");
    }

    #[test]
    fn text_only_answer_is_malformed_and_max_tokens_truncated() {
        let text =
            parse(json!({"content": [{"type": "text", "text": "{}"}], "stop_reason": "end_turn"}));
        assert!(
            matches!(text, Err(LlmError::Malformed { ref message, .. }) if message.contains("end_turn"))
        );
        let cut = parse(
            json!({"content": [], "stop_reason": "max_tokens", "usage": {"input_tokens": 1, "output_tokens": 2}}),
        );
        assert!(matches!(cut, Err(LlmError::Truncated { .. })));
        let refused = parse(json!({"content": [], "stop_reason": "refusal"}));
        assert!(matches!(refused, Err(LlmError::Refused { .. })));
    }
}
