//! The approval routes: `POST /webhooks/twilio` (SMS replies) and
//! `GET`/`POST /approve/{token}` (the mail links' confirmation page).
//!
//! Twilio's request is authenticated before anything is read from it:
//! `X-Twilio-Signature` over `server.public_url` + `/webhooks/twilio` (as
//! configured, never the Host header: behind a proxy Draco sees another)
//! and every POST parameter; missing or wrong → `401`. The raw body is not
//! stored (it carries the code). A link's `GET` (and `HEAD`) only shows a
//! page: mail scanners that fetch links decide nothing. The page's form
//! posts back with an anti-forgery token that must match both the page's
//! cookie and the key it was made with.

use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use secrecy::SecretString;

use super::ServerApp;
use crate::channels::twilio;
use crate::notify::inbound::LinkPage;
use crate::notify::message::html_escape;
use crate::store::StoreError;
use crate::store::approvals::LinkAction;

/// Largest SMS webhook body accepted, in bytes: Twilio's parameters for one
/// message (a body of at most 1,600 characters, ten media URLs) fit in a
/// few kilobytes.
pub const MAX_SMS_BYTES: usize = 64 * 1024;
/// Largest confirmation form accepted (a reason of a few lines).
pub const MAX_FORM_BYTES: usize = 16 * 1024;

/// The cookie the confirmation page sets, echoed in its form.
const FORM_COOKIE: &str = "draco_form";

/// What the SMS webhook checks requests with.
pub struct SmsReceiver {
    pub auth_token: SecretString,
    /// `server.public_url` + `/webhooks/twilio`: what Twilio signs.
    pub url: String,
}

