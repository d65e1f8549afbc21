//! `draco run`: scans on a cron schedule until SIGINT or SIGTERM.
//!
//! The scheduler only sends ticks; scans run one at a time in the main loop,
//! so two scans never overlap. A tick that arrives while a scan runs is kept
//! (one at most), later ones are dropped with a log line. On a signal, a
//! running scan is allowed to finish (each of its steps is committed anyway),
//! then the scheduler is shut down cleanly.

use std::future::Future;
use std::pin::Pin;

use tokio::sync::mpsc;
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("scheduler: {0}")]
    Scheduler(#[from] JobSchedulerError),
    #[error("cannot listen for signals: {0}")]
    Signal(std::io::Error),
}

pub type ScanFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Runs `scan` on `schedule` until `shutdown` resolves.
pub async fn run<'a, S, F>(
    schedule: &str,
    scan_on_start: bool,
    shutdown: F,
    mut scan: S,
) -> Result<(), DaemonError>
where
    S: FnMut() -> ScanFuture<'a>,
    F: Future<Output = ()>,
{
    let (ticks, mut due) = mpsc::channel::<()>(1);
    let mut scheduler = JobScheduler::new().await?;
    let job = Job::new_async(schedule, move |_, _| {
        let ticks = ticks.clone();
        Box::pin(async move {
            if ticks.try_send(()).is_err() {
                tracing::warn!("scheduled scan skipped: the previous one is still running");
            }
        })
    })?;
    scheduler.add(job).await?;
    scheduler.start().await?;
    tracing::info!(schedule, "draco daemon started");

    tokio::pin!(shutdown);
    if scan_on_start {
        scan().await;
    }
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            tick = due.recv() => match tick {
                Some(()) => scan().await,
                None => break,
            },
        }
    }
    tracing::info!("shutting down");
    scheduler.shutdown().await?;
    Ok(())
}

/// Installs the SIGINT and SIGTERM handlers now (so a signal sent right after
/// start is not lost) and returns a future that resolves on the first one.
pub fn shutdown_signal() -> Result<impl Future<Output = ()>, DaemonError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signal)?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}
