//! Retention: how long each kind of history is kept (`[retention]`), and
//! the store's part in enforcing it. The daemon calls
//! `compose::App::enforce_retention`, which runs one transaction per kind
//! and then records one `retention` audit event with the counts.
//!
//! Every period is in whole days and at least one: nothing is kept for
//! ever by a zero (a typo would otherwise disable a privacy rule).

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::StoreError;

/// Days of cost history detection reads back from the newest day (the
/// scan's window, `pipeline`): `retention.cost_points_days` may not be
/// shorter, or detection would lose the history it scores against.
pub const COST_HISTORY_DAYS: u32 = 400;

/// The longest period accepted, in days (about 100 years): beyond it a
/// cutoff would leave the calendar.
pub const MAX_DAYS: u32 = 36_500;

/// `[retention]`: how long Draco keeps each kind of history, in days.
/// Enforced by the daemon (`App::enforce_retention`); `draco purge`
/// removes a finding, or everything, at once instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Scans and the findings they recorded: a finding `resolved` more than
    /// this many days ago, whose change request (if any) is over (`merged`,
    /// `closed` or `expired`), is deleted with its proposal, change request
    /// and approval records; then scans older than this that no remaining
    /// finding refers to. Open findings and those with a change request
    /// still waiting for a decision are never deleted. Default 180.
    pub scans_days: u32,
    /// Daily cost points older than this many days (by their day). At
    /// least [`COST_HISTORY_DAYS`] (400): detection reads that much
    /// history. Default 730 (two years, for year-over-year comparisons).
    pub cost_points_days: u32,
    /// Webhook deliveries (their raw bodies may hold personal data)
    /// received more than this many days ago, once processed; pending ones
    /// are kept whatever their age. Default 30.
    pub webhook_deliveries_days: u32,
    /// Audit events older than this many days keep their row, time, action,
    /// subject and place in the chain, but their payload (actor and
    /// details) is replaced by a tombstone. Only events written since
    /// migration 0010 (PostgreSQL 0005) can be tombstoned; older ones keep
    /// their payload (counted as `audit_payloads_kept`). Default 365.
    pub audit_payload_days: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            scans_days: 180,
            cost_points_days: 730,
            webhook_deliveries_days: 30,
            audit_payload_days: 365,
        }
    }
}

/// A `[retention]` value that cannot be used: the key and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("retention.{key}: {message}")]
pub struct RetentionConfigError {
    pub key: &'static str,
    pub message: String,
}

impl RetentionConfig {
    /// Every period between 1 and [`MAX_DAYS`] days, and
    /// `cost_points_days` at least [`COST_HISTORY_DAYS`].
    pub fn validate(&self) -> Result<(), RetentionConfigError> {
        for (key, days) in [
            ("scans_days", self.scans_days),
            ("cost_points_days", self.cost_points_days),
            ("webhook_deliveries_days", self.webhook_deliveries_days),
            ("audit_payload_days", self.audit_payload_days),
        ] {
            if days == 0 || days > MAX_DAYS {
                return Err(RetentionConfigError {
                    key,
                    message: format!(
                        "must be between 1 and {MAX_DAYS} days, got {days} (there is no \"keep for ever\")"
                    ),
                });
            }
        }
        if self.cost_points_days < COST_HISTORY_DAYS {
            return Err(RetentionConfigError {
                key: "cost_points_days",
                message: format!(
                    "must be at least {COST_HISTORY_DAYS} days, got {}: cost anomaly detection reads {COST_HISTORY_DAYS} days of stored history",
                    self.cost_points_days
                ),
            });
        }
        Ok(())
    }

    /// The cutoffs this policy sets at `now`: what is older goes.
    pub fn cutoffs(&self, now: DateTime<Utc>) -> RetentionCutoffs {
        let before = |days: u32| {
            now.checked_sub_signed(TimeDelta::days(i64::from(days)))
                .unwrap_or(DateTime::<Utc>::MIN_UTC)
        };
        RetentionCutoffs {
            scans_before: before(self.scans_days),
            cost_points_before: before(self.cost_points_days).date_naive(),
            webhook_deliveries_before: before(self.webhook_deliveries_days),
            audit_payloads_before: before(self.audit_payload_days),
        }
    }
}

/// What retention removes: everything strictly older than these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionCutoffs {
    /// Findings resolved, and scans started, before this.
    pub scans_before: DateTime<Utc>,
    /// Cost points of days before this one.
    pub cost_points_before: NaiveDate,
    /// Processed webhook deliveries received before this.
    pub webhook_deliveries_before: DateTime<Utc>,
    /// Audit events whose time is before this get a tombstone payload.
    pub audit_payloads_before: DateTime<Utc>,
}

