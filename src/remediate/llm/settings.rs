//! From settings to a ready provider, validated once at start-up.
//!
//! Plain `http://` is refused unless the host is loopback or a private-range
//! IP literal (Ollama on the same host or LAN), or the operator sets
//! `allow_plain_http` (e.g. a compose service named `ollama`, whose name
//! says nothing about where it resolves). Over plain HTTP the prompts (
//! redacted, yet still a map of the estate's weaknesses) and the key would
//! cross the network readable.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::{
    AnthropicProvider, Budget, ChatProvider, Clock, GeminiProvider, LlmError, OpenAiProvider,
    ResiliencePolicy, Resilient, TokioClock, http_client,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    Gemini,
    /// OpenAI or any server speaking its Chat Completions API.
    OpenAi,
    Anthropic,
}

/// How an OpenAI-compatible server wants the key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpenAiAuth {
    /// `Authorization: Bearer <key>`: OpenAI, vLLM, llama.cpp, Azure's v1 endpoint.
    #[default]
    Bearer,
    /// `api-key: <key>`: Azure OpenAI's key header.
    ApiKeyHeader,
}

/// Which field carries the output limit. OpenAI deprecated `max_tokens` in
/// favour of `max_completion_tokens` (its reasoning models reject
/// `max_tokens`), while Ollama's documented compatible fields list only
/// `max_tokens`, and other local servers follow one or the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenLimitField {
    MaxCompletionTokens,
    MaxTokens,
}

/// Everything needed to reach one model. Durations are whole units so the
/// TOML stays readable; the key comes from Draco's secret loading, never the file.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    pub kind: ProviderKind,
    /// `None`: the provider's public endpoint.
    pub base_url: Option<String>,
    /// `None`: the provider's default model (the public endpoints only;
    /// a custom OpenAI-compatible server must name its model).
    pub model: Option<String>,
    /// Required for Gemini and Anthropic and for OpenAI's own endpoint;
    /// optional for local OpenAI-compatible servers.
    pub api_key: Option<SecretString>,
    /// Whole request, connect to last byte.
    pub timeout_secs: u64,
    pub connect_timeout_secs: u64,
    pub max_attempts: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    pub breaker_failures: u32,
    pub breaker_cooldown_secs: u64,
    pub openai_auth: OpenAiAuth,
    /// `None`: `max_completion_tokens` over HTTPS, `max_tokens` over plain
    /// HTTP (which is only allowed for local servers, see the module doc).
    pub openai_token_field: Option<TokenLimitField>,
    pub allow_plain_http: bool,
}

/// Longer waits are a misconfiguration (and would overflow an `Instant`).
const MAX_COOLDOWN_SECS: u64 = 24 * 60 * 60;

impl ProviderSettings {
    /// Defaults that suit a scan-time advisor: a minute per answer, three
    /// attempts, a breaker that opens after five failed calls for five minutes.
    pub fn new(kind: ProviderKind) -> Self {
        Self {
            kind,
            base_url: None,
            model: None,
            api_key: None,
            timeout_secs: 60,
            connect_timeout_secs: 10,
            max_attempts: 3,
            backoff_base_ms: 500,
            backoff_max_ms: 30_000,
            breaker_failures: 5,
            breaker_cooldown_secs: 300,
            openai_auth: OpenAiAuth::Bearer,
            openai_token_field: None,
            allow_plain_http: false,
        }
    }

    fn policy(&self) -> Result<ResiliencePolicy, LlmError> {
        let fail = |m: &str| Err(LlmError::Config(m.to_owned()));
        if self.max_attempts == 0 {
            return fail("max_attempts must be at least 1 (1 means no retry)");
        }
        if self.timeout_secs == 0 || self.connect_timeout_secs == 0 {
            return fail("timeout_secs and connect_timeout_secs must be at least 1");
        }
        if self.backoff_base_ms > self.backoff_max_ms {
            return fail("backoff_base_ms must not exceed backoff_max_ms");
        }
        if self.breaker_cooldown_secs > MAX_COOLDOWN_SECS
            || self.backoff_max_ms > MAX_COOLDOWN_SECS * 1000
        {
            return fail("breaker_cooldown_secs and backoff_max_ms must stay within a day");
        }
        if self.breaker_failures == 0 {
            return fail("breaker_failures must be at least 1");
        }
        Ok(ResiliencePolicy {
            max_attempts: self.max_attempts,
            backoff_base: Duration::from_millis(self.backoff_base_ms),
            backoff_max: Duration::from_millis(self.backoff_max_ms),
            breaker_failures: self.breaker_failures,
            breaker_cooldown: Duration::from_secs(self.breaker_cooldown_secs),
        })
    }
}

