//! Change requests over groups of findings (`gitops.group =
//! "kind-account-region"`, see [`crate::gitops::group`]): opening one,
//! findings joining an open one, and bringing one up to date when its
//! findings change or resolve.
//!
//! A group's change request is recorded as one row per finding on the
//! group's branch; at most one of its generations is live (`open`) at a
//! time. Findings of the group that need a change request while one is open
//! join it: a new commit of Draco's, which voids the approvals given.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{Pipeline, RemediationError};
use crate::domain::{ChangeRequestState, FindingId, FindingStatus};
use crate::gitops::OpenedChangeRequest;
use crate::gitops::config::Grouping;
use crate::gitops::group::{GroupKey, Member, group_change_request};
use crate::store::{StoredChangeRequest, StoredFinding};

use super::OpenedRequest;

/// What one change request of a scan's round is for.
pub(super) enum Unit {
    Alone(StoredFinding),
    /// The findings of one group that need a change request, in priority order.
    Group(GroupKey, Vec<StoredFinding>),
}

impl Unit {
    pub(super) fn into_ids(self) -> Vec<FindingId> {
        match self {
            Unit::Alone(f) => vec![f.id],
            Unit::Group(_, members) => members.iter().map(|m| m.id).collect(),
        }
    }
}

/// `pending` (in priority order) as the change requests to open: one per
/// finding, or one per group, ranked by its first finding.
pub(super) fn units(pending: Vec<StoredFinding>, grouping: Grouping) -> Vec<Unit> {
    match grouping {
        Grouping::Finding => pending.into_iter().map(Unit::Alone).collect(),
        Grouping::KindAccountRegion => {
            let mut order: Vec<GroupKey> = Vec::new();
            let mut groups: HashMap<GroupKey, Vec<StoredFinding>> = HashMap::new();
            for stored in pending {
                let key = GroupKey::of(&stored.finding);
                let members = groups.entry(key.clone()).or_default();
                if members.is_empty() {
                    order.push(key);
                }
                members.push(stored);
            }
            order
                .into_iter()
                .map(|key| {
                    let members = groups.remove(&key).unwrap_or_default();
                    Unit::Group(key, members)
                })
                .collect()
        }
    }
}

/// What became of a unit's findings this round.
#[derive(Default)]
pub(super) struct Round {
    pub opened: Vec<OpenedRequest>,
    pub failed: Vec<(FindingId, RemediationError)>,
    /// Waiting for the group's change request, decided but not yet carried
    /// out, to be merged or closed: they join the next one.
    pub waiting: Vec<FindingId>,
}

impl Round {
    /// Every finding of `ids` failed with `error` (shown once per finding).
    pub(super) fn all_failed(ids: &[FindingId], error: &RemediationError) -> Self {
        Self {
            failed: ids
                .iter()
                .map(|&id| (id, RemediationError::Group(error.to_string())))
                .collect(),
            ..Self::default()
        }
    }
}

