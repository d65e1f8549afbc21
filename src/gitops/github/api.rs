//! The GitHub REST calls Draco makes, through octocrab's client (auth,
//! installation tokens, TLS), with typed bodies of Draco's own: only the
//! fields it reads, so an answer with more fields (GitHub adds them) still
//! parses.
//!
//! Rate limits ("Rate limits for the REST API", GitHub Docs): a refused
//! request (`403`/`429`) is retried after `x-ratelimit-reset` when
//! `x-ratelimit-remaining` is `0` (primary limit), after `retry-after` when
//! given, else after at least a minute, doubling up to a cap (secondary
//! limits). GitHub did not act on a refused request, so any method may be
//! retried then. A request whose outcome is unknown (the connection broke,
//! a `5xx`) is retried only when repeating it changes nothing (reads, and
//! trees, which are addressed by their content); anything that
//! creates a commit, a ref or a pull request is left to the caller, who
//! looks before creating again.
//!
//! GitHub App installation tokens are minted by octocrab from the App's key
//! (a JWT), cached and re-minted 30 s before their one-hour expiry, and once
//! more when GitHub answers `401`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use octocrab::Octocrab;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::gitops::GitOpsError;
use crate::gitops::config::{MergeMethod, Repository};

/// How Draco authenticates to GitHub.
pub enum Auth {
    /// A fine-grained personal access token.
    Token(SecretString),
    /// A GitHub App installation: the App's id, the installation's id and
    /// the App's private key (PEM).
    App {
        app_id: u64,
        installation_id: u64,
        private_key: SecretString,
    },
}

impl Auth {
    /// `token` or `app`, for `draco config check` and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Auth::Token(_) => "token",
            Auth::App { .. } => "app",
        }
    }
}

/// How long to wait on rate limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first wait on a secondary limit without `retry-after` (GitHub:
    /// "wait at least one minute"); doubled on each further refusal.
    pub secondary_wait: Duration,
    /// The longest single wait; a longer primary-limit reset fails the call
    /// (the finding's change request stays pending with that error, and the
    /// next scan tries again).
    pub max_wait: Duration,
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// The wait before repeating a safe request whose outcome was unknown.
    pub transient_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            secondary_wait: Duration::from_secs(60),
            max_wait: Duration::from_secs(15 * 60),
            max_attempts: 4,
            transient_wait: Duration::from_secs(2),
        }
    }
}

/// A repository's fields Draco reads.
#[derive(Debug, Clone, Deserialize)]
pub struct RepositoryInfo {
    pub default_branch: String,
    pub full_name: String,
}

#[derive(Debug, Clone, Deserialize)]
struct GitRef {
    object: GitObject,
}

#[derive(Debug, Clone, Deserialize)]
struct GitObject {
    sha: String,
}

#[derive(Debug, Clone, Deserialize)]
struct Created {
    sha: String,
}

#[derive(Debug, Clone, Deserialize)]
struct CommitInfo {
    tree: GitObject,
    #[serde(default)]
    parents: Vec<GitObject>,
}

/// A commit's tree and parents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitShape {
    pub tree: String,
    pub parents: Vec<String>,
}

/// A tree entry to create: a file at `path`.
#[derive(Debug, Clone, Serialize)]
pub struct TreeEntry {
    pub path: String,
    /// `100644` (a file) or `100755` (an executable).
    pub mode: &'static str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The file's contents, written as a blob by GitHub itself ("Create a
    /// tree", `tree.content`): one request for all of a proposal's files
    /// instead of one per file, which matters under the secondary rate
    /// limits when a group's change request holds hundreds of them.
    pub content: String,
}

/// A pull request's fields Draco reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Pull {
    pub number: u64,
    pub html_url: String,
    /// `open` or `closed`.
    pub state: String,
    #[serde(default)]
    pub merged_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub merge_commit_sha: Option<String>,
    pub head: PullHead,
    pub base: PullBase,
    /// Who opened it.
    #[serde(default)]
    pub user: Option<GitHubUser>,
}

