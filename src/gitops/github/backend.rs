//! [`ChangeRequests`] as GitHub pull requests: one branch
//! `draco/<kind>-<short fingerprint>` per finding (or
//! `draco/group/<kind>-<hash>` per group), its files committed through the
//! git data API (a tree on the base branch's tree holding the files'
//! contents, which GitHub writes as blobs; a commit; a ref), and one pull
//! request from it.
//!
//! Nothing is opened twice: before creating, Draco looks. A branch holding
//! Draco's commit of the same files on the current base is reused (a re-run
//! after a crash), and a pull request already open from it is the change
//! request (a crash between "created" and "recorded"). A branch holding
//! anything else (someone pushed to it, or the proposal changed) gets a
//! fresh commit of Draco's, force-moved, and its open pull request is
//! edited to match, with a comment saying so.

use async_trait::async_trait;

use super::api::{GitHubApi, Pull, TreeEntry};
use crate::domain::{Approved, Rejected};
use crate::gitops::config::{GitHubConfig, MergeMethod};
use crate::gitops::{
    ChangeRequests, GitOpsError, NewChangeRequest, Observed, OpenedChangeRequest, Review,
    ReviewState,
};
use crate::redact::Redacted;

/// Pull requests on one GitHub repository.
pub struct GitHubChangeRequests {
    api: GitHubApi,
    /// The web root pages and files are shown at (`https://github.com`).
    web_root: String,
    /// The repository's default branch, once read (when `base_branch` is unset).
    default_branch: tokio::sync::OnceCell<String>,
    base_branch: Option<String>,
    merge_method: MergeMethod,
    labels: Vec<String>,
    reviewers: Vec<String>,
}

impl GitHubChangeRequests {
    pub fn new(api: GitHubApi, config: &GitHubConfig) -> Self {
        Self {
            api,
            web_root: web_root(&config.api_url),
            default_branch: tokio::sync::OnceCell::new(),
            base_branch: config.base_branch.clone(),
            merge_method: config.merge_method,
            labels: config.labels.clone(),
            reviewers: config.reviewers.clone(),
        }
    }

    pub fn api(&self) -> &GitHubApi {
        &self.api
    }

    /// The description as GitHub shows it: the cost chart on the branch,
    /// as an image, after the first paragraph (the summary).
    fn body(&self, request: &NewChangeRequest) -> String {
        let Some(chart) = &request.chart else {
            return request.body.clone();
        };
        let repository = self.api.repository();
        let image = format!(
            "![Cost chart: the last 90 days, the expected band, the anomalous days marked]({}/{}/{}/blob/{}/{chart}?raw=true)",
            self.web_root, repository.owner, repository.name, request.branch
        );
        match request.body.split_once("\n\n") {
            Some((first, rest)) => format!("{first}\n\n{image}\n\n{rest}"),
            None => format!("{}\n\n{image}\n", request.body),
        }
    }

    /// The configured base branch, or the repository's default branch
    /// (read once).
    async fn base(&self) -> Result<String, GitOpsError> {
        if let Some(base) = &self.base_branch {
            return Ok(base.clone());
        }
        self.default_branch
            .get_or_try_init(|| async { Ok(self.api.repository_info().await?.default_branch) })
            .await
            .cloned()
    }

    /// Draco's newest pull request from `branch`, open or closed: one into
    /// the base branch. Another pull request from the same branch (someone
    /// opened one into another base, or retargeted Draco's) is not Draco's
    /// change request; the API's `head=owner:branch` already leaves out
    /// forks.
    async fn latest_pull(&self, branch: &str) -> Result<Option<Pull>, GitOpsError> {
        let base = self.base().await?;
        Ok(self
            .api
            .pulls_for_branch(branch)
            .await?
            .into_iter()
            .find(|p| p.base.branch == base))
    }

    /// The tree holding `files` on top of `base_tree`.
    async fn tree(
        &self,
        base_tree: &str,
        request: &NewChangeRequest,
    ) -> Result<String, GitOpsError> {
        let entries: Vec<TreeEntry> = request
            .files
            .iter()
            .map(|file| TreeEntry {
                path: file.path.clone(),
                mode: if file.executable { "100755" } else { "100644" },
                kind: "blob",
                content: file.contents.clone(),
            })
            .collect();
        self.api.create_tree(base_tree, &entries).await
    }

