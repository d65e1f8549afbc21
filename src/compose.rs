//! The composition root: every backend a process uses, built once from the
//! configuration and owned by one [`App`] that the scheduler, the HTTP
//! server and the CLI commands share (`Arc<App>`, no borrowed lifetimes
//! across tasks).
//!
//! Each part sits behind a narrow trait with a local default that needs no
//! credentials: the SQLite store, the local git change-request repository,
//! the template advisor.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::advice::AdviceStore;
use crate::advice::Advisors;
use crate::approve::ApprovalStores;
use crate::approve::secrets::{self as approval_secrets, ApprovalKey};
use crate::channels::email::Mailer;
use crate::channels::twilio::{self, TwilioClient};
use crate::config::{ConfigError, Loaded};
use crate::exposition;
use crate::gitops::config::{Backend, parse_repository};
use crate::gitops::github::api::{Auth, GitHubApi, RetryPolicy};
use crate::gitops::github::backend::GitHubChangeRequests;
use crate::gitops::local::LocalGit;
use crate::gitops::{ChangeRequests, GitOpsError};
use crate::notify::NotifyStore;
use crate::notify::inbound::InboundStore;
use crate::notify::inbound::{self, Deciding, LinkPage};
use crate::notify::{self, Notifier};
use crate::pipeline::PipelineStore;
use crate::pipeline::{Pipeline, PipelineError, ScanReport};
use crate::redact::{PiiKind, Redactor};
use crate::remediate::templates::{Catalog, CatalogError};
use crate::seal::MasterKey;
use crate::server::approvals::{Approvals, SmsReceiver};
use crate::server::dashboard::{Dashboard, DashboardAuth};
use crate::server::webhooks::{GitHubReceiver, Webhooks};
use crate::sources::aws::AwsSource;
use crate::sources::fixtures::{FixtureSet, FixtureSource};
use crate::sources::{CostSource, PostureSource};
use crate::store::{
    DatabaseLocation, DatabaseStore, DeliveryStore, PostgresStore, Readiness, ScanStatus,
    SqliteStore, StoreError,
};

pub use crate::store::DATABASE_FILE;
/// The local change-request repository inside the data directory.
pub const REPOSITORY_DIR: &str = "remediations.git";

