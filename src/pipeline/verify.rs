//! After a merge: the next scan that covers what a merged change request
//! fixes says whether its findings are gone, on the pull request (a
//! comment) and in the audit log (`change_request.verified`), once.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::Pipeline;
use crate::domain::FindingStatus;
use crate::store::{Coverage, StoreError, StoredChangeRequest, timestamp};

impl Pipeline<'_> {
    /// Checks every merged change request no scan has checked yet, where
    /// this scan covered all its findings (a failed region says nothing).
    /// A backend failing to take the comment is logged and tried again by
    /// the next scan.
    pub(super) async fn verify_merged(
        &self,
        coverage: &Coverage,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let backend = self.change_requests.backend();
        let mut by_branch: BTreeMap<(String, String), Vec<StoredChangeRequest>> = BTreeMap::new();
        for cr in self.store.merged_to_verify().await? {
            if cr.backend == backend {
                by_branch
                    .entry((cr.branch.clone(), cr.head_commit.clone()))
                    .or_default()
                    .push(cr);
            }
        }
        'branches: for ((branch, head), rows) in by_branch {
            let mut still = Vec::new();
            for row in &rows {
                let Some(finding) = self.store.finding(row.finding_id).await? else {
                    continue;
                };
                let f = &finding.finding;
                if !coverage.covers(f.account.as_str(), f.region.as_deref()) {
                    continue 'branches;
                }
                if finding.status != FindingStatus::Resolved {
                    still.push(finding.id.to_string());
                }
            }
            let resolved = still.is_empty();
            let text = if resolved {
                format!(
                    "Draco's scan of {} no longer sees what this change fixes: resolved.",
                    timestamp(now)
                )
            } else {
                format!(
                    "Draco's scan of {} still sees finding {} after this merge: the change has not been applied yet, or did not fix it.",
                    timestamp(now),
                    still.join(", ")
                )
            };
            if let Err(error) = self.change_requests.note(&branch, &text).await {
                tracing::warn!(%error, branch, "cannot say whether a merged change fixed its finding; the next scan tries again");
                continue;
            }
            self.store
                .mark_verified(backend, &branch, &head, resolved, now)
                .await?;
        }
        Ok(())
    }
}
