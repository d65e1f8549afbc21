//! Change requests: where a proposed remediation waits for a human.
//!
//! The local backend is a bare git repository under the data dir, standing
//! in for GitHub: one branch per finding, merged into `main` only with an
//! [`Approved`] decision, moved aside when rejected.

pub mod config;
pub mod document;
pub mod github;
pub mod group;
pub mod local;

use async_trait::async_trait;

use serde::{Deserialize, Serialize};

use crate::domain::{Approved, Rejected};
use crate::redact::Redacted;

/// Everything a backend needs to open one change request. Backends take
/// it as a [`Redacted`] value: passed through the redactor under the
/// backend's publication policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewChangeRequest {
    pub branch: String,
    pub title: String,
    /// Markdown: the pull request description, or the commit message body.
    pub body: String,
    pub files: Vec<ChangeFile>,
    /// Labels for this change request alone (the severity label,
    /// `draco:critical` … `draco:low`), beside the backend's configured ones.
    pub labels: Vec<String>,
    /// The path of the cost chart among `files`, if there is one: shown in
    /// the description where the backend can show images.
    pub chart: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeFile {
    pub path: String,
    pub contents: String,
    pub executable: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OpenedChangeRequest {
    pub branch: String,
    /// The exact commit a reviewer approves; a merge refuses any other.
    pub head_commit: String,
    /// Where a human looks at it (a PR URL, or the local repository path).
    pub location: String,
    /// `false` when it already existed (a re-run after a crash, or a second scan).
    pub created: bool,
}

/// What a review says (GitHub's `review.state`: lowercase in webhooks,
/// uppercase in the REST API; both are read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewState {
    Approved,
    ChangesRequested,
    Commented,
    Dismissed,
    /// `pending` (a draft review) or anything newer: never counts.
    Other,
}

impl ReviewState {
    pub fn parse(state: &str) -> Self {
        match state.to_ascii_lowercase().as_str() {
            "approved" => ReviewState::Approved,
            "changes_requested" => ReviewState::ChangesRequested,
            "commented" => ReviewState::Commented,
            "dismissed" => ReviewState::Dismissed,
            _ => ReviewState::Other,
        }
    }
}

/// One review of a change request's pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    /// The reviewer's GitHub login.
    pub reviewer: String,
    /// The reviewer is a bot (`user.type == "Bot"`, or a `[bot]` login).
    pub bot: bool,
    pub state: ReviewState,
    /// `review.commit_id`: the head the review was given on.
    pub commit: String,
    pub body: String,
    /// The login that opened the pull request (never a valid reviewer).
    pub pull_author: String,
}

/// A change request as its backend shows it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// Open, its branch at `head`.
    Open { head: String },
    /// Merged, as `merge_commit` when the backend says.
    Merged { merge_commit: Option<String> },
    /// Closed without merging.
    Closed,
    /// Neither a branch nor a pull request: deleted by hand.
    Missing,
}

#[derive(Debug, thiserror::Error)]
pub enum GitOpsError {
    #[error("cannot run git: {0} (is git installed and on PATH?)")]
    Spawn(std::io::Error),
    #[error("git {args} failed: {stderr}")]
    Git { args: String, stderr: String },
    #[error(
        "branch {branch} is at {actual}, not at the approved commit {approved}: refusing to merge"
    )]
    BranchMoved {
        branch: String,
        approved: String,
        actual: String,
    },
    #[error("branch {0} does not exist in the change-request repository")]
    NoBranch(String),
    #[error("cannot merge {branch}: it conflicts with main")]
    Conflict { branch: String },
    /// The backend cannot be used as configured (no secret is named).
    #[error("GitHub backend: {0}")]
    Setup(String),
    #[error(
        "GitHub refused to {operation}: the token or GitHub App lacks the `{permission}` permission on the repository"
    )]
    Permission {
        operation: &'static str,
        permission: &'static str,
    },
    #[error(
        "GitHub rate limit: cannot {operation} for another {wait_secs} s; the next scan tries again"
    )]
    RateLimited {
        operation: &'static str,
        wait_secs: u64,
    },
    #[error("GitHub could not {operation} (HTTP {}): {message}", status.map_or_else(|| "no answer".to_owned(), |s| s.to_string()))]
    GitHub {
        operation: &'static str,
        status: Option<u16>,
        message: String,
    },
    #[error("GitHub will not merge {branch}: {reason}")]
    NotMergeable { branch: String, reason: String },
}