/// What one enforcement removed, per kind (row counts); the details of its
/// `retention` audit event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RetentionReport {
    pub findings: u64,
    pub scans: u64,
    pub cost_points: u64,
    pub webhook_deliveries: u64,
    /// Audit events whose payload was replaced by a tombstone.
    pub audit_payloads: u64,
    /// Audit events old enough, written before payload digests existed
    /// (before migration 0010 / PostgreSQL 0005): their payload is kept,
    /// since replacing it would break the chain.
    pub audit_payloads_kept: u64,
}

impl RetentionReport {
    /// Whether anything was removed or tombstoned.
    pub fn changed(&self) -> bool {
        self.findings
            + self.scans
            + self.cost_points
            + self.webhook_deliveries
            + self.audit_payloads
            > 0
    }
}

/// The store's side of retention: one transaction per kind, each
/// idempotent (a second run with the same cutoffs removes nothing).
#[async_trait]
pub trait RetentionStore: Send + Sync {
    /// Deletes findings resolved before `before` whose change request (if
    /// any) is `merged`, `closed` or `expired`, with their proposals,
    /// change requests, votes and asks; then scans started before `before`
    /// that are not running and that no remaining finding refers to.
    /// Returns (findings, scans) deleted.
    async fn expire_scans(&self, before: DateTime<Utc>) -> Result<(u64, u64), StoreError>;
    /// Deletes cost points of days before `before`.
    async fn expire_cost_points(&self, before: NaiveDate) -> Result<u64, StoreError>;
    /// Deletes processed webhook deliveries received before `before`.
    async fn expire_webhook_deliveries(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
    /// Replaces the payload of every audit event older than `before` that
    /// has a payload digest and no tombstone yet by a tombstone dated `at`.
    /// Returns (tombstoned, kept): kept are the older events without a
    /// digest, whose payload cannot be replaced.
    async fn tombstone_audit_payloads(
        &self,
        before: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<(u64, u64), StoreError>;
}

/// Enforces `cutoffs` on `store`: each kind in its own transaction, then
/// one `retention` audit event with the counts when anything changed (a
/// run that finds nothing to remove writes nothing, so running it again is
/// a no-op). A crash between kinds leaves the earlier kinds done and
/// unaudited; the next run goes on from there.
pub async fn enforce(
    store: &(impl RetentionStore + super::AuditLog + ?Sized),
    cutoffs: &RetentionCutoffs,
    now: DateTime<Utc>,
) -> Result<RetentionReport, StoreError> {
    let (findings, scans) = store.expire_scans(cutoffs.scans_before).await?;
    let cost_points = store.expire_cost_points(cutoffs.cost_points_before).await?;
    let webhook_deliveries = store
        .expire_webhook_deliveries(cutoffs.webhook_deliveries_before)
        .await?;
    let (audit_payloads, audit_payloads_kept) = store
        .tombstone_audit_payloads(cutoffs.audit_payloads_before, now)
        .await?;
    let report = RetentionReport {
        findings,
        scans,
        cost_points,
        webhook_deliveries,
        audit_payloads,
        audit_payloads_kept,
    };
    if report.changed() {
        let details = serde_json::to_value(report)
            .map_err(|e| StoreError::Corrupt(format!("retention report: {e}")))?;
        store
            .audit("draco", "retention", "retention", &details, now)
            .await?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_zero_or_a_short_cost_history_is_refused() {
        assert!(RetentionConfig::default().validate().is_ok());
        let short = RetentionConfig {
            cost_points_days: 399,
            ..RetentionConfig::default()
        };
        let error = short.validate().expect_err("too short").to_string();
        assert!(
            error.contains("retention.cost_points_days") && error.contains("400"),
            "{error}"
        );
        let zero = RetentionConfig {
            webhook_deliveries_days: 0,
            ..RetentionConfig::default()
        };
        let error = zero.validate().expect_err("zero").to_string();
        assert!(
            error.contains("retention.webhook_deliveries_days"),
            "{error}"
        );
    }

    #[test]
    fn cutoffs_count_back_whole_days_and_never_leave_the_calendar() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T06:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let cutoffs = RetentionConfig::default().cutoffs(now);
        assert_eq!(
            cutoffs.cost_points_before,
            NaiveDate::from_ymd_opt(2024, 12, 1).expect("date")
        );
        assert_eq!(cutoffs.webhook_deliveries_before, now - TimeDelta::days(30));
        let far = RetentionConfig {
            scans_days: u32::MAX,
            ..RetentionConfig::default()
        };
        assert!(far.cutoffs(now).scans_before < now);
    }
}
