//! OpenAI Chat Completions, and the servers that speak it: Azure OpenAI's
//! v1 endpoint (`https://RESOURCE.openai.azure.com/openai/v1`), vLLM,
//! Ollama (`http://localhost:11434/v1`), llama.cpp's server.
//!
//! Documented wire format relied on (platform.openai.com/docs/api-reference/chat/create,
//! platform.openai.com/docs/guides/structured-outputs; Azure: learn.microsoft.com
//! "Azure OpenAI v1 API"; Ollama: docs.ollama.com/api/openai-compatibility):
//! - `POST {base}/chat/completions`; `Authorization: Bearer <key>` (OpenAI,
//!   vLLM with `--api-key`, Azure) or `api-key: <key>` (Azure's key header).
//! - request: `model`, `messages[]` of `{role: system|user, content}`,
//!   `response_format: {type: "json_schema", json_schema: {name, strict, schema}}`,
//!   `max_completion_tokens` or `max_tokens` (see [`TokenLimitField`]), `temperature`.
//! - response: `choices[0].message.content` (a JSON string under structured
//!   outputs), `choices[0].message.refusal` (set instead of content when the
//!   model refuses), `choices[0].finish_reason` (`stop`, `length`,
//!   `content_filter`, `tool_calls`), `usage.{prompt_tokens, completion_tokens}`
//!   (completion includes reasoning tokens), `model`.
//! - errors: `{"error": {"message", "type", "param", "code"}}`; Ollama and
//!   llama.cpp may send `{"error": "text"}`.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use reqwest::{Client, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::http::{Call, endpoint, parse_json_text};
use super::settings::{OpenAiAuth, TokenLimitField};
use super::{ChatProvider, ChatRequest, ChatResponse, LlmError, Redacted, Usage, check_request};

const NAME: &str = "openai";

/// Any server that speaks OpenAI Chat Completions with structured outputs.
#[derive(Debug)]
pub struct OpenAiProvider {
    client: Client,
    url: Url,
    model: String,
    /// `None` for local servers that need no key.
    auth: Option<(&'static str, HeaderValue)>,
    api_key: Option<SecretString>,
    token_field: TokenLimitField,
    timeout: Duration,
}

impl OpenAiProvider {
    pub const DEFAULT_BASE_URL: &'static str = "https://api.openai.com/v1";
    /// A default only, for the official endpoint: supports strict
    /// `json_schema` and `temperature` (reasoning models reject a
    /// non-default temperature).
    pub const DEFAULT_MODEL: &'static str = "gpt-4.1-mini";

    pub fn new(
        client: Client,
        base_url: &str,
        model: &str,
        api_key: Option<SecretString>,
        auth_style: OpenAiAuth,
        token_field: TokenLimitField,
        timeout: Duration,
    ) -> Result<Self, LlmError> {
        if model.trim().is_empty() {
            return Err(LlmError::Config(
                "the OpenAI-compatible model name is empty".into(),
            ));
        }
        let auth = match &api_key {
            None => None,
            Some(key) => Some(match auth_style {
                OpenAiAuth::Bearer => {
                    let mut value =
                        HeaderValue::from_str(&format!("Bearer {}", key.expose_secret())).map_err(
                            |_| {
                                LlmError::Config(
                                    "the API key has characters an HTTP header cannot carry".into(),
                                )
                            },
                        )?;
                    value.set_sensitive(true);
                    (AUTHORIZATION.as_str(), value)
                }
                OpenAiAuth::ApiKeyHeader => ("api-key", super::settings::key_header(key)?),
            }),
        };
        Ok(Self {
            client,
            url: endpoint(base_url, "/chat/completions")?,
            model: model.to_owned(),
            auth,
            api_key,
            token_field,
            timeout,
        })
    }
}

#[async_trait]
impl ChatProvider for OpenAiProvider {
    fn name(&self) -> &str {
        NAME
    }

    fn model(&self) -> &str {
        &self.model
    }

