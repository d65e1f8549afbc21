//! Approval mail: SMTP through `lettre` (rustls; STARTTLS or implicit TLS,
//! plain only to a loopback server) or SendGrid's v3 `mail/send` with click
//! tracking off, so that the approval links reach the reader as Draco wrote
//! them (SendGrid Docs, "Mail Send" and "Click Tracking").

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::approvers::EmailAddress;

/// How mail leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    Smtp,
    Sendgrid,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (RFC 3207), required: port 587.
    Starttls,
    /// TLS from the first byte (RFC 8314): port 465.
    Tls,
    /// No encryption: refused unless the host is loopback.
    None,
}

/// ```toml
/// [email.smtp]
/// host = "smtp.example.com"
/// port = 587
/// tls = "starttls"      # "tls", or "none" for loopback only
/// username = "draco"    # password: DRACO_SMTP_PASSWORD or password_file
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub port: u16,
    pub tls: SmtpTls,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<std::path::PathBuf>,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            host: None,
            port: 587,
            tls: SmtpTls::Starttls,
            username: None,
            password_file: None,
        }
    }
}

/// ```toml
/// [email.sendgrid]
/// api_url = "https://api.sendgrid.com"   # key: DRACO_SENDGRID_API_KEY or api_key_file
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SendGridConfig {
    pub api_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_file: Option<std::path::PathBuf>,
}

impl Default for SendGridConfig {
    fn default() -> Self {
        Self {
            api_url: "https://api.sendgrid.com".into(),
            api_key_file: None,
        }
    }
}

/// `[email]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<Transport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<EmailAddress>,
    pub smtp: SmtpConfig,
    pub sendgrid: SendGridConfig,
}

fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl EmailConfig {
    pub fn is_configured(&self) -> bool {
        self.transport.is_some()
    }

    /// Errors: `(key, message)`.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        crate::endpoint::check_https_url(&self.sendgrid.api_url)
            .map_err(|m| ("email.sendgrid.api_url", m))?;
        let Some(transport) = self.transport else {
            return Ok(());
        };
        if self.from.is_none() {
            return Err((
                "email.from",
                "the address approval mail is sent from is needed".into(),
            ));
        }
        if transport == Transport::Smtp {
            let Some(host) = &self.smtp.host else {
                return Err(("email.smtp.host", "the SMTP server is needed".into()));
            };
            if self.smtp.tls == SmtpTls::None && !is_loopback_host(host) {
                return Err((
                    "email.smtp.tls",
                    "\"none\" sends mail (and the SMTP password) in clear text: only to a loopback server; use \"starttls\" or \"tls\"".into(),
                ));
            }
            if self.smtp.port == 0 {
                return Err(("email.smtp.port", "must be a port number".into()));
            }
        }
        Ok(())
    }
}

/// One mail to send.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: EmailAddress,
    /// The recipient's name as the directory has it.
    pub to_name: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error("cannot build the message: {0}")]
    Build(String),
    /// The server or the API refused or could not be reached; the text
    /// never holds the password or the API key.
    #[error("cannot send the mail: {0}")]
    Send(String),
}

/// A configured way of sending mail.
pub enum Mailer {
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
    },
    SendGrid {
        http: reqwest::Client,
        url: String,
        api_key: SecretString,
        from: EmailAddress,
    },
}

