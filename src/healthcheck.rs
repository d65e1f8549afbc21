//! `draco healthcheck`: one GET of the daemon's `/healthz`, for container
//! runtimes whose image has no shell and no curl (the distroless image in
//! `deploy/Dockerfile`), so Draco checks itself.
//!
//! Plain HTTP/1.1 over `std::net`, by hand: the probe targets the daemon's
//! own loopback port, never TLS, and a blocking socket with timeouts needs
//! neither the runtime nor a client's connection pool. Only `http://` URLs
//! are accepted, so nothing here can reach out beyond what it is given.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Why the probe failed; the command prints it and exits 1.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{url}: not a plain http:// URL with a host ({why})")]
    BadUrl { url: String, why: String },
    #[error("{url}: cannot connect: {source}")]
    Connect { url: String, source: std::io::Error },
    #[error("{url}: no answer: {source}")]
    Io { url: String, source: std::io::Error },
    #[error("{url}: answered `{status_line}`, not 200")]
    Status { url: String, status_line: String },
}

/// GETs `url` (http only) within `timeout` for connecting, writing and
/// reading each; `Ok` only for a `200` status.
pub fn probe(url: &str, timeout: Duration) -> Result<(), ProbeError> {
    let bad = |why: &str| ProbeError::BadUrl {
        url: url.to_owned(),
        why: why.to_owned(),
    };
    let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    if parsed.scheme() != "http" {
        return Err(bad("the scheme must be http"));
    }
    let host = parsed.host_str().ok_or_else(|| bad("no host"))?;
    let port = parsed.port_or_known_default().unwrap_or(80);
    let io = |source| ProbeError::Io {
        url: url.to_owned(),
        source,
    };
    let addr = (host.trim_matches(['[', ']']), port)
        .to_socket_addrs()
        .map_err(|source| ProbeError::Connect {
            url: url.to_owned(),
            source,
        })?
        .next()
        .ok_or_else(|| bad("the host resolves to no address"))?;
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|source| ProbeError::Connect {
            url: url.to_owned(),
            source,
        })?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let path = match parsed.query() {
        Some(query) => format!("{}?{query}", parsed.path()),
        None => parsed.path().to_owned(),
    };
    let authority = match parsed.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: draco-healthcheck\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(io)?;
    // The status line is all that is needed; 512 bytes hold it with room.
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    while !head.contains(&b'\n') && head.len() < 512 {
        let n = stream.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let status_line = String::from_utf8_lossy(&head)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let mut parts = status_line.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(version), Some("200")) if version.starts_with("HTTP/1.") => Ok(()),
        _ => Err(ProbeError::Status {
            url: url.to_owned(),
            status_line,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-shot server answering `answer` to the first connection.
    fn serve_once(answer: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("bound address").port();
        std::thread::spawn(move || {
            if let Ok((mut conn, _)) = listener.accept() {
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf);
                let _ = conn.write_all(answer.as_bytes());
            }
        });
        format!("http://127.0.0.1:{port}/healthz")
    }

    #[test]
    fn a_200_answer_passes() {
        let url = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        probe(&url, Duration::from_secs(2)).expect("200 is healthy");
    }

    #[test]
    fn any_other_status_fails_naming_it() {
        let url = serve_once("HTTP/1.1 503 Service Unavailable\r\n\r\n");
        let err = probe(&url, Duration::from_secs(2)).expect_err("503 is not healthy");
        assert!(err.to_string().contains("503"), "{err}");
    }

    #[test]
    fn a_closed_port_fails() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("bound address").port();
        drop(listener);
        let url = format!("http://127.0.0.1:{port}/healthz");
        assert!(matches!(
            probe(&url, Duration::from_secs(2)),
            Err(ProbeError::Connect { .. })
        ));
    }

    #[test]
    fn only_plain_http_urls_are_probed() {
        for url in [
            "https://127.0.0.1:8080/healthz",
            "not a url",
            "file:///etc/passwd",
        ] {
            assert!(
                matches!(
                    probe(url, Duration::from_secs(1)),
                    Err(ProbeError::BadUrl { .. })
                ),
                "{url}"
            );
        }
    }
}
