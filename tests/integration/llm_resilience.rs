//! Retries, breaker, timeouts, budgets and key hygiene, over real HTTP on
//! loopback. Waits go through a manual clock, so they are asserted exactly
//! and cost no real time; only the timeout test spends real seconds.

use std::time::Duration;

use draco::remediate::llm::{BudgetLimitKind, BudgetLimits, LlmError, ProviderKind};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::llm_support::{KEY, answer, harness, requests, settings};

fn openai_ok() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer().to_string()},
            "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    }))
}

fn gemini_text(text: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5}
    }))
}

#[tokio::test]
async fn rate_limited_call_waits_as_retry_after_says_then_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1").set_body_json(json!({
            "error": {"message": "Rate limit reached for requests", "type": "requests", "param": null,
                "code": "rate_limit_exceeded"}
        })))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(openai_ok())
        .mount(&server)
        .await;

    let h = harness(
        &settings(ProviderKind::OpenAi, &server),
        BudgetLimits::default(),
    );
    let response = h.ask().await.expect("second attempt");

    assert_eq!(response.json, answer());
    assert_eq!(requests(&server).await.len(), 2);
    assert_eq!(
        h.clock.sleeps(),
        vec![Duration::from_secs(1)],
        "waited what Retry-After asked"
    );
}

#[tokio::test]
async fn anthropic_overloaded_529_is_retried_with_backoff() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(529).set_body_json(json!({
            "type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}, "request_id": "req_1"
        })))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "remediation_choice", "input": answer()}],
            "stop_reason": "tool_use", "usage": {"input_tokens": 5, "output_tokens": 5}
        })))
        .mount(&server)
        .await;

    let h = harness(
        &settings(ProviderKind::Anthropic, &server),
        BudgetLimits::default(),
    );
    h.ask().await.expect("third attempt");

    let sleeps = h.clock.sleeps();
    assert_eq!(requests(&server).await.len(), 3);
    assert_eq!(sleeps.len(), 2);
    // base 100 ms: first wait in [50, 100] ms, second in [100, 200] ms.
    assert!(
        sleeps[0] >= Duration::from_millis(50) && sleeps[0] <= Duration::from_millis(100),
        "{sleeps:?}"
    );
    assert!(
        sleeps[1] >= Duration::from_millis(100) && sleeps[1] <= Duration::from_millis(200),
        "{sleeps:?}"
    );
}

#[tokio::test]
async fn breaker_opens_after_repeated_500s_then_fails_fast_without_a_request() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_body_json(json!({
            "error": {"code": 500, "message": "An internal error has occurred.", "status": "INTERNAL"}
        })))
        .mount(&server)
        .await;
    let mut s = settings(ProviderKind::Gemini, &server);
    s.max_attempts = 2;
    s.breaker_failures = 2;
    s.breaker_cooldown_secs = 60;
    let h = harness(&s, BudgetLimits::default());

    for _ in 0..2 {
        let error = h.ask().await.expect_err("500");
        assert!(
            matches!(error, LlmError::Unavailable { status: 500, .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("INTERNAL"), "{error}");
    }
    assert_eq!(
        requests(&server).await.len(),
        4,
        "two calls of two attempts"
    );

    let error = h.ask().await.expect_err("open");
    assert!(matches!(error, LlmError::CircuitOpen { .. }), "{error:?}");
    assert_eq!(
        requests(&server).await.len(),
        4,
        "an open breaker sends nothing"
    );

    // After the cool-down one trial goes out; it fails, so the breaker opens again.
    h.clock.advance(Duration::from_secs(60));
    let error = h.ask().await.expect_err("trial");
    assert!(matches!(error, LlmError::Unavailable { .. }), "{error:?}");
    assert_eq!(requests(&server).await.len(), 6);
    let error = h.ask().await.expect_err("open again");
    assert!(matches!(error, LlmError::CircuitOpen { .. }), "{error:?}");

    // Next cool-down, the provider has recovered: the trial closes the breaker.
    server.reset().await;
    Mock::given(method("POST"))
        .respond_with(gemini_text(&answer().to_string()))
        .mount(&server)
        .await;
    h.clock.advance(Duration::from_secs(60));
    h.ask().await.expect("trial succeeds");
    h.ask().await.expect("closed");
    assert_eq!(requests(&server).await.len(), 2);
}

#[tokio::test]
async fn malformed_json_in_the_content_is_a_clear_error_and_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(gemini_text("Sure! The template is sg-restrict-ssh."))
        .mount(&server)
        .await;

    let h = harness(
        &settings(ProviderKind::Gemini, &server),
        BudgetLimits::default(),
    );
    let error = h.ask().await.expect_err("malformed");

    assert!(matches!(error, LlmError::Malformed { .. }), "{error:?}");
    assert!(error.to_string().contains("not JSON"), "{error}");
    assert_eq!(requests(&server).await.len(), 1);
    assert!(h.clock.sleeps().is_empty());
}

