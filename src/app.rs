//! The commands behind the CLI. `main` parses arguments and maps errors to
//! exit codes; everything else happens here.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result, anyhow};
use chrono::Utc;

use crate::advice::ModelChoice;
use crate::approve::{self, ApproveError, Approver, Verdict, VoteResult};
use crate::cli::{
    AuditCommand, BenchCommand, Cli, Command, ConfigCommand, FindingsArgs, KeysCommand, OutputArgs,
    PurgeArgs, RotateArgs, ScansArgs,
};
use crate::compose::{self, App, AppStore, SourceChoice};
use crate::config::{self, ConfigError, Loaded, SourceSelection};
use crate::daemon;
use crate::domain::{FindingId, FindingStatus};
use crate::gitops::ChangeRequests;
use crate::remediate::templates::Catalog;
use crate::report::{self, Row};
use crate::server;
use crate::sources::fixtures::FixtureSet;
use crate::tools;

/// `print!` that returns an error instead of panicking when standard output
/// is closed (`draco audit verify | true`) or the device is full.
macro_rules! out {
    ($($arg:tt)*) => {
        write_stdout(format_args!($($arg)*))?
    };
}

/// `println!`, likewise.
macro_rules! outln {
    () => { out!("\n") };
    ($($arg:tt)*) => {
        write_stdout(format_args!("{}\n", format_args!($($arg)*)))?
    };
}

fn write_stdout(text: std::fmt::Arguments<'_>) -> Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_fmt(text)
        .and_then(|()| stdout.flush())
        .context("cannot write to standard output")
}

use crate::store::{ChangeRequestStore, DatabaseLocation, ScanStore};

use crate::cli::UsageError;

pub const EXIT_RUNTIME: u8 = 1;
pub const EXIT_USAGE: u8 = 2;

/// 2 for bad usage or bad configuration, 1 for anything else.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if cause.is::<UsageError>() || cause.is::<ConfigError>() {
            return EXIT_USAGE;
        }
        if let Some(e) = cause.downcast_ref::<ApproveError>() {
            return match e {
                ApproveError::UnknownFinding(_)
                | ApproveError::InvalidApprover(_)
                | ApproveError::UnknownApprover(_)
                | ApproveError::MissingReason => EXIT_USAGE,
                _ => EXIT_RUNTIME,
            };
        }
    }
    EXIT_RUNTIME
}

const DEFAULT_DATA_DIR: &str = ".draco";

struct Context {
    loaded: Loaded,
    data_dir: PathBuf,
}

