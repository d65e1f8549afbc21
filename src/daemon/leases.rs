//! The daemon's side of [`crate::store::leases`]: one task per scheduled
//! job takes its lease when free or expired, renews it every quarter of
//! `replicas.lease_ttl_secs`, and reports whether this replica holds it.
//!
//! A renewal that fails or does not answer within the quarter is tried
//! again while a quarter of the time to live is left; then the lease counts
//! as lost (before it can expire and another replica take it) and the
//! job's work in flight is stopped, so two replicas never run one job at
//! the same time. Expiries are set and compared by the database's clock
//! ([`crate::store::DatabaseStore::clock`]), so replicas' clocks may drift.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::compose::AppStore;
use crate::store::LeaseState;

/// The scheduled scan (and the resumption of one left interrupted).
pub const SCAN: &str = "scan";
/// Held asks, reminders, escalation and expiry of approvals.
pub const APPROVALS: &str = "approvals";
/// Removing what `retention.*` no longer keeps.
pub const RETENTION: &str = "retention";

/// Whether this replica holds a job's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holding {
    No,
    /// Held since the last time it was taken; `taken_from` the replica
    /// whose lease had expired then (it died or stalled).
    Yes {
        taken_from: Option<String>,
        /// This host's deadline (monotonic): past it the lease counts as
        /// lost whether or not the keeper has run since, a quarter of the
        /// time to live before it can expire for the other replicas.
        /// Moved on by each renewal without waking anyone.
        until: tokio::time::Instant,
    },
}

/// What the job's work watches.
#[derive(Debug, Clone)]
pub struct Lease {
    pub job: &'static str,
    holding: watch::Receiver<Holding>,
}

impl Lease {
    pub fn held(&self) -> bool {
        self.deadline()
            .is_some_and(|until| tokio::time::Instant::now() < until)
    }

    fn deadline(&self) -> Option<tokio::time::Instant> {
        match &*self.holding.borrow() {
            Holding::Yes { until, .. } => Some(*until),
            Holding::No => None,
        }
    }

    /// Resolves when this replica does not hold the lease (at once if it
    /// does not now): the keeper says so, or this host's deadline passes
    /// first. The deadline fences a replica that was stalled (stopped,
    /// paused) past its lease: when it runs again, work selecting on this
    /// first (`biased`) stops before its next step, before the keeper has
    /// even asked the database.
    pub async fn lost(&mut self) {
        loop {
            let Some(until) = self.deadline() else {
                return;
            };
            let deadline_passed = tokio::select! {
                biased;
                () = tokio::time::sleep_until(until) => true,
                // Lost, or the keeper stopped (shutdown): nothing is held
                // any more.
                _ = self.holding.wait_for(|h| matches!(h, Holding::No)) => false,
            };
            if !deadline_passed || self.deadline().is_none_or(|next| next <= until) {
                return;
            }
            // Renewed meanwhile: wait for the new deadline.
        }
    }

    /// Resolves the next time this replica takes the lease (not while it
    /// keeps holding it), with the replica it was taken from. Never
    /// resolves once the keeper has stopped.
    pub async fn taken(&mut self) -> Option<String> {
        loop {
            if self.holding.changed().await.is_err() {
                return std::future::pending().await;
            }
            if let Holding::Yes { taken_from, .. } = &*self.holding.borrow_and_update() {
                return taken_from.clone();
            }
        }
    }
}

/// Starts the keeper of lease `job` for this replica ([`crate::replica::id`]).
/// It runs until the task is aborted; [`release`] gives the lease up.
pub fn keep(store: Arc<dyn AppStore>, job: &'static str, ttl: Duration) -> (Lease, JoinHandle<()>) {
    let (report, holding) = watch::channel(Holding::No);
    let task = tokio::spawn(async move {
        let holder = crate::replica::id();
        let every = ttl / 4;
        let local_ttl = ttl;
        let ttl = chrono::TimeDelta::from_std(ttl).unwrap_or(chrono::TimeDelta::MAX);
        // A renewal that fails or is slow (SQLite's writers queue behind a
        // long write transaction) is tried again while the holding's
        // deadline (a quarter of the time to live before the expiry) has
        // not passed; past it, or told another replica holds it, the lease
        // counts as lost before it can expire under this replica.
        loop {
            // Expiries are set and compared by the database's clock, so
            // replicas whose clocks drift apart agree on them; this host
            // counts its own holding from before it asked, to be safe.
            let asked = tokio::time::Instant::now();
            // A keeper that did not run past its deadline (its process was
            // stopped) has lost the lease: it says so before asking, so that
            // holding it again counts as a new take.
            let stale = matches!(&*report.borrow(), Holding::Yes { until, .. } if asked >= *until);
            if stale {
                tracing::warn!(
                    job,
                    holder,
                    "lease lost: this replica did not run past its deadline"
                );
                report.send_replace(Holding::No);
            }
            let tried = tokio::time::timeout(every, async {
                let now = store.clock().await?;
                let until = now.checked_add_signed(ttl).unwrap_or(now);
                store.acquire_lease(job, holder, now, until).await
            })
            .await;
            let still_valid = || matches!(&*report.borrow(), Holding::Yes { until, .. } if tokio::time::Instant::now() < *until);
            let now_holding = match tried {
                Ok(Ok(LeaseState::Held { taken_from })) => Holding::Yes {
                    taken_from,
                    until: asked + local_ttl.saturating_sub(every),
                },
                Ok(Ok(LeaseState::HeldBy { .. })) => Holding::No,
                Ok(Err(error)) => {
                    tracing::warn!(%error, job, "cannot take or renew the lease; trying again");
                    if still_valid() {
                        report.borrow().clone()
                    } else {
                        Holding::No
                    }
                }
                Err(_) => {
                    tracing::warn!(
                        job,
                        "the database did not answer the lease renewal in time; trying again"
                    );
                    if still_valid() {
                        report.borrow().clone()
                    } else {
                        Holding::No
                    }
                }
            };
            report.send_if_modified(|current| match (&mut *current, now_holding) {
                // A renewal moves the deadline on without waking anyone.
                (Holding::Yes { until, .. }, Holding::Yes { until: renewed, .. }) => {
                    *until = renewed;
                    false
                }
                (Holding::No, Holding::No) => false,
                (Holding::No, taken @ Holding::Yes { .. }) => {
                    if let Holding::Yes {
                        taken_from: Some(from),
                        ..
                    } = &taken
                    {
                        tracing::info!(
                            job,
                            holder,
                            taken_from = from,
                            "lease taken over: this replica runs the job now"
                        );
                    } else {
                        tracing::info!(job, holder, "lease taken: this replica runs the job");
                    }
                    *current = taken;
                    true
                }
                (Holding::Yes { .. }, Holding::No) => {
                    tracing::warn!(
                        job,
                        holder,
                        "lease lost: this replica stops running the job"
                    );
                    *current = Holding::No;
                    true
                }
            });
            tokio::time::sleep(every).await;
        }
    });
    (Lease { job, holding }, task)
}

/// Gives up `jobs`' leases if this replica holds them (a clean shutdown:
/// another replica takes over at its next try, not after the expiry).
/// Failures are logged: the leases then expire on their own.
pub async fn release(store: &dyn AppStore, jobs: &[&'static str]) {
    for job in jobs {
        if let Err(error) = store.release_lease(job, crate::replica::id()).await {
            tracing::warn!(%error, job, "cannot give the lease up; it expires on its own");
        }
    }
}
