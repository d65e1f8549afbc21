//! `[gitops]`: where change requests go, and how many at once.
//!
//! ```toml
//! [gitops]
//! backend = "github"              # or "local" (the default): a git repository under the data dir
//! max_new_per_scan = 20           # new change requests per scan; the rest wait as `queued`
//! group = "finding"               # or "kind-account-region": one change request per finding kind, account and region
//! [gitops.github]
//! api_url = "https://api.github.com"      # GitHub Enterprise Server: https://HOST/api/v3
//! repository = "acme/cloud-remediations"
//! base_branch = "main"                    # default: the repository's default branch
//! merge_method = "squash"                 # merge | squash | rebase
//! labels = ["draco"]                      # plus one severity label, draco:critical … draco:low
//! reviewers = []                          # GitHub logins; teams as "org/team"
//! # app_id = 12345                       # GitHub App (preferred) instead of a token
//! # installation_id = 678
//! # app_private_key_file = "/run/secrets/draco-github-app.pem"
//! # webhook_secret_file = "/run/secrets/draco-github-webhook"
//! # publish_redact = ["email", "phone", …]  # kinds never published (default: all but account_id)
//! ```
//!
//! Secrets (a token, the App's private key, the webhook secret) are never in
//! this table: see [`crate::config::Secrets`].

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::redact::PiiKind;

/// The `[gitops]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GitOpsConfig {
    pub backend: Backend,
    /// New change requests opened per scan at most, highest severity ×
    /// dollar impact first; the others wait as `queued` for the next scans.
    /// GitHub's secondary rate limits allow about 80 content-creating
    /// requests a minute and 500 an hour ("Rate limits for the REST API",
    /// GitHub Docs), and one pull request takes about six of them (a tree, a
    /// commit, a branch, the pull request, its labels and reviewers).
    pub max_new_per_scan: u32,
    pub group: Grouping,
    pub github: GitHubConfig,
}

impl Default for GitOpsConfig {
    fn default() -> Self {
        Self {
            backend: Backend::Local,
            max_new_per_scan: 20,
            group: Grouping::Finding,
            github: GitHubConfig::default(),
        }
    }
}

/// Where change requests are opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// A bare git repository under the data dir (`remediations.git`).
    Local,
    /// Pull requests on GitHub (`[gitops.github]`).
    Github,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Local => "local",
            Backend::Github => "github",
        }
    }
}

/// What one change request covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Grouping {
    /// One change request per finding.
    Finding,
    /// One per finding kind, account and region: one script over all their
    /// resources, one approval (see [`crate::gitops::group`]). Findings of
    /// the group found while its change request is open join it.
    KindAccountRegion,
}

/// How GitHub merges an approved pull request (`merge_method` of
/// `PUT /repos/{owner}/{repo}/pulls/{pull_number}/merge`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MergeMethod {
    Merge,
    Squash,
    Rebase,
}

impl MergeMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            MergeMethod::Merge => "merge",
            MergeMethod::Squash => "squash",
            MergeMethod::Rebase => "rebase",
        }
    }
}

/// The `[gitops.github]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GitHubConfig {
    /// The REST API root: `https://api.github.com`, or
    /// `https://HOST/api/v3` for GitHub Enterprise Server.
    pub api_url: String,
    /// `owner/name` of the repository pull requests are opened in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// The branch pull requests target; unset, the repository's default branch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_branch: Option<String>,
    pub merge_method: MergeMethod,
    /// Labels on every pull request, beside one severity label (`draco:high`).
    pub labels: Vec<String>,
    /// Reviewers requested on every pull request: logins, or teams as `org/team`.
    pub reviewers: Vec<String>,
    /// A GitHub App's id: with `installation_id` and the App's private key,
    /// Draco authenticates as the App's installation instead of with a token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub installation_id: Option<u64>,
    /// A file holding the App's private key (PEM), instead of
    /// `DRACO_GITHUB_APP_PRIVATE_KEY`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_private_key_file: Option<PathBuf>,
    /// A file holding the webhook secret, instead of `DRACO_GITHUB_WEBHOOK_SECRET`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret_file: Option<PathBuf>,
    /// A file holding a fine-grained token, instead of `DRACO_GITHUB_TOKEN`:
    /// container and systemd secrets arrive as files (compose `secrets:`,
    /// Kubernetes Secret volumes, `LoadCredential=`), and a distroless
    /// image has no shell to move one into the environment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// Kinds of data removed from everything published to GitHub (branch
    /// names, titles, descriptions, files, comments). Credentials are always
    /// among them. Default: every kind but `account_id`, which a change
    /// needs (as it needs resource ids and regions, which are not personal).
    pub publish_redact: Vec<PiiKind>,
}