/// What the approval routes need from the application.
#[async_trait]
pub trait Approvals: Send + Sync {
    /// `None` when the SMS channel is off: the route answers `404`.
    fn sms_receiver(&self) -> Option<&SmsReceiver>;
    /// Whether links are served (mail is set up): otherwise `404`.
    fn links_enabled(&self) -> bool;
    /// Whether the public URL is `https` (the cookie is then `Secure`).
    fn public_url_is_https(&self) -> bool;
    /// `message_sid`: Twilio's id of the message (`MessageSid`), so that a
    /// replayed request is answered without being handled twice.
    async fn sms_reply(
        &self,
        message_sid: &str,
        from: &str,
        body: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, StoreError>;
    async fn link_page(&self, token: &str, now: DateTime<Utc>) -> Result<LinkPage, StoreError>;
    async fn link_decide(
        &self,
        token: &str,
        form_token: &str,
        cookie: Option<&str>,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(u16, String), StoreError>;
}

fn twiml(status: StatusCode, text: Option<&str>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        twilio::twiml(text),
    )
        .into_response()
}

/// `POST /webhooks/twilio`.
pub async fn twilio_webhook(
    State(app): State<Arc<dyn ServerApp>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(receiver) = app.sms_receiver() else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    let params: Vec<(String, String)> = url::form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let signature = headers
        .get(twilio::SIGNATURE_HEADER)
        .map(HeaderValue::as_bytes);
    if !twilio::verify(&receiver.auth_token, &receiver.url, &params, signature) {
        tracing::warn!("Twilio webhook refused: signature missing or wrong");
        return (StatusCode::UNAUTHORIZED, "signature check failed\n").into_response();
    }
    let form_encoded = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let field = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let (Some(from), Some(text), Some(sid), true) = (
        field("From"),
        field("Body"),
        field("MessageSid"),
        form_encoded,
    ) else {
        return (
            StatusCode::BAD_REQUEST,
            "a form-encoded message with From, Body and MessageSid is required\n",
        )
            .into_response();
    };
    if std::str::from_utf8(&body).is_err() {
        return (StatusCode::BAD_REQUEST, "the body is not UTF-8\n").into_response();
    }
    match app.sms_reply(sid, from, text, Utc::now()).await {
        Ok(reply) => twiml(StatusCode::OK, reply.as_deref()),
        Err(error) => {
            tracing::error!(%error, "cannot handle an SMS reply");
            // Twilio retries a failed request (and nothing was decided).
            (StatusCode::SERVICE_UNAVAILABLE, "try again later\n").into_response()
        }
    }
}

/// Headers every approval page carries: never cached, never framed, no
/// Referer (the URL holds the token), no script.
fn page(status: u16, title: &str, body_html: &str, cookie: Option<String>) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{}</title>\
         <style>body{{font-family:sans-serif;max-width:40em;margin:2em auto;padding:0 1em}}\
         button{{font-size:1.1em;padding:.4em 1.2em}}textarea{{width:100%}}</style></head>\
         <body><h1>{}</h1>{body_html}</body></html>",
        html_escape(title),
        html_escape(title)
    );
    let mut response = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
            ),
        ],
        html,
    )
        .into_response();
    if let Some(cookie) = cookie
        && let Ok(value) = HeaderValue::from_str(&cookie)
    {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// `GET /approve/{token}` (and `HEAD`): the confirmation page.
pub async fn link_get(
    State(app): State<Arc<dyn ServerApp>>,
    Path(token): Path<String>,
) -> Response {
    if !app.links_enabled() {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    }
    match app.link_page(&token, Utc::now()).await {
        Ok(LinkPage::Refused { status, why }) => page(
            status,
            "Nothing to decide",
            &format!("<p>{}</p>", html_escape(why)),
            None,
        ),
        Ok(LinkPage::Confirm {
            action,
            approver,
            summary,
            commit,
            form_token,
        }) => {
            let (title, button, reason) = match action {
                LinkAction::Approve => ("Approve this change?", "Approve", ""),
                LinkAction::Reject => (
                    "Reject this change?",
                    "Reject",
                    "<p><label>Why (required):<br><textarea name=\"reason\" rows=\"3\" required maxlength=\"1000\"></textarea></label></p>",
                ),
            };
            let secure = if app.public_url_is_https() {
                "; Secure"
            } else {
                ""
            };
            let cookie = format!(
                "{FORM_COOKIE}={form_token}; Path=/approve/; HttpOnly; SameSite=Strict; Max-Age=3600{secure}"
            );
            let body = format!(
                "<p>You are <strong>{}</strong>.</p><p>{}</p><p>Commit <code>{}</code>: your decision is for this exact commit.</p>\
                 <form method=\"post\"><input type=\"hidden\" name=\"form_token\" value=\"{}\">{reason}\
                 <button type=\"submit\">{button}</button></form>\
                 <p>Opening this page changed nothing.</p>",
                html_escape(&approver),
                html_escape(&summary),
                html_escape(&commit),
                html_escape(&form_token),
            );
            page(200, title, &body, Some(cookie))
        }
        Err(error) => {
            tracing::error!(%error, "cannot show an approval page");
            page(
                503,
                "Try again later",
                "<p>Draco cannot read its database right now.</p>",
                None,
            )
        }
    }
}

/// `POST /approve/{token}`: the form's answer.
pub async fn link_post(
    State(app): State<Arc<dyn ServerApp>>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !app.links_enabled() {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    }
    let fields: Vec<(String, String)> = url::form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let Some(form_token) = field("form_token") else {
        return page(
            400,
            "Nothing was decided",
            "<p>The form is incomplete: open the link again.</p>",
            None,
        );
    };
    let reason = field("reason").map(str::trim).filter(|r| !r.is_empty());
    match app
        .link_decide(
            &token,
            form_token,
            super::cookie(&headers, FORM_COOKIE),
            reason,
            Utc::now(),
        )
        .await
    {
        Ok((status, text)) => page(
            status,
            if status == 200 {
                "Done"
            } else {
                "Nothing was decided"
            },
            &format!("<p>{}</p>", html_escape(&text)),
            None,
        ),
        Err(error) => {
            tracing::error!(%error, "cannot record a decision from a link");
            page(
                503,
                "Try again later",
                "<p>Nothing was decided: Draco cannot write to its database right now. Open the link again later.</p>",
                None,
            )
        }
    }
}
