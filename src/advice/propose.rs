//! One finding's proposal: redact, ask (or read the cache), restore
//! locally, render and check, and fall back to the template advisor when the
//! answer is refused.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::AdviceStore;
use crate::domain::{Finding, FindingId};
use crate::redact::{RedactError, Redacted, Redactor, Vault};
use crate::remediate::templates::Catalog;
use crate::remediate::{
    AdviceError, AdviceRecord, AdviceRequest, AdviceUsage, Advisor, Proposal, safety,
};
use crate::store::StoreError;

/// Why a finding got no proposal. The texts are stored in the scan summary
/// and the `remediation.failed` audit event.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    #[error("redaction: {0}")]
    Redact(#[from] RedactError),
    #[error("advisor: {0}")]
    Advice(#[from] AdviceError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Everything a proposal is made with, borrowed for one scan.
pub struct Advice<'a> {
    pub redactor: &'a Redactor,
    /// Asked first: the model when one is used, else the template advisor.
    pub advisor: &'a dyn Advisor,
    /// Answers when `advisor` fails or its answer is refused (the template
    /// advisor behind a model); `None` when `advisor` is already it.
    pub fallback: Option<&'a dyn Advisor>,
    /// Renders the advisor's choice locally, from the real finding.
    pub catalog: &'a Catalog,
    /// The advice cache, and audit events for answers that named unknown
    /// placeholders.
    pub store: &'a dyn AdviceStore,
}

/// One finding on its way to an advisor.
struct Attempt<'r> {
    finding_id: FindingId,
    request: &'r AdviceRequest,
    redacted: &'r Redacted<AdviceRequest>,
    vault: &'r Vault,
    now: DateTime<Utc>,
}

impl Advice<'_> {
    /// Redact → advise (or the cache) → restore locally → render and check;
    /// on a refused answer, the fallback answers and the reason (masked
    /// again: it may quote restored values) is recorded in the proposal's
    /// [`AdviceRecord`] with the refused call's usage.
    pub async fn propose(
        &self,
        finding_id: FindingId,
        finding: &Finding,
        now: DateTime<Utc>,
    ) -> Result<Proposal, ProposeError> {
        let request = AdviceRequest::from_finding(finding);
        let (redacted, vault) = self.redactor.redact(&request)?;
        let attempt = Attempt {
            finding_id,
            request: &request,
            redacted: &redacted,
            vault: &vault,
            now,
        };
        let (outcome, usage) = self.advise(self.advisor, &attempt).await;
        match (outcome, self.fallback) {
            (Ok(proposal), _) => Ok(proposal),
            (Err(ProposeError::Advice(refused)), Some(fallback)) => {
                // The reason may quote restored values (a parameter): it is
                // stored and shown in the change request, so mask them again.
                let reason = vault.mask(&refused.to_string());
                tracing::warn!(
                    finding = finding_id.get(),
                    advisor = self.advisor.name(),
                    reason,
                    "model advice not used; the template advisor answers"
                );
                let (outcome, _) = self.advise(fallback, &attempt).await;
                let mut proposal = outcome?;
                proposal.advice = Some(AdviceRecord {
                    advisor: fallback.name().to_owned(),
                    fallback_reason: Some(reason),
                    usage,
                    notes: None,
                    redacted: vault.counts(),
                });
                Ok(proposal)
            }
            (Err(other), _) => Err(other),
        }
    }

    /// Asks one advisor (or its cache), restores the answer locally, renders
    /// the template and runs the safety checks. Returns the usage of a model
    /// call also when its answer is then refused: the call was billed.
    async fn advise(
        &self,
        advisor: &dyn Advisor,
        attempt: &Attempt<'_>,
    ) -> (Result<Proposal, ProposeError>, Option<AdviceUsage>) {
        let fingerprint = attempt.request.fingerprint.as_str();
        let cache_key = advisor.cache_key();
        let cached = match &cache_key {
            Some(key) => match self.store.cached_advice(key, fingerprint).await {
                Ok(cached) => cached,
                Err(e) => return (Err(e.into()), None),
            },
            None => None,
        };
        let from_cache = cached.is_some();
        let recommendation = match cached {
            Some(r) => r,
            None => match advisor.recommend(attempt.redacted).await {
                Ok(r) => r,
                Err(AdviceError::Answer { message, usage }) => {
                    let usage = usage.map(|u| *u);
                    return (
                        Err(AdviceError::Answer {
                            message,
                            usage: None,
                        }
                        .into()),
                        usage,
                    );
                }
                Err(e) => return (Err(e.into()), None),
            },
        };
        let usage = recommendation.usage.clone().map(|u| AdviceUsage {
            cached: from_cache,
            ..u
        });
        let still_redacted = recommendation.clone();
        let (restored, invented) = recommendation.restore(attempt.vault);
        let checked = async {
            if !invented.is_empty() {
                self.store
                    .audit(
                        "draco",
                        "advice.unknown_placeholders",
                        &format!("finding:{}", attempt.finding_id),
                        &json!({ "advisor": advisor.name(), "placeholders": invented }),
                        attempt.now,
                    )
                    .await?;
            }
            // Rendering runs the script safety check (declared line shapes).
            let mut proposal = self.catalog.render(&restored, attempt.request)?;
            if let Some(notes) = &restored.notes {
                safety::check_text("summary", &notes.summary).map_err(AdviceError::from)?;
                safety::check_text("rollback notes", &notes.rollback).map_err(AdviceError::from)?;
                for step in &notes.steps {
                    safety::check_text("steps", step).map_err(AdviceError::from)?;
                }
            }
            if let (Some(key), false) = (&cache_key, from_cache) {
                self.store
                    .cache_advice(key, fingerprint, &still_redacted, attempt.now)
                    .await?;
            }
            proposal.advice = Some(AdviceRecord {
                advisor: advisor.name().to_owned(),
                fallback_reason: None,
                usage: usage.clone(),
                notes: restored.notes.clone(),
                redacted: attempt.vault.counts(),
            });
            Ok::<_, ProposeError>(proposal)
        };
        (checked.await, usage)
    }
}
