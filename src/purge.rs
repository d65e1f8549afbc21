//! `draco purge`: every trace of a finding, or of everything, deleted from
//! the store and the change-request backend at once.
//!
//! The backend goes first (idempotent: a branch already gone is fine), the
//! store second, in one transaction: if the store fails after the backend
//! was purged, running the purge again finds the finding still stored and
//! finishes. What stays: the audit chain, whose events about the finding
//! keep their row, time, action and subject but get a tombstone for a
//! payload (events written before migration 0010 / PostgreSQL 0005 cannot,
//! and are counted), the sealed keys, and what a backend refuses to delete
//! (GitHub keeps closed pull requests; the outcome says so). A finding
//! still present in the cloud comes back at the next scan, as a new finding.

use chrono::{DateTime, Utc};

use crate::domain::FindingId;
use crate::gitops::{ChangeRequests, GitOpsError};
use crate::store::{DatabaseStore, PurgeReport, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    #[error("there is no finding {0} (see `draco findings`)")]
    UnknownFinding(FindingId),
    #[error(
        "finding {finding} shares its change request (branch {branch}) with findings {others}: its files are on that branch with theirs. Purge them together with --with-group, or everything with --all --yes"
    )]
    SharedBranch {
        finding: FindingId,
        branch: String,
        others: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot purge the change request from its backend: {0}")]
    ChangeRequests(#[from] GitOpsError),
}

/// What one purge did.
#[derive(Debug, Clone, PartialEq)]
pub struct PurgeOutcome {
    /// The findings purged (the one asked for, and with `--with-group` those
    /// sharing its change request); empty for `--all`.
    pub findings: Vec<FindingId>,
    pub store: PurgeReport,
    /// What a backend still keeps and could not be made to delete.
    pub kept: Vec<String>,
}

/// Purges finding `id`, and with `with_group` the findings sharing its
/// change request's branch. Errors: [`PurgeError::UnknownFinding`],
/// [`PurgeError::SharedBranch`] without `with_group`, the backend or the
/// store failing (nothing of the store changed then).
pub async fn purge_finding(
    store: &dyn DatabaseStore,
    change_requests: &dyn ChangeRequests,
    id: FindingId,
    with_group: bool,
    now: DateTime<Utc>,
) -> Result<PurgeOutcome, PurgeError> {
    let scope = store
        .purge_scope(id)
        .await?
        .ok_or(PurgeError::UnknownFinding(id))?;
    if !scope.sharing_branch.is_empty() && !with_group {
        return Err(PurgeError::SharedBranch {
            finding: id,
            branch: scope
                .change_request
                .as_ref()
                .map(|cr| cr.branch.clone())
                .unwrap_or_default(),
            others: scope
                .sharing_branch
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let mut findings = vec![id];
    findings.extend(scope.sharing_branch.iter().copied());
    let mut kept = Vec::new();
    if let Some(cr) = &scope.change_request {
        if cr.backend == change_requests.backend() {
            kept.extend(change_requests.purge(&cr.branch, &cr.heads).await?);
        } else {
            kept.push(format!(
                "its change request on the {} backend (branch {}) is not the configured backend's: remove it there by hand",
                cr.backend, cr.branch
            ));
        }
    }
    let report = store.purge_findings(&findings, now).await?;
    store.compact().await?;
    Ok(PurgeOutcome {
        findings,
        store: report,
        kept,
    })
}

/// Purges everything but the audit chain's tombstones and the keys: every
/// change request from the backend (the local repository emptied to a
/// fresh `main`), every table of the store.
pub async fn purge_all(
    store: &dyn DatabaseStore,
    change_requests: &dyn ChangeRequests,
    now: DateTime<Utc>,
) -> Result<PurgeOutcome, PurgeError> {
    let mut branches: Vec<String> = store
        .change_requests()
        .await?
        .into_iter()
        .filter(|cr| cr.backend == change_requests.backend())
        .map(|cr| cr.branch)
        .collect();
    branches.sort();
    branches.dedup();
    let kept = change_requests.purge_all(&branches).await?;
    let report = store.purge_all(now).await?;
    store.compact().await?;
    Ok(PurgeOutcome {
        findings: Vec::new(),
        store: report,
        kept,
    })
}
