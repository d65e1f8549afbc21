//! `draco run`: the scheduler and the HTTP server in one process, sharing
//! one [`App`].
//!
//! Several replicas may share one database: every replica serves HTTP and
//! processes the webhook deliveries it claims; each scheduled job (the
//! scan, the approvals follow-up, retention) runs on the replica holding
//! its lease ([`leases`]). The replica that takes the scan lease over from
//! one that died resumes the scan it left interrupted at once.
//!
//! The scheduler only sends ticks; scans run one at a time in the scan loop
//! (and across processes, under the store's scan lock), on the replica
//! holding the scan lease. A tick that arrives while a scan runs is kept
//! (one at most), later ones are dropped with a log line.
//!
//! Shutdown, on SIGTERM or SIGINT: no new work is taken at once (no scan
//! starts after the signal, even from a tick queued before it; the server
//! stops accepting connections); work in flight gets
//! `server.shutdown_grace_secs`, then is cancelled. Every scan step commits
//! before the next starts, so a cancelled scan loses nothing: it is marked
//! `interrupted` and the next scan repairs what it can. A second signal
//! ends the process at once.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};

use crate::compose::App;
use crate::server::{self, ServerError};

pub mod leases;
pub mod memory;
pub mod start;

use leases::Lease;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("scheduler: {0}")]
    Scheduler(#[from] JobSchedulerError),
    #[error("cannot listen for signals: {0}")]
    Signal(std::io::Error),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("stopped by a second signal before work in flight finished")]
    Forced,
}

/// SIGTERM and SIGINT, installed at once so a signal sent right after start
/// is not lost.
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn install() -> Result<Self, DaemonError> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate()).map_err(DaemonError::Signal)?,
            int: signal(SignalKind::interrupt()).map_err(DaemonError::Signal)?,
        })
    }

    /// Resolves on the next SIGTERM or SIGINT.
    pub async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => tracing::info!("SIGTERM received"),
            _ = self.int.recv() => tracing::info!("SIGINT received"),
        }
    }

    /// The first signal and the second, as two futures for [`run`].
    pub fn split(self) -> (impl Future<Output = ()>, impl Future<Output = ()>) {
        let (first_tx, first_rx) = tokio::sync::oneshot::channel::<()>();
        let (again_tx, again_rx) = tokio::sync::oneshot::channel::<()>();
        let mut signals = self;
        tokio::spawn(async move {
            signals.next().await;
            let _ = first_tx.send(());
            signals.next().await;
            tracing::warn!("second signal: exiting now");
            let _ = again_tx.send(());
        });
        (
            async move {
                let _ = first_rx.await;
            },
            async move {
                let _ = again_rx.await;
            },
        )
    }
}

/// How often stored webhook deliveries are looked for without a wake-up
/// (one stored by another replica, or left by a failed round).
const EVENTS_POLL: Duration = Duration::from_secs(60);

/// How often the approval follow-up runs (held asks, reminders,
/// escalation, expiry).
const APPROVALS_TICK: Duration = Duration::from_secs(60);

/// How often the retention lease's holder removes what `[retention]` no
/// longer keeps (periods are in days: hourly is punctual enough, and each
/// pass over nothing to remove is a few indexed queries).
const RETENTION_TICK: Duration = Duration::from_secs(3600);

/// What marking a cancelled scan interrupted may take past the grace
/// period (the target: exit within `shutdown_grace_secs` + 1 s).
const REPAIR_AFTER_GRACE: Duration = Duration::from_millis(500);
/// ...and after a second signal, which must end the process at once.
const FORCED_REPAIR: Duration = Duration::from_millis(200);

