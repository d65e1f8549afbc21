//! Shared set-up for the LLM client tests: a wiremock stand-in per test on
//! loopback, a provider built the way Draco builds it, and a manual clock so
//! backoff and cool-downs take no real time.

use std::sync::Arc;
use std::time::Duration;

use draco::remediate::llm::{
    Budget, BudgetLimits, ChatProvider, ChatRequest, ChatResponse, Clock, InMemoryBudget, LlmError,
    ManualClock, ProviderKind, ProviderSettings, Redacted, build_with, http_client,
};
use secrecy::SecretString;
use serde_json::{Value, json};
use wiremock::{MockServer, Request};

/// Looks like a real key so a leak is easy to grep for.
pub const KEY: &str = "sk-test-SECRET-4242-do-not-log";

pub fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "template_id": {"type": "string"},
            "rationale": {"type": "string"}
        },
        "required": ["template_id", "rationale"],
        "additionalProperties": false
    })
}

pub fn request() -> ChatRequest {
    ChatRequest {
        system: "You choose remediation templates.".into(),
        prompt: "Finding: open SSH on <ACCOUNT_ID_1>".into(),
        schema_name: "remediation_choice".into(),
        schema: schema(),
        max_output_tokens: 512,
        temperature: 0.2,
    }
}

/// Through the real redactor, as everything that leaves the host.
pub fn redacted(request: ChatRequest) -> Redacted<ChatRequest> {
    draco::redact::Redactor::default()
        .redact(&request)
        .expect("the request redacts")
        .0
}

pub fn answer() -> Value {
    json!({"template_id": "sg-restrict-ssh", "rationale": "port 22 open to the world"})
}

/// Settings pointing at the stand-in, with short but loaded-machine-safe limits.
pub fn settings(kind: ProviderKind, server: &MockServer) -> ProviderSettings {
    let mut s = ProviderSettings::new(kind);
    s.base_url = Some(match kind {
        ProviderKind::OpenAi => format!("{}/v1", server.uri()),
        _ => server.uri(),
    });
    s.model = Some(
        match kind {
            ProviderKind::Gemini => "gemini-2.5-flash",
            ProviderKind::OpenAi => "gpt-4.1-mini",
            ProviderKind::Anthropic => "claude-haiku-4-5",
        }
        .into(),
    );
    s.api_key = Some(SecretString::from(KEY));
    s.timeout_secs = 10;
    s.connect_timeout_secs = 5;
    s.max_attempts = 3;
    s.backoff_base_ms = 100;
    s.backoff_max_ms = 5_000;
    s.breaker_failures = 2;
    s.breaker_cooldown_secs = 60;
    s
}

pub struct Harness {
    pub provider: Box<dyn ChatProvider>,
    pub clock: Arc<ManualClock>,
    pub budget: Arc<InMemoryBudget>,
}

impl Harness {
    /// The standard question, through the real redactor, as the advisor asks it.
    pub async fn ask(&self) -> Result<ChatResponse, LlmError> {
        self.provider.complete(&redacted(request())).await
    }
}

pub fn harness(settings: &ProviderSettings, limits: BudgetLimits) -> Harness {
    let clock = Arc::new(ManualClock::default());
    let budget = Arc::new(InMemoryBudget::new(limits));
    let client = http_client(Duration::from_secs(settings.connect_timeout_secs)).expect("client");
    let provider = build_with(
        settings,
        client,
        Arc::clone(&budget) as Arc<dyn Budget>,
        Arc::clone(&clock) as Arc<dyn Clock>,
    )
    .expect("valid settings");
    Harness {
        provider,
        clock,
        budget,
    }
}

pub async fn requests(server: &MockServer) -> Vec<Request> {
    server
        .received_requests()
        .await
        .expect("request recording is on")
}
