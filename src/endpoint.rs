//! Rules for the URLs Draco sends to or publishes (`server.public_url`,
//! `gitops.github.api_url`), in one place so every endpoint is held to them.

/// Parses a URL Draco sends to or publishes: `https://`, or `http://` only
/// on loopback (a stand-in, a local test); no credentials (they would be
/// logged and shown), no query or fragment. The error never repeats the
/// value.
pub fn check_https_url(raw: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(raw).map_err(|e| format!("not a URL ({e})"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not hold credentials".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment".into());
    }
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost",
        None => return Err("has no host".into()),
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        "http" => Err("must use https (plain http only for loopback)".into()),
        other => Err(format!("scheme `{other}` is not http or https")),
    }
}
