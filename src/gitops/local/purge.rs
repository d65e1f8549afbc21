//! Purging from the local repository: a change request's branch and every
//! object only it reached are deleted, and when it was merged, `main`'s
//! history (and every branch made from it since) is rewritten without its
//! merge, its commits and its files. Unreachable objects are then pruned at
//! once (reflogs expired, `git gc --prune=now`), so that
//! `git cat-file --batch-all-objects` finds nothing of it.

use std::collections::{HashMap, HashSet};

use super::{LocalGit, MAIN};
use crate::gitops::GitOpsError;

/// The all-zero object id: an index line with it removes the path.
const NULL_OID: &str = "0000000000000000000000000000000000000000";

impl LocalGit {
    /// Every ref with the commit it points to.
    async fn all_refs(&self) -> Result<Vec<(String, String)>, GitOpsError> {
        let out = self
            .run_git(&["for-each-ref", "--format=%(refname) %(objectname)"], None)
            .await?;
        Ok(out
            .lines()
            .filter_map(|line| line.split_once(' '))
            .map(|(name, oid)| (name.to_owned(), oid.to_owned()))
            .collect())
    }

    /// Deletes `branch` (also set aside under `refs/closed/`,
    /// `refs/failed/`, `refs/withdrawn/`) and rewrites every other ref's
    /// history without its commits, the merges of them and the files they
    /// wrote; then prunes. Returns nothing the repository keeps.
    pub(super) async fn purge_branch(
        &self,
        branch: &str,
        heads: &[String],
    ) -> Result<Vec<String>, GitOpsError> {
        let _lock = self.lock_refs(&[MAIN]).await?;
        let refs = self.all_refs().await?;
        let owned = |name: &str| {
            name == format!("refs/heads/{branch}")
                || name == format!("refs/closed/{branch}")
                || ["failed", "withdrawn"]
                    .iter()
                    .any(|ns| name.starts_with(&format!("refs/{ns}/{branch}/")))
        };
        let (own, kept): (Vec<_>, Vec<_>) = refs.into_iter().partition(|(name, _)| owned(name));
        // The branch's commits: each is one commit on top of main.
        let mut commits: HashSet<String> = own.iter().map(|(_, oid)| oid.clone()).collect();
        for head in heads {
            if self.resolve(head).await?.is_some() {
                commits.insert(head.clone());
            }
        }
        // Its merges into main, and what they merged.
        let mut merges = HashSet::new();
        let log = self
            .run_git(
                &["log", "--first-parent", "--format=%H %P%x09%s", MAIN],
                None,
            )
            .await?;
        let subject = format!("Merge {branch}");
        for line in log.lines() {
            let Some((ids, title)) = line.split_once('\t') else {
                continue;
            };
            if title != subject {
                continue;
            }
            let ids: Vec<&str> = ids.split(' ').collect();
            if let [merge, _, merged, ..] = ids.as_slice() {
                merges.insert((*merge).to_owned());
                commits.insert((*merged).to_owned());
            }
        }
        // The files its commits wrote.
        let mut paths = Vec::new();
        for commit in &commits {
            let changed = self
                .run_git(
                    &[
                        "diff-tree",
                        "-r",
                        "--no-commit-id",
                        "--name-only",
                        "--no-renames",
                        commit,
                    ],
                    None,
                )
                .await?;
            for path in changed.lines().filter(|p| !p.is_empty()) {
                if !paths.iter().any(|p: &String| p == path) {
                    paths.push(path.to_owned());
                }
            }
        }
        let dropped: HashSet<String> = commits.union(&merges).cloned().collect();
        if !merges.is_empty() {
            self.rewrite(&kept, &dropped, &paths).await?;
        }
        for (name, oid) in &own {
            self.run_git(&["update-ref", "-d", name, oid], None).await?;
        }
        self.prune().await?;
        Ok(Vec::new())
    }

    /// Empties the repository: every ref deleted, a fresh `main` holding
    /// only the README, everything else pruned.
    pub(super) async fn purge_everything(&self) -> Result<Vec<String>, GitOpsError> {
        {
            let _lock = self.lock_refs(&[MAIN]).await?;
            for (name, oid) in self.all_refs().await? {
                self.run_git(&["update-ref", "-d", &name, &oid], None)
                    .await?;
            }
        }
        self.ensure_main().await?;
        self.prune().await?;
        Ok(Vec::new())
    }

