//! Command-line definitions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::domain::FindingId;

/// A mistake in how Draco was called (exit code 2), as opposed to a failure
/// while running (1). Here, beside the argument definitions, so that every
/// command module (`app`, `tools`) can raise it without depending on another.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

#[derive(Debug, Parser)]
#[command(
    name = "draco",
    version,
    about = "Self-hosted cloud guardian: cost anomalies and security posture, fixed only with human approval."
)]
pub struct Cli {
    /// TOML config file (see README). Without one, defaults and DRACO_* variables apply.
    #[arg(long, global = true, env = "DRACO_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Directory for the database and the change-request repository [default: ./.draco]
    #[arg(long, global = true, env = "DRACO_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Scan the built-in demo fixtures end to end, offline: findings, proposals, change requests.
    Demo(OutputArgs),
    /// Scan the configured source.
    Scan(ScanArgs),
    /// Run as a daemon: scan on the configured cron schedule until SIGINT or SIGTERM.
    Run(RunArgs),
    /// GET a running daemon's /healthz: exit 0 on 200, 1 otherwise (for container health checks).
    Healthcheck(HealthcheckArgs),
    /// List recent scans: id, start, end, status, source and errors.
    Scans(ScansArgs),
    /// List findings.
    Findings(FindingsArgs),
    /// Show one finding with its evidence, proposal, change request and audit trail.
    Show(ShowArgs),
    /// Approve a finding's change request: merges it.
    Approve(ApproveArgs),
    /// Reject a finding's change request: closes it without merging.
    Reject(RejectArgs),
    /// Delete every trace of a finding (or of everything) from the database and the change-request backend.
    Purge(PurgeArgs),
    /// Configuration commands.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Audit log commands.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Master key commands.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Score a `timestamp,value` CSV; prints `timestamp,value,score,anomaly` for every row.
    Detect(DetectArgs),
    /// Redact personal and secret data from standard input to standard output.
    Redact(RedactArgs),
    /// Measure detection quality.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// The URL to probe: plain http, usually `server.health_listen`'s or `server.listen`'s port on loopback.
    #[arg(long, default_value = "http://127.0.0.1:8080/healthz")]
    pub url: String,
    /// Seconds allowed for connecting, and again for each read and write.
    #[arg(long, default_value_t = 3)]
    pub timeout_secs: u64,
}

#[derive(Debug, Args)]
pub struct ScansArgs {
    /// How many of the most recent scans to list.
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct DetectArgs {
    /// CSV with header `timestamp,value`; rows whose timestamp repeats or
    /// goes back are scored in file order, with one warning counting them.
    #[arg(long)]
    pub input: PathBuf,
    /// Score at or above which a row is marked `anomaly = 1`. Default: 0.9981
    /// for the streaming detector (the threshold NAB's standard profile picks
    /// for it), 0.5 for the daily cost model (its own decision).
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Which detector scores the series: `auto` picks the daily cost model
    /// when the median step between timestamps is one day (23 to 25 hours),
    /// the streaming detector otherwise.
    #[arg(long, value_enum, default_value_t = DetectModel::Auto)]
    pub model: DetectModel,
}

/// The detector behind `draco detect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DetectModel {
    Auto,
    /// The generic streaming detector, for any regular interval.
    Stream,
    /// The scan's daily cost model (weekly seasonality, month-start charges,
    /// re-baselining after lasting shifts), for one value a day.
    Daily,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Run the detector over a Numenta Anomaly Benchmark corpus and score it with NAB's rules.
    Nab(NabArgs),
    /// Generate synthetic cost series with planted anomalies and score the cost detector on them.
    Cost(CostBenchArgs),
    /// Precision and recall of the redactor per kind, its throughput, and its time on adversarial input.
    Redact(RedactBenchArgs),
    /// Resident memory of an idle `draco run` between scans of the demo data (Linux).
    Idle(IdleBenchArgs),
    /// A flood of findings end to end: scans of a generated estate until every finding has its change request.
    Estate(EstateBenchArgs),
    /// Finding upserts and audit appends per second on a fresh database.
    Store(StoreBenchArgs),
    /// What running Draco costs: idle memory, binary size, start-up time, and one scan of a large generated estate (Linux).
    Footprint(FootprintBenchArgs),
}

