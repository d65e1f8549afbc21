//! A loopback stand-in for the parts of GitHub's REST API Draco calls,
//! answering with the JSON shapes of GitHub's documentation and keeping
//! state (blobs, trees, commits, refs, pull requests, labels, comments), so
//! tests can assert what Draco did. Every request is recorded whole
//! (method, path, headers, body) for the privacy test.
//!
//! Shapes follow GitHub Docs, "REST API endpoints for Git database"
//! (blobs, trees, commits, references) and "… for pull requests".

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// One request as the stand-in received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct PullState {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub head: String,
    pub base: String,
    pub state: String,
    pub merged: bool,
    pub merge_commit: Option<String>,
    pub labels: Vec<String>,
    pub reviewers: Vec<String>,
    pub comments: Vec<String>,
}

/// A canned failure: method, path suffix, status, headers, message.
type Failure = (String, String, u16, Vec<(String, String)>, String);

#[derive(Debug, Default)]
pub struct Repo {
    pub blobs: HashMap<String, String>,
    /// Tree sha → path → (mode, blob sha).
    pub trees: HashMap<String, BTreeMap<String, (String, String)>>,
    /// Commit sha → (tree sha, parents, message).
    pub commits: HashMap<String, (String, Vec<String>, String)>,
    pub refs: BTreeMap<String, String>,
    pub pulls: Vec<PullState>,
    pub requests: Vec<Recorded>,
    /// Answered (and removed) instead of the next matching request.
    pub failures: VecDeque<Failure>,
    /// Carried out, but answered with an error (`502`: the answer lost on
    /// the way back): method, path suffix, status and message, removed
    /// when used.
    pub lost_answers: Vec<(String, String, u16, String)>,
    /// Pull request number → its reviews, as `GET …/pulls/{n}/reviews`
    /// answers them (REST: uppercase states).
    pub reviews: HashMap<u64, Vec<Value>>,
    /// Waited before answering each request (a slow API, so that a test
    /// can stop Draco half-way through a scan).
    pub latency: std::time::Duration,
    /// Method and path of every request as it arrives, before the latency
    /// (a request whose client dies while it waits is here, not in `requests`).
    pub arrivals: Vec<(String, String)>,
}

/// Called after the stand-in closed pull request `number` on a `PATCH`
/// (as GitHub sends its webhook), before the `PATCH` is answered.
pub type OnClose = Arc<dyn Fn(u64) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

type Shared = (Arc<Mutex<Repo>>, String, Arc<Mutex<Option<OnClose>>>);

pub struct StandIn {
    pub addr: SocketAddr,
    pub repo: Arc<Mutex<Repo>>,
    on_close: Arc<Mutex<Option<OnClose>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub const OWNER: &str = "acme";
pub const NAME: &str = "cloud-remediations";
pub const REPOSITORY: &str = "acme/cloud-remediations";

fn sha(kind: &str, content: &str) -> String {
    let mut h = Sha256::new();
    h.update(kind.as_bytes());
    h.update([0]);
    h.update(content.as_bytes());
    hex::encode(&h.finalize()[..20])
}

impl StandIn {
    /// Starts the stand-in, accepting `Bearer <token>`, with `main` holding
    /// one README commit.
    pub async fn start(token: &str) -> StandIn {
        let mut repo = Repo::default();
        let readme = sha("blob", "# remediations\n");
        repo.blobs.insert(readme.clone(), "# remediations\n".into());
        let mut tree = BTreeMap::new();
        tree.insert("README.md".to_owned(), ("100644".to_owned(), readme));
        let tree_sha = sha("tree", &format!("{tree:?}"));
        repo.trees.insert(tree_sha.clone(), tree);
        let commit = sha("commit", &tree_sha);
        repo.commits
            .insert(commit.clone(), (tree_sha, vec![], "init".into()));
        repo.refs.insert("main".into(), commit);
        let repo = Arc::new(Mutex::new(repo));
        let on_close: Arc<Mutex<Option<OnClose>>> = Arc::default();
        let state: Shared = (Arc::clone(&repo), token.to_owned(), Arc::clone(&on_close));
        let app = Router::new()
            .route("/{*rest}", any(handle_and_notify))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the stand-in");
        let addr = listener.local_addr().expect("address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        StandIn {
            addr,
            repo,
            on_close,
            task,
        }
    }