impl Context {
    fn new(cli: &Cli) -> Result<Self> {
        let env = config::process_environment()?;
        let loaded = config::load(cli.config.as_deref(), &env)?;
        let data_dir = cli
            .data_dir
            .clone()
            .or_else(|| loaded.config.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        Ok(Self { loaded, data_dir })
    }

    /// The whole application, for commands that scan or serve.
    async fn app(self, source: SourceChoice) -> Result<Arc<App>> {
        Ok(App::build(self.loaded, self.data_dir, source).await?)
    }

    /// For commands that only read or decide: no SQLite database means
    /// nothing was scanned yet (a PostgreSQL database is opened as it is).
    async fn open_existing_store(&self) -> Result<Arc<dyn AppStore>> {
        let location = compose::database_location(&self.loaded, &self.data_dir)?;
        if let DatabaseLocation::Sqlite(path) = &location
            && !path.exists()
        {
            return Err(anyhow!(
                "no Draco database at {}; run `draco demo` or `draco scan --once` first (or pass --data-dir)",
                path.display()
            ));
        }
        let store = compose::open_store(&location).await?;
        compose::unlock(&*store, &self.loaded, &location, &self.data_dir).await?;
        Ok(store)
    }

    /// The configured change-request backend (the local repository, or GitHub).
    async fn open_repository(&self) -> Result<Arc<dyn ChangeRequests>> {
        Ok(compose::change_requests(&self.loaded, &self.data_dir).await?)
    }

    fn catalog(&self) -> Result<Catalog> {
        Ok(compose::catalog(&self.loaded)?)
    }

    /// The source `scan` and `run` read: what the configuration selects,
    /// never the demo data (a config error, exit 2, when it selects nothing
    /// or sets up a source it does not select).
    fn configured_source(&self) -> Result<SourceChoice> {
        match config::selected_source(&self.loaded)? {
            Some(SourceSelection::Aws) => Ok(SourceChoice::Aws),
            Some(SourceSelection::Fixtures(dir)) => {
                Ok(SourceChoice::Fixtures(FixtureSet::Directory(dir)))
            }
            None => Err(ConfigError::Value {
                key: "source.kind".into(),
                message: config::NO_SOURCE.into(),
            }
            .into()),
        }
    }
}

pub async fn run(cli: Cli) -> Result<()> {
    // Offline tools: no config, no data dir.
    match &cli.command {
        Command::Detect(args) => return tools::detect_command(args),
        Command::Healthcheck(args) => {
            crate::healthcheck::probe(
                &args.url,
                std::time::Duration::from_secs(args.timeout_secs.max(1)),
            )?;
            return Ok(());
        }
        Command::Redact(args) => return tools::redact_command(cli.config.as_deref(), args),
        Command::Bench(BenchCommand::Nab(args)) => return tools::nab_command(args),
        Command::Bench(BenchCommand::Cost(args)) => return tools::cost_bench_command(args),
        Command::Bench(BenchCommand::Redact(args)) => return tools::redact_bench_command(args),
        Command::Bench(BenchCommand::Idle(args)) => return tools::idle_bench_command(args),
        Command::Bench(BenchCommand::Footprint(args)) => {
            return tools::footprint_bench_command(args);
        }
        Command::Bench(BenchCommand::Estate(args)) => {
            return tools::estate_bench_command(args).await;
        }
        Command::Bench(BenchCommand::Store(args)) => {
            return tools::store_bench_command(args).await;
        }
        _ => {}
    }
    let ctx = Context::new(&cli)?;
    match cli.command {
        Command::Detect(_) | Command::Redact(_) | Command::Bench(_) | Command::Healthcheck(_) => {
            Ok(())
        }
        Command::Demo(output) => {
            let app = ctx
                .app(SourceChoice::Fixtures(FixtureSet::EmbeddedDemo))
                .await?;
            scan_command(&app, &output).await
        }
        Command::Scan(args) => {
            if !args.once {
                return Err(UsageError(
                    "`draco scan` needs --once; use `draco run` to scan on a schedule".into(),
                )
                .into());
            }
            let source = ctx.configured_source()?;
            let app = ctx.app(source).await?;
            scan_command(&app, &args.output).await
        }
        Command::Run(args) => {
            let source = ctx.configured_source()?;
            run_daemon(ctx, source, args.scan_on_start).await
        }
        Command::Scans(args) => scans_command(&ctx, &args).await,
        Command::Findings(args) => findings_command(&ctx, &args).await,
        Command::Show(args) => {
            if let Some(path) = &args.chart {
                chart_command(&ctx, args.id, path).await?;
            }
            show_command(&ctx, args.id, &args.output).await
        }
        Command::Approve(args) => {
            let approver = Approver::parse(&args.approver)?;
            let store = ctx.open_existing_store().await?;
            let git = ctx.open_repository().await?;
            let config = &ctx.loaded.config;
            let result = approve::decide_from_cli(
                &*store,
                git.as_ref(),
                &config::directory(config),
                &config.approval.quorum,
                args.id,
                &approver,
                Verdict::Approve,
                None,
                Utc::now(),
            )
            .await?;
            match result {
                VoteResult::Counted { have, need } => outln!(
                    "Approval of finding {} by {approver} counted ({have} of {need} distinct approvers); nothing is merged until {need} have approved this commit.",
                    args.id
                ),
                VoteResult::AlreadyCounted { have, need } => outln!(
                    "{approver} already approved finding {}'s change at this commit ({have} of {need} distinct approvers).",
                    args.id
                ),
                VoteResult::Decided(outcome) => {
                    let cr = &outcome.change_request;
                    let resumed = if outcome.resumed {
                        " (completing an approval recorded earlier)"
                    } else {
                        ""
                    };
                    outln!(
                        "Approved finding {} by {}{resumed}: merged {} into main as {}.",
                        args.id,
                        cr.decided_by.as_deref().unwrap_or("?"),
                        cr.branch,
                        outcome.merge_commit.as_deref().unwrap_or("?")
                    );
                }
            }
            Ok(())
        }
        Command::Reject(args) => {
            let approver = Approver::parse(&args.approver)?;
            let store = ctx.open_existing_store().await?;
            let git = ctx.open_repository().await?;
            let config = &ctx.loaded.config;
            let result = approve::decide_from_cli(
                &*store,
                git.as_ref(),
                &config::directory(config),
                &config.approval.quorum,
                args.id,
                &approver,
                Verdict::Reject,
                Some(&args.reason),
                Utc::now(),
            )
            .await?;
            if let VoteResult::Decided(outcome) = result {
                outln!(
                    "Rejected finding {} by {}: closed {} without merging.",
                    args.id,
                    outcome.change_request.decided_by.as_deref().unwrap_or("?"),
                    outcome.change_request.branch
                );
            }
            Ok(())
        }
        Command::Config(ConfigCommand::Check { online }) => {
            let catalog = ctx.catalog()?;
            catalog.check_covers(&crate::domain::FindingKind::ALL)?;
            // Refusals first: nothing is printed from a configuration that
            // will be refused (a refused base URL may hold credentials).
            let advisor = ModelChoice::of(&ctx.loaded).describe()?;
            let source = match config::selected_source(&ctx.loaded)? {
                Some(SourceSelection::Aws) => "aws".to_owned(),
                Some(SourceSelection::Fixtures(dir)) => format!("fixtures in {}", dir.display()),
                None => {
                    "none configured (`scan` and `run` need source.kind; `draco demo` needs none)"
                        .to_owned()
                }
            };
            out!("{}", config::render(&ctx.loaded));
            let next = config::parse_schedule(&ctx.loaded.config.schedule)
                .ok()
                .and_then(|cron| config::next_firing(&cron, Utc::now()));
            outln!("\n# source: {source}");
            outln!("# data dir: {}", ctx.data_dir.display());
            outln!(
                "# remediation templates: {} ({} templates)",
                catalog.origin(),
                catalog.len()
            );
            outln!("# advisor: {advisor}");
            outln!("# change requests: {}", describe_gitops(&ctx.loaded));
            if let Some(next) = next {
                outln!(
                    "# next scheduled scan: {}",
                    next.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                );
            }
            if online {
                check_online(&ctx).await?;
            }
            outln!("# configuration is valid");
            Ok(())
        }
        Command::Keys(KeysCommand::Rotate(args)) => keys_rotate(&ctx, &args).await,
        Command::Purge(args) => purge_command(&ctx, &args).await,
        Command::Audit(AuditCommand::Verify) => {
            let store = ctx.open_existing_store().await?;
            let events = verify_audit_log(&ctx, &*store).await?;
            outln!("Audit log intact: {events} events, hash chain verified.");
            Ok(())
        }
    }
}

/// Reads the whole audit log and checks its hash chain; returns how many
/// events it holds.
/// `draco config check --online`: one read call to each configured service
/// (GitHub: `GET /repos/{owner}/{repo}`), so a wrong token, App or
/// repository shows before the first scan does. Errors name what is wrong,
/// never a secret.
async fn check_online(ctx: &Context) -> Result<()> {
    let gitops = &ctx.loaded.config.gitops;
    if gitops.backend != crate::gitops::config::Backend::Github {
        outln!("# online: nothing to check (no remote service configured)");
        return Ok(());
    }
    let github = &gitops.github;
    let repository =
        crate::gitops::config::parse_repository(github.repository.as_deref().unwrap_or(""))
            .map_err(|m| anyhow!("gitops.github.repository {m}"))?;
    let auth = crate::compose::github_auth(&ctx.loaded)?;
    let api = crate::gitops::github::api::GitHubApi::new(
        &github.api_url,
        repository,
        &auth,
        crate::gitops::github::api::RetryPolicy::default(),
    )?;
    let info = api
        .repository_info()
        .await
        .context("GitHub access check failed")?;
    outln!(
        "# online: GitHub answers; {} is readable (default branch {})",
        crate::domain::neutralise(&info.full_name),
        crate::domain::neutralise(&info.default_branch)
    );
    Ok(())
}

/// `draco config check`'s line on change requests: the backend, and for
/// GitHub the repository, the kind of credentials (never a secret) and what
/// is kept off GitHub.
fn describe_gitops(loaded: &config::Loaded) -> String {
    let gitops = &loaded.config.gitops;
    let github = &gitops.github;
    let common = format!(
        "at most {} new per scan, one per {}",
        gitops.max_new_per_scan,
        match gitops.group {
            crate::gitops::config::Grouping::Finding => "finding",
            crate::gitops::config::Grouping::KindAccountRegion =>
                "finding kind, account and region",
        }
    );
    match gitops.backend {
        crate::gitops::config::Backend::Local => {
            format!("local git repository under the data dir ({common})")
        }
        crate::gitops::config::Backend::Github => {
            let auth = match (github.app_id, github.installation_id) {
                (Some(app), Some(installation)) => {
                    format!("GitHub App {app}, installation {installation}")
                }
                _ => "fine-grained token".to_owned(),
            };
            let kept: Vec<&str> = github.publish_redact.iter().map(|k| k.label()).collect();
            format!(
                "GitHub pull requests in {} at {} ({auth}; {common}); never published: {}",
                github.repository.as_deref().unwrap_or("?"),
                github.api_url,
                kept.join(", ").to_lowercase()
            )
        }
    }
}

/// Verifies the chain (keyed events under the store's audit key) against
/// the data directory's anchor, then moves the anchor to the head.
async fn verify_audit_log(ctx: &Context, store: &dyn AppStore) -> Result<usize> {
    // `open_existing_store` unlocked the store: its audit key is installed.
    let key = store.installed_audit_key();
    let anchor = compose::read_anchor(&ctx.data_dir)?;
    let events = store.audit_events(None).await?;
    crate::audit::verify(&events, key, anchor.as_ref()).context("the audit log does not verify")?;
    // Merge commits anchor the log too, outside the database and the data
    // directory: a log rewritten or cut below one of them is caught even
    // with `audit.head` gone.
    // (The local repository's; reading GitHub's is left to GitHub's
    // history, so that verifying works offline.)
    let anchors = if ctx.loaded.config.gitops.backend == crate::gitops::config::Backend::Local {
        ctx.open_repository()
            .await?
            .audit_anchors()
            .await
            .context("cannot read the audit heads in the merge commits")?
    } else {
        Vec::new()
    };
    for anchor in &anchors {
        if !events
            .iter()
            .any(|e| e.seq == anchor.seq && e.hash == anchor.hash)
        {
            return Err(anyhow!(
                "the audit log does not verify: a merge commit anchors event {} with hash {}, which the log does not hold (the log was rewritten or cut)",
                anchor.seq,
                anchor.hash
            ));
        }
    }
    compose::write_anchor(store, &ctx.data_dir).await;
    Ok(events.len())
}

/// Every finding with its change request, if any.
async fn rows(store: &(impl ScanStore + ChangeRequestStore + ?Sized)) -> Result<Vec<Row>> {
    let findings = store.findings().await?;
    let mut change_requests: HashMap<FindingId, _> = store
        .change_requests()
        .await?
        .into_iter()
        .map(|cr| (cr.finding_id, cr))
        .collect();
    Ok(findings
        .into_iter()
        .map(|f| {
            let cr = change_requests.remove(&f.id);
            (f, cr)
        })
        .collect())
}

async fn scan_command(app: &App, output: &OutputArgs) -> Result<()> {
    let report = app.scan(Utc::now()).await?;
    let rows = rows(&*app.store).await?;
    if output.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&report::scan_json(&report, &rows))?
        );
    } else {
        out!("{}", report::scan_summary(&report, &rows));
    }
    app.store.close().await;
    Ok(())
}