#[derive(Debug, Args)]
pub struct FootprintBenchArgs {
    /// Scans of the demo set the idle daemon runs (memory read after each).
    #[arg(long, default_value_t = 3)]
    pub idle_scans: usize,
    /// Start-ups to `/readyz` 200 measured (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub starts: usize,
    /// Accounts of the generated estate.
    #[arg(long, default_value_t = 50)]
    pub accounts: usize,
    /// Regions per account (1 to 8).
    #[arg(long, default_value_t = 4)]
    pub regions: usize,
    /// Running instances per account and region, each with a root volume
    /// (with security groups and spare volumes, about 2,060 resources per
    /// account and region for 1,000).
    #[arg(long, default_value_t = 1000)]
    pub instances: usize,
    /// Share of resources made bad, in percent.
    #[arg(long, default_value_t = 2.0)]
    pub bad_percent: f64,
    /// Daily cost series (account × service) of the estate.
    #[arg(long, default_value_t = 500)]
    pub cost_series: usize,
    /// Days per cost series, ending yesterday.
    #[arg(long, default_value_t = 400)]
    pub cost_days: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct StoreBenchArgs {
    /// Findings one scan records (then sees again, changed).
    #[arg(long, default_value_t = 5000)]
    pub findings: usize,
    /// Free-standing audit events appended one transaction each.
    #[arg(long, default_value_t = 2000)]
    pub audit_events: usize,
    /// Measure PostgreSQL instead: a server URL (e.g.
    /// postgres://postgres@127.0.0.1:5432/postgres) on which a scratch
    /// database is created, then dropped; the password, if any, from
    /// DRACO_DATABASE_PASSWORD.
    #[arg(long, value_name = "URL")]
    pub postgres: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct EstateBenchArgs {
    #[arg(long, default_value_t = 5)]
    pub accounts: usize,
    /// Regions per account (1 to 8).
    #[arg(long, default_value_t = 4)]
    pub regions: usize,
    /// Running instances per account and region, each with a root volume.
    #[arg(long, default_value_t = 500)]
    pub instances: usize,
    /// Share of resources made bad, in percent.
    #[arg(long, default_value_t = 2.0)]
    pub bad_percent: f64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// `gitops.max_new_per_scan` for the run.
    #[arg(long, default_value_t = 20)]
    pub max_new_per_scan: u32,
    /// `gitops.group`: `finding` or `kind-account-region`.
    #[arg(long, default_value = "finding")]
    pub group: String,
    /// Scans at most, before giving up on draining the queue.
    #[arg(long, default_value_t = 400)]
    pub max_scans: usize,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct IdleBenchArgs {
    /// Scans to wait for; memory is sampled after each.
    #[arg(long, default_value_t = 20)]
    pub scans: usize,
    /// Seconds between scheduled scans (1 to 59).
    #[arg(long, default_value_t = 3)]
    pub interval_secs: u64,
    /// Milliseconds after a scan finishes before memory is read.
    #[arg(long, default_value_t = 1500)]
    pub settle_ms: u64,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct RedactBenchArgs {
    /// presidio-research `synth_dataset_v2.json`; scored too when given (or found at the default path).
    #[arg(long, default_value = "../shared/data/pii/synth_dataset_v2.json")]
    pub presidio: PathBuf,
    /// Size of the project's own labelled corpus, in MiB.
    #[arg(long, default_value_t = 32)]
    pub corpus_mib: usize,
    /// Size of the mixed text the throughput is measured on, in MiB.
    #[arg(long, default_value_t = 64)]
    pub throughput_mib: usize,
    /// Skip the adversarial inputs (10 MiB each).
    #[arg(long)]
    pub no_adversarial: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct RedactArgs {
    /// Print one JSON line `{"start","end","kind"}` per finding (byte offsets into the input) instead of the redacted text.
    #[arg(long)]
    pub spans: bool,
}

#[derive(Debug, Args)]
pub struct CostBenchArgs {
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Number of series.
    #[arg(long, default_value_t = 500)]
    pub series: usize,
    /// Days per series.
    #[arg(long, default_value_t = 180)]
    pub days: usize,
    /// Series in the several-events set (a year of daily cost each, with
    /// spikes, shifts up and down and ten-day ramps); 0 skips it.
    #[arg(long, default_value_t = 200)]
    pub events_series: usize,
    /// Days per series in the several-events set.
    #[arg(long, default_value_t = 365)]
    pub events_days: usize,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct NabArgs {
    /// NAB root: `data/**/*.csv` and `labels/combined_windows.json` (e.g. ../shared/data/nab).
    #[arg(long)]
    pub data: PathBuf,
    /// Score the values alone, without the time-of-day model (as for a series without timestamps).
    #[arg(long)]
    pub no_timestamps: bool,
    /// Instead of the report: tune the settings grid of `examples/nab_tune.rs` on the odd-numbered
    /// files and score the even ones, then the reverse (standard profile; about 250 corpus runs).
    #[arg(long)]
    pub two_fold: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Scan once and exit (the only mode; `draco run` scans on a schedule).
    #[arg(long)]
    pub once: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Scan once right away instead of waiting for the first scheduled time.
    #[arg(long)]
    pub scan_on_start: bool,
}

#[derive(Debug, Args)]
pub struct FindingsArgs {
    #[command(flatten)]
    pub output: OutputArgs,
    /// Only findings with this status (open, awaiting_approval, approved, rejected, resolved).
    #[arg(long)]
    pub status: Option<String>,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Finding id, as listed by `draco findings`.
    pub id: FindingId,
    /// Also write the cost finding's chart (its series over the last 90 days,
    /// the band the model took for normal, the anomalous days marked) to
    /// this file as SVG.
    #[arg(long, value_name = "FILE")]
    pub chart: Option<PathBuf>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// Finding id, as listed by `draco findings`.
    pub id: FindingId,
    /// Who approves (recorded in the audit log and the merge commit).
    #[arg(long = "as", value_name = "NAME")]
    pub approver: String,
}

#[derive(Debug, Args)]
pub struct RejectArgs {
    /// Finding id, as listed by `draco findings`.
    pub id: FindingId,
    /// Who rejects (recorded in the audit log).
    #[arg(long = "as", value_name = "NAME")]
    pub approver: String,
    /// Why (recorded in the audit log).
    #[arg(long)]
    pub reason: String,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["finding", "all"])))]
pub struct PurgeArgs {
    /// The finding to purge, as listed by `draco findings`: its row,
    /// evidence, proposal, change request (branch and objects; a GitHub
    /// pull request is closed and blanked), votes, asks, cached advice,
    /// webhook deliveries naming it, and its audit events' payloads
    /// (replaced by tombstones; the chain still verifies).
    #[arg(long, value_name = "ID")]
    pub finding: Option<FindingId>,
    /// With --finding: also purge the findings that share its change
    /// request (`gitops.group = "kind-account-region"`).
    #[arg(long, requires = "finding")]
    pub with_group: bool,
    /// Purge everything but the audit chain's tombstones and the keys.
    /// Needs --yes.
    #[arg(long)]
    pub all: bool,
    /// Confirms --all.
    #[arg(long, requires = "all")]
    pub yes: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print it resolved, secrets masked.
    Check {
        /// Also check access to the configured services with one read call
        /// each (GitHub: the repository). Offline by default.
        #[arg(long)]
        online: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Re-seal every secret stored in the database under a new master key,
    /// in one transaction. The current key comes from DRACO_MASTER_KEY or
    /// secrets.key_file (or the data directory's master.key); a wrong one
    /// changes nothing.
    Rotate(RotateArgs),
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The new key's file: read when it exists (32 bytes as base64 or hex),
    /// otherwise a new random key is written there (0600). Then point
    /// DRACO_MASTER_KEY or secrets.key_file at it on every replica. Without
    /// it, the data directory's master.key is replaced (SQLite with no
    /// configured key only).
    #[arg(long, value_name = "PATH")]
    pub new_key_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the audit log's hash chain.
    Verify,
}