/// Runs scans on `app`'s schedule and serves HTTP on `listener` until
/// `stop` resolves (the first signal), then shuts down as the module says.
/// `again` resolving during the grace period (a second signal) returns
/// [`DaemonError::Forced`] at once.
pub async fn run(
    app: Arc<App>,
    listener: TcpListener,
    health: Option<TcpListener>,
    scan_on_start: bool,
    stop: impl Future<Output = ()>,
    again: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let grace = Duration::from_secs(app.loaded.config.server.shutdown_grace_secs);
    let lease_ttl = Duration::from_secs(app.loaded.config.replicas.lease_ttl_secs);
    let (stopping, stopped) = watch::channel(false);

    if let Err(error) = app.repair_abandoned_scans().await {
        tracing::error!(%error, "cannot check for scans left running");
    }
    app.refresh_finding_gauges().await;

    let mut server_stop = stopped.clone();
    let server_app = Arc::clone(&app);
    let mut server = tokio::spawn(async move {
        server::serve(
            listener,
            server_app,
            server::Limits::default(),
            async move {
                let _ = server_stop.wait_for(|s| *s).await;
            },
        )
        .await
    });

    // The health listener stops with the main one and needs no grace: its
    // requests take milliseconds.
    let health_task = health.map(|listener| {
        let mut health_stop = stopped.clone();
        let health_app = Arc::clone(&app);
        tokio::spawn(async move {
            server::serve_health(listener, health_app, async move {
                let _ = health_stop.wait_for(|s| *s).await;
            })
            .await
        })
    });

    // Webhook deliveries are processed from the store: at start (what a
    // crash left), when the receiver stores one, and every minute.
    let events_task = app.github_receiver.is_some().then(|| {
        let app = Arc::clone(&app);
        let mut stop = stopped.clone();
        tokio::spawn(async move {
            loop {
                let deciding = app.deciding();
                if let Err(error) =
                    crate::events::process_pending(&*app.store, Some(&deciding), Utc::now()).await
                {
                    tracing::error!(%error, "cannot process webhook deliveries; retrying later");
                }
                tokio::select! {
                    biased;
                    _ = stop.wait_for(|s| *s) => break,
                    () = app.deliveries_waiting.notified() => {}
                    () = tokio::time::sleep(EVENTS_POLL) => {}
                }
            }
        })
    });

    let (scan_lease, scan_keeper) = leases::keep(Arc::clone(&app.store), leases::SCAN, lease_ttl);
    let mut keepers = vec![scan_keeper];
    let mut jobs = vec![leases::SCAN];

    // Approvals: held asks, reminders, escalation and expiry, every minute
    // on the replica holding the approvals lease (everything it works from
    // is in the store, so a restart or a takeover loses nothing).
    let approvals_task = (!app.notifier.directory.is_empty()).then(|| {
        let (mut lease, keeper) =
            leases::keep(Arc::clone(&app.store), leases::APPROVALS, lease_ttl);
        keepers.push(keeper);
        jobs.push(leases::APPROVALS);
        let app = Arc::clone(&app);
        let mut stop = stopped.clone();
        tokio::spawn(async move {
            loop {
                if lease.held() {
                    tokio::select! {
                        // The lease first: a replica woken past its deadline
                        // stops before the pass takes another step.
                        biased;
                        () = lease.lost() => tracing::warn!("approvals lease lost: this follow-up pass stopped for the replica that takes the lease"),
                        () = app.follow_up_approvals(Utc::now()) => {}
                    }
                }
                tokio::select! {
                    biased;
                    _ = stop.wait_for(|s| *s) => break,
                    () = tokio::time::sleep(APPROVALS_TICK) => {}
                }
            }
        })
    });

    // Retention: what `[retention]` no longer keeps is removed every
    // RETENTION_TICK on the replica holding the retention lease.
    let retention_task = {
        let (mut lease, keeper) =
            leases::keep(Arc::clone(&app.store), leases::RETENTION, lease_ttl);
        keepers.push(keeper);
        jobs.push(leases::RETENTION);
        let app = Arc::clone(&app);
        let mut stop = stopped.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    biased;
                    _ = stop.wait_for(|s| *s) => break,
                    _ = lease.taken() => {}
                }
                // Held: once now, then every tick while it stays held.
                while lease.held() {
                    tokio::select! {
                        biased;
                        () = lease.lost() => break,
                        done = app.enforce_retention(Utc::now()) => if let Err(error) = done {
                            tracing::error!(%error, "cannot enforce retention; trying again at the next tick");
                        },
                    }
                    tokio::select! {
                        biased;
                        _ = stop.wait_for(|s| *s) => return,
                        () = lease.lost() => {}
                        () = tokio::time::sleep(RETENTION_TICK) => {}
                    }
                }
            }
        })
    };

    let (ticks, due) = mpsc::channel::<()>(1);
    let mut scheduler = JobScheduler::new().await?;
    let tick_stopped = stopped.clone();
    let job = Job::new_async(app.loaded.config.schedule.as_str(), move |_, _| {
        let ticks = ticks.clone();
        let shutting_down = *tick_stopped.borrow();
        Box::pin(async move {
            // After a signal no scan starts: a tick then is not "skipped".
            if !shutting_down && ticks.try_send(()).is_err() {
                tracing::warn!("scheduled scan skipped: the previous one is still running");
            }
        })
    })?;
    scheduler.add(job).await?;
    scheduler.start().await?;
    tracing::info!(
        schedule = app.loaded.config.schedule,
        "draco daemon started"
    );
    // What starting touched (migrations, configuration, templates) is not
    // touched again while the daemon waits for its first tick.
    release_idle_memory_soon();

    let mut work = Box::pin(scan_loop(
        Arc::clone(&app),
        due,
        stopped.clone(),
        scan_on_start,
        scan_lease,
    ));
    tokio::pin!(stop);
    tokio::pin!(again);
    let mut forced = false;
    // One grace period for everything in flight, scans and HTTP requests
    // alike, counted from the signal: the process exits within
    // `shutdown_grace_secs` of it (plus the time to close the store).
    let deadline = tokio::select! {
        () = &mut work => tokio::time::Instant::now() + grace,
        () = &mut stop => {
            let _ = stopping.send(true);
            let deadline = tokio::time::Instant::now() + grace;
            tracing::info!(grace_secs = grace.as_secs(), "shutting down: no new work; waiting for work in flight");
            tokio::select! {
                () = &mut work => {}
                () = tokio::time::sleep_until(deadline) => {
                    tracing::warn!("grace period over: cancelling the scan in flight (it is marked interrupted)");
                }
                () = &mut again => forced = true,
            }
            deadline
        }
    };
    let _ = stopping.send(true);
    // Cancels the scan if it is still running; its lock goes with it, so
    // the repair below marks it interrupted.
    drop(work);
    // Each kind is removed in its own transaction: what this cuts short
    // is done at the next pass.
    retention_task.abort();
    if let Some(task) = approvals_task {
        // Every step commits on its own: what this cuts short is redone.
        task.abort();
    }
    // No job runs past this point: the leases go to another replica now
    // rather than when they expire.
    for keeper in &keepers {
        keeper.abort();
    }

    if forced {
        server.abort();
        // Best effort, briefly: the next start repairs what this leaves.
        let _ = tokio::time::timeout(FORCED_REPAIR, app.repair_abandoned_scans()).await;
        return Err(DaemonError::Forced);
    }
    // Bounded too: another process may hold the database's write lock, and
    // SIGTERM must still end the process about when the grace period does.
    let repair_until = deadline.max(tokio::time::Instant::now()) + REPAIR_AFTER_GRACE;
    tokio::select! {
        repaired = app.repair_abandoned_scans() => if let Err(error) = repaired {
            tracing::error!(%error, "cannot mark the cancelled scan interrupted");
        },
        () = tokio::time::sleep_until(repair_until) => {
            tracing::warn!("the database did not answer in time to mark the cancelled scan interrupted; the next start does");
        }
        () = &mut again => {
            server.abort();
            return Err(DaemonError::Forced);
        }
    }
    tokio::select! {
        result = &mut server => match result {
            Ok(served) => served?,
            Err(join) => tracing::error!(error = %join, "HTTP server task ended abnormally"),
        },
        () = tokio::time::sleep_until(deadline) => {
            tracing::warn!("HTTP requests still in flight after the grace period: closing them");
            server.abort();
        }
        () = &mut again => {
            server.abort();
            return Err(DaemonError::Forced);
        }
    }
    if let Some(task) = health_task {
        task.abort();
    }
    if let Some(task) = events_task {
        // Processing is idempotent: whatever this cuts short is redone.
        task.abort();
    }
    // The leases, and the claims of deliveries this replica no longer
    // processes, given up so another replica takes them at once. Not
    // waited for past a moment (the database may be busy, and SIGTERM must
    // end the process in time): both run out on their own.
    let releasing = {
        let store = Arc::clone(&app.store);
        tokio::spawn(async move {
            leases::release(&*store, &jobs).await;
            if let Err(error) = store.release_claims(crate::replica::id()).await {
                tracing::warn!(%error, "cannot give up webhook delivery claims; they run out on their own");
            }
        })
    };
    let _ = tokio::time::timeout(Duration::from_millis(100), releasing).await;
    scheduler.shutdown().await?;
    tracing::info!("stopped");
    Ok(())
}