async fn scans_command(ctx: &Context, args: &ScansArgs) -> Result<()> {
    let store = ctx.open_existing_store().await?;
    let scans = store.scans(args.limit).await?;
    if args.output.json {
        outln!("{}", serde_json::to_string_pretty(&scans)?);
    } else {
        out!("{}", report::scans_table(&scans));
    }
    Ok(())
}

async fn findings_command(ctx: &Context, args: &FindingsArgs) -> Result<()> {
    let status: Option<FindingStatus> = match &args.status {
        Some(s) => Some(s.parse().map_err(|_| {
            UsageError(format!(
                "unknown status `{s}`; expected one of open, awaiting_approval, approved, rejected, resolved"
            ))
        })?),
        None => None,
    };
    let store = ctx.open_existing_store().await?;
    let mut rows = rows(&*store).await?;
    if let Some(status) = status {
        rows.retain(|(f, _)| f.status == status);
    }
    if args.output.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&report::findings_json(&rows))?
        );
    } else {
        out!("{}", report::findings_table(&rows));
    }
    Ok(())
}

async fn show_command(ctx: &Context, id: FindingId, output: &OutputArgs) -> Result<()> {
    let store = ctx.open_existing_store().await?;
    let finding = store
        .finding(id)
        .await?
        .ok_or_else(|| UsageError(format!("there is no finding {id} (see `draco findings`)")))?;
    let cr = store.change_request_for_finding(id).await?;
    let proposal = store.proposal(id).await?;
    let audit = store.audit_events(Some(&format!("finding:{id}"))).await?;
    if output.json {
        let mut value = report::finding_json(&finding, cr.as_ref());
        value["evidence"] = finding.finding.evidence.clone();
        value["proposal"] = serde_json::to_value(&proposal)?;
        value["audit"] = serde_json::to_value(&audit)?;
        outln!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        out!(
            "{}",
            report::finding_detail(&(finding, cr), proposal.as_ref(), &audit)
        );
    }
    Ok(())
}