impl Mailer {
    /// Errors: the configuration is not for mail, or TLS cannot be set up.
    pub fn new(config: &EmailConfig, secret: Option<SecretString>) -> Result<Self, EmailError> {
        let from = config
            .from
            .clone()
            .ok_or_else(|| EmailError::Build("email.from is not set".into()))?;
        match config.transport {
            Some(Transport::Smtp) => {
                let smtp = &config.smtp;
                let host = smtp
                    .host
                    .clone()
                    .ok_or_else(|| EmailError::Build("email.smtp.host is not set".into()))?;
                let tls = match smtp.tls {
                    SmtpTls::None => Tls::None,
                    SmtpTls::Starttls | SmtpTls::Tls => {
                        let parameters = TlsParameters::new(host.clone())
                            .map_err(|e| EmailError::Build(e.to_string()))?;
                        if smtp.tls == SmtpTls::Tls {
                            Tls::Wrapper(parameters)
                        } else {
                            Tls::Required(parameters)
                        }
                    }
                };
                let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host)
                    .port(smtp.port)
                    .tls(tls)
                    .timeout(Some(Duration::from_secs(30)));
                if let (Some(user), Some(password)) = (&smtp.username, &secret) {
                    builder = builder.credentials(Credentials::new(
                        user.clone(),
                        password.expose_secret().to_owned(),
                    ));
                }
                let from = from
                    .as_str()
                    .parse::<lettre::Address>()
                    .map(|a| Mailbox::new(Some("Draco".into()), a))
                    .map_err(|e| EmailError::Build(e.to_string()))?;
                Ok(Mailer::Smtp {
                    transport: builder.build(),
                    from,
                })
            }
            Some(Transport::Sendgrid) => {
                let api_key = secret.ok_or_else(|| {
                    EmailError::Build(
                        "SendGrid needs an API key (DRACO_SENDGRID_API_KEY or email.sendgrid.api_key_file)".into(),
                    )
                })?;
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .map_err(|e| EmailError::Build(e.to_string()))?;
                Ok(Mailer::SendGrid {
                    http,
                    url: format!(
                        "{}/v3/mail/send",
                        config.sendgrid.api_url.trim_end_matches('/')
                    ),
                    api_key,
                    from,
                })
            }
            None => Err(EmailError::Build("email.transport is not set".into())),
        }
    }

    /// Sends `mail`; returns the provider's id of it when it gives one
    /// (SendGrid's `X-Message-Id`).
    pub async fn send(&self, mail: &Mail) -> Result<Option<String>, EmailError> {
        match self {
            Mailer::Smtp { transport, from } => {
                let to = mail
                    .to
                    .as_str()
                    .parse::<lettre::Address>()
                    .map(|a| Mailbox::new(Some(mail.to_name.clone()), a))
                    .map_err(|e| EmailError::Build(e.to_string()))?;
                let message = Message::builder()
                    .from(from.clone())
                    .to(to)
                    .subject(mail.subject.clone())
                    .multipart(MultiPart::alternative_plain_html(
                        mail.text.clone(),
                        mail.html.clone(),
                    ))
                    .map_err(|e| EmailError::Build(e.to_string()))?;
                transport
                    .send(message)
                    .await
                    .map_err(|e| EmailError::Send(e.to_string()))?;
                Ok(None)
            }
            Mailer::SendGrid {
                http,
                url,
                api_key,
                from,
            } => {
                let body = serde_json::json!({
                    "personalizations": [{ "to": [{ "email": mail.to.as_str(), "name": mail.to_name }] }],
                    "from": { "email": from.as_str(), "name": "Draco" },
                    "subject": mail.subject,
                    "content": [
                        { "type": "text/plain", "value": mail.text },
                        { "type": "text/html", "value": mail.html },
                    ],
                    // Links must reach the reader exactly as written: a
                    // rewritten link would be "clicked" by SendGrid's own
                    // redirector, and the token would travel through it.
                    "tracking_settings": {
                        "click_tracking": { "enable": false, "enable_text": false },
                        "open_tracking": { "enable": false },
                    },
                });
                let response = http
                    .post(url)
                    .bearer_auth(api_key.expose_secret())
                    .json(&body)
                    .send()
                    .await
                    .map_err(|e| EmailError::Send(e.without_url().to_string()))?;
                let status = response.status();
                let id = response
                    .headers()
                    .get("X-Message-Id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                if status.is_success() {
                    return Ok(id);
                }
                let text = response.text().await.unwrap_or_default();
                Err(EmailError::Send(format!(
                    "SendGrid answered HTTP {}: {}",
                    status.as_u16(),
                    crate::domain::neutralise(&text)
                        .chars()
                        .take(200)
                        .collect::<String>()
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_smtp_only_to_loopback() {
        let mut config = EmailConfig {
            transport: Some(Transport::Smtp),
            from: Some("draco@example.com".parse().unwrap()),
            ..EmailConfig::default()
        };
        assert!(config.check().unwrap_err().0 == "email.smtp.host");
        config.smtp.host = Some("smtp.example.com".into());
        assert!(config.check().is_ok());
        config.smtp.tls = SmtpTls::None;
        assert_eq!(config.check().unwrap_err().0, "email.smtp.tls");
        config.smtp.host = Some("127.0.0.1".into());
        assert!(config.check().is_ok());
        config.from = None;
        assert_eq!(config.check().unwrap_err().0, "email.from");
    }
}
