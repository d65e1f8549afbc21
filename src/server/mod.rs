//! The daemon's HTTP server (axum): health, readiness and metrics; the
//! GitHub and Twilio webhooks and the approval links' pages; the read-only
//! dashboard ([`dashboard`]).
//!
//! [`bind`] then [`serve`] is the entry point for both `draco run` and tests
//! (bind `127.0.0.1:0`, read the address back, serve).

pub mod approvals;
pub mod config;
pub mod dashboard;
mod error;
mod health;
pub mod webhooks;

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use config::ServerConfig;
pub use error::ApiError;

use crate::store::Readiness;

/// What the server serves from: readiness for the probes, deliveries and
/// secrets for the webhooks, the approval channels for replies and links,
/// the store's findings, scans and audit trail for the dashboard.
pub trait ServerApp:
    Readiness + webhooks::Webhooks + approvals::Approvals + dashboard::Dashboard
{
}
impl<T: Readiness + webhooks::Webhooks + approvals::Approvals + dashboard::Dashboard> ServerApp
    for T
{
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    // The cause is the error's source, printed after it in the chain.
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
}

/// Bounds on what one client can hold, so that a client slow to send its
/// headers or body, or one that opens connections and sends nothing
/// ("slowloris"), cannot keep the server from everyone else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest a client may take to send a request line and its headers,
    /// counted from when the connection is ready for a request (so an idle
    /// keep-alive connection is closed after it too). hyper enforces it only
    /// with a timer, which `axum::serve` does not set; this server does.
    pub header_read_timeout: Duration,
    /// Longest one request may take once its headers are in, body included;
    /// answered `408 Request Timeout`.
    pub request_timeout: Duration,
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// Connections served at once from one IP address; more from it are
    /// closed at once, so that one client cannot take every slot.
    pub max_connections_per_client: usize,
    /// Longest any one connection is kept, however busy: hyper has no write
    /// timeout, so a client that sends requests and never reads the answers
    /// would otherwise hold its connection (and a slot) for ever. Clients
    /// that keep connections alive (Prometheus) simply reconnect.
    pub connection_lifetime: Duration,
    /// Connections kept for the health routes when `max_connections` are
    /// all taken (a flood of idle connections from many addresses), so the
    /// orchestrator's probes and Prometheus are still answered: on these,
    /// only `/healthz`, `/readyz` and `/metrics` are served (anything else
    /// gets `503` with `Retry-After`), one request per connection, with
    /// `reserve_header_read_timeout` to send it and
    /// `reserve_connection_lifetime` in all, so that the reserve turns over
    /// whatever clients do.
    pub probe_reserve: usize,
    /// The header timeout on reserve connections: a probe sends its request
    /// at once, a flood's idle connection is cut quickly.
    pub reserve_header_read_timeout: Duration,
    /// Longest a reserve connection is kept (a client that never reads its
    /// one answer).
    pub reserve_connection_lifetime: Duration,
    /// Reserve connections from one IP address at once; more from it are
    /// closed at once, so one address cannot hold the reserve.
    pub reserve_connections_per_client: usize,
    /// Whether a connection may carry more than one request (HTTP/1.1
    /// keep-alive). Off on the health listener, so no client holds a slot
    /// past its one answer.
    pub keep_alive: bool,
}

/// Pending connections the kernel keeps for the accept loop (Linux caps it
/// at `net.core.somaxconn`, 4096 by default since 5.4). The usual 128 is
/// full after a flood of a few hundred connections, and then a probe's
/// connection is dropped and retried rather than queued.
const LISTEN_BACKLOG: u32 = 4096;

impl Default for Limits {
    /// 10 s for headers (hyper's own default is 30 s; every caller of these
    /// routes, a probe, Prometheus, a webhook sender, sends its headers at
    /// once), 30 s per request, 256 connections (32 from one address), 60 s
    /// per connection; 64 more for the health routes (4 from one address),
    /// one request each, with 1 s to send it (Kubernetes' default probe
    /// timeout is 1 s) and 5 s in all.
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 256,
            max_connections_per_client: 32,
            connection_lifetime: Duration::from_secs(60),
            probe_reserve: 64,
            reserve_header_read_timeout: Duration::from_secs(1),
            reserve_connection_lifetime: Duration::from_secs(5),
            reserve_connections_per_client: 4,
            keep_alive: true,
        }
    }
}