/// Scans on each tick while this replica holds the scan lease, until
/// stopping; on taking the lease, first resumes a scan left interrupted
/// (by the replica it was taken from, or by this one's last run) and runs
/// the scan `--scan-on-start` asked for. `biased` so that a stop already
/// signalled wins over a tick queued before it.
async fn scan_loop(
    app: Arc<App>,
    mut due: mpsc::Receiver<()>,
    mut stopped: watch::Receiver<bool>,
    scan_on_start: bool,
    mut lease: Lease,
) {
    let flag = stopped.clone();
    let stopping = move || *flag.borrow();
    let mut start_scan = scan_on_start;
    // While the lease is held, a scan left unfinished after the takeover is
    // looked for again every time to live: the takeover gives up on a scan
    // lock still held by a holder that stalled (SIGSTOP, a paused VM) past
    // `scan.lock_wait_secs`, and such a holder marks its scan interrupted
    // only when it wakes; a scan cut off by the database stays `running`.
    let mut unfinished = tokio::time::interval(Duration::from_secs(
        app.loaded.config.replicas.lease_ttl_secs,
    ));
    unfinished.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stopped.wait_for(|s| *s) => break,
            taken_from = lease.taken() => {
                if stopping() {
                    break;
                }
                let resume = match app.take_over_scans().await {
                    Ok(resume) => resume,
                    Err(error) => {
                        tracing::error!(%error, "cannot check for a scan to resume");
                        false
                    }
                };
                if resume {
                    tracing::info!(taken_from, "resuming the interrupted scan");
                }
                let missed = !resume && missed_scheduled_scan(&app).await;
                if missed {
                    tracing::info!(taken_from, "the scheduled scan fell during the lease's handover: scanning now");
                }
                if resume || missed || std::mem::take(&mut start_scan) {
                    scan_while_held(&app, &mut lease).await;
                }
            }
            tick = due.recv() => match tick {
                Some(()) if !stopping() => {
                    if lease.held() {
                        scan_while_held(&app, &mut lease).await;
                    } else {
                        tracing::info!("scheduled scan left to the replica holding the scan lease");
                    }
                }
                _ => break,
            },
            _ = unfinished.tick(), if lease.held() => {
                if stopping() {
                    break;
                }
                match app.scan_left_unfinished().await {
                    Ok(true) => {
                        tracing::info!("resuming a scan left unfinished while this replica held the scan lease");
                        scan_while_held(&app, &mut lease).await;
                    }
                    Ok(false) => {}
                    Err(error) => tracing::warn!(%error, "cannot check for a scan left unfinished"),
                }
            }
        }
    }
}