/// A GitHub account as payloads show it.
#[derive(Debug, Clone, Deserialize)]
pub struct GitHubUser {
    pub login: String,
    /// `User`, `Bot` or `Organization`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

impl GitHubUser {
    /// Whether this account is an app or bot (GitHub's `type`, or the
    /// `[bot]` suffix every app account's login has).
    pub fn is_bot(&self) -> bool {
        self.kind.as_deref() == Some("Bot") || self.login.ends_with("[bot]")
    }
}

/// One review (`GET …/pulls/{n}/reviews`).
#[derive(Debug, Clone, Deserialize)]
pub struct PullReview {
    #[serde(default)]
    pub user: Option<GitHubUser>,
    pub state: String,
    #[serde(default)]
    pub commit_id: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PullBase {
    #[serde(rename = "ref")]
    pub branch: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PullHead {
    #[serde(rename = "ref")]
    pub branch: String,
    pub sha: String,
}

#[derive(Debug, Clone, Deserialize)]
struct MergeResult {
    sha: String,
}

/// What a failed call says, before it becomes a [`GitOpsError`].
struct Failure {
    status: Option<u16>,
    message: String,
    /// Seconds to wait before the request may be repeated, when GitHub
    /// refused it for a rate limit.
    wait: Option<Duration>,
}

/// The GitHub REST API for one repository.
pub struct GitHubApi {
    crab: Octocrab,
    repository: Repository,
    policy: RetryPolicy,
}

impl GitHubApi {
    /// A client for `repository` at `api_url` (`https://api.github.com`, or
    /// a GitHub Enterprise Server's `https://HOST/api/v3`).
    ///
    /// Errors: the URL or the App's private key cannot be used.
    pub fn new(
        api_url: &str,
        repository: Repository,
        auth: &Auth,
        policy: RetryPolicy,
    ) -> Result<Self, GitOpsError> {
        let setup = |message: String| GitOpsError::Setup(message);
        let builder = Octocrab::builder()
            .base_uri(api_url)
            .map_err(|_| setup("gitops.github.api_url is not a usable URL".into()))?
            .set_connect_timeout(Some(Duration::from_secs(10)))
            .set_read_timeout(Some(Duration::from_secs(60)));
        let crab = match auth {
            Auth::Token(token) => builder
                .personal_token(token.expose_secret().to_owned())
                .build(),
            Auth::App {
                app_id,
                installation_id,
                private_key,
            } => {
                let key =
                    octocrab::EncodingKey::from_rsa_pem(private_key.expose_secret().as_bytes())
                        .map_err(|_| {
                            setup("the GitHub App private key is not an RSA key in PEM form".into())
                        })?;
                builder
                    .app((*app_id).into(), key)
                    .build()
                    .and_then(|app| app.installation((*installation_id).into()))
            }
        }
        .map_err(|_| setup("cannot build the GitHub client".into()))?;
        Ok(Self {
            crab,
            repository,
            policy,
        })
    }

    pub fn repository(&self) -> &Repository {
        &self.repository
    }

    fn route(&self, rest: &str) -> String {
        format!(
            "/repos/{}/{}{rest}",
            self.repository.owner, self.repository.name
        )
    }

    /// Runs `call` with the module's retry rules. `operation` names the call
    /// in errors; `permission` is what a `403` means is missing.
    async fn call<R, F, Fut>(
        &self,
        operation: &'static str,
        permission: &'static str,
        safe_to_repeat: bool,
        call: F,
    ) -> Result<R, GitOpsError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = octocrab::Result<R>>,
    {
        let mut secondary = self.policy.secondary_wait;
        let mut attempt = 1;
        loop {
            let failure = match call().await {
                Ok(value) => return Ok(value),
                Err(error) => failure(error),
            };
            let wait = match failure.wait {
                // Refused for a rate limit: GitHub did nothing.
                Some(wait) if wait.is_zero() => {
                    let wait = secondary;
                    secondary = (secondary * 2).min(self.policy.max_wait);
                    Some(wait)
                }
                Some(wait) => Some(wait),
                None if safe_to_repeat && failure.status.is_none_or(|s| s >= 500) => {
                    Some(self.policy.transient_wait)
                }
                None => None,
            };
            match wait {
                Some(wait)
                    if attempt < self.policy.max_attempts && wait <= self.policy.max_wait =>
                {
                    tracing::warn!(
                        operation,
                        status = failure.status,
                        wait_secs = wait.as_secs(),
                        "GitHub refused or failed a request; waiting before repeating it"
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Some(wait) if failure.wait.is_some() => {
                    return Err(GitOpsError::RateLimited {
                        operation,
                        wait_secs: wait.as_secs(),
                    });
                }
                _ => return Err(classify(operation, permission, failure)),
            }
        }
    }

    /// `GET /repos/{owner}/{repo}`: one read, also the access check of
    /// `draco config check --online`.
    pub async fn repository_info(&self) -> Result<RepositoryInfo, GitOpsError> {
        let route = self.route("");
        self.call("read the repository", "metadata: read", true, || {
            self.crab.get(&route, None::<&()>)
        })
        .await
    }

    /// The commit `branch` points at, `None` when there is no such branch
    /// (`GET /repos/{owner}/{repo}/git/ref/heads/{branch}`).
    pub async fn branch_head(&self, branch: &str) -> Result<Option<String>, GitOpsError> {
        let route = self.route(&format!("/git/ref/heads/{branch}"));
        let found = self
            .call("read a branch", "contents: read", true, || async {
                match self.crab.get::<GitRef, _, _>(&route, None::<&()>).await {
                    Ok(r) => Ok(Some(r.object.sha)),
                    Err(octocrab::Error::GitHub { source, .. })
                        if source.status_code.as_u16() == 404 =>
                    {
                        Ok(None)
                    }
                    Err(other) => Err(other),
                }
            })
            .await?;
        Ok(found)
    }

    /// The tree and parents of `commit` (`GET …/git/commits/{sha}`).
    pub async fn commit(&self, commit: &str) -> Result<CommitShape, GitOpsError> {
        let route = self.route(&format!("/git/commits/{commit}"));
        let info: CommitInfo = self
            .call("read a commit", "contents: read", true, || {
                self.crab.get(&route, None::<&()>)
            })
            .await?;
        Ok(CommitShape {
            tree: info.tree.sha,
            parents: info.parents.into_iter().map(|p| p.sha).collect(),
        })
    }

    /// A tree of `entries` over `base_tree` (`POST …/git/trees`).
    pub async fn create_tree(
        &self,
        base_tree: &str,
        entries: &[TreeEntry],
    ) -> Result<String, GitOpsError> {
        let route = self.route("/git/trees");
        let body = serde_json::json!({ "base_tree": base_tree, "tree": entries });
        let created: Created = self
            .call("create a tree", "contents: write", true, || {
                self.crab.post(&route, Some(&body))
            })
            .await?;
        Ok(created.sha)
    }

    /// A commit of `tree` on `parent` (`POST …/git/commits`).
    pub async fn create_commit(
        &self,
        message: &str,
        tree: &str,
        parent: &str,
    ) -> Result<String, GitOpsError> {
        let route = self.route("/git/commits");
        let body = serde_json::json!({ "message": message, "tree": tree, "parents": [parent] });
        let created: Created = self
            .call("create a commit", "contents: write", false, || {
                self.crab.post(&route, Some(&body))
            })
            .await?;
        Ok(created.sha)
    }

    /// Creates `branch` at `commit` (`POST …/git/refs`).
    pub async fn create_branch(&self, branch: &str, commit: &str) -> Result<(), GitOpsError> {
        let route = self.route("/git/refs");
        let body = serde_json::json!({ "ref": format!("refs/heads/{branch}"), "sha": commit });
        let _: serde_json::Value = self
            .call("create a branch", "contents: write", false, || {
                self.crab.post(&route, Some(&body))
            })
            .await?;
        Ok(())
    }

    /// Moves `branch` to `commit`, even when that is not a fast-forward
    /// (`PATCH …/git/refs/heads/{branch}` with `force`).
    pub async fn move_branch(&self, branch: &str, commit: &str) -> Result<(), GitOpsError> {
        let route = self.route(&format!("/git/refs/heads/{branch}"));
        let body = serde_json::json!({ "sha": commit, "force": true });
        let _: serde_json::Value = self
            .call("move a branch", "contents: write", true, || {
                self.crab.patch(&route, Some(&body))
            })
            .await?;
        Ok(())
    }

    /// Deletes `branch`; a branch already gone is not an error.
    pub async fn delete_branch(&self, branch: &str) -> Result<(), GitOpsError> {
        let route = self.route(&format!("/git/refs/heads/{branch}"));
        self.call("delete a branch", "contents: write", true, || async {
            let response = self.crab._delete(route.as_str(), None::<&()>).await?;
            match response.status().as_u16() {
                // 422 "Reference does not exist": deleted already.
                204 | 404 | 422 => Ok(()),
                _ => octocrab::map_github_error(response).await.map(|_| ()),
            }
        })
        .await
    }

    /// Pull requests whose head is `branch` in this repository, newest first,
    /// open or closed (`GET …/pulls?head=owner:branch&state=all`).
    pub async fn pulls_for_branch(&self, branch: &str) -> Result<Vec<Pull>, GitOpsError> {
        let route = self.route("/pulls");
        let head = format!("{}:{branch}", self.repository.owner);
        let query = [
            ("head", head.as_str()),
            ("state", "all"),
            ("sort", "created"),
            ("direction", "desc"),
        ];
        self.call("list pull requests", "pull_requests: read", true, || {
            self.crab.get(&route, Some(&query))
        })
        .await
    }

    /// `GET …/pulls/{number}`.
    pub async fn pull(&self, number: u64) -> Result<Pull, GitOpsError> {
        let route = self.route(&format!("/pulls/{number}"));
        self.call("read a pull request", "pull_requests: read", true, || {
            self.crab.get(&route, None::<&()>)
        })
        .await
    }

    /// Every review of pull request `number`, oldest first
    /// (`GET …/pulls/{number}/reviews`, 100 a page).
    pub async fn reviews(&self, number: u64) -> Result<Vec<PullReview>, GitOpsError> {
        let route = self.route(&format!("/pulls/{number}/reviews"));
        let mut all: Vec<PullReview> = Vec::new();
        for page in 1..=10u32 {
            let page_text = page.to_string();
            let query = [("per_page", "100"), ("page", page_text.as_str())];
            let batch: Vec<PullReview> = self
                .call(
                    "read pull request reviews",
                    "pull_requests: read",
                    true,
                    || self.crab.get(&route, Some(&query)),
                )
                .await?;
            let done = batch.len() < 100;
            all.extend(batch);
            if done {
                break;
            }
        }
        Ok(all)
    }

    /// Opens a pull request (`POST …/pulls`).
    pub async fn create_pull(
        &self,
        title: &str,
        branch: &str,
        base: &str,
        body: &str,
    ) -> Result<Pull, GitOpsError> {
        let route = self.route("/pulls");
        let request = serde_json::json!({
            "title": title, "head": branch, "base": base, "body": body,
            "maintainer_can_modify": false,
        });
        self.call("open a pull request", "pull_requests: write", false, || {
            self.crab.post(&route, Some(&request))
        })
        .await
    }

    /// Edits a pull request: its `state` (`open`, `closed`), `title`, `body`.
    pub async fn update_pull(
        &self,
        number: u64,
        changes: &serde_json::Value,
    ) -> Result<Pull, GitOpsError> {
        let route = self.route(&format!("/pulls/{number}"));
        self.call("edit a pull request", "pull_requests: write", true, || {
            self.crab.patch(&route, Some(changes))
        })
        .await
    }

    /// Merges pull request `number` only if its head is still `sha`
    /// (`PUT …/pulls/{number}/merge`); returns the merge commit. GitHub
    /// answers `409` when the head moved and `405` when it is not mergeable.
    pub async fn merge_pull(
        &self,
        number: u64,
        sha: &str,
        method: MergeMethod,
        message: Option<&str>,
    ) -> Result<String, GitOpsError> {
        let route = self.route(&format!("/pulls/{number}/merge"));
        let mut body = serde_json::json!({ "sha": sha, "merge_method": method.as_str() });
        if let Some(message) = message {
            // GitHub's default title stays; the message is the extra detail
            // (<https://docs.github.com/en/rest/pulls/pulls#merge-a-pull-request>).
            body["commit_message"] = serde_json::Value::from(message);
        }
        let merged: MergeResult = self
            .call("merge a pull request", "contents: write", false, || {
                self.crab.put(&route, Some(&body))
            })
            .await?;
        Ok(merged.sha)
    }

    /// Adds labels to a pull request (`POST …/issues/{number}/labels`).
    pub async fn add_labels(&self, number: u64, labels: &[String]) -> Result<(), GitOpsError> {
        let route = self.route(&format!("/issues/{number}/labels"));
        let body = serde_json::json!({ "labels": labels });
        let _: serde_json::Value = self
            .call("label a pull request", "pull_requests: write", true, || {
                self.crab.post(&route, Some(&body))
            })
            .await?;
        Ok(())
    }

    /// Requests reviews from logins and `org/team` teams
    /// (`POST …/pulls/{number}/requested_reviewers`).
    pub async fn request_reviewers(
        &self,
        number: u64,
        reviewers: &[String],
    ) -> Result<(), GitOpsError> {
        let (teams, users): (Vec<&String>, Vec<&String>) =
            reviewers.iter().partition(|r| r.contains('/'));
        let teams: Vec<&str> = teams
            .iter()
            .filter_map(|t| t.split_once('/').map(|(_, slug)| slug))
            .collect();
        let route = self.route(&format!("/pulls/{number}/requested_reviewers"));
        let body = serde_json::json!({ "reviewers": users, "team_reviewers": teams });
        let _: serde_json::Value = self
            .call("request reviewers", "pull_requests: write", true, || {
                self.crab.post(&route, Some(&body))
            })
            .await?;
        Ok(())
    }

    /// Comments on a pull request (`POST …/issues/{number}/comments`).
    pub async fn comment(&self, number: u64, body: &str) -> Result<(), GitOpsError> {
        let route = self.route(&format!("/issues/{number}/comments"));
        let request = serde_json::json!({ "body": body });
        let _: serde_json::Value = self
            .call(
                "comment on a pull request",
                "pull_requests: write",
                false,
                || self.crab.post(&route, Some(&request)),
            )
            .await?;
        Ok(())
    }
}

/// What an octocrab error says, and whether GitHub asked to wait.
fn failure(error: octocrab::Error) -> Failure {
    let octocrab::Error::GitHub { source, .. } = error else {
        // Connection, TLS, timeout, a body that did not parse: the outcome
        // is unknown. The message names no secret (octocrab never puts the
        // token in an error).
        return Failure {
            status: None,
            message: error.to_string().lines().next().unwrap_or("").to_owned(),
            wait: None,
        };
    };
    let status = source.status_code.as_u16();
    let header = |name: &str| {
        source
            .headers
            .as_ref()
            .and_then(|h| h.get(name))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let limited = matches!(status, 403 | 429);
    let wait = if !limited {
        None
    } else if let Some(secs) = header("retry-after").and_then(|v| v.trim().parse::<u64>().ok()) {
        Some(Duration::from_secs(secs))
    } else if header("x-ratelimit-remaining").as_deref() == Some("0") {
        let reset = header("x-ratelimit-reset")
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or(0);
        // Saturating: the header is the server's word, not a trusted number.
        let secs = reset
            .saturating_sub(Utc::now().timestamp())
            .clamp(0, i64::MAX - 1) as u64
            + 1;
        Some(Duration::from_secs(secs))
    } else if source
        .message
        .to_ascii_lowercase()
        .contains("secondary rate limit")
    {
        // No hint: the policy's doubling wait.
        Some(Duration::ZERO)
    } else {
        None
    };
    Failure {
        status: Some(status),
        message: source.message.clone(),
        wait,
    }
}

/// The error for a failure that is not retried.
fn classify(operation: &'static str, permission: &'static str, failure: Failure) -> GitOpsError {
    match failure.status {
        // "Resource not accessible by integration" / "… by personal access token".
        Some(403) => GitOpsError::Permission {
            operation,
            permission,
        },
        Some(404) if operation == "read the repository" => GitOpsError::Setup(
            "GitHub answered 404 for gitops.github.repository: it does not exist, or the token or App cannot see it (give it access to the repository)".into(),
        ),
        Some(401) => GitOpsError::Setup(
            "GitHub refused the credentials (401): check DRACO_GITHUB_TOKEN or the App's id, installation and key".into(),
        ),
        status => GitOpsError::GitHub {
            operation,
            status,
            message: failure.message,
        },
    }
}
