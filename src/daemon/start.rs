//! Start-up: the daemon's database, waited for while it cannot be reached.
//!
//! A replica often starts before its database answers (a cluster coming
//! up, a failover in progress). Exiting would have the orchestrator restart
//! it in a loop; instead it logs why, retries with backoff, and answers
//! `/healthz` 200 and `/readyz` 503 meanwhile on its listeners, so that it
//! is kept alive and sent no traffic. Errors that waiting cannot mend (a
//! schema newer than this build, a file that is not Draco's) end it at once.

use std::future::Future;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::compose::{self, AppStore};
use crate::server::{self, Limits, Starting};
use crate::store::{DatabaseLocation, StoreError};

/// The first retry's wait; each next one doubles, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Opens `database`, retrying while it is unreachable
/// ([`StoreError::is_unreachable`]) with exponential backoff (1 s doubling
/// to 60 s, ±20 % jitter so that replicas do not retry in step), serving
/// the start-up answers on copies of `listener` and `health` meanwhile.
/// `Ok(None)` when `stop` (a signal) resolved first.
///
/// Errors: any other [`StoreError`], at once.
pub async fn open_store(
    database: &DatabaseLocation,
    listener: &TcpListener,
    health: Option<&TcpListener>,
    stop: &mut (impl Future<Output = ()> + Unpin),
) -> Result<Option<Arc<dyn AppStore>>, StoreError> {
    let starting = Arc::new(Starting::default());
    starting.set("opening the database".to_owned());
    let mut servers = Vec::new();
    for (listener, limits) in [
        (Some(listener), Limits::default()),
        (health, server::HEALTH_LIMITS),
    ] {
        let Some(listener) = listener else { continue };
        match copy(listener) {
            Ok(copy) => {
                let (done, shutdown) = oneshot::channel::<()>();
                let task = tokio::spawn(server::serve_starting(
                    copy,
                    Arc::clone(&starting),
                    limits,
                    async move {
                        let _ = shutdown.await;
                    },
                ));
                servers.push((done, task));
            }
            Err(error) => {
                tracing::warn!(%error, "cannot answer probes while waiting for the database")
            }
        }
    }
    let mut backoff = FIRST_BACKOFF;
    let opened = loop {
        // A connection attempt may take its pool's acquire timeout, and
        // migrating longer: a signal ends the wait meanwhile too.
        let attempt = tokio::select! {
            () = &mut *stop => break None,
            attempt = compose::open_store(database) => attempt,
        };
        let error = match attempt {
            Ok(store) => break Some(Ok(store)),
            Err(error) if error.is_unreachable() => error,
            Err(other) => break Some(Err(other)),
        };
        let wait = backoff.mul_f64(0.8 + fastrand::f64() * 0.4);
        starting.set(format!("waiting for the database: {error}"));
        tracing::error!(%error, retry_in_secs = wait.as_secs_f64(), "the database cannot be reached; not ready, retrying");
        tokio::select! {
            () = &mut *stop => break None,
            () = tokio::time::sleep(wait) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    };
    // The copies stop accepting; connections they hold finish (health
    // answers take milliseconds); the real server accepts from now on.
    for (done, task) in servers {
        let _ = done.send(());
        let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    }
    opened.transpose()
}

/// Another handle on the same listening socket: connections queue on it
/// until the real server accepts them, none is refused in between.
fn copy(listener: &TcpListener) -> std::io::Result<TcpListener> {
    let fd = listener.as_fd().try_clone_to_owned()?;
    let std_listener = std::net::TcpListener::from(fd);
    std_listener.set_nonblocking(true)?;
    TcpListener::from_std(std_listener)
}