/// Whether the schedule fired during a lease handover with no scan since:
/// the tick came while this replica did not hold the scan lease yet, and
/// the old holder was shutting down (its grace period) or dead (up to a
/// time to live). False when the latest scan cannot be read.
async fn missed_scheduled_scan(app: &App) -> bool {
    let config = &app.loaded.config;
    let Ok(cron) = crate::config::parse_schedule(&config.schedule) else {
        return false;
    };
    let window =
        Duration::from_secs(config.replicas.lease_ttl_secs * 2 + config.server.shutdown_grace_secs);
    let latest = match app.store.scans(1).await {
        Ok(scans) => scans.first().map(|s| s.started_at),
        Err(error) => {
            tracing::warn!(%error, "cannot read the latest scan");
            return false;
        }
    };
    missed_tick(&cron, latest, Utc::now(), window)
}

/// Whether `cron` fired within `window` before `now` and no scan started
/// since (`latest`: the latest scan's start).
fn missed_tick(
    cron: &croner::Cron,
    latest: Option<chrono::DateTime<Utc>>,
    now: chrono::DateTime<Utc>,
    window: Duration,
) -> bool {
    let Ok(fired) = cron.find_previous_occurrence(&now, true) else {
        return false;
    };
    let window = chrono::TimeDelta::from_std(window).unwrap_or(chrono::TimeDelta::MAX);
    now - fired <= window && latest.is_none_or(|started| started < fired)
}

