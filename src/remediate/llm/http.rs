//! The HTTP plumbing the three providers share: one client, one way to POST
//! JSON and classify the outcome, error-body and `Retry-After` parsing.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Client, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::LlmError;

/// Longest provider message kept in an error: enough for "model not found:
/// gpt-x", short enough that a body echoing a prompt cannot flood a log.
const MAX_MESSAGE_CHARS: usize = 300;

/// The client every provider shares. TLS is rustls with the platform's
/// roots (reqwest's `rustls` feature, never OpenSSL); `HTTP(S)_PROXY` work
/// as reqwest's default, the OS-settings proxy feature is off. The total
/// per-request timeout is set on each request, from that provider's
/// settings, so one client serves all.
pub fn http_client(connect_timeout: Duration) -> Result<Client, LlmError> {
    Client::builder()
        .connect_timeout(connect_timeout)
        .user_agent(concat!("draco/", env!("CARGO_PKG_VERSION")))
        // Providers never redirect an API call; following one could carry the
        // key header to another host.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| LlmError::Config(format!("cannot build the HTTP client: {e}")))
}

/// One POST to a provider, as the provider sees it.
pub(crate) struct Call<'a> {
    pub provider: &'static str,
    pub client: &'a Client,
    pub url: &'a Url,
    pub headers: HeaderMap,
    pub timeout: Duration,
    /// Replaced in any provider message that echoes it.
    pub secret: Option<&'a SecretString>,
}

impl Call<'_> {
    /// Sends `body` and decodes a 2xx answer as `T`; anything else becomes the
    /// matching [`LlmError`].
    pub async fn post_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        self,
        body: &B,
    ) -> Result<T, LlmError> {
        let response = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .timeout(self.timeout)
            .json(body)
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        let status = response.status();
        let retry_after = retry_after(response.headers(), SystemTime::now());
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(e))?;
        if !status.is_success() {
            return Err(self.status_error(status, &bytes, retry_after));
        }
        serde_json::from_slice(&bytes).map_err(|e| LlmError::Malformed {
            provider: self.provider,
            message: format!("the response is not the documented shape: {e}"),
            usage: None,
        })
    }

    fn transport_error(&self, error: reqwest::Error) -> LlmError {
        if error.is_timeout() {
            return LlmError::Timeout {
                provider: self.provider,
                after: self.timeout,
            };
        }
        // reqwest puts the URL in its message; ours hold no key, but logs
        // are no place for endpoints either. The source chain says what failed.
        let error = error.without_url();
        let mut message = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        LlmError::Connect {
            provider: self.provider,
            message: self.sanitise(&message),
        }
    }

    fn status_error(
        &self,
        status: StatusCode,
        body: &[u8],
        retry_after: Option<Duration>,
    ) -> LlmError {
        let provider = self.provider;
        let parsed = ErrorBody::parse(body);
        match status.as_u16() {
            401 | 403 => LlmError::Auth {
                provider,
                status: status.as_u16(),
                detail: parsed
                    .kind
                    .map(|k| format!(", {}", self.sanitise(&k)))
                    .unwrap_or_default(),
            },
            code @ (429 | 500 | 502 | 503 | 504 | 529) => LlmError::Unavailable {
                provider,
                status: code,
                message: self.sanitise(&parsed.describe(status)),
                retry_after,
            },
            code => LlmError::Rejected {
                provider,
                status: code,
                message: self.sanitise(&parsed.describe(status)),
            },
        }
    }

    fn sanitise(&self, text: &str) -> String {
        sanitise(text, self.secret)
    }
}

/// Removes the key wherever it appears and caps the length.
pub(crate) fn sanitise(text: &str, secret: Option<&SecretString>) -> String {
    let mut text = text.to_owned();
    if let Some(secret) = secret {
        let key = secret.expose_secret();
        if !key.is_empty() {
            text = text.replace(key, "[REDACTED]");
        }
    }
    if text.chars().count() > MAX_MESSAGE_CHARS {
        text = text.chars().take(MAX_MESSAGE_CHARS).collect::<String>() + "…";
    }
    text
}

/// The documented error bodies, read leniently because they differ:
/// - OpenAI: `{"error": {"message", "type", "param", "code"}}`
/// - Gemini (Google APIs): `{"error": {"code": 400, "message", "status": "INVALID_ARGUMENT"}}`
/// - Anthropic: `{"type": "error", "error": {"type": "overloaded_error", "message"}, "request_id"}`
/// - some OpenAI-compatible servers (Ollama, llama.cpp): `{"error": "text"}`
#[derive(Debug, Default, PartialEq)]
pub(crate) struct ErrorBody {
    pub message: Option<String>,
    /// `type`, `status` or string `code`: machine-readable, safe to show.
    pub kind: Option<String>,
}

impl ErrorBody {
    pub fn parse(body: &[u8]) -> ErrorBody {
        let Ok(value) = serde_json::from_slice::<Value>(body) else {
            // Not JSON (a proxy's HTML page, say). Nothing of it is kept: it
            // could be anything, including an echo of the request.
            return ErrorBody::default();
        };
        match value.get("error") {
            Some(Value::String(message)) => ErrorBody {
                message: Some(message.clone()),
                kind: None,
            },
            Some(Value::Object(error)) => {
                let text = |key: &str| error.get(key).and_then(Value::as_str).map(str::to_owned);
                ErrorBody {
                    message: text("message"),
                    kind: text("type")
                        .or_else(|| text("status"))
                        .or_else(|| text("code")),
                }
            }
            _ => ErrorBody::default(),
        }
    }

