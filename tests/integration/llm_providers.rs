//! Each provider against a stand-in that accepts only the documented
//! request (method, path, headers, exact body) and answers with the
//! documented response shape, field names copied from the providers' docs.

use draco::remediate::llm::{
    BudgetLimits, LlmError, OpenAiAuth, ProviderKind, TokenLimitField, Usage,
};
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Match, Mock, MockServer, Request, ResponseTemplate};

use crate::llm_support::{KEY, answer, harness, requests, schema, settings};

/// The key must travel in a header, never in the query string.
struct NoQuery;

impl Match for NoQuery {
    fn matches(&self, request: &Request) -> bool {
        request.url.query().is_none()
    }
}

struct HeaderAbsent(&'static str);

impl Match for HeaderAbsent {
    fn matches(&self, request: &Request) -> bool {
        !request.headers.contains_key(self.0)
    }
}

#[tokio::test]
async fn gemini_sends_the_documented_request_and_reads_text_and_usage() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1beta/models/gemini-2.5-flash:generateContent"))
        .and(NoQuery)
        .and(header("x-goog-api-key", KEY))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({
            "systemInstruction": {"parts": [{"text": "You choose remediation templates."}]},
            "contents": [{"role": "user", "parts": [{"text": "Finding: open SSH on <ACCOUNT_ID_1>"}]}],
            "generationConfig": {
                "responseMimeType": "application/json",
                "responseJsonSchema": schema(),
                "maxOutputTokens": 512,
                "temperature": 0.2
            }
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "candidates": [{
                "content": {"role": "model", "parts": [{"text": answer().to_string()}]},
                "finishReason": "STOP",
                "index": 0
            }],
            "usageMetadata": {"promptTokenCount": 120, "candidatesTokenCount": 30, "totalTokenCount": 150},
            "modelVersion": "gemini-2.5-flash-001",
            "responseId": "abc"
        })))
        .expect(1)
        .mount(&server)
        .await;

    let h = harness(
        &settings(ProviderKind::Gemini, &server),
        BudgetLimits::default(),
    );
    let response = h.ask().await.expect("answer");

    assert_eq!(response.json, answer());
    assert_eq!(
        response.usage,
        Usage {
            input_tokens: 120,
            output_tokens: 30
        }
    );
    assert_eq!(response.model, "gemini-2.5-flash-001");
    assert_eq!(response.provider, "gemini");
    assert_eq!(h.budget.spent_today("gemini"), (1, 150));
}

#[tokio::test]
async fn openai_sends_the_documented_request_and_reads_content_and_usage() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(NoQuery)
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({
            "model": "gpt-4.1-mini",
            "messages": [
                {"role": "system", "content": "You choose remediation templates."},
                {"role": "user", "content": "Finding: open SSH on <ACCOUNT_ID_1>"}
            ],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "remediation_choice", "strict": true, "schema": schema()}
            },
            "max_completion_tokens": 512,
            "temperature": 0.2
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": "gpt-4.1-mini-2025-04-14",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": answer().to_string(), "refusal": null},
                "logprobs": null,
                "finish_reason": "stop"
            }],
            "usage": {"prompt_tokens": 80, "completion_tokens": 20, "total_tokens": 100}
        })))
        .expect(1)
        .mount(&server)
        .await;

    // A stand-in on loopback is plain HTTP; pin the field the HTTPS default would pick.
    let mut s = settings(ProviderKind::OpenAi, &server);
    s.openai_token_field = Some(TokenLimitField::MaxCompletionTokens);
    let h = harness(&s, BudgetLimits::default());
    let response = h.ask().await.expect("answer");

    assert_eq!(response.json, answer());
    assert_eq!(
        response.usage,
        Usage {
            input_tokens: 80,
            output_tokens: 20
        }
    );
    assert_eq!(response.model, "gpt-4.1-mini-2025-04-14");
    assert_eq!(response.provider, "openai");
}