/// Where a scan reads from.
#[derive(Debug, Clone)]
pub enum SourceChoice {
    Fixtures(FixtureSet),
    Aws,
}

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Database(#[from] crate::store::LocationError),
    #[error("the master key: {0}")]
    MasterKey(String),
    #[error("cannot prepare the change-request repository {path}: {source}")]
    Repository { path: PathBuf, source: GitOpsError },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    GitHub(GitOpsError),
    #[error(transparent)]
    ApprovalKey(#[from] approval_secrets::SecretsError),
    #[error("the SMS channel cannot start: {0}")]
    Twilio(#[from] twilio::TwilioError),
    #[error("the e-mail channel cannot start: {0}")]
    Email(#[from] crate::channels::email::EmailError),
}

/// A source that serves both cost and posture (both of ours do).
trait Source: CostSource + PostureSource {
    fn as_cost(&self) -> &dyn CostSource;
    fn as_posture(&self) -> &dyn PostureSource;
}

impl<T: CostSource + PostureSource> Source for T {
    fn as_cost(&self) -> &dyn CostSource {
        self
    }
    fn as_posture(&self) -> &dyn PostureSource {
        self
    }
}

/// The database as every part of the process sees it: each backend
/// ([`SqliteStore`], [`PostgresStore`]) and each consumer's narrow view of
/// it, so that `&*app.store` is handed to the pipeline, the notifier or the
/// inbound paths as the trait each of them takes.
pub trait AppStore:
    DatabaseStore + PipelineStore + NotifyStore + InboundStore + ApprovalStores + AdviceStore
{
}

impl<
    T: DatabaseStore
        + PipelineStore
        + NotifyStore
        + InboundStore
        + ApprovalStores
        + AdviceStore
        + ?Sized,
> AppStore for T
{
}

/// Each backend serves every aggregate and readiness: a compile error, not
/// a runtime surprise, when a trait method is missing from one.
const _: fn() = complete_backend::<SqliteStore>;
const _: fn() = complete_backend::<PostgresStore>;

fn complete_backend<S: AppStore>() {}

/// Opens the database `location` names: the SQLite file (created and
/// migrated if new) or the PostgreSQL database (migrated; it must exist).
/// Errors: as [`SqliteStore::open`] and [`PostgresStore::connect`].
pub async fn open_store(location: &DatabaseLocation) -> Result<Arc<dyn AppStore>, StoreError> {
    Ok(match location {
        DatabaseLocation::Sqlite(path) => Arc::new(SqliteStore::open(path).await?),
        DatabaseLocation::Postgres(url) => Arc::new(PostgresStore::connect(url).await?),
    })
}

/// Everything one Draco process runs on. The store is the concrete backend
/// (it also owns the scan lock); each consumer is handed it as the narrow
/// trait it needs (`PipelineStore`, `DecisionStore`, `Readiness`, …).
pub struct App {
    pub loaded: Loaded,
    pub data_dir: PathBuf,
    /// Where the state lives (`database_url`), for messages.
    pub database: DatabaseLocation,
    pub store: Arc<dyn AppStore>,
    pub change_requests: Arc<dyn ChangeRequests>,
    pub advisors: Advisors,
    pub redactor: Redactor,
    pub source: SourceChoice,
    /// Set when the GitHub backend is configured: what `POST /webhooks/github` checks.
    pub github_receiver: Option<GitHubReceiver>,
    /// Woken when a webhook delivery was stored, so it is processed at once.
    pub deliveries_waiting: tokio::sync::Notify,
    /// Who is asked to approve, on which channels, with which key.
    pub notifier: Notifier,
    /// Set when the SMS channel is on: what `POST /webhooks/twilio` checks.
    pub sms_receiver: Option<SmsReceiver>,
    /// The dashboard's login and sessions; `None` when `server.dashboard`
    /// is off.
    pub dashboard: Option<DashboardAuth>,
}

impl App {
    /// Opens (creating) the data directory, the database and the
    /// change-request repository, and builds the advisors.
    ///
    /// Errors: the data directory cannot be created, the database is not
    /// Draco's or cannot be migrated, git is missing, the templates or the
    /// model configuration are invalid.
    pub async fn build(
        loaded: Loaded,
        data_dir: PathBuf,
        source: SourceChoice,
    ) -> Result<Arc<Self>, ComposeError> {
        create_private_dir(&data_dir).map_err(|source| ComposeError::DataDir {
            path: data_dir.clone(),
            source,
        })?;
        let database = database_location(&loaded, &data_dir)?;
        let store = open_store(&database).await?;
        Self::build_on(loaded, data_dir, source, database, store).await
    }

    /// [`App::build`] on a store already open at `database` (the daemon
    /// opens it first, retrying while the database is unreachable).
    pub async fn build_on(
        loaded: Loaded,
        data_dir: PathBuf,
        source: SourceChoice,
        database: DatabaseLocation,
        store: Arc<dyn AppStore>,
    ) -> Result<Arc<Self>, ComposeError> {
        create_private_dir(&data_dir).map_err(|source| ComposeError::DataDir {
            path: data_dir.clone(),
            source,
        })?;
        let change_requests = change_requests(&loaded, &data_dir).await?;
        let catalog = catalog(&loaded)?;
        // The recorder first: the advisors' counters are set as they are built.
        exposition::handle();
        let advisors = Advisors::with_store_budget(catalog, &loaded, store.clone())?;
        let redactor = Redactor::new(&loaded.config.redact.person_tag_keys);
        let github_receiver = github_receiver(&loaded);
        let master = unlock(&*store, &loaded, &database, &data_dir).await?;
        let notifier = notifier(&loaded, &data_dir, &*store, &master).await?;
        let sms_receiver = sms_receiver(&loaded);
        let dashboard = dashboard_auth(&loaded);
        Ok(Arc::new(Self {
            loaded,
            data_dir,
            database,
            store,
            change_requests,
            advisors,
            redactor,
            source,
            github_receiver,
            deliveries_waiting: tokio::sync::Notify::new(),
            notifier,
            sms_receiver,
            dashboard,
        }))
    }

    /// Asks approvers about every change request waiting for them (after a
    /// scan, and on the daemon's schedule). A failure is logged: asking
    /// again later is always safe (asks are recorded once).
    pub async fn ask_approvers(&self, now: DateTime<Utc>) {
        match notify::ask_pending(&*self.store, &self.notifier, now).await {
            Ok(report) => {
                if report.sent + report.held + report.failed > 0 {
                    tracing::info!(
                        sent = report.sent,
                        held = report.held,
                        failed = report.failed,
                        "approvers asked"
                    );
                }
                // Said where reviewers look, so a waiting change is not
                // mistaken for a forgotten one.
                let cap = self
                    .loaded
                    .config
                    .approval
                    .max_messages_per_approver_per_day;
                let note = format!(
                    "Draco has not asked every approver about this change yet: they had {cap} messages in the last 24 hours (approval.max_messages_per_approver_per_day). They are asked as soon as the cap allows, most severe changes first."
                );
                for branch in report.held_branches {
                    if let Err(error) = self.change_requests.note(&branch, &note).await {
                        tracing::warn!(%error, branch, "cannot say on the change request that its approvers wait");
                    }
                }
            }
            Err(error) => tracing::error!(%error, "cannot ask approvers; retrying later"),
        }
    }

    /// The approval job (the daemon runs it every minute): finishes
    /// decisions a stopped process left undone
    /// ([`crate::approve::finish_abandoned`]), asks whoever is still to be
    /// asked, releases held asks, reminds, escalates, expires. Failures are
    /// logged; the next run takes them up.
    pub async fn follow_up_approvals(&self, now: DateTime<Utc>) {
        if let Err(error) =
            crate::approve::finish_abandoned(&*self.store, self.change_requests.as_ref(), now).await
        {
            tracing::error!(%error, "cannot finish decisions left undone; retrying later");
        }
        if self.notifier.directory.is_empty() {
            return;
        }
        self.ask_approvers(now).await;
        match notify::follow_up(
            &*self.store,
            &self.notifier,
            self.change_requests.as_ref(),
            now,
        )
        .await
        {
            Ok(report) if report != notify::FollowUpReport::default() => tracing::info!(
                released = report.released,
                reminded = report.reminded,
                escalated = report.escalated,
                expired = report.expired,
                "approval follow-up"
            ),
            Ok(_) => {}
            Err(error) => tracing::error!(%error, "approval follow-up failed; retrying later"),
        }
    }

    /// What deciding needs: the store, the backend, the directory and policy.
    pub fn deciding(&self) -> Deciding<'_> {
        Deciding {
            store: &*self.store,
            change_requests: self.change_requests.as_ref(),
            notifier: &self.notifier,
        }
    }

    /// The kinds kept out of change requests: the GitHub policy, or none
    /// for the local repository (it stays on the host).
    pub fn publish_redact(&self) -> &[PiiKind] {
        let gitops = &self.loaded.config.gitops;
        match gitops.backend {
            Backend::Github => &gitops.github.publish_redact,
            Backend::Local => &[],
        }
    }

    /// One scan of the configured source, end to end, with its metrics.
    ///
    /// Scans on one database run one at a time: this waits for the scan lock
    /// (up to `scan.lock_wait_secs`), then marks any scan a dead process left
    /// `running` as `interrupted` before starting.
    pub async fn scan(&self, now: DateTime<Utc>) -> Result<ScanReport, PipelineError> {
        let wait = Duration::from_secs(self.loaded.config.scan.lock_wait_secs);
        let _lock = self.store.lock_scans(wait).await?;
        self.interrupt_abandoned_scans().await?;
        let started = Instant::now();
        let source: Box<dyn Source> = match &self.source {
            SourceChoice::Fixtures(set) => Box::new(FixtureSource::new(set.clone())),
            SourceChoice::Aws => Box::new(AwsSource::new(self.loaded.config.aws.clone()).await),
        };
        let (advisor, fallback) = self.advisors.chain();
        let pipeline = Pipeline {
            cost: source.as_cost(),
            posture: source.as_posture(),
            detect: &self.loaded.config.detect,
            redactor: &self.redactor,
            advisor,
            fallback,
            catalog: self.advisors.template.catalog(),
            change_requests: self.change_requests.as_ref(),
            publish_redact: self.publish_redact(),
            max_new_per_scan: self.loaded.config.gitops.max_new_per_scan as usize,
            group: self.loaded.config.gitops.group,
            store: &*self.store,
        };
        let result = pipeline.scan(now).await;
        if result.is_ok() {
            // Reviews whose webhook was lost count now; then whoever is
            // still to be asked is asked.
            if let Err(error) = notify::review::reconcile(&self.deciding(), now).await {
                tracing::error!(%error, "cannot read pull request reviews back");
            }
            self.ask_approvers(now).await;
        }
        let status = match &result {
            Ok(report) => report.status.as_str(),
            Err(_) => "failed",
        };
        metrics::counter!(exposition::SCANS_TOTAL, "status" => status).increment(1);
        metrics::histogram!(exposition::SCAN_DURATION_SECONDS)
            .record(started.elapsed().as_secs_f64());
        if let Ok(report) = &result {
            metrics::counter!(exposition::COST_EXPLORER_REQUESTS_TOTAL)
                .increment(u64::from(report.cost_requests));
        }
        self.refresh_finding_gauges().await;
        write_anchor(&*self.store, &self.data_dir).await;
        result
    }

    /// Enforces `[retention]` as of `now` (the daemon's job; call it under
    /// its lease, about once a day): scans and resolved findings, cost
    /// points, processed webhook deliveries, each deleted in a transaction
    /// of its own, then old audit payloads replaced by tombstones; one
    /// `retention` audit event with the counts when anything changed.
    /// Idempotent: a second run at the same `now` changes nothing.
    ///
    /// Errors: the store's; the kinds done before the failure stay done.
    pub async fn enforce_retention(
        &self,
        now: DateTime<Utc>,
    ) -> Result<crate::store::RetentionReport, StoreError> {
        let cutoffs = self.loaded.config.retention.cutoffs(now);
        let report = crate::store::retention::enforce(&*self.store, &cutoffs, now).await?;
        if report.changed() {
            tracing::info!(
                findings = report.findings,
                scans = report.scans,
                cost_points = report.cost_points,
                webhook_deliveries = report.webhook_deliveries,
                audit_payloads = report.audit_payloads,
                "retention enforced"
            );
        }
        Ok(report)
    }

    /// Marks scans left `running` by a process that ended as `interrupted`.
    /// The caller holds the scan lock.
    async fn interrupt_abandoned_scans(&self) -> Result<(), StoreError> {
        let ids = self.store.interrupt_abandoned_scans(Utc::now()).await?;
        if !ids.is_empty() {
            tracing::warn!(
                scans = ?ids,
                "scans left running by a process that ended are marked interrupted; this scan repairs what it can"
            );
            metrics::counter!(exposition::SCANS_TOTAL, "status" => "interrupted")
                .increment(ids.len() as u64);
        }
        Ok(())
    }

    /// Outside a scan (daemon start, after a cancelled scan): the same
    /// repair, if no scan is running right now (then its process will see to it).
    pub async fn repair_abandoned_scans(&self) -> Result<(), StoreError> {
        self.repair_within(Duration::ZERO).await.map(|_| ())
    }

    /// The repair under the scan lock, waiting up to `wait` for it; `false`
    /// when a scan still held it then (its process sees to its own scan).
    async fn repair_within(&self, wait: Duration) -> Result<bool, StoreError> {
        match self.store.lock_scans(wait).await {
            Ok(_lock) => self.interrupt_abandoned_scans().await.map(|()| true),
            Err(StoreError::ScanBusy { .. }) => Ok(false),
            Err(other) => Err(other),
        }
    }

    /// On taking the scan lease: waits for the scan lock (up to
    /// `scan.lock_wait_secs`), marks what a dead holder left running
    /// `interrupted`, then says whether the latest scan is `interrupted`,
    /// to be resumed now rather than at the next tick.
    pub async fn take_over_scans(&self) -> Result<bool, StoreError> {
        // Waited for, not tried once: a holder whose host vanished keeps
        // PostgreSQL's session (and the scan lock) until TCP keepalives give
        // up, up to ~30 s, which may be after its lease expired. A scan that
        // still runs after the wait (`draco scan` by hand, or a holder that
        // stalled with its host alive) is looked for again while the lease
        // is held ([`App::scan_left_unfinished`]).
        let wait = Duration::from_secs(self.loaded.config.scan.lock_wait_secs);
        if !self.repair_within(wait).await? {
            return Ok(false);
        }
        Ok(self
            .store
            .scans(1)
            .await?
            .first()
            .is_some_and(|scan| scan.status == ScanStatus::Interrupted))
    }

    /// While this replica holds the scan lease: whether the latest scan was
    /// left unfinished (`interrupted`, or `running` with nobody holding the
    /// scan lock, which marks it `interrupted` here) and the scan lock is
    /// free now, so it is to be resumed. Never waits for the lock.
    pub async fn scan_left_unfinished(&self) -> Result<bool, StoreError> {
        let unfinished =
            |scans: Vec<crate::store::ScanRecord>| scans.first().map(|scan| scan.status);
        if !matches!(
            unfinished(self.store.scans(1).await?),
            Some(ScanStatus::Interrupted | ScanStatus::Running)
        ) {
            return Ok(false);
        }
        if !self.repair_within(Duration::ZERO).await? {
            return Ok(false);
        }
        Ok(unfinished(self.store.scans(1).await?) == Some(ScanStatus::Interrupted))
    }

    /// Sets `draco_findings{kind,severity,status}` from the store. A read
    /// failure leaves the last values and is logged: metrics never fail a scan.
    pub async fn refresh_finding_gauges(&self) {
        match self.store.findings().await {
            Ok(findings) => exposition::set_findings(findings.iter().map(|f| {
                (
                    f.finding.kind.as_str(),
                    f.finding.severity.as_str(),
                    f.status.as_str(),
                )
            })),
            Err(error) => tracing::warn!(%error, "cannot read findings for metrics"),
        }
    }
}

/// `/readyz` asks the application: ready when its database answers and its
/// schema is current.
#[async_trait::async_trait]
impl Readiness for App {
    async fn check_ready(&self) -> Result<(), StoreError> {
        self.store.check_ready().await
    }
}

/// The configured change-request backend: the local repository under the
/// data dir, or pull requests on GitHub.
pub async fn change_requests(
    loaded: &Loaded,
    data_dir: &Path,
) -> Result<Arc<dyn ChangeRequests>, ComposeError> {
    let gitops = &loaded.config.gitops;
    if gitops.backend == Backend::Github {
        let github = &gitops.github;
        let auth = github_auth(loaded)?;
        let repository =
            parse_repository(github.repository.as_deref().unwrap_or("")).map_err(|m| {
                ComposeError::GitHub(GitOpsError::Setup(format!("gitops.github.repository {m}")))
            })?;
        let api = GitHubApi::new(&github.api_url, repository, &auth, RetryPolicy::default())
            .map_err(ComposeError::GitHub)?;
        return Ok(Arc::new(GitHubChangeRequests::new(api, github)));
    }
    let repository = data_dir.join(REPOSITORY_DIR);
    let git = LocalGit::open_or_init(&repository)
        .await
        .map_err(|source| ComposeError::Repository {
            path: repository,
            source,
        })?;
    Ok(Arc::new(git))
}

/// How the GitHub backend authenticates, from the validated configuration.
///
/// Errors: no credentials (the configuration was not validated for GitHub).
pub fn github_auth(loaded: &Loaded) -> Result<Auth, ComposeError> {
    let github = &loaded.config.gitops.github;
    let secrets = &loaded.secrets;
    match (
        &secrets.github_token,
        github.app_id,
        github.installation_id,
        &secrets.github_app_private_key,
    ) {
        (Some(token), ..) => Ok(Auth::Token(token.value.clone())),
        (None, Some(app_id), Some(installation_id), Some(key)) => Ok(Auth::App {
            app_id,
            installation_id,
            private_key: key.value.clone(),
        }),
        _ => Err(ComposeError::GitHub(GitOpsError::Setup(
            "no GitHub credentials: set DRACO_GITHUB_TOKEN, or a GitHub App's app_id, installation_id and private key".into(),
        ))),
    }
}

/// The webhook receiver's settings when the GitHub backend is on (the
/// configuration was validated: it has a repository and a webhook secret).
fn github_receiver(loaded: &Loaded) -> Option<GitHubReceiver> {
    let gitops = &loaded.config.gitops;
    if gitops.backend != Backend::Github {
        return None;
    }
    Some(GitHubReceiver {
        secret: loaded.secrets.github_webhook_secret.as_ref()?.value.clone(),
        repository: gitops.github.repository.clone()?,
    })
}

/// The approval channels that are set up: SMS (Twilio) and mail, the key
/// codes and links are digested under (created in the data dir), the
/// directory and the policy.
async fn notifier(
    loaded: &Loaded,
    data_dir: &Path,
    store: &dyn AppStore,
    master: &MasterKey,
) -> Result<Notifier, ComposeError> {
    let config = &loaded.config;
    let key =
        ApprovalKey::load_or_create(store, master, &data_dir.join(approval_secrets::KEY_FILE))
            .await?;
    let twilio = match (
        &loaded.secrets.twilio_auth_token,
        config.twilio.is_configured(),
    ) {
        (Some(token), true) => Some(TwilioClient::new(&config.twilio, token.value.clone())?),
        _ => None,
    };
    let mailer = if config.email.is_configured() {
        let secret = match config.email.transport {
            Some(crate::channels::email::Transport::Sendgrid) => &loaded.secrets.sendgrid_api_key,
            _ => &loaded.secrets.smtp_password,
        };
        Some(Mailer::new(
            &config.email,
            secret.as_ref().map(|s| s.value.clone()),
        )?)
    } else {
        None
    };
    Ok(Notifier {
        twilio,
        mailer,
        key,
        public_url: config
            .server
            .public_url
            .as_ref()
            .map(|u| u.trim_end_matches('/').to_owned()),
        policy: config.approval.clone(),
        directory: crate::config::directory(config),
        redactor: Redactor::new(&config.redact.person_tag_keys),
        publish_redact: config.gitops.github.publish_redact.clone(),
        code_checks: tokio::sync::Mutex::new(()),
    })
}

/// The SMS webhook's settings when Twilio is configured (validated: it has
/// its auth token and the public URL).
fn sms_receiver(loaded: &Loaded) -> Option<SmsReceiver> {
    let config = &loaded.config;
    if !config.twilio.is_configured() {
        return None;
    }
    Some(SmsReceiver {
        auth_token: loaded.secrets.twilio_auth_token.as_ref()?.value.clone(),
        url: format!(
            "{}{}",
            config.server.public_url.as_ref()?.trim_end_matches('/'),
            twilio::WEBHOOK_PATH
        ),
    })
}

#[async_trait::async_trait]
impl Approvals for App {
    fn sms_receiver(&self) -> Option<&SmsReceiver> {
        self.sms_receiver.as_ref()
    }
    fn links_enabled(&self) -> bool {
        self.notifier.mailer.is_some() && self.notifier.public_url.is_some()
    }
    fn public_url_is_https(&self) -> bool {
        self.notifier
            .public_url
            .as_ref()
            .is_some_and(|u| u.starts_with("https://"))
    }
    async fn sms_reply(
        &self,
        message_sid: &str,
        from: &str,
        body: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, StoreError> {
        inbound::sms(&self.deciding(), message_sid, from, body, now).await
    }
    async fn link_page(&self, token: &str, now: DateTime<Utc>) -> Result<LinkPage, StoreError> {
        inbound::link_page(&self.deciding(), token, now).await
    }
    async fn link_decide(
        &self,
        token: &str,
        form_token: &str,
        cookie: Option<&str>,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(u16, String), StoreError> {
        inbound::link_decide(&self.deciding(), token, form_token, cookie, reason, now).await
    }
}

/// The dashboard's authentication from `[server]`: on with a token, off
/// without (the config check allowed that only on loopback); the cookie is
/// `Secure` when `server.public_url` is https.
fn dashboard_auth(loaded: &Loaded) -> Option<DashboardAuth> {
    let server = &loaded.config.server;
    server.dashboard.then(|| {
        let secure = server
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"));
        DashboardAuth::new(
            loaded.secrets.dashboard_token.as_ref().map(|t| &t.value),
            secure,
        )
    })
}

impl Dashboard for App {
    fn dashboard_auth(&self) -> Option<&DashboardAuth> {
        self.dashboard.as_ref()
    }
    fn scan_store(&self) -> &dyn crate::store::ScanStore {
        &*self.store
    }
    fn change_request_store(&self) -> &dyn crate::store::ChangeRequestStore {
        &*self.store
    }
    fn audit_log(&self) -> &dyn crate::store::AuditLog {
        &*self.store
    }
    fn cost_config(&self) -> &crate::detect::cost::CostConfig {
        &self.loaded.config.detect.cost
    }
}

impl Webhooks for App {
    fn github_receiver(&self) -> Option<&GitHubReceiver> {
        self.github_receiver.as_ref()
    }
    fn deliveries(&self) -> &dyn DeliveryStore {
        &*self.store
    }
    fn delivery_recorded(&self) {
        // A permit is kept when no one waits yet: the wake-up is never lost.
        self.deliveries_waiting.notify_one();
    }
}

/// Creates the data directory for the owner only (0700): it holds personal
/// data (findings, evidence, the audit log). A directory that already exists
/// is left as the operator set it, with a warning when others can read it.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)?;
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", mode & 0o777),
            "the data directory is readable by others; `chmod 700` it"
        );
    }
    Ok(())
}

/// The remediation templates: `remediate.templates_dir`, or the built-in set.
pub fn catalog(loaded: &Loaded) -> Result<Catalog, CatalogError> {
    match &loaded.config.remediate.templates_dir {
        Some(dir) => Catalog::load_dir(dir),
        None => Catalog::builtin(),
    }
}

/// Where the database lives for a data dir.
pub fn database_path(data_dir: &Path) -> PathBuf {
    data_dir.join(DATABASE_FILE)
}

/// The file in the data directory that anchors the audit chain's head
/// outside the database (`<seq> <hash>`): a cut tail no longer verifies.
pub const ANCHOR_FILE: &str = "audit.head";

/// Makes an opened store ready to write: finishes an interrupted key
/// rotation, finds the master key, and installs the audit key (sealed in
/// the store under the master key; created on first use) so that every
/// audit event from now on is keyed. Returns the master key.
///
/// Errors: as [`master_key`]; the audit key does not open under it.
pub async fn unlock(
    store: &dyn AppStore,
    loaded: &Loaded,
    database: &DatabaseLocation,
    data_dir: &Path,
) -> Result<MasterKey, ComposeError> {
    finish_interrupted_rotation(store, database, data_dir).await?;
    let master = master_key(loaded, database, data_dir)?;
    let key = audit_key(store, &master).await?;
    store.install_audit_key(key);
    Ok(master)
}

/// The audit key, sealed in the store under `master` (created on first use).
pub async fn audit_key(
    store: &dyn AppStore,
    master: &MasterKey,
) -> Result<crate::audit::AuditKey, ComposeError> {
    let key =
        crate::store::sealed::load_or_create_key(store, master, crate::audit::SEALED_NAME, || {
            let mut key = zeroize::Zeroizing::new(vec![0u8; 32]);
            getrandom::fill(&mut key).map_err(|e| e.to_string())?;
            Ok(key)
        })
        .await
        .map_err(|e| ComposeError::MasterKey(format!("the audit key: {e}")))?;
    Ok(crate::audit::AuditKey::from_bytes(*key))
}

/// Writes the audit chain's head to [`ANCHOR_FILE`] (whole, then renamed
/// into place; 0600). A failure is logged: the anchor lags, nothing else.
pub async fn write_anchor(store: &dyn AppStore, data_dir: &Path) {
    use std::io::Write as _;
    let head = match store.audit_head().await {
        Ok(Some(head)) => head,
        Ok(None) => return,
        Err(error) => {
            tracing::warn!(%error, "cannot read the audit log's head to anchor it");
            return;
        }
    };
    let written = tempfile::NamedTempFile::new_in(data_dir).and_then(|mut file| {
        file.write_all(head.to_line().as_bytes())?;
        file.as_file().sync_all()?;
        file.persist(data_dir.join(ANCHOR_FILE))
            .map_err(|e| e.error)?;
        Ok(())
    });
    if let Err(error) = written {
        tracing::warn!(%error, "cannot write the audit anchor");
    }
}

/// The anchored head, if the data directory has one. Errors: it is there
/// but unreadable or not an anchor.
pub fn read_anchor(data_dir: &Path) -> Result<Option<crate::audit::Anchor>, ComposeError> {
    let path = data_dir.join(ANCHOR_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => crate::audit::Anchor::parse(&text).map(Some).ok_or_else(|| {
            ComposeError::MasterKey(format!("{} is not an audit anchor", path.display()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ComposeError::MasterKey(format!("{}: {e}", path.display()))),
    }
}

/// Where `draco keys rotate` writes the data directory's new master key
/// before the re-sealed secrets are committed; renamed over `master.key`
/// after.
pub const PENDING_KEY_FILE: &str = "master.key.new";

/// Finishes a `draco keys rotate` of the data directory's `master.key` that
/// was interrupted between committing the re-sealed secrets and renaming
/// the new key into place; a pending key the secrets are not sealed under
/// is a rotation that did not commit, and is removed. Only for SQLite
/// without a configured key. Errors: the files cannot be renamed or read.
pub async fn finish_interrupted_rotation(
    store: &dyn AppStore,
    database: &DatabaseLocation,
    data_dir: &Path,
) -> Result<(), ComposeError> {
    let pending = data_dir.join(PENDING_KEY_FILE);
    if database.is_shared() || !pending.exists() {
        return Ok(());
    }
    let failed = |e: String| ComposeError::MasterKey(format!("{}: {e}", pending.display()));
    let text = std::fs::read_to_string(&pending).map_err(|e| failed(e.kind().to_string()))?;
    let sealed = store.all_sealed().await?;
    let committed = MasterKey::parse(&text)
        .is_ok_and(|key| !sealed.is_empty() && sealed.iter().all(|(_, s)| s.key_id == key.id()));
    if committed {
        std::fs::rename(&pending, data_dir.join(crate::seal::KEY_FILE))
            .map_err(|e| failed(e.kind().to_string()))?;
        tracing::warn!("finished an interrupted `draco keys rotate`: master.key holds the new key");
    } else {
        std::fs::remove_file(&pending).map_err(|e| failed(e.kind().to_string()))?;
    }
    Ok(())
}

/// The key secrets are sealed under: `DRACO_MASTER_KEY` or
/// `secrets.key_file`; with neither, `master.key` in the data directory for
/// the embedded SQLite database (created on first run). Errors: the key is
/// malformed; a PostgreSQL database without a configured key (each replica
/// would make its own, and none could open the others' secrets).
pub fn master_key(
    loaded: &Loaded,
    database: &DatabaseLocation,
    data_dir: &Path,
) -> Result<MasterKey, ComposeError> {
    use secrecy::ExposeSecret;
    if let Some(secret) = &loaded.secrets.master_key {
        return MasterKey::parse(secret.value.expose_secret())
            .map_err(|e| ComposeError::MasterKey(format!("{} ({})", e, secret.origin)));
    }
    if database.is_shared() {
        return Err(ComposeError::MasterKey(
            "a PostgreSQL database is shared by replicas, which must seal and open secrets with one key: set DRACO_MASTER_KEY or secrets.key_file (the same on every replica; `openssl rand -base64 32` makes one)".into(),
        ));
    }
    crate::seal::load_or_create_key_file(&data_dir.join(crate::seal::KEY_FILE))
        .map_err(|e| ComposeError::MasterKey(e.to_string()))
}

/// The database the configuration names (`database_url`, with the password
/// from `DRACO_DATABASE_PASSWORD` / `database_password_file`), or the SQLite
/// file in `data_dir`. Errors: a malformed `database_url` (the config check
/// refuses those before this).
pub fn database_location(
    loaded: &Loaded,
    data_dir: &Path,
) -> Result<DatabaseLocation, crate::store::LocationError> {
    DatabaseLocation::resolve(
        loaded.config.database_url.as_deref(),
        loaded
            .secrets
            .database_password
            .as_ref()
            .map(|s| s.value.clone()),
        data_dir,
    )
}