/// The configured provider behind retries, breaker and budget, on real time.
pub fn build(
    settings: &ProviderSettings,
    budget: Arc<dyn Budget>,
) -> Result<Box<dyn ChatProvider>, LlmError> {
    let client = http_client(Duration::from_secs(settings.connect_timeout_secs))?;
    build_with(settings, client, budget, Arc::new(TokioClock))
}

/// As [`build`], sharing `client` with other providers and using `clock`.
pub fn build_with(
    settings: &ProviderSettings,
    client: reqwest::Client,
    budget: Arc<dyn Budget>,
    clock: Arc<dyn Clock>,
) -> Result<Box<dyn ChatProvider>, LlmError> {
    let policy = settings.policy()?;
    let timeout = Duration::from_secs(settings.timeout_secs);
    let (default_base, default_model) = match settings.kind {
        ProviderKind::Gemini => (
            GeminiProvider::DEFAULT_BASE_URL,
            GeminiProvider::DEFAULT_MODEL,
        ),
        ProviderKind::OpenAi => (
            OpenAiProvider::DEFAULT_BASE_URL,
            OpenAiProvider::DEFAULT_MODEL,
        ),
        ProviderKind::Anthropic => (
            AnthropicProvider::DEFAULT_BASE_URL,
            AnthropicProvider::DEFAULT_MODEL,
        ),
    };
    let base = settings.base_url.as_deref().unwrap_or(default_base);
    let plain_http = check_base_url(base, settings.allow_plain_http)?;
    let custom_openai = settings.kind == ProviderKind::OpenAi && settings.base_url.is_some();
    let model = match (&settings.model, custom_openai) {
        (Some(model), _) => model.as_str(),
        (None, false) => default_model,
        (None, true) => {
            return Err(LlmError::Config(format!(
                "set the model: `{base}` is not OpenAI's endpoint, so there is no default model"
            )));
        }
    };
    let key = settings
        .api_key
        .clone()
        .filter(|k| !k.expose_secret().trim().is_empty());
    let need_key = |name: &str| {
        LlmError::Config(format!(
            "{name} needs an API key (DRACO_LLM_API_KEY or llm.api_key_file)"
        ))
    };
    let wrap = |p: Box<dyn ChatProvider>| -> Box<dyn ChatProvider> {
        Box::new(Resilient::new(
            p,
            policy,
            Arc::clone(&budget),
            Arc::clone(&clock),
        ))
    };
    Ok(match settings.kind {
        ProviderKind::Gemini => {
            let key = key.ok_or_else(|| need_key("Gemini"))?;
            wrap(Box::new(GeminiProvider::new(
                client, base, model, key, timeout,
            )?))
        }
        ProviderKind::Anthropic => {
            let key = key.ok_or_else(|| need_key("Anthropic"))?;
            wrap(Box::new(AnthropicProvider::new(
                client, base, model, key, timeout,
            )?))
        }
        ProviderKind::OpenAi => {
            if key.is_none() && !custom_openai {
                return Err(need_key("OpenAI"));
            }
            let token_field = settings.openai_token_field.unwrap_or(if plain_http {
                TokenLimitField::MaxTokens
            } else {
                TokenLimitField::MaxCompletionTokens
            });
            wrap(Box::new(OpenAiProvider::new(
                client,
                base,
                model,
                key,
                settings.openai_auth,
                token_field,
                timeout,
            )?))
        }
    })
}