/// Every route: the health routes, the webhooks, the approval pages and the
/// dashboard; each request bounded by `request_timeout`.
pub fn router(app: Arc<dyn ServerApp>, limits: Limits) -> Router {
    let webhooks = Router::new()
        .route(
            "/webhooks/github",
            post(webhooks::github).layer(DefaultBodyLimit::max(webhooks::MAX_DELIVERY_BYTES)),
        )
        .route(
            crate::channels::twilio::WEBHOOK_PATH,
            post(approvals::twilio_webhook).layer(DefaultBodyLimit::max(approvals::MAX_SMS_BYTES)),
        )
        .route(
            "/approve/{token}",
            get(approvals::link_get)
                .post(approvals::link_post)
                .layer(DefaultBodyLimit::max(approvals::MAX_FORM_BYTES)),
        );
    let dashboard = dashboard::routes(Arc::clone(&app));
    with_request_timeout(health_routes().merge(webhooks).merge(dashboard), limits).with_state(app)
}

/// The health routes alone (the health listener: anything else is `404`;
/// webhooks and pages are never served there).
fn health_router(app: Arc<dyn ServerApp>, limits: Limits) -> Router {
    with_request_timeout(health_routes(), limits).with_state(app)
}

/// What reserve connections serve: the health routes, and `503` with
/// `Retry-After` for everything else.
fn reserve_router(app: Arc<dyn ServerApp>, limits: Limits) -> Router {
    with_request_timeout(health_routes().fallback(server_busy), limits).with_state(app)
}

fn health_routes() -> Router<Arc<dyn ServerApp>> {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
}

async fn server_busy() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(axum::http::header::RETRY_AFTER, "1")],
        "server busy\n",
    )
        .into_response()
}

fn with_request_timeout<S: Clone + Send + Sync + 'static>(
    routes: Router<S>,
    limits: Limits,
) -> Router<S> {
    let timeout = limits.request_timeout;
    routes.layer(axum::middleware::from_fn(
        move |request: Request, next: Next| async move {
            match tokio::time::timeout(timeout, next.run(request)).await {
                Ok(response) => response,
                Err(_) => request_timed_out(),
            }
        },
    ))
}

fn request_timed_out() -> Response {
    tracing::warn!("request took longer than the server's request timeout");
    (StatusCode::REQUEST_TIMEOUT, "request timeout\n").into_response()
}

/// Binds the listener (`127.0.0.1:0` picks a free port; read it back with
/// `local_addr`).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    };
    socket
        .and_then(|socket| {
            // As `TcpListener::bind` does: a restarted daemon can listen
            // while connections of the old one linger in TIME_WAIT.
            socket.set_reuseaddr(true)?;
            socket.bind(addr)?;
            socket.listen(LISTEN_BACKLOG)
        })
        .map_err(|source| ServerError::Bind { addr, source })
}

/// A server running in the background: its address, and a way to stop it.
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), ServerError>>,
}

impl Running {
    /// Stops accepting, lets requests in flight finish, and waits for the end.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.await {
            Ok(result) => result,
            Err(join) => Err(ServerError::Serve(std::io::Error::other(join))),
        }
    }
}

/// Binds `addr` and serves `app` on a background task: the entry point for
/// tests (`127.0.0.1:0`, then read [`Running::addr`]).
pub async fn spawn(app: Arc<dyn ServerApp>, addr: SocketAddr) -> Result<Running, ServerError> {
    spawn_with(app, addr, Limits::default()).await
}

/// [`spawn`] with other [`Limits`] (tests shorten the timeouts).
pub async fn spawn_with(
    app: Arc<dyn ServerApp>,
    addr: SocketAddr,
    limits: Limits,
) -> Result<Running, ServerError> {
    spawn_on(addr, |listener, stop| serve(listener, app, limits, stop)).await
}

/// What tells a server spawned by [`spawn_on`] to stop.
type StopSignal = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// Binds `addr` and runs `run` on the listener in a background task until
/// [`Running::shutdown`]: the one way [`spawn_with`] and [`spawn_health`]
/// start a server.
async fn spawn_on<F>(
    addr: SocketAddr,
    run: impl FnOnce(TcpListener, StopSignal) -> F,
) -> Result<Running, ServerError>
where
    F: Future<Output = Result<(), ServerError>> + Send + 'static,
{
    let listener = bind(addr).await?;
    let addr = listener
        .local_addr()
        .map_err(|source| ServerError::Bind { addr, source })?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(run(
        listener,
        Box::pin(async move {
            let _ = stopped.await;
        }),
    ));
    Ok(Running {
        addr,
        stop: Some(stop),
        task,
    })
}

