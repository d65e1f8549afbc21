//! What an approval message says: a one-line summary (redacted for
//! publication), the monthly dollar impact, where the change is (the pull
//! request, or the local branch), and how to answer.

use chrono::{DateTime, Utc};

use super::Notifier;
use crate::approvers::{ApproverEntry, EmailAddress};
use crate::channels::email::Mail;
use crate::domain::neutralise;
use crate::store::StoredFinding;

/// Longest one-line summary, in characters: an SMS segment is 160 GSM-7
/// characters, and the rest of the text needs room.
const SUMMARY_CHARS: usize = 90;

/// The publishable facts of one change request.
pub struct Summary {
    /// One line, redacted.
    pub line: String,
    /// Dollars a month, when known.
    pub impact: Option<f64>,
    /// The pull request URL, or the local repository and branch.
    pub location: String,
}

impl Summary {
    /// Built from what the change request covers; every text passes the
    /// publishing redaction.
    pub fn of(
        notifier: &Notifier,
        findings: &[StoredFinding],
        impact: f64,
        location: &str,
    ) -> Self {
        let raw = match findings {
            [one] => format!("{} ({})", one.finding.title, one.finding.severity.as_str()),
            many => format!(
                "{} {} findings in {} {}",
                many.len(),
                many[0].finding.kind.as_str(),
                many[0].finding.account,
                many[0].finding.region.as_deref().unwrap_or("")
            ),
        };
        let published = |text: &str| {
            notifier
                .redactor
                .publishable(&text.to_owned(), &notifier.publish_redact)
                .map(|r| r.get().clone())
                // A value the redactor cannot take is not sent at all.
                .unwrap_or_else(|_| "a finding (see Draco)".to_owned())
        };
        let mut line: String = neutralise(&published(&raw))
            .chars()
            .filter(|c| !c.is_control())
            .collect();
        if line.chars().count() > SUMMARY_CHARS {
            line = line.chars().take(SUMMARY_CHARS - 1).collect::<String>() + "…";
        }
        Summary {
            line,
            impact: (impact > 0.0).then_some(impact),
            location: published(location),
        }
    }

    fn impact_text(&self) -> String {
        self.impact
            .map(|usd| format!(", ${usd:.0}/month"))
            .unwrap_or_default()
    }

    /// The SMS: `Draco: <summary>, $N/month. <link> Reply YES <code> to
    /// approve, NO <code> <reason> to reject.`
    pub fn sms(&self, code: &str) -> String {
        format!(
            "Draco: {}{}. {} Reply YES {code} to approve, NO {code} <reason> to reject.",
            self.line,
            self.impact_text(),
            self.location
        )
    }

    /// The mail with its two links.
    pub fn mail(
        &self,
        approver: &ApproverEntry,
        to: &EmailAddress,
        approve_link: &str,
        reject_link: &str,
        expires_at: DateTime<Utc>,
    ) -> Mail {
        let expires = expires_at.format("%Y-%m-%d %H:%M UTC");
        let text = format!(
            "Draco proposes a change and asks for your decision.\n\n{}{}\nChange: {}\n\n\
             Approve: {approve_link}\nReject:  {reject_link}\n\n\
             Each link opens a page that asks you to confirm; opening it changes nothing. \
             The links work once, for you only, for this exact commit, until {expires}.\n",
            self.line,
            self.impact_text(),
            self.location
        );
        let html = format!(
            "<!doctype html><html><body><p>Draco proposes a change and asks for your decision.</p>\
             <p><strong>{}</strong>{}<br>Change: {}</p>\
             <p><a href=\"{approve_link}\">Approve</a> &middot; <a href=\"{reject_link}\">Reject</a></p>\
             <p>Each link opens a page that asks you to confirm; opening it changes nothing. \
             The links work once, for you only, for this exact commit, until {expires}.</p></body></html>",
            html_escape(&self.line),
            html_escape(&self.impact_text()),
            html_escape(&self.location)
        );
        Mail {
            to: to.clone(),
            to_name: approver.name.clone(),
            subject: format!("Draco: approve? {}", self.line),
            text,
            html,
        }
    }
}

/// Escapes text for HTML element content and attribute values.
pub fn html_escape(text: &str) -> String {
    crate::domain::escape_markup(text)
}
