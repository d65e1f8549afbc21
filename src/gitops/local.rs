//! A bare git repository under the data dir standing in for GitHub.
//!
//! Only plumbing commands are used (`hash-object`, `commit-tree`,
//! `update-ref` with the expected old value, `merge-tree --write-tree`), so
//! there is no working tree to leave half-written, and every ref update is
//! atomic: a crash leaves either the old state or the new one. Needs git ≥ 2.38.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::{ChangeRequests, GitOpsError, NewChangeRequest, Observed, OpenedChangeRequest};
use crate::domain::{Approved, Rejected};
use crate::redact::Redacted;

const MAIN: &str = "refs/heads/main";

#[derive(Debug, Clone)]
pub struct LocalGit {
    repo: PathBuf,
}

impl LocalGit {
    /// Opens the repository, creating it with an initial commit on `main` if needed.
    pub async fn open_or_init(repo: &Path) -> Result<Self, GitOpsError> {
        let this = Self {
            repo: repo.to_owned(),
        };
        if !repo.join("HEAD").exists() {
            this.init_atomically().await?;
        }
        if this.resolve(MAIN).await?.is_none() {
            let readme = this
                .hash_blob(b"# Draco remediations\n\nEach branch `draco/...` holds one proposed remediation.\nIt is merged into main only after a human approved it.\n")
                .await?;
            let tree = this
                .run_git(
                    &["mktree"],
                    Some(format!("100644 blob {readme}\tREADME.md\n").as_bytes()),
                )
                .await?;
            let commit = this
                .run_git(
                    &[
                        "commit-tree",
                        &tree,
                        "-m",
                        "Initialise the remediation repository",
                    ],
                    None,
                )
                .await?;
            // An empty expected value means "create only": a concurrent init loses cleanly.
            let _ = this.run_git(&["update-ref", MAIN, &commit, ""], None).await;
        }
        Ok(this)
    }

    pub fn path(&self) -> &Path {
        &self.repo
    }

    /// Creates the bare repository in a scratch directory beside it, then
    /// renames it into place: two processes opening a new data dir at once
    /// (the daemon and a CLI command) would otherwise run `git init` into
    /// the same directory and one would fail half-way. The loser of the
    /// rename finds the winner's repository and uses it.
    async fn init_atomically(&self) -> Result<(), GitOpsError> {
        let parent = self
            .repo
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let staging = tempfile::Builder::new()
            .prefix(".remediations-init-")
            .tempdir_in(parent)
            .map_err(GitOpsError::Spawn)?;
        let staged = staging.path().join("repo.git");
        let staged_path = staged.display().to_string();
        self.run(
            // `--shared=0600`: it holds findings and evidence, for the owner
            // only (objects 0600, directories 0700). `--template=`: no
            // sample hooks or other files from the system's git templates.
            &[
                "init",
                "--quiet",
                "--bare",
                "--shared=0600",
                "--template=",
                "--initial-branch=main",
                &staged_path,
            ],
            None,
            None,
            false,
        )
        .await?;
        match std::fs::rename(&staged, &self.repo) {
            Ok(()) => Ok(()),
            // Another process renamed its repository in first.
            Err(_) if self.repo.join("HEAD").exists() => Ok(()),
            Err(e) => Err(GitOpsError::Spawn(e)),
        }
    }

    /// The commit a ref points to, or `None` when it does not exist.
    pub async fn resolve(&self, reference: &str) -> Result<Option<String>, GitOpsError> {
        let out = self
            .run(
                &[
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    &format!("{reference}^{{commit}}"),
                ],
                None,
                None,
                true,
            )
            .await?;
        Ok((!out.is_empty()).then_some(out))
    }

    /// The commit on main's first-parent line that merged `commit`: the
    /// approval's own merge, even when main has moved on since.
    async fn merge_commit_of(&self, commit: &str) -> Result<String, GitOpsError> {
        let log = self
            .run_git(&["rev-list", "--first-parent", "--parents", MAIN], None)
            .await?;
        for line in log.lines() {
            let mut ids = line.split_whitespace();
            let merge = ids.next().unwrap_or_default();
            // Skip the first parent: the merged side is any later one.
            if ids.skip(1).any(|parent| parent == commit) {
                return Ok(merge.to_owned());
            }
        }
        // Reachable but not through a merge (fast-forwarded by hand).
        Err(GitOpsError::Git {
            args: format!("rev-list --first-parent --parents {MAIN}"),
            stderr: format!("{commit} is on main but no merge commit on main merged it"),
        })
    }

    /// Whether `commit` is reachable from `main`.
    pub async fn is_merged(&self, commit: &str) -> Result<bool, GitOpsError> {
        let status = self
            .command(&["merge-base", "--is-ancestor", commit, MAIN], None)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .map_err(GitOpsError::Spawn)?;
        Ok(status.success())
    }

    async fn hash_blob(&self, contents: &[u8]) -> Result<String, GitOpsError> {
        self.run_git(&["hash-object", "-w", "--stdin"], Some(contents))
            .await
    }