#[tokio::test]
async fn local_openai_compatible_server_gets_no_auth_header_and_max_tokens() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(HeaderAbsent("authorization"))
        .and(HeaderAbsent("api-key"))
        .and(wiremock::matchers::body_partial_json(json!({
            "model": "llama3.2",
            "max_tokens": 512
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-9",
            "object": "chat.completion",
            "model": "llama3.2",
            // Some local models fence their JSON even when asked for a schema.
            "choices": [{"index": 0, "message": {"role": "assistant",
                "content": format!("```json\n{}\n```", answer())}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60}
        })))
        .expect(1)
        .mount(&server)
        .await;

    let mut s = settings(ProviderKind::OpenAi, &server);
    s.api_key = None;
    s.model = Some("llama3.2".into());
    let h = harness(&s, BudgetLimits::default());
    let response = h.ask().await.expect("answer");

    assert_eq!(response.json, answer());
    let sent: serde_json::Value = requests(&server).await[0].body_json().expect("json body");
    assert!(sent.get("max_completion_tokens").is_none(), "{sent}");
}

#[tokio::test]
async fn azure_style_key_goes_in_the_api_key_header() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("api-key", KEY))
        .and(HeaderAbsent("authorization"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer().to_string()},
                "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        })))
        .expect(1)
        .mount(&server)
        .await;

    let mut s = settings(ProviderKind::OpenAi, &server);
    s.openai_auth = OpenAiAuth::ApiKeyHeader;
    let h = harness(&s, BudgetLimits::default());
    h.ask().await.expect("answer");
}

#[tokio::test]
async fn anthropic_forces_one_tool_and_reads_its_input() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(NoQuery)
        .and(header("x-api-key", KEY))
        .and(header("anthropic-version", "2023-06-01"))
        .and(header("content-type", "application/json"))
        .and(HeaderAbsent("authorization"))
        .and(body_json(json!({
            "model": "claude-haiku-4-5",
            "max_tokens": 512,
            "system": "You choose remediation templates.",
            "messages": [{"role": "user", "content": "Finding: open SSH on <ACCOUNT_ID_1>"}],
            "tools": [{
                "name": "remediation_choice",
                "description": "Record the answer. Call this exactly once; its input is the whole answer and must follow the schema.",
                "input_schema": schema()
            }],
            "tool_choice": {"type": "tool", "name": "remediation_choice"},
            "temperature": 0.2
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "msg_01",
            "type": "message",
            "role": "assistant",
            "model": "claude-haiku-4-5-20251001",
            "content": [{
                "type": "tool_use",
                "id": "toolu_01",
                "name": "remediation_choice",
                "input": answer()
            }],
            "stop_reason": "tool_use",
            "stop_sequence": null,
            "usage": {"input_tokens": 400, "output_tokens": 60}
        })))
        .expect(1)
        .mount(&server)
        .await;

    let h = harness(
        &settings(ProviderKind::Anthropic, &server),
        BudgetLimits::default(),
    );
    let response = h.ask().await.expect("answer");

    assert_eq!(response.json, answer());
    assert_eq!(
        response.usage,
        Usage {
            input_tokens: 400,
            output_tokens: 60
        }
    );
    assert_eq!(response.provider, "anthropic");
}

#[tokio::test]
async fn gemini_safety_stop_is_a_refusal_and_its_tokens_are_counted() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "candidates": [{"finishReason": "SAFETY", "index": 0,
                "safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}]}],
            "usageMetadata": {"promptTokenCount": 100, "candidatesTokenCount": 0}
        })))
        .mount(&server)
        .await;

    let h = harness(
        &settings(ProviderKind::Gemini, &server),
        BudgetLimits::default(),
    );
    let error = h.ask().await.expect_err("refused");

    assert!(matches!(error, LlmError::Refused { .. }), "{error:?}");
    assert!(error.to_string().contains("SAFETY"), "{error}");
    assert_eq!(requests(&server).await.len(), 1, "a refusal is not retried");
    assert_eq!(
        h.budget.spent_today("gemini"),
        (1, 100),
        "billed tokens still count"
    );
}