    /// The base branch, its head, and the tree of `request`'s files on the
    /// base's tree: what Draco's commit of the proposal would hold. Blobs and
    /// trees are addressed by their content, so making them again creates
    /// nothing new, and comparing trees says whether a branch holds this
    /// proposal.
    async fn proposal_tree(
        &self,
        request: &NewChangeRequest,
    ) -> Result<(String, String, String), GitOpsError> {
        let base = self.base().await?;
        let base_head = self
            .api
            .branch_head(&base)
            .await?
            .ok_or_else(|| GitOpsError::NoBranch(base.clone()))?;
        let base_tree = self.api.commit(&base_head).await?.tree;
        let tree = self.tree(&base_tree, request).await?;
        Ok((base, base_head, tree))
    }

    /// Labels (the configured ones and the severity label the caller put in
    /// `request`) and reviewers. A failure here leaves a usable pull request,
    /// so it is logged, not returned.
    async fn decorate(&self, number: u64, labels: &[String]) {
        let labels: Vec<String> = self.labels.iter().chain(labels).cloned().collect();
        if !labels.is_empty()
            && let Err(error) = self.api.add_labels(number, &labels).await
        {
            tracing::warn!(%error, number, "cannot label the pull request");
        }
        if !self.reviewers.is_empty()
            && let Err(error) = self.api.request_reviewers(number, &self.reviewers).await
        {
            tracing::warn!(%error, number, "cannot request reviewers on the pull request");
        }
    }
}