/// One scan, stopped if the lease goes meanwhile: the replica that takes it
/// resumes the scan (every step commits before the next starts).
async fn scan_while_held(app: &App, lease: &mut Lease) {
    tokio::select! {
        // The lease first: a replica woken past its deadline (it was
        // stopped or paused) drops the scan before its next step, so it
        // makes no write to GitHub or the database the new holder's scan
        // could race.
        biased;
        () = lease.lost() => {
            tracing::warn!("scan lease lost mid-scan (the database stopped answering, or this replica stalled): scan stopped for the replica that takes the lease to resume");
            // The cancelled scan's lock went with it: it is marked
            // interrupted now, unless the new holder's scan runs already.
            if let Err(error) = app.repair_abandoned_scans().await {
                tracing::error!(%error, "cannot mark the stopped scan interrupted");
            }
        }
        () = scan(app) => {}
    }
}

async fn scan(app: &App) {
    match app.scan(Utc::now()).await {
        Ok(report) => tracing::info!(
            scan = report.scan_id.get(),
            status = report.status.as_str(),
            new = report.outcome.new.len(),
            resolved = report.outcome.resolved.len(),
            change_requests = report.change_requests_opened.len(),
            "scan finished"
        ),
        Err(error) => tracing::error!(error = %error, "scan failed"),
    }
    release_idle_memory_soon();
}

/// Hands back what a scan or the start-up freed or touched
/// ([`memory::release_idle_memory`]) now, and again once the pool has
/// closed their idle connections (with their threads and page caches).
fn release_idle_memory_soon() {
    memory::release_idle_memory();
    tokio::spawn(async {
        tokio::time::sleep(crate::store::sqlite::IDLE_CONNECTION + Duration::from_secs(2)).await;
        memory::release_idle_memory();
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_tick_during_a_handover_is_caught_up_and_an_old_one_is_not() {
        let cron = crate::config::parse_schedule("0 0 6 * * *").expect("schedule");
        let at = |h, m, s| {
            Utc.with_ymd_and_hms(2026, 12, 6, h, m, s)
                .single()
                .expect("time")
        };
        let window = Duration::from_secs(70);
        // The tick at 06:00:00 fell while no replica held the lease.
        assert!(missed_tick(
            &cron,
            Some(at(5, 0, 0) - chrono::TimeDelta::days(1)),
            at(6, 0, 40),
            window
        ));
        // A scan started at or after it: nothing missed.
        assert!(!missed_tick(&cron, Some(at(6, 0, 0)), at(6, 0, 40), window));
        // Long after the tick (a replica starting in the afternoon): not a
        // handover, no catch-up scan.
        assert!(!missed_tick(&cron, None, at(15, 0, 0), window));
        // A first daemon just after the tick, on an empty database.
        assert!(missed_tick(&cron, None, at(6, 0, 5), window));
    }
}