impl Pipeline<'_> {
    /// Opens the change request of `key`'s group for `new` findings, or adds
    /// them to the one open. A finding whose proposal fails stays out (it is
    /// reported); a failure of the change request fails them all.
    pub(super) async fn remediate_group(
        &self,
        key: &GroupKey,
        new: Vec<StoredFinding>,
        now: DateTime<Utc>,
    ) -> Result<Round, RemediationError> {
        let backend = self.change_requests.backend();
        let branch = key.branch();
        let rows = self
            .store
            .change_requests_on_branch(backend, &branch)
            .await?;
        let mut round = Round::default();
        if rows.iter().any(|r| {
            matches!(
                r.state,
                ChangeRequestState::Approved | ChangeRequestState::Rejected
            )
        }) {
            round.waiting = new.iter().map(|f| f.id).collect();
            return Ok(round);
        }
        let live: Vec<&StoredChangeRequest> =
            rows.iter().filter(|r| r.state.is_pending()).collect();
        let mut members = self.live_members(&live, now).await?;
        let mut joining = Vec::new();
        for stored in &new {
            match self.publishable(stored, now).await {
                Ok(member) => {
                    members.push(member);
                    joining.push(stored.id);
                }
                Err(error) => round.failed.push((stored.id, error)),
            }
        }
        if joining.is_empty() {
            return Ok(round);
        }
        members.sort_by_key(|m| m.id);
        let change = self.publish(&group_change_request(key, &members))?;
        let opened = match live.first() {
            Some(lead) => {
                let note = format!(
                    "Draco added {} to this change request: {}.",
                    plural(joining.len(), "finding"),
                    ids(&joining)
                );
                let head = self.bring_up_to_date(&change, lead, &note, now).await?;
                OpenedChangeRequest {
                    branch: branch.clone(),
                    head_commit: head,
                    location: lead.location.clone(),
                    created: false,
                }
            }
            None => {
                // An earlier change request of the group, merged, closed or
                // failed, still holds the branch: set it aside so that this
                // one is Draco's own proposal from the base.
                if !rows.is_empty() {
                    self.change_requests.retire(&branch).await?;
                }
                self.change_requests.open(&change).await?
            }
        };
        for id in joining {
            self.store
                .record_change_request(id, backend, &opened, now)
                .await?;
            round.opened.push(OpenedRequest {
                finding_id: id,
                branch: opened.branch.clone(),
                location: opened.location.clone(),
                recovered: !opened.created && live.is_empty(),
            });
        }
        Ok(round)
    }

    /// The findings of a group's open change request (its rows `live`) that
    /// are still to be fixed, proposed again as they may be published.
    async fn live_members(
        &self,
        live: &[&StoredChangeRequest],
        now: DateTime<Utc>,
    ) -> Result<Vec<Member>, RemediationError> {
        let mut members = Vec::with_capacity(live.len());
        for row in live {
            let Some(stored) = self.store.finding(row.finding_id).await? else {
                continue;
            };
            if stored.status != FindingStatus::Resolved {
                members.push(self.publishable(&stored, now).await?);
            }
        }
        Ok(members)
    }

    /// Brings the group change request on `branch` up to date with its
    /// findings as they are now (one changed, or resolved and leaves),
    /// saying `note` on it. Returns the number of findings left in it; with
    /// none left, nothing is changed.
    pub(super) async fn refresh_group(
        &self,
        branch: &str,
        note: &str,
        now: DateTime<Utc>,
    ) -> Result<usize, RemediationError> {
        let rows = self
            .store
            .change_requests_on_branch(self.change_requests.backend(), branch)
            .await?;
        let live: Vec<&StoredChangeRequest> =
            rows.iter().filter(|r| r.state.is_pending()).collect();
        let mut members = self.live_members(&live, now).await?;
        let (Some(lead), Some(first)) = (live.first(), members.first()) else {
            return Ok(0);
        };
        let key = GroupKey::of(&first.finding);
        members.sort_by_key(|m| m.id);
        let change = self.publish(&group_change_request(&key, &members))?;
        self.bring_up_to_date(&change, lead, note, now).await?;
        Ok(members.len())
    }

    /// Withdraws what resolved itself among the findings of the group change
    /// request on `branch` (`resolved`: their rows, still `open` or
    /// `failed`): the change request is brought up to date without them, or
    /// closed when none is left.
    pub(super) async fn withdraw_from_group(
        &self,
        branch: &str,
        resolved: &[StoredChangeRequest],
        now: DateTime<Utc>,
    ) -> Result<(), RemediationError> {
        let leaving: Vec<FindingId> = resolved.iter().map(|r| r.finding_id).collect();
        let rows = self
            .store
            .change_requests_on_branch(self.change_requests.backend(), branch)
            .await?;
        let staying_if = |keep: &dyn Fn(ChangeRequestState) -> bool| {
            rows.iter()
                .any(|r| keep(r.state) && !leaving.contains(&r.finding_id))
        };
        let staying = |state: ChangeRequestState| staying_if(&|s| s == state);
        if staying_if(&ChangeRequestState::is_pending) {
            let note = format!(
                "Draco no longer sees {}: {} left this change request, which now covers the others.",
                plural(leaving.len(), "finding"),
                ids(&leaving)
            );
            self.refresh_group(branch, &note, now).await?;
        } else if !staying_if(&ChangeRequestState::needs_reproposal)
            && !staying(ChangeRequestState::Approved)
            && !staying(ChangeRequestState::Rejected)
        {
            // A failed group with findings left is proposed again from
            // scratch by this scan; with none left, it is closed. One whose
            // other findings' decision is being carried out (approved or
            // rejected, not yet merged or closed) is left to that decision:
            // closing it would undo a human's approval.
            let note = "Draco no longer sees these problems: every finding of this change request resolved itself, so it is closed without merging.";
            self.change_requests.withdraw(branch, note).await?;
        }
        for id in leaving {
            self.store
                .withdraw_change_request(id, "the finding resolved itself", now)
                .await?;
        }
        Ok(())
    }
}

fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn ids(ids: &[FindingId]) -> String {
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