/// Checks the scheme and host; returns whether it is plain HTTP.
fn check_base_url(base: &str, allow_plain_http: bool) -> Result<bool, LlmError> {
    let url = Url::parse(base)
        // Not echoed: a malformed URL may still hold a password.
        .map_err(|e| LlmError::Config(format!("llm.base_url is not a URL: {e}")))?;
    if url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        // A key smuggled into the URL would be logged with it.
        return Err(LlmError::Config(format!(
            "base URL `{}` must not carry credentials, a query or a fragment",
            url.host_str().unwrap_or("?")
        )));
    }
    match url.scheme() {
        "https" => Ok(false),
        "http" if allow_plain_http || is_local(&url) => Ok(true),
        "http" => Err(LlmError::Config(format!(
            "base URL `{base}` is plain HTTP to a non-local host; use https, or set allow_plain_http if the network is trusted"
        ))),
        other => Err(LlmError::Config(format!(
            "base URL `{base}` has scheme `{other}`; use https"
        ))),
    }
}

/// Loopback (`localhost`, 127/8, ::1) or a private-range IP literal
/// (10/8, 172.16/12, 192.168/16, fc00::/7). Names other than `localhost`
/// are not resolved: what they point to can change after this check.
fn is_local(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    // IPv6 literals come bracketed in URLs.
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    match literal.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ip.is_loopback() || ip.is_private(),
        Ok(IpAddr::V6(ip)) => {
            let mapped = ip
                .to_ipv4_mapped()
                .is_some_and(|v4| v4.is_loopback() || v4.is_private());
            ip.is_loopback() || (ip.segments()[0] & 0xfe00) == 0xfc00 || mapped
        }
        Err(_) => false,
    }
}

/// The key as a header value, marked sensitive.
pub(crate) fn key_header(key: &SecretString) -> Result<HeaderValue, LlmError> {
    let mut value = HeaderValue::from_str(key.expose_secret()).map_err(|_| {
        LlmError::Config("the API key has characters an HTTP header cannot carry".into())
    })?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_for_local_hosts_unless_allowed() {
        for local in [
            "http://localhost:11434/v1",
            "http://127.0.0.1:8000/v1",
            "http://[::1]:8080/v1",
            "http://192.168.1.20:11434/v1",
            "http://10.0.0.5/v1",
        ] {
            assert_eq!(check_base_url(local, false).ok(), Some(true), "{local}");
        }
        assert!(check_base_url("http://ollama:11434/v1", false).is_err());
        assert_eq!(
            check_base_url("http://ollama:11434/v1", true).ok(),
            Some(true)
        );
        assert!(check_base_url("http://api.openai.com/v1", false).is_err());
        assert_eq!(
            check_base_url("https://api.openai.com/v1", false).ok(),
            Some(false)
        );
        assert!(check_base_url("ftp://x", true).is_err());
        assert!(check_base_url("https://x/v1?key=abc", false).is_err());
        assert!(check_base_url("https://user:pw@x/v1", false).is_err());
        assert!(check_base_url("https://:sk-key@x/v1", false).is_err());
    }

    #[test]
    fn build_rejects_what_cannot_work() {
        let budget: Arc<dyn Budget> =
            Arc::new(super::super::InMemoryBudget::new(Default::default()));
        let no_key = ProviderSettings::new(ProviderKind::Anthropic);
        assert!(
            matches!(build(&no_key, Arc::clone(&budget)), Err(LlmError::Config(m)) if m.contains("API key"))
        );
        let mut local = ProviderSettings::new(ProviderKind::OpenAi);
        local.base_url = Some("http://localhost:11434/v1".into());
        assert!(
            matches!(build(&local, Arc::clone(&budget)), Err(LlmError::Config(m)) if m.contains("model"))
        );
        local.model = Some("llama3.2".into());
        let provider = build(&local, Arc::clone(&budget)).expect("local server needs no key");
        assert_eq!(provider.model(), "llama3.2");
        let mut zero = ProviderSettings::new(ProviderKind::Gemini);
        zero.api_key = Some(SecretString::from("k"));
        zero.max_attempts = 0;
        assert!(build(&zero, budget).is_err());
    }
}