    /// Expires every reflog and prunes every unreachable object now.
    async fn prune(&self) -> Result<(), GitOpsError> {
        self.run_git(
            &[
                "reflog",
                "expire",
                "--expire=now",
                "--expire-unreachable=now",
                "--all",
            ],
            None,
        )
        .await?;
        self.run_git(&["gc", "--quiet", "--prune=now"], None)
            .await?;
        Ok(())
    }

    /// Rewrites the history of `refs` without the commits `dropped` (each
    /// replaced by its first parent) and without `paths` in any tree, then
    /// moves each ref to its rewritten commit (compare-and-swap).
    async fn rewrite(
        &self,
        refs: &[(String, String)],
        dropped: &HashSet<String>,
        paths: &[String],
    ) -> Result<(), GitOpsError> {
        if refs.is_empty() {
            return Ok(());
        }
        let mut args = vec!["rev-list", "--topo-order", "--reverse", "--parents"];
        args.extend(refs.iter().map(|(_, oid)| oid.as_str()));
        let list = self.run_git(&args, None).await?;
        let index = tempfile::tempdir().map_err(GitOpsError::Spawn)?;
        let index = index.path().join("index");
        let mut map: HashMap<String, String> = HashMap::new();
        let mut trees: HashMap<String, String> = HashMap::new();
        for line in list.lines() {
            let mut ids = line.split(' ');
            let Some(commit) = ids.next() else { continue };
            let parents: Vec<String> = ids.map(str::to_owned).collect();
            let mapped = |p: &String| map.get(p).cloned().unwrap_or_else(|| p.clone());
            if dropped.contains(commit) {
                if let Some(first) = parents.first() {
                    map.insert(commit.to_owned(), mapped(first));
                }
                continue;
            }
            let mut new_parents: Vec<String> = Vec::new();
            for parent in &parents {
                let parent = mapped(parent);
                if !new_parents.contains(&parent) {
                    new_parents.push(parent);
                }
            }
            let tree = self
                .run_git(&["rev-parse", &format!("{commit}^{{tree}}")], None)
                .await?;
            let new_tree = match trees.get(&tree) {
                Some(t) => t.clone(),
                None => {
                    let t = self.without_paths(&tree, paths, &index).await?;
                    trees.insert(tree.clone(), t.clone());
                    t
                }
            };
            if new_parents == parents && new_tree == tree {
                continue;
            }
            let raw = self.run_git(&["cat-file", "commit", commit], None).await?;
            let (header, message) = raw.split_once("\n\n").unwrap_or((raw.as_str(), ""));
            let mut object = format!("tree {new_tree}\n");
            for parent in &new_parents {
                object.push_str(&format!("parent {parent}\n"));
            }
            for line in header.lines() {
                if !line.starts_with("tree ") && !line.starts_with("parent ") {
                    object.push_str(line);
                    object.push('\n');
                }
            }
            object.push('\n');
            object.push_str(message);
            object.push('\n');
            let rewritten = self
                .run_git(
                    &["hash-object", "-t", "commit", "-w", "--stdin"],
                    Some(object.as_bytes()),
                )
                .await?;
            map.insert(commit.to_owned(), rewritten);
        }
        for (name, oid) in refs {
            if let Some(new) = map.get(oid).filter(|new| *new != oid) {
                self.run_git(&["update-ref", name, new, oid], None).await?;
            }
        }
        Ok(())
    }

    /// `tree` without `paths` (through a scratch index file).
    async fn without_paths(
        &self,
        tree: &str,
        paths: &[String],
        index: &std::path::Path,
    ) -> Result<String, GitOpsError> {
        if paths.is_empty() {
            return Ok(tree.to_owned());
        }
        self.run(&["read-tree", tree], None, Some(index), false)
            .await?;
        let removals: String = paths
            .iter()
            .map(|p| format!("0 {NULL_OID}\t{p}\n"))
            .collect();
        self.run(
            &["update-index", "--index-info"],
            Some(removals.as_bytes()),
            Some(index),
            false,
        )
        .await?;
        self.run(&["write-tree"], None, Some(index), false).await
    }
}