    fn describe(&self, status: StatusCode) -> String {
        match (&self.kind, &self.message) {
            (Some(kind), Some(message)) => format!("{kind}: {message}"),
            (None, Some(message)) => message.clone(),
            (Some(kind), None) => kind.clone(),
            (None, None) => status
                .canonical_reason()
                .unwrap_or("no error message")
                .to_owned(),
        }
    }
}

/// `Retry-After` as RFC 9110 defines it: delay-seconds or an HTTP-date.
/// OpenAI also sends `retry-after-ms`, which its own SDK prefers; so do we.
/// A date in the past means "now".
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
    {
        // A huge value must not panic; it is capped by the retry policy anyway.
        return Some(Duration::try_from_secs_f64(ms / 1000.0).unwrap_or(Duration::MAX));
    }
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Parses the model's text as JSON. Servers that enforce the schema send
/// bare JSON; some local models behind OpenAI-compatible servers wrap it in
/// a Markdown fence anyway, so one surrounding fence is tolerated.
pub(crate) fn parse_json_text(
    provider: &'static str,
    text: &str,
    usage: super::Usage,
) -> Result<Value, LlmError> {
    let trimmed = text.trim();
    let unfenced = trimmed
        .strip_prefix("```json")
        .or_else(|| trimmed.strip_prefix("```"))
        .and_then(|rest| rest.strip_suffix("```"))
        .unwrap_or(trimmed);
    serde_json::from_str(unfenced).map_err(|e| LlmError::Malformed {
        provider,
        message: format!(
            "the answer is not JSON ({e}); {} characters of text came back",
            text.chars().count()
        ),
        usage: Some(usage),
    })
}

/// `{base}{path}` as a URL, without `Url::join`'s surprises (a base without
/// a trailing slash would lose its last segment).
pub(crate) fn endpoint(base: &str, path: &str) -> Result<Url, LlmError> {
    let joined = format!("{}{}", base.trim_end_matches('/'), path);
    Url::parse(&joined)
        .map_err(|e| LlmError::Config(format!("base URL `{base}` does not make a URL: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).expect("test header"));
        h
    }

    #[test]
    fn retry_after_reads_seconds_dates_and_milliseconds() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").expect("date");
        let h = headers("retry-after", "7");
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        let h = headers("retry-after", "Wed, 21 Oct 2015 07:28:30 GMT");
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(30)));
        // The obsolete RFC 850 form is still a valid HTTP-date.
        let h = headers("retry-after", "Wednesday, 21-Oct-15 07:29:00 GMT");
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(60)));
        let h = headers("retry-after", "Wed, 21 Oct 2015 07:00:00 GMT");
        assert_eq!(retry_after(&h, now), Some(Duration::ZERO));
        let h = headers("retry-after-ms", "1500");
        assert_eq!(retry_after(&h, now), Some(Duration::from_millis(1500)));
        // Absurd but finite: capped, not a panic.
        let h = headers("retry-after-ms", "1e30");
        assert_eq!(retry_after(&h, now), Some(Duration::MAX));
        let h = headers("retry-after", "soon");
        assert_eq!(retry_after(&h, now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn error_bodies_of_each_provider_are_read() {
        let openai = br#"{"error":{"message":"model not found","type":"invalid_request_error","param":null,"code":"model_not_found"}}"#;
        assert_eq!(
            ErrorBody::parse(openai),
            ErrorBody {
                message: Some("model not found".into()),
                kind: Some("invalid_request_error".into())
            }
        );
        let gemini =
            br#"{"error":{"code":400,"message":"bad schema","status":"INVALID_ARGUMENT"}}"#;
        assert_eq!(
            ErrorBody::parse(gemini).kind.as_deref(),
            Some("INVALID_ARGUMENT")
        );
        let anthropic = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}"#;
        assert_eq!(
            ErrorBody::parse(anthropic).kind.as_deref(),
            Some("overloaded_error")
        );
        let ollama = br#"{"error":"model 'x' not found"}"#;
        assert_eq!(
            ErrorBody::parse(ollama).message.as_deref(),
            Some("model 'x' not found")
        );
        assert_eq!(ErrorBody::parse(b"<html>502</html>"), ErrorBody::default());
    }

    #[test]
    fn sanitise_removes_the_key_and_caps_length() {
        let key = SecretString::from("sk-secret-123");
        let text = sanitise("Incorrect API key provided: sk-secret-123.", Some(&key));
        assert_eq!(text, "Incorrect API key provided: [REDACTED].");
        let long = sanitise(&"x".repeat(1000), None);
        assert_eq!(long.chars().count(), MAX_MESSAGE_CHARS + 1);
    }

    #[test]
    fn fenced_json_is_accepted_and_prose_is_malformed() {
        let usage = super::super::Usage::default();
        let v = parse_json_text("openai", "```json\n{\"a\":1}\n```", usage).expect("fenced");
        assert_eq!(v, serde_json::json!({"a": 1}));
        let err = parse_json_text("openai", "Sure! Here is", usage).expect_err("prose");
        assert!(matches!(err, LlmError::Malformed { .. }));
    }

    #[test]
    fn endpoint_keeps_the_base_path() {
        let url = endpoint("http://127.0.0.1:11434/v1", "/chat/completions").expect("url");
        assert_eq!(url.as_str(), "http://127.0.0.1:11434/v1/chat/completions");
        let url = endpoint("https://api.openai.com/v1/", "/chat/completions").expect("url");
        assert_eq!(url.as_str(), "https://api.openai.com/v1/chat/completions");
    }
}
