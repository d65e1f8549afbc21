//! The daemon's HTTP server (axum): health, readiness and metrics now;
//! webhooks, approval links and the dashboard join the same router.
//!
//! [`bind`] then [`serve`] is the entry point for both `draco run` and tests
//! (bind `127.0.0.1:0`, read the address back, serve).

pub mod config;
mod error;
mod health;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;

pub use config::ServerConfig;
pub use error::ApiError;

use crate::store::Readiness;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
}

/// Every route, over what they read: readiness only, so far (webhooks and
/// approval links will add the narrow store traits they need).
pub fn router(app: Arc<dyn Readiness>) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .with_state(app)
}

/// Binds the listener (`127.0.0.1:0` picks a free port; read it back with
/// `local_addr`).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
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
pub async fn spawn(app: Arc<dyn Readiness>, addr: SocketAddr) -> Result<Running, ServerError> {
    let listener = bind(addr).await?;
    let addr = listener
        .local_addr()
        .map_err(|source| ServerError::Bind { addr, source })?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, app, async move {
        let _ = stopped.await;
    }));
    Ok(Running {
        addr,
        stop: Some(stop),
        task,
    })
}

/// Serves until `shutdown` resolves, then stops accepting and lets requests
/// in flight finish (the caller bounds that with its grace period).
pub async fn serve(
    listener: TcpListener,
    app: Arc<dyn Readiness>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "HTTP server listening");
    }
    axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ServerError::Serve)
}
