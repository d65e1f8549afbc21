//! `[server]`: where `draco run` listens and how the outside reaches it.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The daemon's HTTP server.
///
/// ```toml
/// [server]
/// listen = "127.0.0.1:8080"                  # DRACO_SERVER_LISTEN
/// public_url = "https://draco.example.com"   # optional for now
/// shutdown_grace_secs = 10
/// # health_listen = "0.0.0.0:8081"         # probes and metrics only
/// dashboard = true                           # GET /, /findings/{id}, /scans
/// # dashboard_token_file = "/run/secrets/draco-dashboard-token"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port to bind. Loopback by default: exposing the server is a
    /// decision for the operator (a reverse proxy, a Kubernetes Service).
    pub listen: SocketAddr,
    /// How providers and people reach this server (webhook URLs, links in
    /// messages): an `https://` URL, or `http://` for loopback. No path, query
    /// or credentials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// Seconds that in-flight work (a scan, a request) gets after SIGTERM
    /// before it is cancelled.
    pub shutdown_grace_secs: u64,
    /// A second address serving only `/healthz`, `/readyz` and `/metrics`
    /// (`DRACO_SERVER_HEALTH_LISTEN`), for the orchestrator's probes and
    /// Prometheus: they then never wait behind whatever floods `listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_listen: Option<SocketAddr>,
    /// Whether `listen` serves the read-only dashboard (`GET /`,
    /// `/findings/{id}`, `/scans`; `DRACO_SERVER_DASHBOARD`). Off, those
    /// routes answer `404` and no dashboard token is needed.
    pub dashboard: bool,
    /// A file holding the operator token that opens the dashboard
    /// (`DRACO_DASHBOARD_TOKEN` wins). Set, the dashboard asks for it on a
    /// login page; unset, the dashboard is open, which the config check
    /// allows only when `listen` is a loopback address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dashboard_token_file: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            shutdown_grace_secs: 10,
            health_listen: None,
            dashboard: true,
            dashboard_token_file: None,
        }
    }
}

/// Why `server.public_url` was refused (the value itself is not repeated: it
/// may hold credentials).
pub fn check_public_url(raw: &str) -> Result<(), String> {
    let url = crate::endpoint::check_https_url(raw)?;
    if url.path() != "/" && !url.path().is_empty() {
        return Err(
            "must be the server's root (routes such as /webhooks/github are appended)".into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_url_is_an_https_root_without_credentials() {
        assert!(check_public_url("https://draco.example.com").is_ok());
        assert!(check_public_url("https://draco.example.com/").is_ok());
        assert!(check_public_url("http://127.0.0.1:8080").is_ok());
        assert!(check_public_url("http://draco.example.com").is_err());
        assert!(check_public_url("https://u:p@draco.example.com").is_err());
        assert!(check_public_url("https://draco.example.com/hooks").is_err());
        assert!(check_public_url("https://draco.example.com/?x=1").is_err());
        assert!(check_public_url("ftp://draco.example.com").is_err());
        assert!(check_public_url("draco.example.com").is_err());
    }
}
