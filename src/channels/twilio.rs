//! Twilio Programmable Messaging: sending an SMS (the Messages API) and
//! checking the signature of an inbound one (`X-Twilio-Signature`).
//!
//! A small reqwest client rather than the `twilio` crate: that one pulls in
//! OpenSSL and hyper 0.14, hard-codes the API host (no stand-in, no
//! regional endpoint), and compares signatures in variable time.
//!
//! Sources: Twilio Docs, "Create a Message resource"
//! (`POST /2010-04-01/Accounts/{AccountSid}/Messages.json`, form-encoded,
//! HTTP basic auth with the Account SID and auth token) and "Webhooks
//! security" (the signature algorithm, checked against the published
//! vectors in `../shared/data/vectors/twilio_signature.json`).

use std::time::Duration;

use base64::Engine as _;
use hmac::{KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::approvers::PhoneNumber;

/// The header an inbound request's signature comes in.
pub const SIGNATURE_HEADER: &str = "X-Twilio-Signature";

/// The route Twilio posts inbound messages to, after `server.public_url`.
pub const WEBHOOK_PATH: &str = "/webhooks/twilio";

/// ```toml
/// [twilio]
/// api_url = "https://api.twilio.com"   # root; /2010-04-01/… is appended
/// account_sid = "AC…"
/// from = "+15557654321"                # or messaging_service_sid = "MG…"
/// # auth_token_file = "/run/secrets/twilio"   # or DRACO_TWILIO_AUTH_TOKEN
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TwilioConfig {
    pub api_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_sid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<PhoneNumber>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messaging_service_sid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_token_file: Option<std::path::PathBuf>,
}

impl Default for TwilioConfig {
    fn default() -> Self {
        Self {
            api_url: "https://api.twilio.com".into(),
            account_sid: None,
            from: None,
            messaging_service_sid: None,
            auth_token_file: None,
        }
    }
}

/// Whether `sid` looks like a Twilio SID with `prefix` (`AC`, `MG`): the
/// prefix and 32 hexadecimal digits.
fn is_sid(sid: &str, prefix: &str) -> bool {
    sid.len() == 34 && sid.starts_with(prefix) && sid[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

impl TwilioConfig {
    /// Whether the SMS channel is set up at all.
    pub fn is_configured(&self) -> bool {
        self.account_sid.is_some()
    }

    /// Errors: `(key, message)`.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        crate::endpoint::check_https_url(&self.api_url).map_err(|m| ("twilio.api_url", m))?;
        if let Some(sid) = &self.account_sid
            && !is_sid(sid, "AC")
        {
            return Err((
                "twilio.account_sid",
                "is not an Account SID (`AC` and 32 hexadecimal digits)".into(),
            ));
        }
        if let Some(sid) = &self.messaging_service_sid
            && !is_sid(sid, "MG")
        {
            return Err((
                "twilio.messaging_service_sid",
                "is not a Messaging Service SID (`MG` and 32 hexadecimal digits)".into(),
            ));
        }
        if self.is_configured() && self.from.is_none() == self.messaging_service_sid.is_none() {
            return Err((
                "twilio",
                "set exactly one of `from` (a Twilio number) and `messaging_service_sid`".into(),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TwilioError {
    /// Twilio answered with an error (its code and message; Twilio's error
    /// texts hold no secret).
    #[error("Twilio refused the message: HTTP {status}, error {code}: {message}")]
    Refused {
        status: u16,
        code: u32,
        message: String,
    },
    /// The recipient opted out (Twilio error 21610): Draco must not retry.
    #[error("the recipient has opted out of messages from this number (Twilio error 21610)")]
    OptedOut,
    #[error("cannot reach Twilio: {0}")]
    Transport(String),
}

/// Twilio's error body (`{code, message, more_info, status}`).
#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: Option<u32>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
struct Created {
    sid: String,
}

/// Sends SMS through one Twilio account.
pub struct TwilioClient {
    http: reqwest::Client,
    messages_url: String,
    account_sid: String,
    auth_token: SecretString,
    sender: Sender,
}

enum Sender {
    From(String),
    Service(String),
}

impl TwilioClient {
    /// Errors: the configuration has no account (see [`TwilioConfig::check`]).
    pub fn new(config: &TwilioConfig, auth_token: SecretString) -> Result<Self, TwilioError> {
        let account_sid = config
            .account_sid
            .clone()
            .ok_or_else(|| TwilioError::Transport("twilio.account_sid is not set".into()))?;
        let sender = match (&config.from, &config.messaging_service_sid) {
            (Some(from), _) => Sender::From(from.as_str().to_owned()),
            (None, Some(service)) => Sender::Service(service.clone()),
            (None, None) => {
                return Err(TwilioError::Transport(
                    "twilio.from or twilio.messaging_service_sid is needed".into(),
                ));
            }
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| TwilioError::Transport(e.to_string()))?;
        Ok(Self {
            http,
            messages_url: format!(
                "{}/2010-04-01/Accounts/{account_sid}/Messages.json",
                config.api_url.trim_end_matches('/')
            ),
            account_sid,
            auth_token,
            sender,
        })
    }

    /// Sends `body` to `to`; returns the Message SID Twilio gave it.
    pub async fn send(&self, to: &PhoneNumber, body: &str) -> Result<String, TwilioError> {
        let mut form = vec![("To", to.as_str()), ("Body", body)];
        match &self.sender {
            Sender::From(from) => form.push(("From", from)),
            Sender::Service(sid) => form.push(("MessagingServiceSid", sid)),
        }
        let response = self
            .http
            .post(&self.messages_url)
            .basic_auth(&self.account_sid, Some(self.auth_token.expose_secret()))
            .form(&form)
            .send()
            .await
            // reqwest's error text names the URL, which holds no secret.
            .map_err(|e| TwilioError::Transport(e.without_url().to_string()))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| TwilioError::Transport(e.without_url().to_string()))?;
        if status.is_success() {
            let created: Created = serde_json::from_slice(&bytes).map_err(|_| {
                TwilioError::Transport("Twilio's answer is not a Message resource".into())
            })?;
            return Ok(created.sid);
        }
        let error: Option<ErrorBody> = serde_json::from_slice(&bytes).ok();
        let code = error.as_ref().and_then(|e| e.code).unwrap_or(0);
        if code == 21610 {
            return Err(TwilioError::OptedOut);
        }
        Err(TwilioError::Refused {
            status: status.as_u16(),
            code,
            message: error
                .and_then(|e| e.message)
                .map(|m| crate::domain::neutralise(&m).chars().take(200).collect())
                .unwrap_or_default(),
        })
    }
}

/// Twilio's signature of a form POST to `url`: base64 of HMAC-SHA1, keyed
/// with the auth token, over the URL followed by each parameter name and
/// value, names sorted (a repeated name: its values sorted, each once).
pub fn signature(auth_token: &SecretString, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    sorted.dedup();
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(auth_token.expose_secret().as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The forms of `url` a signature may have been made over: as configured,
/// with the scheme's default port written out, and with any port left out
/// (Twilio's own validators accept all three).
pub fn url_variants(url: &str) -> Vec<String> {
    let mut variants = vec![url.to_owned()];
    // By hand, not with `url::Url`: it drops a default port when parsing,
    // and the signature is over the text as Twilio had it.
    let Some((scheme, rest)) = url.split_once("://") else {
        return variants;
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    // The port is after the last `:` that is not inside an IPv6 `[…]`.
    let port_at = authority
        .rfind(':')
        .filter(|&i| !authority[i..].contains(']'));
    match port_at {
        Some(i) => variants.push(format!("{scheme}://{}{tail}", &authority[..i])),
        None => {
            let default = match scheme.to_ascii_lowercase().as_str() {
                "https" => Some(443),
                "http" => Some(80),
                _ => None,
            };
            if let Some(port) = default {
                variants.push(format!("{scheme}://{authority}:{port}{tail}"));
            }
        }
    }
    variants
}

/// Checks `given` (the `X-Twilio-Signature` header) against the signature
/// over any form of `url` ([`url_variants`]), in constant time.
pub fn verify(
    auth_token: &SecretString,
    url: &str,
    params: &[(String, String)],
    given: Option<&[u8]>,
) -> bool {
    use subtle::ConstantTimeEq as _;
    let Some(given) = given else { return false };
    let mut ok = subtle::Choice::from(0);
    for variant in url_variants(url) {
        let expected = signature(auth_token, &variant, params);
        ok |= expected.as_bytes().ct_eq(given);
    }
    ok.into()
}

/// A TwiML answer to an inbound message: `text` sent back as a reply, or
/// none (an empty `<Response/>`: Twilio sends nothing).
pub fn twiml(text: Option<&str>) -> String {
    match text {
        None => "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>".to_owned(),
        Some(text) => format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message>{}</Message></Response>",
            crate::domain::escape_markup(text)
        ),
    }
}

/// What an inbound text says, as Draco reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `YES <code>`.
    Approve { code: String },
    /// `NO <code> <reason>` (the reason may be empty: then it is refused).
    Reject { code: String, reason: String },
    /// An opt-out keyword (STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT,
    /// REVOKE, OPTOUT): no more messages to this number until it opts in.
    OptOut,
    /// An opt-in keyword (START, UNSTOP, and a bare YES): messages resume.
    OptIn,
    /// HELP or INFO.
    Help,
    /// Anything else (a bare NO, a code alone, free text).
    Unknown,
}

/// Twilio's default opt-out keywords, matched on the whole message,
/// case-insensitive (Twilio Docs, "Advanced Opt-Out").
const OPT_OUT: [&str; 8] = [
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "REVOKE",
    "OPTOUT",
];
/// Opt-in keywords. A bare `YES` is one: it is never an approval.
const OPT_IN: [&str; 3] = ["START", "YES", "UNSTOP"];
const HELP: [&str; 2] = ["HELP", "INFO"];

/// Reads an inbound `Body`. Keywords are whole-message matches (after
/// trimming spaces and a trailing full stop or exclamation mark), so that
/// `YES 123456` is a decision and `YES` alone is an opt-in.
pub fn parse_reply(body: &str) -> Reply {
    let text = body.trim().trim_end_matches(['.', '!']).trim();
    let upper = text.to_uppercase();
    if OPT_OUT.contains(&upper.as_str()) {
        return Reply::OptOut;
    }
    if OPT_IN.contains(&upper.as_str()) {
        return Reply::OptIn;
    }
    if HELP.contains(&upper.as_str()) {
        return Reply::Help;
    }
    let mut words = text.split_whitespace();
    let verb = words.next().unwrap_or("").to_uppercase();
    let code = words.next().unwrap_or("");
    if code.is_empty() || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Reply::Unknown;
    }
    let rest: Vec<&str> = words.collect();
    match verb.as_str() {
        "YES" | "Y" | "APPROVE" if rest.is_empty() => Reply::Approve { code: code.into() },
        "NO" | "N" | "REJECT" => Reply::Reject {
            code: code.into(),
            reason: rest.join(" "),
        },
        _ => Reply::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors() -> Option<serde_json::Value> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/data/vectors/twilio_signature.json");
        let text = std::fs::read_to_string(path).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn params(v: &serde_json::Value) -> Vec<(String, String)> {
        v.as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect()
    }

    /// The published vectors (twilio-python's validator tests), inlined so
    /// that a bare clone checks them too; the file, when beside the
    /// project, is checked to still say the same.
    const TOKEN: &str = "12345";
    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    fn form() -> Vec<(String, String)> {
        [
            ("CallSid", "CA1234567890ABCDE"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
            ("Caller", "+14158675309"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
    }

    #[test]
    fn signatures_match_twilios_published_vectors() {
        let token = SecretString::from(TOKEN);
        assert_eq!(
            signature(&token, URL, &form()),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
        // Signed with the default port written out; checked without it.
        assert!(verify(
            &token,
            URL,
            &form(),
            Some(b"kvajT1Ptam85bY51eRf/AJRuM3w=")
        ));
        assert!(verify(
            &token,
            "http://mycompany.com/myapp.php?foo=1&bar=2",
            &form(),
            Some(b"0ZXoZLH/DfblKGATFgpif+LLRf4=")
        ));
        assert!(verify(
            &token,
            "http://mycompany.com:1234/myapp.php?foo=1&bar=2",
            &form(),
            Some(b"Zmvh+3yNM1Phv2jhDCwEM3q5ebU=")
        ));
        // Signed without a port; configured with the default one.
        assert!(verify(
            &token,
            "https://mycompany.com:443/myapp.php?foo=1&bar=2",
            &form(),
            Some(b"RSOYDt4T1cUTdK1PDd93/VVr8B8=")
        ));
        let repeated: Vec<(String, String)> = [
            ("Sid", "CA123"),
            ("SidAccount", "AC123"),
            ("Digits", "5678"),
            ("Digits", "1234"),
            ("Digits", "1234"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        assert_eq!(
            signature(&token, URL, &repeated),
            "IK+Dwps556ElfBT0I3Rgjkr1wJU="
        );

        assert!(!verify(&token, URL, &form(), None));
        assert!(!verify(
            &token,
            URL,
            &form(),
            Some(b"RSOYDt4T1cUTdK1PDd93/VVr8B8")
        ));
        let mut changed = form();
        changed[1].1 = "1235".into();
        assert!(!verify(
            &token,
            URL,
            &changed,
            Some(b"RSOYDt4T1cUTdK1PDd93/VVr8B8=")
        ));
        let other = SecretString::from("12346");
        assert!(!verify(
            &other,
            URL,
            &form(),
            Some(b"RSOYDt4T1cUTdK1PDd93/VVr8B8=")
        ));

        if let Some(file) = vectors() {
            assert_eq!(file["auth_token"], TOKEN);
            assert_eq!(file["form_post"]["url"], URL);
            assert_eq!(params(&file["form_post"]["params"]).len(), form().len());
            assert_eq!(
                file["form_post"]["expected_signature"],
                "RSOYDt4T1cUTdK1PDd93/VVr8B8="
            );
        }
    }

    #[test]
    fn replies_are_read_as_twilio_matches_keywords() {
        assert_eq!(
            parse_reply(" yes 123456 "),
            Reply::Approve {
                code: "123456".into()
            }
        );
        assert_eq!(
            parse_reply("NO 123456 not during the freeze"),
            Reply::Reject {
                code: "123456".into(),
                reason: "not during the freeze".into()
            }
        );
        assert_eq!(
            parse_reply("no 123456"),
            Reply::Reject {
                code: "123456".into(),
                reason: String::new()
            }
        );
        for opt_in in ["YES", "yes", "Yes.", "START", "unstop"] {
            assert_eq!(parse_reply(opt_in), Reply::OptIn, "{opt_in}");
        }
        for opt_out in [
            "STOP",
            "stop",
            "Stop!",
            "unsubscribe",
            "CANCEL",
            "end",
            "quit",
            "revoke",
            "optout",
            "STOPALL",
        ] {
            assert_eq!(parse_reply(opt_out), Reply::OptOut, "{opt_out}");
        }
        assert_eq!(parse_reply("help"), Reply::Help);
        for unknown in [
            "NO",
            "123456",
            "yes please",
            "YES abc",
            "YES 123456 extra",
            "",
            "STOP 123456",
        ] {
            assert_eq!(parse_reply(unknown), Reply::Unknown, "{unknown}");
        }
    }

    #[test]
    fn twiml_escapes_text() {
        assert_eq!(
            twiml(Some("a <b> & \"c\"")),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message>a &lt;b&gt; &amp; &quot;c&quot;</Message></Response>"
        );
        assert!(twiml(None).ends_with("<Response/>"));
    }

    #[test]
    fn sids_are_checked() {
        let mut config = TwilioConfig {
            account_sid: Some(format!("AC{}", "0".repeat(32))),
            from: Some("+15557654321".parse().unwrap()),
            ..TwilioConfig::default()
        };
        assert!(config.check().is_ok());
        config.messaging_service_sid = Some(format!("MG{}", "a".repeat(32)));
        assert!(config.check().is_err(), "both from and a service");
        config.from = None;
        assert!(config.check().is_ok());
        config.account_sid = Some("AC123".into());
        assert!(config.check().is_err());
    }
}