    #[tracing::instrument(name = "openai.chat_completions", skip_all, fields(model = %self.model), err(Display, level = "warn"))]
    async fn complete(&self, request: &Redacted<ChatRequest>) -> Result<ChatResponse, LlmError> {
        let request = request.get();
        check_request(NAME, request)?;
        let limit = Some(request.max_output_tokens);
        let (max_completion_tokens, max_tokens) = match self.token_field {
            TokenLimitField::MaxCompletionTokens => (limit, None),
            TokenLimitField::MaxTokens => (None, limit),
        };
        let body = ChatCompletionRequest {
            model: &self.model,
            messages: [
                Message {
                    role: "system",
                    content: &request.system,
                },
                Message {
                    role: "user",
                    content: &request.prompt,
                },
            ],
            response_format: ResponseFormat {
                kind: "json_schema",
                json_schema: JsonSchemaFormat {
                    name: &request.schema_name,
                    strict: true,
                    schema: &request.schema,
                },
            },
            max_completion_tokens,
            max_tokens,
            temperature: request.temperature,
        };
        let mut headers = HeaderMap::new();
        if let Some((name, value)) = &self.auth {
            headers.insert(*name, value.clone());
        }
        let answer: ChatCompletion = Call {
            provider: NAME,
            client: &self.client,
            url: &self.url,
            headers,
            timeout: self.timeout,
            secret: self.api_key.as_ref(),
        }
        .post_json(&body)
        .await?;
        interpret(answer, &self.model)
    }
}

fn interpret(answer: ChatCompletion, model: &str) -> Result<ChatResponse, LlmError> {
    let usage = answer.usage.map(|u| Usage {
        input_tokens: u.prompt_tokens,
        output_tokens: u.completion_tokens,
    });
    let Some(choice) = answer.choices.into_iter().next() else {
        return Err(LlmError::Malformed {
            provider: NAME,
            message: "no choice in the answer".into(),
            usage,
        });
    };
    if let Some(refusal) = choice.message.refusal.filter(|r| !r.trim().is_empty()) {
        return Err(LlmError::Refused {
            provider: NAME,
            reason: super::http::sanitise(&refusal, None),
            usage,
        });
    }
    match choice.finish_reason.as_deref() {
        None | Some("stop") => {}
        Some("length") => {
            return Err(LlmError::Truncated {
                provider: NAME,
                usage,
            });
        }
        Some("content_filter") => {
            return Err(LlmError::Refused {
                provider: NAME,
                reason: "finish_reason content_filter".into(),
                usage,
            });
        }
        Some(other) => {
            return Err(LlmError::Malformed {
                provider: NAME,
                message: format!("generation stopped with finish_reason {other}"),
                usage,
            });
        }
    }
    let usage = usage.unwrap_or_default();
    let Some(content) = choice.message.content.filter(|c| !c.trim().is_empty()) else {
        return Err(LlmError::Malformed {
            provider: NAME,
            message: "the message has no content".into(),
            usage: Some(usage),
        });
    };
    let json = parse_json_text(NAME, &content, usage)?;
    Ok(ChatResponse {
        json,
        usage,
        model: answer.model.unwrap_or_else(|| model.to_owned()),
        provider: NAME,
    })
}

#[derive(Serialize)]
struct ChatCompletionRequest<'a> {
    model: &'a str,
    messages: [Message<'a>; 2],
    response_format: ResponseFormat<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    temperature: f32,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Serialize)]
struct ResponseFormat<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    json_schema: JsonSchemaFormat<'a>,
}

#[derive(Serialize)]
struct JsonSchemaFormat<'a> {
    name: &'a str,
    strict: bool,
    schema: &'a Value,
}

#[derive(Deserialize)]
struct ChatCompletion {
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<CompletionUsage>,
    model: Option<String>,
}

#[derive(Deserialize)]
struct Choice {
    message: AssistantMessage,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct AssistantMessage {
    content: Option<String>,
    refusal: Option<String>,
}

#[derive(Deserialize)]
struct CompletionUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<ChatResponse, LlmError> {
        interpret(serde_json::from_value(value).expect("shape"), "m")
    }

    #[test]
    fn refusal_wins_over_content() {
        let r = parse(
            json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": null,
            "refusal": "I can't help with that."}, "finish_reason": "stop"}]}),
        );
        assert!(
            matches!(r, Err(LlmError::Refused { ref reason, .. }) if reason.contains("can't help"))
        );
    }

    #[test]
    fn length_and_content_filter_are_reported() {
        let cut = parse(
            json!({"choices": [{"message": {"content": "{\"a\""}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}),
        );
        assert!(matches!(
            cut,
            Err(LlmError::Truncated { usage: Some(_), .. })
        ));
        let filtered = parse(
            json!({"choices": [{"message": {"content": null}, "finish_reason": "content_filter"}]}),
        );
        assert!(matches!(filtered, Err(LlmError::Refused { .. })));
    }

    #[test]
    fn null_content_without_refusal_is_malformed() {
        let r =
            parse(json!({"choices": [{"message": {"content": null}, "finish_reason": "stop"}]}));
        assert!(matches!(r, Err(LlmError::Malformed { .. })));
    }
}