#[async_trait]
impl ChangeRequests for GitHubChangeRequests {
    fn backend(&self) -> &'static str {
        "github"
    }

    async fn open(
        &self,
        request: &Redacted<NewChangeRequest>,
    ) -> Result<OpenedChangeRequest, GitOpsError> {
        let request = request.get();
        let open_pull = self
            .latest_pull(&request.branch)
            .await?
            .filter(|p| p.state == "open");
        let (base, base_head, tree) = self.proposal_tree(request).await?;
        let existing = self.api.branch_head(&request.branch).await?;
        let reusable = match &existing {
            // Draco's own commit of these files on the current base (a re-run
            // after a crash). A commit pushed on top of it by someone else has
            // another parent, so it is never taken for Draco's.
            Some(head) => {
                let shape = self.api.commit(head).await?;
                shape.tree == tree && shape.parents == [base_head.clone()]
            }
            None => false,
        };
        let head = match existing {
            Some(head) if reusable => head,
            existing => {
                let message = format!("{}\n\n{}", request.title, request.body);
                let commit = self.api.create_commit(&message, &tree, &base_head).await?;
                if existing.is_some() {
                    self.api.move_branch(&request.branch, &commit).await?;
                } else {
                    self.api.create_branch(&request.branch, &commit).await?;
                }
                commit
            }
        };
        if let Some(pull) = open_pull {
            // Found again after a crash: what was lost with the answer may
            // include the labels and reviewers (both idempotent on GitHub).
            self.decorate(pull.number, &request.labels).await;
            if pull.head.sha != head {
                // The branch changed outside Draco, or the proposal did:
                // the pull request now shows Draco's proposal again.
                self.api
                    .update_pull(
                        pull.number,
                        &serde_json::json!({ "title": request.title, "body": self.body(request) }),
                    )
                    .await?;
                self.api
                    .comment(
                        pull.number,
                        &format!(
                            "Draco re-proposed this change as {head}: the branch no longer held what Draco proposed. Approvals given before are void."
                        ),
                    )
                    .await?;
            }
            return Ok(OpenedChangeRequest {
                branch: request.branch.clone(),
                head_commit: head,
                location: pull.html_url,
                created: false,
            });
        }
        let pull = match self
            .api
            .create_pull(&request.title, &request.branch, &base, &self.body(request))
            .await
        {
            Ok(pull) => pull,
            // 422 "A pull request already exists": a racing copy opened it.
            Err(GitOpsError::GitHub {
                status: Some(422), ..
            }) => match self.latest_pull(&request.branch).await? {
                Some(pull) if pull.state == "open" => pull,
                _ => {
                    return Err(GitOpsError::GitHub {
                        operation: "open a pull request",
                        status: Some(422),
                        message: "refused, and no open pull request from the branch".into(),
                    });
                }
            },
            Err(other) => return Err(other),
        };
        self.decorate(pull.number, &request.labels).await;
        Ok(OpenedChangeRequest {
            branch: request.branch.clone(),
            head_commit: head,
            location: pull.html_url,
            created: true,
        })
    }

    async fn update(
        &self,
        request: &Redacted<NewChangeRequest>,
        head_commit: &str,
        note: &str,
    ) -> Result<String, GitOpsError> {
        let request = request.get();
        let pull = self
            .latest_pull(&request.branch)
            .await?
            .filter(|p| p.state == "open")
            .ok_or_else(|| GitOpsError::NoBranch(request.branch.clone()))?;
        self.verify(&request.branch, head_commit).await?;
        let (_, base_head, tree) = self.proposal_tree(request).await?;
        if self.api.commit(head_commit).await?.tree == tree {
            return Ok(head_commit.to_owned());
        }
        let message = format!("{}\n\n{}", request.title, request.body);
        let commit = self.api.create_commit(&message, &tree, &base_head).await?;
        self.api.move_branch(&request.branch, &commit).await?;
        self.api
            .update_pull(
                pull.number,
                &serde_json::json!({ "title": request.title, "body": self.body(request) }),
            )
            .await?;
        self.api
            .comment(
                pull.number,
                &format!("{note}\n\nNew head: {commit}. Approvals given before are void."),
            )
            .await?;
        Ok(commit)
    }

    async fn verify(&self, branch: &str, head_commit: &str) -> Result<(), GitOpsError> {
        match self.api.branch_head(branch).await? {
            None => Err(GitOpsError::NoBranch(branch.to_owned())),
            Some(actual) if actual != head_commit => Err(GitOpsError::BranchMoved {
                branch: branch.to_owned(),
                approved: head_commit.to_owned(),
                actual,
            }),
            Some(_) => Ok(()),
        }
    }

    async fn merge(&self, approved: &Approved) -> Result<String, GitOpsError> {
        let branch = approved.branch();
        let pull = self
            .latest_pull(branch)
            .await?
            .ok_or_else(|| GitOpsError::NoBranch(branch.to_owned()))?;
        if pull.merged_at.is_some() {
            // Merged before (a retry after a crash): the merge that took it,
            // if it took the approved commit.
            if pull.head.sha != approved.head_commit() {
                return Err(GitOpsError::BranchMoved {
                    branch: branch.to_owned(),
                    approved: approved.head_commit().to_owned(),
                    actual: pull.head.sha,
                });
            }
            return pull.merge_commit_sha.ok_or_else(|| GitOpsError::GitHub {
                operation: "read a merged pull request",
                status: None,
                message: "merged, but GitHub gives no merge commit".into(),
            });
        }
        match self
            .api
            .merge_pull(
                pull.number,
                approved.head_commit(),
                self.merge_method,
                approved.audit_head().map(|h| h.to_trailer()).as_deref(),
            )
            .await
        {
            Ok(sha) => Ok(sha),
            // "Head branch was modified. Review and try the merge again."
            Err(GitOpsError::GitHub {
                status: Some(409), ..
            }) => Err(GitOpsError::BranchMoved {
                branch: branch.to_owned(),
                approved: approved.head_commit().to_owned(),
                actual: self
                    .api
                    .branch_head(branch)
                    .await?
                    .unwrap_or_else(|| "(deleted)".to_owned()),
            }),
            Err(GitOpsError::GitHub {
                status: Some(405 | 422),
                message,
                ..
            }) => {
                // "Pull Request is not mergeable" is also the answer when a
                // merge of the same approval (another replica finishing an
                // abandoned decision, the approver retrying) got there first.
                if let Some(merged) = self.latest_pull(branch).await?
                    && merged.merged_at.is_some()
                    && merged.head.sha == approved.head_commit()
                    && let Some(sha) = merged.merge_commit_sha
                {
                    return Ok(sha);
                }
                Err(GitOpsError::NotMergeable {
                    branch: branch.to_owned(),
                    reason: message,
                })
            }
            Err(other) => Err(other),
        }
    }

    async fn retire(&self, _branch: &str) -> Result<(), GitOpsError> {
        // Nothing to move aside: `open` puts a fresh commit of Draco's on the
        // same branch and pull request (the pull request keeps the history),
        // so one finding keeps one pull request.
        Ok(())
    }

    async fn withdraw(&self, branch: &str, note: &str) -> Result<(), GitOpsError> {
        if let Some(pull) = self.latest_pull(branch).await?
            && pull.state == "open"
        {
            self.api.comment(pull.number, note).await?;
            self.api
                .update_pull(pull.number, &serde_json::json!({ "state": "closed" }))
                .await?;
        }
        Ok(())
    }

    async fn purge(&self, branch: &str, _heads: &[String]) -> Result<Vec<String>, GitOpsError> {
        // GitHub offers no way to delete a pull request (only GitHub
        // Support can): it is closed, its title and description are
        // replaced, and its branch deleted.
        let mut kept = Vec::new();
        for pull in self.api.pulls_for_branch(branch).await? {
            self.api
                .update_pull(
                    pull.number,
                    &serde_json::json!({
                        "state": "closed",
                        "title": "Purged by Draco",
                        "body": "This change request was purged by its operator (`draco purge`).",
                    }),
                )
                .await?;
            kept.push(format!(
                "GitHub keeps pull request #{} (closed): its commits, comments, reviews and the description's edit history stay there until GitHub Support deletes it",
                pull.number
            ));
        }
        self.api.delete_branch(branch).await?;
        Ok(kept)
    }

    async fn observe(&self, branch: &str) -> Result<Observed, GitOpsError> {
        Ok(match self.latest_pull(branch).await? {
            Some(pull) if pull.merged_at.is_some() => Observed::Merged {
                merge_commit: pull.merge_commit_sha,
            },
            Some(pull) if pull.state == "open" => Observed::Open {
                head: pull.head.sha,
            },
            // Closed: by hand if the branch is still there; with the branch
            // deleted (GitHub closes a pull request whose branch goes), it
            // is gone, and the next scan recreates it.
            _ => match self.api.branch_head(branch).await? {
                Some(_) => Observed::Closed,
                None => Observed::Missing,
            },
        })
    }

    async fn note(&self, branch: &str, text: &str) -> Result<(), GitOpsError> {
        match self.latest_pull(branch).await? {
            Some(pull) => self.api.comment(pull.number, text).await,
            None => Err(GitOpsError::NoBranch(branch.to_owned())),
        }
    }

    async fn reviews(&self, branch: &str) -> Result<Vec<Review>, GitOpsError> {
        let Some(pull) = self.latest_pull(branch).await? else {
            return Ok(Vec::new());
        };
        if pull.state != "open" {
            return Ok(Vec::new());
        }
        let author = pull
            .user
            .as_ref()
            .map(|u| u.login.clone())
            .unwrap_or_default();
        Ok(self
            .api
            .reviews(pull.number)
            .await?
            .into_iter()
            .filter_map(|r| {
                let user = r.user?;
                Some(Review {
                    bot: user.is_bot(),
                    reviewer: user.login,
                    state: ReviewState::parse(&r.state),
                    commit: r.commit_id.unwrap_or_default(),
                    body: r.body.unwrap_or_default(),
                    pull_author: author.clone(),
                })
            })
            .collect())
    }

    async fn close(&self, rejected: &Rejected) -> Result<(), GitOpsError> {
        let branch = rejected.branch();
        let pull = self
            .latest_pull(branch)
            .await?
            .ok_or_else(|| GitOpsError::NoBranch(branch.to_owned()))?;
        if pull.state == "open" {
            let reason = rejected.reason().map_or_else(String::new, |r| {
                let r: String = r.chars().take(1000).collect();
                format!("\n\n> {}", r.replace('\n', "\n> "))
            });
            self.api
                .comment(
                    pull.number,
                    &format!(
                        "Rejected in Draco (via {}): closed without merging.{reason}",
                        rejected.channel()
                    ),
                )
                .await?;
            self.api
                .update_pull(pull.number, &serde_json::json!({ "state": "closed" }))
                .await?;
        }
        Ok(())
    }
}

/// Where GitHub shows pages for an API root: `https://api.github.com` →
/// `https://github.com`; GitHub Enterprise Server's `https://HOST/api/v3`
/// → `https://HOST`; anything else (a stand-in) as it is.
fn web_root(api_url: &str) -> String {
    let trimmed = api_url.trim_end_matches('/');
    if let Some(rest) = trimmed.strip_prefix("https://api.github.com") {
        return format!("https://github.com{rest}");
    }
    trimmed
        .strip_suffix("/api/v3")
        .unwrap_or(trimmed)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::web_root;

    #[test]
    fn the_web_root_of_github_and_of_enterprise_server() {
        assert_eq!(web_root("https://api.github.com"), "https://github.com");
        assert_eq!(web_root("https://api.github.com/"), "https://github.com");
        assert_eq!(
            web_root("https://ghe.example.com/api/v3"),
            "https://ghe.example.com"
        );
        assert_eq!(web_root("http://127.0.0.1:9000"), "http://127.0.0.1:9000");
    }
}