/// Connections open per client address.
type PerClient = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// One connection counted against its address while it lives.
struct ClientSlot {
    counts: PerClient,
    ip: IpAddr,
}

impl ClientSlot {
    /// Counts a connection from `ip`, or `None` when it already holds `cap`.
    fn take(counts: &PerClient, ip: IpAddr, cap: usize) -> Option<Self> {
        let mut map = counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let open = map.entry(ip).or_insert(0);
        if *open >= cap.max(1) {
            return None;
        }
        *open += 1;
        Some(ClientSlot {
            counts: Arc::clone(counts),
            ip,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut map = self
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(open) = map.get_mut(&self.ip) {
            *open -= 1;
            if *open == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Serves until `shutdown` resolves, then stops accepting and lets requests
/// in flight finish (the caller bounds that with its grace period).
///
/// The accept loop is this one rather than `axum::serve` because that sets
/// no timer, so hyper would wait for a client's headers for ever: here every
/// connection is HTTP/1.1 with [`Limits::header_read_timeout`], at most
/// [`Limits::max_connections`] are served at once (plus
/// [`Limits::probe_reserve`] for the health routes when those are taken),
/// and at most [`Limits::max_connections_per_client`] of them from one
/// address.
pub async fn serve(
    listener: TcpListener,
    app: Arc<dyn ServerApp>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "HTTP server listening");
    }
    let main = router(Arc::clone(&app), limits);
    serve_routers(
        listener,
        main,
        reserve_router(app, limits),
        limits,
        shutdown,
    )
    .await
}

/// What the health listener (`server.health_listen`) allows: probes and
/// Prometheus send a request at once and need few connections.
pub const HEALTH_LIMITS: Limits = Limits {
    header_read_timeout: Duration::from_secs(1),
    request_timeout: Duration::from_secs(5),
    max_connections: 32,
    max_connections_per_client: 8,
    // One request per connection, 5 s in all: a client that keeps its
    // connection busy (keep-alive, or never reading the answer) holds a slot
    // for seconds, not a minute.
    connection_lifetime: Duration::from_secs(5),
    probe_reserve: 0,
    reserve_header_read_timeout: Duration::from_secs(1),
    reserve_connection_lifetime: Duration::from_secs(5),
    reserve_connections_per_client: 0,
    keep_alive: false,
};

/// Serves only `/healthz`, `/readyz` and `/metrics` (anything else: `404`)
/// on a listener of their own, with [`HEALTH_LIMITS`]: the orchestrator's
/// probes and Prometheus then never queue behind what reaches the main
/// listener (a flood of connections from many addresses), and a network
/// policy can open this port to the node alone.
pub async fn serve_health(
    listener: TcpListener,
    app: Arc<dyn ServerApp>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "health listener (probes and metrics only)");
    }
    let health = health_router(app, HEALTH_LIMITS);
    // No reserve here (`probe_reserve` is 0): the router is never used twice.
    serve_routers(listener, health.clone(), health, HEALTH_LIMITS, shutdown).await
}

/// Why the daemon is not ready yet while it starts (the database it
/// waits for), for `/readyz`.
#[derive(Debug, Default)]
pub struct Starting {
    reason: std::sync::Mutex<String>,
}

impl Starting {
    /// The latest reason (an error message without secrets).
    pub fn set(&self, reason: String) {
        if let Ok(mut current) = self.reason.lock() {
            *current = reason;
        }
    }

    fn reason(&self) -> String {
        self.reason
            .lock()
            .map(|r| r.clone())
            .unwrap_or_else(|_| "starting".to_owned())
    }
}

/// What a listener serves while the daemon starts: `/healthz` 200 (the
/// process lives: no restart loop), `/readyz` 503 with the reason, and
/// `/metrics`; anything else `503` with `Retry-After`, until `shutdown`
/// resolves and the real server takes the listener over. A webhook answered
/// so is not stored: GitHub does not redeliver on its own (the repository's
/// webhook settings can, from Recent Deliveries; a lost review is still
/// found by the next scan's reconciliation), and Twilio does not retry an
/// inbound SMS (the approver's reply must be sent again).
pub async fn serve_starting(
    listener: TcpListener,
    starting: Arc<Starting>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    async fn not_ready(State(starting): State<Arc<Starting>>) -> error::ApiError {
        error::ApiError::Unavailable {
            reason: "starting",
            detail: starting.reason(),
        }
    }
    let routes = with_request_timeout(
        Router::new()
            .route("/healthz", get(health::healthz))
            .route("/readyz", get(not_ready))
            .route("/metrics", get(health::metrics))
            .fallback(server_busy),
        limits,
    )
    .with_state(starting);
    serve_routers(listener, routes.clone(), routes, limits, shutdown).await
}

/// [`serve_health`] on a background task, bound to `addr` (tests: port 0).
pub async fn spawn_health(
    app: Arc<dyn ServerApp>,
    addr: SocketAddr,
) -> Result<Running, ServerError> {
    spawn_on(addr, |listener, stop| serve_health(listener, app, stop)).await
}

/// The value of cookie `name` in the request's `Cookie` headers
/// (RFC 6265 §5.4: `name=value` pairs separated by `;`), if present. Used by
/// the approval form and the dashboard's session.
pub(crate) fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// `service` with the connection's peer address in every request's
/// extensions, as axum's [`axum::extract::ConnectInfo`] (the dashboard's
/// login counts wrong tokens per address).
fn with_peer(
    service: TowerToHyperService<Router>,
    peer: SocketAddr,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<axum::response::Response, std::convert::Infallible>>
             + Send
             + 'static,
> {
    hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        hyper::service::Service::call(&service, request)
    })
}

