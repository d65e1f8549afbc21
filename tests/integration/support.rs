//! Spawns the real binary against a throw-away data directory.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_draco");

/// The planted findings of the demo fixtures: (kind, resource).
pub const PLANTED: [(&str, &str); 8] = [
    (
        "cost_level_shift",
        "service:Amazon Relational Database Service",
    ),
    ("cost_new_service", "service:Amazon SageMaker"),
    ("cost_spike", "service:AWS Lambda"),
    ("ebs_unattached", "vol-0e4f6a8b0c2d4e6f8"),
    ("ebs_unencrypted", "vol-0c4e6a8b1d3f5e7a9"),
    ("eip_unassociated", "eipalloc-0b7d9f1a3c5e7b9d1"),
    ("sg_open_admin_port", "sg-0a1f3c5e7b9d24680"),
    ("snapshot_public", "snap-0f9e8d7c6b5a49382"),
];

pub struct Draco {
    dir: TempDir,
}

/// The approver directory every test's Draco has unless the test passes a
/// configuration of its own (`--config`, `DRACO_CONFIG`): everyone the
/// tests name, allowed every severity, one approval enough.
pub const TEST_APPROVERS: &str = r#"
[approval]
quorum = { critical = 1, high = 1, medium = 1, low = 1 }

[[approvers]]
name = "Ada Lovelace"
[[approvers]]
name = "Ada"
[[approvers]]
name = "Bob"
[[approvers]]
name = "Eve"
[[approvers]]
name = "Mallory"
[[approvers]]
name = "Grace"
[[approvers]]
name = "Linus"
[[approvers]]
name = "Barbara"
"#;

impl Draco {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(dir.path().join("approvers.toml"), TEST_APPROVERS)
            .expect("write the test approver directory");
        Self { dir }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A scratch path next to the data dir, for config files and fixtures.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The binary with this data dir and none of the caller's DRACO_* variables.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        for (key, _) in std::env::vars() {
            if key.starts_with("DRACO_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("DRACO_LOG", "warn")
            .env("DRACO_CONFIG", self.path("approvers.toml"))
            .arg("--data-dir")
            .arg(self.data_dir());
        cmd
    }

    /// [`Draco::command`] with the built-in demo fixtures as the configured
    /// source, as `scan` and `run` need one.
    pub fn command_on_demo_fixtures(&self) -> Command {
        let mut cmd = self.command();
        cmd.env("DRACO_SOURCE_KIND", "fixtures")
            .env("DRACO_SOURCE_FIXTURES_DIR", demo_fixtures());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("draco runs")
    }

    /// Runs and insists on success, returning stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "draco {args:?} failed: {}",
            describe(&out)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    pub fn findings(&self) -> Vec<Value> {
        let text = self.ok(&["findings", "--json"]);
        match serde_json::from_str(&text) {
            Ok(Value::Array(items)) => items,
            other => panic!("findings --json is not an array: {other:?}"),
        }
    }

    /// The finding with this id, as `findings --json` shows it.
    pub fn finding(&self, id: i64) -> Value {
        self.findings()
            .into_iter()
            .find(|f| f["id"] == id)
            .unwrap_or_else(|| panic!("no finding {id}"))
    }

    /// The id of the finding of this kind.
    pub fn finding_id(&self, kind: &str) -> i64 {
        self.findings()
            .iter()
            .find(|f| f["kind"] == kind)
            .and_then(|f| f["id"].as_i64())
            .unwrap_or_else(|| panic!("no {kind} finding"))
    }

    pub fn repository(&self) -> PathBuf {
        self.data_dir().join("remediations.git")
    }
}