impl Default for GitHubConfig {
    fn default() -> Self {
        Self {
            api_url: "https://api.github.com".to_owned(),
            repository: None,
            base_branch: None,
            merge_method: MergeMethod::Squash,
            labels: vec!["draco".to_owned()],
            reviewers: Vec::new(),
            app_id: None,
            installation_id: None,
            app_private_key_file: None,
            webhook_secret_file: None,
            token_file: None,
            publish_redact: PiiKind::ALL
                .into_iter()
                .filter(|k| *k != PiiKind::AccountId)
                .collect(),
        }
    }
}

/// A repository named `owner/name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    pub owner: String,
    pub name: String,
}

impl std::fmt::Display for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// Parses `owner/name`. GitHub's rules: an owner is 1–39 ASCII letters,
/// digits or single inner hyphens; a repository name is 1–100 of ASCII
/// letters, digits, `-`, `_` and `.`, and not `.` or `..`.
pub fn parse_repository(raw: &str) -> Result<Repository, String> {
    let Some((owner, name)) = raw.split_once('/') else {
        return Err("must be `owner/name`".into());
    };
    let owner_ok = (1..=39).contains(&owner.len())
        && owner
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !owner.starts_with('-')
        && !owner.ends_with('-')
        && !owner.contains("--");
    if !owner_ok {
        return Err("the owner must be 1 to 39 letters, digits or inner hyphens".into());
    }
    let name_ok = (1..=100).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name != "."
        && name != "..";
    if !name_ok {
        return Err("the name must be 1 to 100 letters, digits, `-`, `_` or `.`".into());
    }
    Ok(Repository {
        owner: owner.to_owned(),
        name: name.to_owned(),
    })
}

/// Checks a reviewer: a login (as an owner above) or a team `org/team-slug`.
pub fn check_reviewer(raw: &str) -> Result<(), String> {
    let login = |s: &str| {
        (1..=39).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !s.starts_with('-')
    };
    let ok = match raw.split_once('/') {
        Some((org, team)) => {
            login(org)
                && !team.is_empty()
                && team
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        }
        None => login(raw),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{raw}` is neither a GitHub login nor a team as `org/team`"
        ))
    }
}

/// Checks `api_url`: `https://`, or `http://` on loopback (a stand-in in
/// tests); no credentials, query or fragment.
pub fn check_api_url(raw: &str) -> Result<(), String> {
    crate::endpoint::check_https_url(raw).map(|_| ())
}

/// The kinds that must be in `publish_redact` whatever the operator says:
/// a credential in a pull request is leaked to everyone who can read it.
pub fn missing_credential_kinds(publish_redact: &[PiiKind]) -> Vec<PiiKind> {
    PiiKind::ALL
        .into_iter()
        .filter(|k| k.is_credential() && !publish_redact.contains(k))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_follow_githubs_naming_rules() {
        let r = parse_repository("acme/cloud-remediations").expect("valid");
        assert_eq!(
            (r.owner.as_str(), r.name.as_str()),
            ("acme", "cloud-remediations")
        );
        assert_eq!(r.to_string(), "acme/cloud-remediations");
        assert!(parse_repository("acme/.github").is_ok());
        for bad in [
            "acme", "/name", "acme/", "acme/a/b", "-acme/x", "ac--me/x", "acme/..", "acme/a b",
            "acme/x?y",
        ] {
            assert!(parse_repository(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reviewers_are_logins_or_org_teams() {
        assert!(check_reviewer("ada-l").is_ok());
        assert!(check_reviewer("acme/platform_team").is_ok());
        assert!(check_reviewer("acme/").is_err());
        assert!(check_reviewer("ada l").is_err());
        assert!(check_reviewer("@ada").is_err());
    }

    #[test]
    fn the_api_url_is_https_or_loopback_http() {
        assert!(check_api_url("https://api.github.com").is_ok());
        assert!(check_api_url("https://ghe.example.com/api/v3").is_ok());
        assert!(check_api_url("http://127.0.0.1:9999").is_ok());
        assert!(check_api_url("http://ghe.example.com/api/v3").is_err());
        assert!(check_api_url("https://x:y@api.github.com").is_err());
    }

    #[test]
    fn by_default_everything_but_account_ids_stays_on_the_host() {
        let kinds = GitHubConfig::default().publish_redact;
        assert!(!kinds.contains(&PiiKind::AccountId));
        assert_eq!(kinds.len(), PiiKind::ALL.len() - 1);
        assert!(missing_credential_kinds(&kinds).is_empty());
        assert!(missing_credential_kinds(&[PiiKind::Email]).contains(&PiiKind::GithubToken));
    }
}