    fn command(&self, args: &[&str], index_file: Option<&Path>) -> Command {
        let mut cmd = Command::new("git");
        cmd.arg("--git-dir").arg(&self.repo).args(args);
        // The operator's own git configuration must not change what Draco writes.
        cmd.env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "Draco")
            .env("GIT_AUTHOR_EMAIL", "draco@localhost")
            .env("GIT_COMMITTER_NAME", "Draco")
            .env("GIT_COMMITTER_EMAIL", "draco@localhost")
            .env("GIT_TERMINAL_PROMPT", "0")
            .kill_on_drop(true);
        if let Some(index) = index_file {
            cmd.env("GIT_INDEX_FILE", index);
        }
        cmd
    }

    async fn run_git(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<String, GitOpsError> {
        self.run(args, stdin, None, false).await
    }

    /// Runs git and returns its trimmed stdout. With `allow_failure`, a
    /// non-zero exit gives what it printed instead of an error.
    async fn run(
        &self,
        args: &[&str],
        stdin: Option<&[u8]>,
        index_file: Option<&Path>,
        allow_failure: bool,
    ) -> Result<String, GitOpsError> {
        let mut cmd = if args.first() == Some(&"init") {
            let mut c = Command::new("git");
            c.args(args)
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_CONFIG_GLOBAL", "/dev/null");
            c
        } else {
            self.command(args, index_file)
        };
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(GitOpsError::Spawn)?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input).await.map_err(GitOpsError::Spawn)?;
            drop(pipe);
        }
        let output = child.wait_with_output().await.map_err(GitOpsError::Spawn)?;
        if !output.status.success() && !allow_failure {
            return Err(GitOpsError::Git {
                args: args.join(" "),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Commits `request`'s files on top of main (not on any branch yet);
    /// returns the tree and the commit.
    async fn commit_on_main(
        &self,
        request: &NewChangeRequest,
    ) -> Result<(String, String), GitOpsError> {
        let base = self
            .resolve(MAIN)
            .await?
            .ok_or_else(|| GitOpsError::NoBranch("main".into()))?;

        let scratch = tempfile::Builder::new()
            .prefix("draco-index-")
            .tempdir()
            .map_err(GitOpsError::Spawn)?;
        let index = scratch.path().join("index");
        self.run(&["read-tree", &base], None, Some(&index), false)
            .await?;
        for file in &request.files {
            let blob = self.hash_blob(file.contents.as_bytes()).await?;
            let mode = if file.executable { "100755" } else { "100644" };
            self.run(
                &[
                    "update-index",
                    "--add",
                    "--cacheinfo",
                    &format!("{mode},{blob},{}", file.path),
                ],
                None,
                Some(&index),
                false,
            )
            .await?;
        }
        let tree = self.run(&["write-tree"], None, Some(&index), false).await?;
        let message = format!("{}\n\n{}", request.title, request.body);
        let commit = self
            .run_git(
                &["commit-tree", &tree, "-p", &base, "-F", "-"],
                Some(message.as_bytes()),
            )
            .await?;
        Ok((tree, commit))
    }

    /// Moves `branch` under `refs/{namespace}/{branch}/{head}`: out of the
    /// branch list, kept for the record; idempotent.
    async fn set_aside(&self, branch: &str, namespace: &str) -> Result<(), GitOpsError> {
        let branch_ref = format!("refs/heads/{branch}");
        let Some(head) = self.resolve(&branch_ref).await? else {
            return Ok(());
        };
        let aside = format!("refs/{namespace}/{branch}/{head}");
        self.run_git(&["update-ref", &aside, &head], None).await?;
        self.run_git(&["update-ref", "-d", &branch_ref, &head], None)
            .await?;
        Ok(())
    }

    async fn require_branch_at(&self, branch: &str, commit: &str) -> Result<(), GitOpsError> {
        match self.resolve(&format!("refs/heads/{branch}")).await? {
            None => Err(GitOpsError::NoBranch(branch.to_owned())),
            Some(actual) if actual != commit => Err(GitOpsError::BranchMoved {
                branch: branch.to_owned(),
                approved: commit.to_owned(),
                actual,
            }),
            Some(_) => Ok(()),
        }
    }
}

#[async_trait]
impl ChangeRequests for LocalGit {
    fn backend(&self) -> &'static str {
        "local-git"
    }

    async fn open(
        &self,
        request: &Redacted<NewChangeRequest>,
    ) -> Result<OpenedChangeRequest, GitOpsError> {
        let request = request.get();
        let branch_ref = format!("refs/heads/{}", request.branch);
        let existing = |head_commit: String| OpenedChangeRequest {
            branch: request.branch.clone(),
            head_commit,
            location: self.repo.display().to_string(),
            created: false,
        };
        if let Some(head) = self.resolve(&branch_ref).await? {
            return Ok(existing(head));
        }
        let (_, commit) = self.commit_on_main(request).await?;
        match self
            .run_git(&["update-ref", &branch_ref, &commit, ""], None)
            .await
        {
            Ok(_) => Ok(OpenedChangeRequest {
                branch: request.branch.clone(),
                head_commit: commit,
                location: self.repo.display().to_string(),
                created: true,
            }),
            // Someone else created it between our check and now: theirs stands.
            Err(e) => match self.resolve(&branch_ref).await? {
                Some(head) => Ok(existing(head)),
                None => Err(e),
            },
        }
    }

    async fn merge(&self, approved: &Approved) -> Result<String, GitOpsError> {
        let head = approved.head_commit();
        if self.is_merged(head).await? {
            return self.merge_commit_of(head).await;
        }
        self.require_branch_at(approved.branch(), head).await?;
        let main = self
            .resolve(MAIN)
            .await?
            .ok_or_else(|| GitOpsError::NoBranch("main".into()))?;
        let merged = self
            .run(
                &["merge-tree", "--write-tree", &main, head],
                None,
                None,
                true,
            )
            .await?;
        let tree = merged.lines().next().unwrap_or_default().to_owned();
        if tree.is_empty() {
            return Err(GitOpsError::Git {
                args: format!("merge-tree --write-tree {main} {head}"),
                stderr: "printed no tree (git older than 2.38?)".into(),
            });
        }
        if merged.lines().count() > 1 {
            return Err(GitOpsError::Conflict {
                branch: approved.branch().to_owned(),
            });
        }
        let message = format!(
            "Merge {}\n\nApproved by {} via {} at {}.",
            approved.branch(),
            approved.approver(),
            approved.channel(),
            approved.decided_at().to_rfc3339()
        );
        let commit = self
            .run_git(
                &["commit-tree", &tree, "-p", &main, "-p", head, "-F", "-"],
                Some(message.as_bytes()),
            )
            .await?;
        if let Err(error) = self
            .run_git(&["update-ref", MAIN, &commit, &main], None)
            .await
        {
            // main moved under us: fine if it was the same approval merged by
            // a concurrent caller, an error otherwise.
            if self.is_merged(head).await? {
                return self.merge_commit_of(head).await;
            }
            return Err(error);
        }
        Ok(commit)
    }

    async fn verify(&self, branch: &str, head_commit: &str) -> Result<(), GitOpsError> {
        if self.is_merged(head_commit).await? {
            // Merged already (a decision being completed): nothing to check.
            return Ok(());
        }
        self.require_branch_at(branch, head_commit).await
    }

    async fn update(
        &self,
        request: &Redacted<NewChangeRequest>,
        head_commit: &str,
        _note: &str,
    ) -> Result<String, GitOpsError> {
        let request = request.get();
        self.require_branch_at(&request.branch, head_commit).await?;
        let (tree, commit) = self.commit_on_main(request).await?;
        let current_tree = self
            .run_git(&["rev-parse", &format!("{head_commit}^{{tree}}")], None)
            .await?;
        if current_tree == tree {
            return Ok(head_commit.to_owned());
        }
        // Only from the head Draco recorded: a concurrent move loses cleanly.
        let branch_ref = format!("refs/heads/{}", request.branch);
        self.run_git(&["update-ref", &branch_ref, &commit, head_commit], None)
            .await?;
        Ok(commit)
    }

    async fn retire(&self, branch: &str) -> Result<(), GitOpsError> {
        self.set_aside(branch, "failed").await
    }

    async fn withdraw(&self, branch: &str, _note: &str) -> Result<(), GitOpsError> {
        // The audit log says why; the repository keeps the commit.
        self.set_aside(branch, "withdrawn").await
    }

    fn changed_outside_draco(&self) -> bool {
        false
    }

    async fn observe(&self, branch: &str) -> Result<Observed, GitOpsError> {
        // Only Draco merges and closes here: what can change outside it is
        // the branch itself.
        Ok(match self.resolve(&format!("refs/heads/{branch}")).await? {
            Some(head) => Observed::Open { head },
            None => Observed::Missing,
        })
    }

    async fn close(&self, rejected: &Rejected) -> Result<(), GitOpsError> {
        let branch_ref = format!("refs/heads/{}", rejected.branch());
        let closed_ref = format!("refs/closed/{}", rejected.branch());
        if self.resolve(&branch_ref).await?.is_none() {
            // Already closed (a retry after a crash), or never opened.
            return match self.resolve(&closed_ref).await? {
                Some(_) => Ok(()),
                None => Err(GitOpsError::NoBranch(rejected.branch().to_owned())),
            };
        }
        self.require_branch_at(rejected.branch(), rejected.head_commit())
            .await?;
        // Keep the rejected commit reachable for the record, out of the branch list.
        self.run_git(&["update-ref", &closed_ref, rejected.head_commit()], None)
            .await?;
        self.run_git(
            &["update-ref", "-d", &branch_ref, rejected.head_commit()],
            None,
        )
        .await?;
        Ok(())
    }
}