/// The accept loop behind [`serve`] and [`serve_health`]: `main` on general
/// connections, `reserve` on reserve ones (none when `limits.probe_reserve`
/// is 0).
async fn serve_routers(
    listener: TcpListener,
    main: Router,
    reserve: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let service = TowerToHyperService::new(main);
    let reserve_service = TowerToHyperService::new(reserve);
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let reserve = Arc::new(Semaphore::new(limits.probe_reserve));
    let per_client = Arc::new(Mutex::new(HashMap::new()));
    let reserve_per_client = Arc::new(Mutex::new(HashMap::new()));
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(limits.keep_alive);
    let mut reserve_builder = builder.clone();
    reserve_builder
        .header_read_timeout(limits.reserve_header_read_timeout)
        .keep_alive(false);
    tokio::pin!(shutdown);
    loop {
        // A general slot when there is one; a reserve slot only when all
        // general ones are taken.
        let (mut permit, mut reserved) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            permit = Arc::clone(&connections).acquire_owned() => match permit {
                Ok(permit) => (permit, false),
                Err(_) => break,
            },
            permit = Arc::clone(&reserve).acquire_owned(), if limits.probe_reserve > 0 => match permit {
                Ok(permit) => (permit, true),
                Err(_) => break,
            },
        };
        let (stream, peer, slot) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match ClientSlot::take(&per_client, peer.ip(), limits.max_connections_per_client) {
                    Some(slot) => (stream, peer, slot),
                    None => {
                        // One address holding its share already: closed at
                        // once, so that it cannot take every slot (the
                        // orchestrator's probes come from another address).
                        tracing::debug!(client = %peer.ip(), "connection refused: too many from one address");
                        drop(stream);
                        continue;
                    }
                },
                Err(error) => {
                    // Out of file descriptors or a connection reset before
                    // it was accepted: the listener itself is fine; back off
                    // a little so an fd shortage does not spin.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // A general slot may have freed while this one waited to accept.
        if reserved && let Ok(general) = Arc::clone(&connections).try_acquire_owned() {
            (permit, reserved) = (general, false);
        }
        let reserve_slot = if reserved {
            let ip = slot.ip;
            match ClientSlot::take(
                &reserve_per_client,
                ip,
                limits.reserve_connections_per_client,
            ) {
                Some(reserve_slot) => Some(reserve_slot),
                None => {
                    tracing::debug!(client = %ip, "reserve connection refused: too many from one address");
                    continue;
                }
            }
        } else {
            None
        };
        let connection = if reserved {
            tracing::debug!("all connections taken: serving one on the health reserve");
            graceful.watch(reserve_builder.serve_connection(
                TokioIo::new(stream),
                with_peer(reserve_service.clone(), peer),
            ))
        } else {
            graceful.watch(
                builder.serve_connection(TokioIo::new(stream), with_peer(service.clone(), peer)),
            )
        };
        let lifetime = if reserved {
            limits.reserve_connection_lifetime
        } else {
            limits.connection_lifetime
        };
        tokio::spawn(async move {
            match tokio::time::timeout(lifetime, connection).await {
                Ok(Ok(())) => {}
                // A client that went away or was too slow: not the server's fault.
                Ok(Err(error)) => tracing::debug!(%error, "connection ended with an error"),
                Err(_) => tracing::debug!("connection closed at the end of its lifetime"),
            }
            drop(reserve_slot);
            drop(slot);
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