/// Longest `draco run` waits for the database connections to close at exit.
const STORE_CLOSE: std::time::Duration = std::time::Duration::from_millis(300);

/// `draco show ID --chart FILE`: re-scores the finding's series from the
/// stored cost points, as the scan did, and writes the chart.
async fn chart_command(ctx: &Context, id: FindingId, path: &Path) -> Result<()> {
    let store = ctx.open_existing_store().await?;
    let finding = store
        .finding(id)
        .await?
        .ok_or_else(|| UsageError(format!("there is no finding {id} (see `draco findings`)")))?
        .finding;
    if !crate::chart::has_chart(finding.kind) {
        return Err(UsageError(format!(
            "finding {id} is a {} finding; only cost findings have a chart",
            finding.kind.as_str()
        ))
        .into());
    }
    let last = store
        .last_cost_day()
        .await?
        .ok_or_else(|| anyhow!("no cost data is stored"))?;
    let points = store
        .cost_points_since(last - chrono::Duration::days(crate::chart::HISTORY_DAYS))
        .await?;
    let title = crate::domain::neutralise(&finding.title);
    let svg =
        crate::chart::finding_chart(&finding, &title, &points, &ctx.loaded.config.detect.cost)?
            .ok_or_else(|| {
                anyhow!("the stored cost data no longer holds the series of finding {id}")
            })?;
    std::fs::write(path, svg).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

async fn run_daemon(ctx: Context, source: SourceChoice, scan_on_start: bool) -> Result<()> {
    let signals = daemon::Signals::install()?;
    let config = &ctx.loaded.config;
    let listener = server::bind(config.server.listen)
        .await
        .context("set server.listen (or DRACO_SERVER_LISTEN) to a free address")?;
    let (first, again) = signals.split();
    let health = match config.server.health_listen {
        Some(addr) => Some(server::bind(addr).await.context(
            "set server.health_listen (or DRACO_SERVER_HEALTH_LISTEN) to a free address",
        )?),
        None => None,
    };
    let mut first = Box::pin(first);
    compose::create_private_dir(&ctx.data_dir)
        .with_context(|| format!("cannot create data directory {}", ctx.data_dir.display()))?;
    let database = compose::database_location(&ctx.loaded, &ctx.data_dir)?;
    let Some(store) = daemon::start::open_store(&database, &listener, health.as_ref(), &mut first)
        .await
        .context("the daemon cannot start")?
    else {
        return Ok(());
    };
    let app = App::build_on(ctx.loaded, ctx.data_dir, source, database, store).await?;
    daemon::run(
        Arc::clone(&app),
        listener,
        health,
        scan_on_start,
        first,
        again,
    )
    .await?;
    // A connection of the cancelled scan may still wait on another
    // process's lock (up to the busy timeout): closing does not wait for it.
    if tokio::time::timeout(STORE_CLOSE, app.store.close())
        .await
        .is_err()
    {
        tracing::warn!(
            "database connections still busy at exit; SQLite's journal keeps every commit"
        );
    }
    Ok(())
}

/// `draco keys rotate`: every sealed secret opened with the current master
/// key and sealed again under the new one, stored in one transaction (and
/// only if no other rotation changed them meanwhile). Any secret the
/// current key does not open stops it before anything is written.
async fn keys_rotate(ctx: &Context, args: &RotateArgs) -> Result<()> {
    use crate::seal;
    let location = compose::database_location(&ctx.loaded, &ctx.data_dir)?;
    // Opening unlocks the store, which finishes an interrupted rotation.
    let store = ctx.open_existing_store().await?;
    let current = compose::master_key(&ctx.loaded, &location, &ctx.data_dir)?;
    let configured = ctx.loaded.secrets.master_key.is_some();
    let (new, new_path, replaces_data_dir_key) = match &args.new_key_file {
        Some(path) => (seal::load_or_create_key_file(path)?, path.clone(), false),
        None if !configured && !location.is_shared() => {
            let pending = ctx.data_dir.join(compose::PENDING_KEY_FILE);
            let _ = std::fs::remove_file(&pending);
            (seal::load_or_create_key_file(&pending)?, pending, true)
        }
        None => {
            return Err(UsageError(
                "--new-key-file PATH is needed: the master key is configured (DRACO_MASTER_KEY or secrets.key_file), so the new one goes where you will point it".into(),
            )
            .into());
        }
    };
    if new.id() == current.id() {
        return Err(UsageError(format!(
            "the new key is the current one ({}); give another",
            current.id()
        ))
        .into());
    }
    let before = store.all_sealed().await?;
    let mut after = Vec::with_capacity(before.len());
    for (name, sealed) in &before {
        let plaintext = current.open(name, sealed)?;
        after.push((name.clone(), new.seal(name, &plaintext)?));
    }
    if !store.reseal_all(&before, &after, Utc::now()).await? {
        return Err(anyhow!(
            "the sealed secrets changed while they were being re-sealed (another rotation?); nothing was changed: run it again"
        ));
    }
    let count = after.len();
    if replaces_data_dir_key {
        std::fs::rename(&new_path, ctx.data_dir.join(seal::KEY_FILE)).with_context(|| {
            format!(
                "the secrets are sealed under the new key in {}, but it could not replace master.key; the next start finishes it",
                new_path.display()
            )
        })?;
        outln!(
            "Re-sealed {count} secrets from master key {} to {}; master.key in the data directory now holds the new key.",
            current.id(),
            new.id()
        );
    } else {
        outln!(
            "Re-sealed {count} secrets from master key {} to {}. Point DRACO_MASTER_KEY or secrets.key_file at {} on every replica now: the old key opens nothing any more.",
            current.id(),
            new.id(),
            new_path.display()
        );
    }
    Ok(())
}

/// `draco purge --finding ID [--with-group]` or `draco purge --all --yes`:
/// under the scan lock (a scan would otherwise record what is being
/// purged), the backend first, then the store in one transaction; the
/// audit anchor follows the new head.
async fn purge_command(ctx: &Context, args: &PurgeArgs) -> Result<()> {
    if args.all && !args.yes {
        return Err(UsageError(
            "`draco purge --all` deletes every finding, scan, cost point, change request, vote and delivery, and blanks every audit payload it can; nothing can be restored. Add --yes to confirm".into(),
        )
        .into());
    }
    let store = ctx.open_existing_store().await?;
    let git = ctx.open_repository().await?;
    let wait = std::time::Duration::from_secs(ctx.loaded.config.scan.lock_wait_secs);
    let _lock = store
        .lock_scans(wait)
        .await
        .context("a purge waits for the running scan to finish")?;
    let outcome = match args.finding {
        Some(id) => {
            crate::purge::purge_finding(&*store, git.as_ref(), id, args.with_group, Utc::now())
                .await
                .map_err(|e| match e {
                    crate::purge::PurgeError::UnknownFinding(_)
                    | crate::purge::PurgeError::SharedBranch { .. } => {
                        anyhow::Error::from(UsageError(e.to_string()))
                    }
                    other => {
                        anyhow::Error::from(other).context(format!("cannot purge finding {id}"))
                    }
                })?
        }
        None => crate::purge::purge_all(&*store, git.as_ref(), Utc::now())
            .await
            .context("cannot purge everything")?,
    };
    compose::write_anchor(&*store, &ctx.data_dir).await;
    let what = if outcome.findings.is_empty() {
        "everything".to_owned()
    } else {
        let ids: Vec<String> = outcome.findings.iter().map(ToString::to_string).collect();
        format!("finding {}", ids.join(", "))
    };
    let report = &outcome.store;
    outln!(
        "Purged {what}: {} rows deleted, {} audit payloads replaced by tombstones.",
        report.rows,
        report.audit_tombstoned
    );
    if report.audit_kept > 0 {
        outln!(
            "{} audit events written before payload digests existed (migration 0010) keep their payload: replacing it would break the hash chain.",
            report.audit_kept
        );
    }
    for kept in &outcome.kept {
        outln!("Kept outside Draco: {kept}.");
    }
    store.close().await;
    Ok(())
}

/// Where the database lives for a data dir; tests use it to corrupt or inspect it.
pub fn database_path(data_dir: &Path) -> PathBuf {
    compose::database_path(data_dir)
}