#[async_trait]
pub trait ChangeRequests: Send + Sync {
    /// `local-git` or `github`.
    fn backend(&self) -> &'static str;
    /// Opens the change request, or returns the one already open on that branch.
    async fn open(
        &self,
        request: &Redacted<NewChangeRequest>,
    ) -> Result<OpenedChangeRequest, GitOpsError>;
    /// Brings the open change request on `request.branch`, proposed at
    /// `head_commit`, up to date with `request` (its finding changed): a
    /// new commit of Draco's from the base on the same branch, the
    /// description edited, and `note` said where the backend can (a pull
    /// request comment). Returns the new head, or `head_commit` when the
    /// files are the same. Errors: [`GitOpsError::BranchMoved`] when the
    /// branch is no longer at `head_commit`, [`GitOpsError::NoBranch`].
    async fn update(
        &self,
        request: &Redacted<NewChangeRequest>,
        head_commit: &str,
        note: &str,
    ) -> Result<String, GitOpsError>;
    /// Checks, before a decision is claimed, that the change request still
    /// holds what Draco proposed: the repository answers and `branch` is at
    /// `head_commit`. Errors: [`GitOpsError::NoBranch`],
    /// [`GitOpsError::BranchMoved`], or the repository cannot be read.
    async fn verify(&self, branch: &str, head_commit: &str) -> Result<(), GitOpsError>;
    /// Merges the approved commit into main; idempotent. Returns the merge
    /// commit that merged it (also when it was merged before: never just
    /// main's current head).
    async fn merge(&self, approved: &Approved) -> Result<String, GitOpsError>;
    /// Moves a failed change request's branch out of the way (kept for the
    /// record) so that it can be proposed afresh; idempotent.
    async fn retire(&self, branch: &str) -> Result<(), GitOpsError>;
    /// Closes the change request without merging; idempotent.
    async fn close(&self, rejected: &Rejected) -> Result<(), GitOpsError>;
    /// Closes the change request without merging because it is no longer
    /// needed (its finding resolved itself), saying `note` where the backend
    /// can (a pull request comment); idempotent.
    async fn withdraw(&self, branch: &str, note: &str) -> Result<(), GitOpsError>;
    /// Whether people change change requests on this backend outside
    /// Draco (GitHub: yes), so each scan must read them back with
    /// [`ChangeRequests::observe`]. The local repository says no: only
    /// Draco writes to it, and a decision checks the branch anyway.
    fn changed_outside_draco(&self) -> bool {
        true
    }
    /// How the change request on `branch` stands on the backend now: each
    /// scan compares it with the store, so a missed webhook never leaves the
    /// store wrong for longer than one scan.
    async fn observe(&self, branch: &str) -> Result<Observed, GitOpsError>;
    /// Says `text` on the change request on `branch` where the backend can
    /// (a pull request comment, also after the merge); the local repository
    /// has nowhere to say it (the audit log has it).
    async fn note(&self, branch: &str, text: &str) -> Result<(), GitOpsError> {
        let _ = (branch, text);
        Ok(())
    }
    /// The audit heads the merge commits on the base branch carry
    /// ([`crate::audit::MERGE_TRAILER`]), oldest first: anchors of the audit
    /// log that `draco audit verify` checks the log against. The local
    /// repository reads them; GitHub's are read there (none here).
    async fn audit_anchors(&self) -> Result<Vec<crate::audit::Anchor>, GitOpsError> {
        Ok(Vec::new())
    }
    /// The reviews of the open pull request on `branch`, oldest first (for
    /// the reconciliation pass: a review whose webhook was lost still
    /// counts). None on a backend without reviews (the local repository).
    async fn reviews(&self, branch: &str) -> Result<Vec<Review>, GitOpsError> {
        let _ = branch;
        Ok(Vec::new())
    }
    /// Removes the change request on `branch` (whose commits include
    /// `heads`) from the backend as far as the backend allows (`draco
    /// purge`): the local repository deletes the branch and every object
    /// only it reached, rewriting `main` when the change was merged;
    /// GitHub closes the pull request, blanks its title and description
    /// and deletes the branch. Returns what the backend still keeps, for
    /// the operator. Idempotent.
    async fn purge(&self, branch: &str, heads: &[String]) -> Result<Vec<String>, GitOpsError>;
    /// Removes every change request (`draco purge --all`): those on
    /// `branches` as [`ChangeRequests::purge`] does; the local repository
    /// is emptied to a fresh `main`.
    async fn purge_all(&self, branches: &[String]) -> Result<Vec<String>, GitOpsError> {
        let mut kept = Vec::new();
        for branch in branches {
            kept.extend(self.purge(branch, &[]).await?);
        }
        Ok(kept)
    }
}