    /// Carries out the next `method` request whose path ends with `suffix`,
    /// but answers it `502`, as when the answer is lost.
    pub fn lose_next_answer(&self, method: &str, suffix: &str) {
        self.answer_next_with(method, suffix, 502, "Bad Gateway");
    }

    /// Carries out the next `method` request whose path ends with `suffix`,
    /// but answers it `status` with `message`: e.g. a merge that another
    /// caller's merge beat by a moment, answered as GitHub answers a merge
    /// of a merged pull request (`405` "Pull Request is not mergeable").
    pub fn answer_next_with(&self, method: &str, suffix: &str, status: u16, message: &str) {
        self.repo.lock().expect("lock").lost_answers.push((
            method.to_owned(),
            suffix.to_owned(),
            status,
            message.to_owned(),
        ));
    }

    /// Answers every request after `latency` from now on.
    pub fn set_latency(&self, latency: std::time::Duration) {
        self.repo.lock().expect("lock").latency = latency;
    }

    /// Runs `hook` whenever a `PATCH` closes a pull request, before answering it.
    pub fn on_close(&self, hook: OnClose) {
        *self.on_close.lock().expect("lock") = Some(hook);
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds a review to pull request `number` as the REST API lists it.
    pub fn add_review(&self, number: u64, login: &str, state: &str, commit: &str) {
        let review = json!({
            "id": 1, "user": { "login": login, "type": "User" }, "state": state,
            "commit_id": commit, "body": "", "submitted_at": "2026-12-05T12:00:00Z",
        });
        let mut repo = self.repo.lock().expect("lock");
        repo.reviews.entry(number).or_default().push(review);
    }

    pub fn pulls(&self) -> Vec<PullState> {
        self.repo.lock().expect("lock").pulls.clone()
    }

    /// Method and path of every request as it arrived.
    pub fn arrivals(&self) -> Vec<(String, String)> {
        self.repo.lock().expect("lock").arrivals.clone()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.repo.lock().expect("lock").requests.clone()
    }

    pub fn branch_head(&self, branch: &str) -> Option<String> {
        self.repo.lock().expect("lock").refs.get(branch).cloned()
    }

    /// The files on `branch`: path → contents.
    pub fn files(&self, branch: &str) -> BTreeMap<String, String> {
        let repo = self.repo.lock().expect("lock");
        let commit = &repo.refs[branch];
        let tree = &repo.trees[&repo.commits[commit].0];
        tree.iter()
            .map(|(p, (_, b))| (p.clone(), repo.blobs[b].clone()))
            .collect()
    }

    /// Makes the next `method` request whose path ends with `suffix` fail.
    pub fn fail_next(
        &self,
        method: &str,
        suffix: &str,
        status: u16,
        headers: &[(&str, &str)],
        message: &str,
    ) {
        self.repo.lock().expect("lock").failures.push_back((
            method.to_owned(),
            suffix.to_owned(),
            status,
            headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            message.to_owned(),
        ));
    }

    /// Someone closes the pull request from `branch` on GitHub, unmerged
    /// (`delete_branch`: and deletes the branch too).
    pub fn close_by_hand(&self, branch: &str, delete_branch: bool) {
        let mut repo = self.repo.lock().expect("lock");
        for pull in repo.pulls.iter_mut().filter(|p| p.head == branch) {
            pull.state = "closed".into();
        }
        if delete_branch {
            repo.refs.remove(branch);
        }
    }

    /// Someone merges the pull request from `branch` on GitHub; returns the merge commit.
    pub fn merge_by_hand(&self, branch: &str) -> String {
        let mut repo = self.repo.lock().expect("lock");
        let head = repo.refs[branch].clone();
        let merge = sha("commit", &format!("merged by hand {head}"));
        let tree = repo.commits[&head].0.clone();
        let parent = repo.refs["main"].clone();
        repo.commits
            .insert(merge.clone(), (tree, vec![parent], "merge".into()));
        repo.refs.insert("main".into(), merge.clone());
        for pull in repo
            .pulls
            .iter_mut()
            .filter(|p| p.head == branch && p.state == "open")
        {
            pull.state = "closed".into();
            pull.merged = true;
            pull.merge_commit = Some(merge.clone());
        }
        merge
    }

    /// Someone else pushes a commit to `branch`; returns it.
    pub fn push_foreign_commit(&self, branch: &str) -> String {
        let mut repo = self.repo.lock().expect("lock");
        let parent = repo.refs[branch].clone();
        let tree = repo.commits[&parent].0.clone();
        let commit = sha("commit", &format!("foreign {parent}"));
        repo.commits
            .insert(commit.clone(), (tree, vec![parent], "foreign".into()));
        repo.refs.insert(branch.to_owned(), commit.clone());
        commit
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(
            json!({ "message": message, "documentation_url": "https://docs.github.com/rest" }),
        ),
    )
        .into_response()
}

fn pull_json(repo: &Repo, p: &PullState) -> Value {
    json!({
        "html_url": format!("https://github.com/{OWNER}/{NAME}/pull/{}", p.number),
        "number": p.number,
        "state": p.state,
        "title": p.title,
        "body": p.body,
        "merged": p.merged,
        "merged_at": if p.merged { json!("2026-12-05T12:00:00Z") } else { Value::Null },
        "merge_commit_sha": p.merge_commit,
        "head": { "ref": p.head, "sha": repo.refs.get(&p.head).cloned().unwrap_or_default(),
                  "label": format!("{OWNER}:{}", p.head) },
        "base": { "ref": p.base, "sha": repo.refs.get(&p.base).cloned().unwrap_or_default() },
        "labels": p.labels.iter().map(|l| json!({"name": l})).collect::<Vec<_>>(),
        "user": { "login": "draco-bot" },
    })
}

fn pull_index(repo: &Repo, n: &str) -> Option<usize> {
    n.parse::<usize>()
        .ok()
        .and_then(|n| n.checked_sub(1))
        .filter(|i| *i < repo.pulls.len())
}

async fn handle_and_notify(
    State((repo, token, on_close)): State<Shared>,
    method: Method,
    uri: Uri,
    query: Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let closing = method == Method::PATCH
        && serde_json::from_slice::<Value>(&body)
            .is_ok_and(|v| v["state"].as_str() == Some("closed"));
    let number = uri
        .path()
        .rsplit('/')
        .next()
        .and_then(|n| n.parse::<u64>().ok());
    let path = uri.path().to_owned();
    let method_name = method.to_string();
    let latency = {
        let mut repo = repo.lock().expect("lock");
        repo.arrivals.push((method_name.clone(), path.clone()));
        repo.latency
    };
    tokio::time::sleep(latency).await;
    let response = handle(
        State((Arc::clone(&repo), token)),
        method,
        uri,
        query,
        headers,
        body,
    )
    .await;
    let lost = {
        let mut repo = repo.lock().expect("lock");
        let found = repo
            .lost_answers
            .iter()
            .position(|(m, suffix, ..)| *m == method_name && path.ends_with(suffix.as_str()));
        found.map(|i| repo.lost_answers.remove(i))
    };
    let hook = on_close.lock().expect("lock").clone();
    if let (true, Some(number), Some(hook)) = (closing, number, hook)
        && response.status().is_success()
    {
        hook(number).await;
    }
    if let Some((_, _, status, message)) = lost
        && response.status().is_success()
    {
        return error(StatusCode::from_u16(status).expect("status"), &message);
    }
    response
}

async fn handle(
    State((repo, token)): State<(Arc<Mutex<Repo>>, String)>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let mut repo = repo.lock().expect("lock");
    repo.requests.push(Recorded {
        method: method.to_string(),
        path: uri.to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    });
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {token}"));
    if !authorized {
        return error(StatusCode::UNAUTHORIZED, "Bad credentials");
    }
    if let Some(i) = repo
        .failures
        .iter()
        .position(|(m, suffix, ..)| *m == method.as_str() && path.ends_with(suffix.as_str()))
    {
        let (_, _, status, extra, message) = repo.failures.remove(i).expect("present");
        let mut response = error(StatusCode::from_u16(status).expect("status"), &message);
        for (k, v) in extra {
            response.headers_mut().insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        return response;
    }
    let prefix = format!("/repos/{OWNER}/{NAME}");
    let Some(rest) = path.strip_prefix(&prefix) else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let parts: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    match (method.as_str(), parts.as_slice()) {
        ("GET", [""]) => axum::Json(json!({
            "full_name": REPOSITORY, "default_branch": "main", "private": true,
        }))
        .into_response(),
        ("GET", ["git", "ref", "heads", branch @ ..]) => {
            let branch = branch.join("/");
            match repo.refs.get(&branch) {
                Some(sha) => axum::Json(json!({
                    "ref": format!("refs/heads/{branch}"),
                    "object": { "sha": sha, "type": "commit" },
                }))
                .into_response(),
                None => error(StatusCode::NOT_FOUND, "Not Found"),
            }
        }
        ("GET", ["git", "commits", sha]) => match repo.commits.get(*sha) {
            Some((tree, parents, message)) => axum::Json(json!({
                "sha": sha, "tree": { "sha": tree }, "message": message,
                "parents": parents.iter().map(|p| json!({"sha": p})).collect::<Vec<_>>(),
            }))
            .into_response(),
            None => error(StatusCode::NOT_FOUND, "Not Found"),
        },
        ("POST", ["git", "blobs"]) => {
            let content = json["content"].as_str().unwrap_or_default().to_owned();
            let s = sha("blob", &content);
            repo.blobs.insert(s.clone(), content);
            (StatusCode::CREATED, axum::Json(json!({ "sha": s }))).into_response()
        }
        ("POST", ["git", "trees"]) => {
            let base = json["base_tree"].as_str().unwrap_or_default();
            let Some(mut tree) = repo.trees.get(base).cloned() else {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "base_tree is not a valid tree",
                );
            };
            for entry in json["tree"].as_array().cloned().unwrap_or_default() {
                // `content` (GitHub writes the blob) or `sha`, never both.
                let blob = match (entry["content"].as_str(), entry["sha"].as_str()) {
                    (Some(content), None) => {
                        let s = sha("blob", content);
                        repo.blobs.insert(s.clone(), content.to_owned());
                        s
                    }
                    (None, Some(sha)) => sha.to_owned(),
                    _ => {
                        return error(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "tree entries take either tree.sha or content",
                        );
                    }
                };
                if !repo.blobs.contains_key(&blob) {
                    return error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "tree.sha is not a valid blob",
                    );
                }
                tree.insert(
                    entry["path"].as_str().unwrap_or_default().to_owned(),
                    (entry["mode"].as_str().unwrap_or_default().to_owned(), blob),
                );
            }
            let s = sha("tree", &format!("{tree:?}"));
            repo.trees.insert(s.clone(), tree);
            (
                StatusCode::CREATED,
                axum::Json(json!({ "sha": s, "tree": [] })),
            )
                .into_response()
        }
        ("POST", ["git", "commits"]) => {
            let tree = json["tree"].as_str().unwrap_or_default().to_owned();
            let parents: Vec<String> = json["parents"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter_map(|p| p.as_str().map(str::to_owned))
                .collect();
            let message = json["message"].as_str().unwrap_or_default().to_owned();
            if !repo.trees.contains_key(&tree) {
                return error(StatusCode::UNPROCESSABLE_ENTITY, "tree is not a valid tree");
            }
            let s = sha(
                "commit",
                &format!("{tree} {parents:?} {message} {}", repo.commits.len()),
            );
            repo.commits
                .insert(s.clone(), (tree.clone(), parents, message));
            (
                StatusCode::CREATED,
                axum::Json(json!({ "sha": s, "tree": { "sha": tree } })),
            )
                .into_response()
        }
        ("POST", ["git", "refs"]) => {
            let name = json["ref"].as_str().unwrap_or_default().to_owned();
            let Some(branch) = name.strip_prefix("refs/heads/") else {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Reference name is invalid",
                );
            };
            if repo.refs.contains_key(branch) {
                return error(StatusCode::UNPROCESSABLE_ENTITY, "Reference already exists");
            }
            let target = json["sha"].as_str().unwrap_or_default().to_owned();
            repo.refs.insert(branch.to_owned(), target.clone());
            (
                StatusCode::CREATED,
                axum::Json(json!({ "ref": name, "object": { "sha": target } })),
            )
                .into_response()
        }
        ("PATCH", ["git", "refs", "heads", branch @ ..]) => {
            let branch = branch.join("/");
            if !repo.refs.contains_key(&branch) {
                return error(StatusCode::UNPROCESSABLE_ENTITY, "Reference does not exist");
            }
            let target = json["sha"].as_str().unwrap_or_default().to_owned();
            repo.refs.insert(branch.clone(), target.clone());
            axum::Json(
                json!({ "ref": format!("refs/heads/{branch}"), "object": { "sha": target } }),
            )
            .into_response()
        }
        ("DELETE", ["git", "refs", "heads", branch @ ..]) => {
            match repo.refs.remove(&branch.join("/")) {
                Some(_) => StatusCode::NO_CONTENT.into_response(),
                None => error(StatusCode::UNPROCESSABLE_ENTITY, "Reference does not exist"),
            }
        }
        ("GET", ["pulls"]) => {
            let head = query.get("head").cloned().unwrap_or_default();
            let branch = head
                .split_once(':')
                .map(|(_, b)| b.to_owned())
                .unwrap_or(head);
            let mut found: Vec<Value> = repo
                .pulls
                .iter()
                .filter(|p| branch.is_empty() || p.head == branch)
                .filter(|p| match query.get("state").map(String::as_str) {
                    Some("all") => true,
                    Some("closed") => p.state == "closed",
                    _ => p.state == "open",
                })
                .map(|p| pull_json(&repo, p))
                .collect();
            found.reverse();
            axum::Json(Value::Array(found)).into_response()
        }
        ("POST", ["pulls"]) => {
            let head = json["head"].as_str().unwrap_or_default().to_owned();
            if !repo.refs.contains_key(&head) {
                return error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed: head");
            }
            if repo
                .pulls
                .iter()
                .any(|p| p.head == head && p.state == "open")
            {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &format!("A pull request already exists for {OWNER}:{head}."),
                );
            }
            let pull = PullState {
                number: repo.pulls.len() as u64 + 1,
                title: json["title"].as_str().unwrap_or_default().to_owned(),
                body: json["body"].as_str().unwrap_or_default().to_owned(),
                head,
                base: json["base"].as_str().unwrap_or_default().to_owned(),
                state: "open".into(),
                merged: false,
                merge_commit: None,
                labels: vec![],
                reviewers: vec![],
                comments: vec![],
            };
            let out = pull_json(&repo, &pull);
            repo.pulls.push(pull);
            (StatusCode::CREATED, axum::Json(out)).into_response()
        }
        (m, ["pulls", n]) if m == "GET" || m == "PATCH" => {
            let Some(i) = pull_index(&repo, n) else {
                return error(StatusCode::NOT_FOUND, "Not Found");
            };
            if m == "PATCH" {
                let pull = &mut repo.pulls[i];
                if let Some(state) = json["state"].as_str() {
                    pull.state = state.to_owned();
                }
                if let Some(title) = json["title"].as_str() {
                    pull.title = title.to_owned();
                }
                if let Some(body) = json["body"].as_str() {
                    pull.body = body.to_owned();
                }
            }
            axum::Json(pull_json(&repo, &repo.pulls[i])).into_response()
        }
        ("GET", ["pulls", n, "reviews"]) => {
            let number: u64 = n.parse().unwrap_or(0);
            let page: usize = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
            let all = repo.reviews.get(&number).cloned().unwrap_or_default();
            let out: Vec<Value> = all.into_iter().skip((page - 1) * 100).take(100).collect();
            axum::Json(Value::Array(out)).into_response()
        }
        ("PUT", ["pulls", n, "merge"]) => {
            let Some(i) = pull_index(&repo, n) else {
                return error(StatusCode::NOT_FOUND, "Not Found");
            };
            let head = repo.pulls[i].head.clone();
            let head_sha = repo.refs.get(&head).cloned().unwrap_or_default();
            if repo.pulls[i].state != "open" {
                return error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "Pull Request is not mergeable",
                );
            }
            if json["sha"].as_str() != Some(head_sha.as_str()) {
                return error(
                    StatusCode::CONFLICT,
                    "Head branch was modified. Review and try the merge again.",
                );
            }
            let base = repo.pulls[i].base.clone();
            let tree = repo.commits[&head_sha].0.clone();
            let merge = sha("commit", &format!("merge {head_sha}"));
            let parent = repo.refs[&base].clone();
            repo.commits
                .insert(merge.clone(), (tree, vec![parent], "merge".into()));
            repo.refs.insert(base, merge.clone());
            let pull = &mut repo.pulls[i];
            pull.merged = true;
            pull.state = "closed".into();
            pull.merge_commit = Some(merge.clone());
            axum::Json(json!({ "sha": merge, "merged": true, "message": "Pull Request successfully merged" }))
                .into_response()
        }
        ("POST", ["issues", n, "labels"]) => {
            let Some(i) = pull_index(&repo, n) else {
                return error(StatusCode::NOT_FOUND, "Not Found");
            };
            for label in json["labels"].as_array().cloned().unwrap_or_default() {
                let label = label.as_str().unwrap_or_default().to_owned();
                if !repo.pulls[i].labels.contains(&label) {
                    repo.pulls[i].labels.push(label);
                }
            }
            let labels: Vec<Value> = repo.pulls[i]
                .labels
                .iter()
                .map(|l| json!({ "name": l }))
                .collect();
            axum::Json(Value::Array(labels)).into_response()
        }
        ("POST", ["pulls", n, "requested_reviewers"]) => {
            let Some(i) = pull_index(&repo, n) else {
                return error(StatusCode::NOT_FOUND, "Not Found");
            };
            for r in json["reviewers"].as_array().cloned().unwrap_or_default() {
                let login = r.as_str().unwrap_or_default().to_owned();
                repo.pulls[i].reviewers.push(login);
            }
            for t in json["team_reviewers"]
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                let team = format!("team:{}", t.as_str().unwrap_or_default());
                repo.pulls[i].reviewers.push(team);
            }
            let out = pull_json(&repo, &repo.pulls[i]);
            (StatusCode::CREATED, axum::Json(out)).into_response()
        }
        ("POST", ["issues", n, "comments"]) => {
            let Some(i) = pull_index(&repo, n) else {
                return error(StatusCode::NOT_FOUND, "Not Found");
            };
            let text = json["body"].as_str().unwrap_or_default().to_owned();
            repo.pulls[i].comments.push(text.clone());
            (
                StatusCode::CREATED,
                axum::Json(json!({ "id": 1, "body": text })),
            )
                .into_response()
        }
        _ => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

/// The pull request number at the end of a change request's location
/// (`…/pull/<n>`).
pub fn pull_number(location: &str) -> u64 {
    location
        .rsplit('/')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a pull request URL")
}