#[tokio::test]
async fn slow_provider_times_out_after_the_retries() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(openai_ok().set_delay(Duration::from_secs(5)))
        .mount(&server)
        .await;
    let mut s = settings(ProviderKind::OpenAi, &server);
    s.timeout_secs = 1;
    s.max_attempts = 2;
    let h = harness(&s, BudgetLimits::default());

    let error = h.ask().await.expect_err("timeout");

    assert!(matches!(error, LlmError::Timeout { .. }), "{error:?}");
    assert!(error.to_string().contains("within 1s"), "{error}");
    assert_eq!(requests(&server).await.len(), 2);
    assert_eq!(h.clock.sleeps().len(), 1);
}

#[tokio::test]
async fn unreachable_provider_is_retried_then_reported() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let server = MockServer::start().await;
    let mut s = settings(ProviderKind::Anthropic, &server);
    s.base_url = Some(format!("http://127.0.0.1:{port}"));
    s.max_attempts = 2;
    let h = harness(&s, BudgetLimits::default());

    let error = h.ask().await.expect_err("refused");

    assert!(
        matches!(error, LlmError::Connect { .. } | LlmError::Timeout { .. }),
        "{error:?}"
    );
    assert_eq!(h.clock.sleeps().len(), 1);
    assert!(
        !error.to_string().contains(&port.to_string()),
        "no URL in the message: {error}"
    );
}

#[tokio::test]
async fn unauthorized_is_not_retried_and_the_message_hides_the_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": {"message": format!("Incorrect API key provided: {KEY}."),
                "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}
        })))
        .mount(&server)
        .await;

    let h = harness(
        &settings(ProviderKind::OpenAi, &server),
        BudgetLimits::default(),
    );
    let error = h.ask().await.expect_err("401");

    assert!(
        matches!(error, LlmError::Auth { status: 401, .. }),
        "{error:?}"
    );
    assert_eq!(requests(&server).await.len(), 1);
    assert!(h.clock.sleeps().is_empty());
    assert!(error.to_string().contains("check the key"), "{error}");
    assert!(!error.to_string().contains(KEY) && !format!("{error:?}").contains(KEY));
}

#[tokio::test]
async fn exhausted_budget_sends_no_request() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(openai_ok())
        .mount(&server)
        .await;
    let h = harness(
        &settings(ProviderKind::OpenAi, &server),
        BudgetLimits {
            max_requests_per_day: Some(1),
            max_tokens_per_day: None,
        },
    );

    h.ask().await.expect("within budget");
    let error = h.ask().await.expect_err("over budget");

    assert!(
        matches!(
            error,
            LlmError::BudgetExhausted {
                kind: BudgetLimitKind::Requests,
                used: 1,
                limit: 1,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        requests(&server).await.len(),
        1,
        "the second call never left"
    );
}

#[tokio::test]
async fn token_budget_counts_the_estimate_before_sending() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(openai_ok())
        .mount(&server)
        .await;
    // The request alone is estimated above 512 tokens (its whole output allowance).
    let h = harness(
        &settings(ProviderKind::OpenAi, &server),
        BudgetLimits {
            max_requests_per_day: None,
            max_tokens_per_day: Some(500),
        },
    );

    let error = h.ask().await.expect_err("over budget");

    assert!(
        matches!(
            error,
            LlmError::BudgetExhausted {
                kind: BudgetLimitKind::Tokens,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(requests(&server).await.is_empty());
}

#[tokio::test]
async fn the_key_never_appears_in_urls_debug_or_errors() {
    for kind in [
        ProviderKind::Gemini,
        ProviderKind::OpenAi,
        ProviderKind::Anthropic,
    ] {
        let server = MockServer::start().await;
        // Error bodies that echo the key, the worst case.
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(400).set_body_json(json!({
                "type": "error",
                "error": {"type": "invalid_request_error", "status": "INVALID_ARGUMENT",
                    "message": format!("bad request with key {KEY}")}
            })))
            .mount(&server)
            .await;
        let s = settings(kind, &server);
        let h = harness(&s, BudgetLimits::default());

        let error = h.ask().await.expect_err("400");

        assert!(
            matches!(error, LlmError::Rejected { status: 400, .. }),
            "{kind:?}: {error:?}"
        );
        for text in [
            error.to_string(),
            format!("{error:?}"),
            format!("{:?}", h.provider),
            format!("{s:?}"),
        ] {
            assert!(!text.contains(KEY), "{kind:?} leaks the key: {text}");
        }
        for sent in requests(&server).await {
            assert!(
                !sent.url.as_str().contains(KEY),
                "{kind:?} key in URL {}",
                sent.url
            );
        }
    }
}
