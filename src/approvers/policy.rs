//! `[approval]`: how many distinct people must approve, how long a request
//! waits, which channels ask, and how many messages one person gets a day.

use serde::{Deserialize, Serialize};

use crate::domain::Severity;

/// Distinct approvers needed, per severity of the change (a grouped change
/// request takes the highest severity among its findings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Quorum {
    pub critical: u32,
    pub high: u32,
    pub medium: u32,
    pub low: u32,
}

impl Default for Quorum {
    /// Two people for a critical change (the four-eyes rule), one otherwise.
    fn default() -> Self {
        Self {
            critical: 2,
            high: 1,
            medium: 1,
            low: 1,
        }
    }
}

impl Quorum {
    pub fn for_severity(&self, severity: Severity) -> u32 {
        match severity {
            Severity::Critical => self.critical,
            Severity::High => self.high,
            Severity::Medium => self.medium,
            Severity::Low => self.low,
        }
    }
}

/// A channel approvers are asked on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyChannel {
    /// A text message through Twilio (`[twilio]`), answered by SMS reply.
    Sms,
    /// A mail with approve and reject links (`[email]`).
    Email,
}

impl NotifyChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyChannel::Sms => "sms",
            NotifyChannel::Email => "email",
        }
    }
}

/// ```toml
/// [approval]
/// quorum = { critical = 2, high = 1, medium = 1, low = 1 }
/// expires_after_hours = 72
/// notify = ["sms", "email"]
/// max_messages_per_approver_per_day = 20
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalConfig {
    pub quorum: Quorum,
    /// Hours a change request waits for its quorum: one reminder at
    /// half-time, escalation to the next approvers, then `expired`.
    pub expires_after_hours: u64,
    /// Channels approvers are asked on; none: decisions come from the CLI
    /// and GitHub reviews only.
    pub notify: Vec<NotifyChannel>,
    /// Messages (SMS and mails together) one person gets in 24 hours; the
    /// rest wait, highest severity × impact first.
    pub max_messages_per_approver_per_day: u32,
    /// Wrong codes one approver may send in an hour before a lockout.
    pub max_wrong_codes_per_hour: u32,
}

impl Default for ApprovalConfig {
    fn default() -> Self {
        Self {
            quorum: Quorum::default(),
            expires_after_hours: 72,
            notify: Vec::new(),
            max_messages_per_approver_per_day: 20,
            max_wrong_codes_per_hour: 5,
        }
    }
}

impl ApprovalConfig {
    /// Errors: `(key, message)`.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let q = &self.quorum;
        if [q.critical, q.high, q.medium, q.low].contains(&0) {
            return Err((
                "approval.quorum",
                "every severity needs at least 1 approver (0 would merge without anyone)".into(),
            ));
        }
        if self.expires_after_hours == 0 {
            return Err(("approval.expires_after_hours", "must be at least 1".into()));
        }
        if self.max_messages_per_approver_per_day == 0 {
            return Err((
                "approval.max_messages_per_approver_per_day",
                "must be at least 1".into(),
            ));
        }
        if self.max_wrong_codes_per_hour == 0 {
            return Err((
                "approval.max_wrong_codes_per_hour",
                "must be at least 1".into(),
            ));
        }
        Ok(())
    }
}