/// `draco demo` in a new network namespace, where nothing can be reached:
/// any attempt to phone home fails. Needs unshare (util-linux) and the right
/// to create namespaces, which CI has (it runs as root).
pub fn demo_without_network(draco: &Draco, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("unshare");
    cmd.arg("-n")
        .arg(BIN)
        .arg("--data-dir")
        .arg(draco.data_dir())
        .arg("demo")
        .env("DRACO_LOG", "warn");
    for (key, _) in std::env::vars() {
        if key.starts_with("DRACO_") && key != "DRACO_LOG" {
            cmd.env_remove(key);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("unshare runs")
}

pub fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs git against a bare repository and returns trimmed stdout.
pub fn git(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("git runs");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The demo fixture directory in the source tree.
pub fn demo_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/demo")
}

/// Copies a directory tree (fixtures) so a test can break its copy.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

/// Where an external corpus lives: the directory named by the environment
/// variable `var`, else `default` (relative to the crate root, e.g.
/// `../shared/data/nab`). `None` when it is absent: the caller then returns
/// early after this prints why the test was skipped. Under CI (`CI=true`) an
/// absent corpus is a failure instead, so CI always runs the test.
pub fn external_corpus(var: &str, default: &str) -> Option<PathBuf> {
    let path = match std::env::var_os(var) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join(default),
    };
    if path.exists() {
        return Some(path);
    }
    let why = format!(
        "the corpus is not at {} (set {var} to where it is)",
        path.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true and {why}");
    }
    eprintln!("skipped: {why}");
    None
}

/// The shared real-world cases (`../shared/data/realworld`, or
/// `DRACO_REALWORLD_DIR`); `None` (test skipped) where absent outside CI.
pub fn realworld_case(case: &str) -> Option<PathBuf> {
    external_corpus("DRACO_REALWORLD_DIR", "../shared/data/realworld").map(|dir| dir.join(case))
}

/// Scans a real-world case as its README says: from the case folder,
/// `draco --data-dir <tmp> --config draco.toml scan --once --json`. Insists
/// on success; returns the scan report and the findings.
pub fn scan_realworld_case(draco: &Draco, case: &Path) -> (Value, Vec<Value>) {
    let out = draco
        .command()
        .current_dir(case)
        .args(["--config", "draco.toml", "scan", "--once", "--json"])
        .output()
        .expect("draco runs");
    assert!(
        out.status.success(),
        "scan of {} failed: {}",
        case.display(),
        describe(&out)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("scan --json is JSON");
    (report, draco.findings())
}

/// `(kind, resource)` of each finding.
pub fn kinds_and_resources(findings: &[Value]) -> BTreeSet<(String, String)> {
    findings
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap_or_default().to_owned(),
                f["resource"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Runs the binary with `input` on standard input; insists on success and
/// returns standard output.
pub fn run_with_stdin(args: &[&str], input: &str) -> String {
    let mut child = Command::new(BIN)
        .args(args)
        .env("DRACO_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("draco runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("draco exits");
    assert!(out.status.success(), "{}", describe(&out));
    String::from_utf8(out.stdout).expect("utf-8")
}

/// A free loopback port for a child process to bind (taken by the kernel,
/// then released for the child).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Approves a finding's change request in this process, as the CLI does,
/// by `name`, allowed every severity, with a quorum of one.
pub async fn approve_in_process(
    app: &draco::compose::App,
    finding: draco::domain::FindingId,
    name: &str,
) -> Result<draco::approve::VoteResult, draco::approve::ApproveError> {
    use draco::approve::{Ballot, Channel, Verdict};
    let approver = draco::approvers::ApproverEntry {
        name: name.to_owned(),
        phone: None,
        email: None,
        github: None,
        severities: draco::domain::Severity::ALL_DESCENDING.to_vec(),
    };
    let quorum = draco::approvers::policy::Quorum {
        critical: 1,
        high: 1,
        medium: 1,
        low: 1,
    };
    let ballot = Ballot {
        approver: &approver,
        channel: Channel::Cli,
        verdict: Verdict::Approve,
        reason: None,
        commit: None,
        message: None,
        ask: None,
    };
    let directory =
        draco::approvers::Directory::new(vec![approver.clone()]).expect("a usable approver");
    draco::approve::vote(
        &*app.store,
        &*app.change_requests,
        &directory,
        &quorum,
        finding,
        &ballot,
        chrono::Utc::now(),
    )
    .await
}

/// The data dir's SQLite store opened through the library with its audit
/// key installed, as Draco itself opens it: events written through it are
/// keyed, so `draco audit verify` still verifies afterwards.
pub async fn unlocked_store(data_dir: &Path) -> draco::store::SqliteStore {
    use draco::store::DatabaseStore as _;
    let store = draco::store::SqliteStore::open(&data_dir.join("draco.db"))
        .await
        .expect("store");
    let master =
        draco::seal::load_or_create_key_file(&data_dir.join("master.key")).expect("master key");
    let key = draco::store::sealed::load_or_create_key(
        &store,
        &master,
        draco::audit::SEALED_NAME,
        || Err("the audit key exists once Draco ran".into()),
    )
    .await
    .expect("the audit key");
    store.install_audit_key(draco::audit::AuditKey::from_bytes(*key));
    store
}

/// Runs `sql` on the data dir's SQLite database directly (read-only, as
/// an outside reader would) and returns its rows.
pub fn sqlite_rows<T>(data_dir: &Path, sql: &'static str) -> Vec<T>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + Send + Unpin,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(data_dir.join("draco.db"))
            .read_only(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.expect("open");
        let rows = sqlx::query_as(sql).fetch_all(&pool).await.expect("read");
        pool.close().await;
        rows
    })
}

/// Whether `program` runs (`program --version`, or `-V` for those that take
/// only that). When it does not, it is installed with
/// `apt-get install -y <package>` if this runs as root with apt; if it is
/// still missing, this prints why the test is skipped and returns false.
/// Under CI (`CI=true`) a missing tool is a failure instead.
pub fn ensure_tool(program: &str, version_flag: &str, package: &str) -> bool {
    let runs = || {
        Command::new(program)
            .arg(version_flag)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if runs() {
        return true;
    }
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    let root = unsafe { libc::geteuid() } == 0;
    if root && Command::new("apt-get").arg("--version").output().is_ok() {
        let install = || {
            Command::new("apt-get")
                .args(["install", "-y", "-qq", package])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !install() {
            let _ = Command::new("apt-get")
                .args(["update", "-qq"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            install();
        }
        if runs() {
            return true;
        }
    }
    let why = format!(
        "`{program}` is missing and could not be installed (apt-get install {package}, as root)"
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true and {why}");
    }
    eprintln!("skipped: {why}");
    false
}

/// `unshare -n` (a new network namespace with nothing in it, not even an
/// up loopback), or `unshare -rn` when this user may only create one inside
/// a user namespace of its own; `None` (after printing why the test is
/// skipped, or a panic under `CI=true`) when neither works here.
pub fn network_namespace() -> Option<Command> {
    for flags in ["-n", "-rn"] {
        let works = Command::new("unshare")
            .args([flags, "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if works {
            let mut cmd = Command::new("unshare");
            cmd.arg(flags);
            return Some(cmd);
        }
    }
    let why = "this user can create no network namespace (`unshare -n` and `unshare -rn` fail)";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true and {why}");
    }
    eprintln!("skipped: {why}");
    None
}
