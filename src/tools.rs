//! Commands that keep no state: `detect`, `redact` and the benchmarks. They
//! read files or standard input and print; no data directory is touched
//! (`bench idle` runs the daemon on a scratch one it removes).

use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context as _, Result};

use crate::bench::redact::{
    CredentialReport, QualityReport, evaluate, evaluate_credentials, load_presidio,
};
use crate::bench::{redact_corpus, redact_speed};
use crate::cli::{
    CostBenchArgs, DetectArgs, EstateBenchArgs, FootprintBenchArgs, IdleBenchArgs, NabArgs,
    RedactArgs, RedactBenchArgs, UsageError,
};
use crate::config;
use crate::redact::{Redactor, StreamError, StreamOutput, Vault};

/// `draco detect … | head` closes the pipe early: that is not a failure.
fn ignore_broken_pipe(result: Result<()>) -> Result<()> {
    match result {
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        other => other,
    }
}

pub fn detect_command(args: &DetectArgs) -> Result<()> {
    ignore_broken_pipe(write_detections(args))
}

/// The threshold NAB's standard profile picks for the streaming detector.
const STREAM_THRESHOLD: f64 = crate::detect::stream::DEFAULT_THRESHOLD;

/// Median steps from 23 to 25 hours are daily data (a daylight-saving day
/// in local-time exports is 23 or 25 hours long).
const DAILY_STEP_SECONDS: std::ops::RangeInclusive<f64> = 82_800.0..=90_000.0;

fn write_detections(args: &DetectArgs) -> Result<()> {
    use crate::cli::DetectModel;
    let series = crate::detect::series_csv::read(&args.input)?;
    if let Some(warning) = series.out_of_order_warning() {
        eprintln!("warning: {}: {warning}", args.input.display());
    }
    let timestamps = series.timestamps();
    let daily = match args.model {
        DetectModel::Daily => true,
        DetectModel::Stream => false,
        DetectModel::Auto => crate::detect::series_csv::median_step_seconds(&timestamps)
            .is_some_and(|step| DAILY_STEP_SECONDS.contains(&step)),
    };
    let threshold = args.threshold.unwrap_or(if daily {
        crate::detect::cost::DAILY_FLAG_SCORE
    } else {
        STREAM_THRESHOLD
    });
    if !(0.0..=1.0).contains(&threshold) {
        return Err(UsageError(format!("--threshold {threshold} is not in [0, 1]")).into());
    }
    let scores: Vec<f64> = if daily {
        if args.model == DetectModel::Auto {
            eprintln!(
                "note: {}: one value a day, scored with the daily cost model (--model stream for the streaming detector)",
                args.input.display()
            );
        }
        let days: Vec<_> = series
            .rows
            .iter()
            .map(|row| (row.at.date(), row.value))
            .collect();
        crate::detect::cost::score_daily(&days, &crate::detect::cost::CostConfig::default())
            .into_iter()
            .map(|s| s.score)
            .collect()
    } else {
        crate::detect::stream::score_at(
            &timestamps,
            &series.values(),
            &crate::detect::stream::StreamConfig::default(),
        )
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    writeln!(out, "timestamp,value,score,anomaly")?;
    for (row, s) in series.rows.iter().zip(&scores) {
        writeln!(
            out,
            "{},{},{s:.6},{}",
            csv_field(&row.raw_timestamp),
            row.value,
            u8::from(*s >= threshold)
        )?;
    }
    out.flush()?;
    Ok(())
}

/// A field for CSV output: quoted (quotes doubled) only when it holds a
/// separator, a quote or a line break, so the usual timestamp is echoed as is.
fn csv_field(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\"")).into()
    } else {
        text.into()
    }
}

pub fn cost_bench_command(args: &CostBenchArgs) -> Result<()> {
    if args.days < 90 || args.series == 0 || (args.events_series > 0 && args.events_days < 90) {
        return Err(UsageError(
            "`draco bench cost` needs --series ≥ 1, --days ≥ 90 and --events-days ≥ 90".into(),
        )
        .into());
    }
    let config = crate::detect::cost::CostConfig::default();
    let data = crate::bench::cost::generate(args.seed, args.series, args.days);
    let mut report = crate::bench::cost::evaluate(&data, &config, args.seed);
    if args.events_series > 0 {
        let multi = crate::bench::cost::multi::generate_multi(
            args.seed,
            args.events_series,
            args.events_days,
        );
        report.several_events = Some(crate::bench::cost::evaluate_multi(
            &multi, &config, args.seed,
        ));
    }
    if args.output.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "Synthetic cost, seed {}: {} series × {} days ({} points)",
        report.seed, report.series, report.days, report.points
    );
    println!(
        "{:<18} {:>8} {:>8} {:>6} {:>10} {:>8} {:>6} {:>14}",
        "TYPE", "PLANTED", "FOUND", "FP", "PRECISION", "RECALL", "F1", "DAYS TO DETECT"
    );
    for t in &report.by_type {
        println!(
            "{:<18} {:>8} {:>8} {:>6} {:>10.3} {:>8.3} {:>6.3} {:>14}",
            t.kind,
            t.planted,
            t.detected,
            t.false_positives,
            t.precision,
            t.recall,
            t.f1,
            t.mean_days_to_detect
                .map_or_else(|| "-".to_owned(), |d| format!("{d:.2}"))
        );
    }
    println!("F1 overall: {:.3}", report.overall_f1);
    println!(
        "False alarms per 100 series-months: {:.2}",
        report.false_alarms_per_100_series_months
    );
    if let Some(multi) = &report.several_events {
        print!("\n{}", crate::bench::cost::render_multi(multi));
    }
    Ok(())
}

pub fn nab_command(args: &NabArgs) -> Result<()> {
    let timestamps = !args.no_timestamps;
    if args.two_fold {
        return two_fold_command(args, timestamps);
    }
    let report = crate::bench::run_nab(
        &args.data,
        &crate::detect::stream::StreamConfig::default(),
        timestamps,
    )?;
    if report.out_of_order_rows > 0 {
        eprintln!(
            "warning: {} rows in {} files repeat or go back in time; scored in file order",
            report.out_of_order_rows, report.out_of_order_files
        );
    }
    if args.output.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "NAB corpus {}: {} files, {} rows, {} windows, {}; detector {:.0} rows/s",
        args.data.display(),
        report.files,
        report.rows,
        report.windows,
        if timestamps {
            "with timestamps"
        } else {
            "values only (--no-timestamps)"
        },
        report.rows as f64 / report.seconds.max(1e-9)
    );
    println!(
        "{:<20} {:>10} {:>10} {:>10}",
        "PROFILE", "THRESHOLD", "RAW", "SCORE"
    );
    for p in &report.profiles {
        println!(
            "{:<20} {:>10.4} {:>10.3} {:>10.1}",
            p.profile, p.threshold, p.raw, p.normalized
        );
    }
    if let Some(standard) = report.profiles.iter().find(|p| p.profile == "standard") {
        println!("NAB standard: {:.1}", standard.normalized);
    }
    Ok(())
}

/// `draco bench nab --two-fold`: what the score owes to tuning on the files scored.
fn two_fold_command(args: &NabArgs, timestamps: bool) -> Result<()> {
    use crate::bench::nab;
    let corpus = nab::load_corpus(&args.data)?;
    let grid = nab::tuning_grid();
    let folds = nab::two_fold(&corpus, &grid, timestamps);
    if args.output.json {
        println!("{}", serde_json::to_string_pretty(&folds)?);
        return Ok(());
    }
    println!(
        "Two-fold check on {}: {} files, {} settings, standard profile, {}",
        args.data.display(),
        corpus.len(),
        grid.len(),
        if timestamps {
            "with timestamps"
        } else {
            "values only"
        }
    );
    println!(
        "{:<10} {:>8} {:>9} {:>7} {:>18} {:>20}",
        "TUNED ON", "SETTING", "DEFAULTS", "TUNED", "HELD OUT (OWN θ)", "HELD OUT (TUNED θ)"
    );
    for f in &folds {
        println!(
            "{:<10} {:>8} {:>9} {:>7.1} {:>18.1} {:>20.1}",
            f.tuned_on,
            f.setting,
            if f.shipped_defaults_chosen {
                "yes"
            } else {
                "no"
            },
            f.tuned_score,
            f.held_out_rechosen,
            f.held_out_training_threshold
        );
    }
    Ok(())
}

/// `draco redact`: standard input to standard output, with the operator's
/// person keys from the configuration when there is one. Streams in
/// bounded memory (`Redactor::redact_stream`); nothing is restored, so the
/// vault keeps no values, only their numbering.
pub fn redact_command(config_path: Option<&Path>, args: &RedactArgs) -> Result<()> {
    let env = config::process_environment()?;
    let loaded = config::load(config_path, &env)?;
    let redactor = Redactor::new(&loaded.config.redact.person_tag_keys);
    let what = if args.spans {
        StreamOutput::Spans
    } else {
        StreamOutput::Text
    };
    let stdout = std::io::stdout();
    let written = redactor
        .redact_stream(
            std::io::stdin().lock(),
            BufWriter::new(stdout.lock()),
            what,
            &mut Vault::numbering_only(),
        )
        .map_err(|e| match e {
            // Kept an I/O error, so that a closed pipe is recognised.
            StreamError::Io(io) => anyhow::Error::from(io),
            StreamError::NotUtf8 { .. } => {
                anyhow::Error::from(e).context("cannot read standard input as UTF-8 text")
            }
            other => other.into(),
        });
    ignore_broken_pipe(written)
}

#[derive(serde::Serialize)]
struct RedactBenchReport {
    own: QualityReport,
    presidio: Option<QualityReport>,
    credentials: CredentialReport,
    throughput: redact_speed::Throughput,
    adversarial: Vec<redact_speed::Adversarial>,
}

pub fn redact_bench_command(args: &RedactBenchArgs) -> Result<()> {
    if args.corpus_mib == 0 || args.throughput_mib == 0 {
        return Err(
            UsageError("--corpus-mib and --throughput-mib must be at least 1".into()).into(),
        );
    }
    let redactor = Redactor::default();
    let own_doc = redact_corpus::generate(1, args.corpus_mib * 1024 * 1024);
    let own = evaluate(
        &redactor,
        &format!("own corpus (seed 1, {} MiB)", args.corpus_mib),
        std::slice::from_ref(&own_doc),
    );
    let presidio = if args.presidio.exists() {
        let docs = load_presidio(&args.presidio)
            .with_context(|| format!("cannot read {}", args.presidio.display()))?;
        Some(evaluate(&redactor, "presidio synth_dataset_v2", &docs))
    } else {
        eprintln!(
            "{} not found: presidio corpus skipped",
            args.presidio.display()
        );
        None
    };
    let credentials = evaluate_credentials(&redactor, 1, 200);
    let throughput = redact_speed::throughput(&redactor, args.throughput_mib);
    let adversarial = if args.no_adversarial {
        Vec::new()
    } else {
        redact_speed::adversarial(&redactor)
    };
    let report = RedactBenchReport {
        own,
        presidio,
        credentials,
        throughput,
        adversarial,
    };
    if args.output.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    print_quality(&report.own);
    if let Some(p) = &report.presidio {
        print_quality(p);
    }
    print!("\n{}", report.credentials);
    let t = &report.throughput;
    println!(
        "\nThroughput on {:.1} MB of mixed text ({:.2}% personal bytes), one core: spans {:.0} MB/s, redacted text {:.0} MB/s as one string, {:.0} MB/s streamed (`draco redact`)",
        t.bytes as f64 / 1e6,
        t.labelled_fraction * 100.0,
        t.spans_mb_per_s,
        t.redact_text_mb_per_s,
        t.redact_stream_mb_per_s
    );
    if !report.adversarial.is_empty() {
        println!("\nAdversarial inputs (10 MiB each):");
        for a in &report.adversarial {
            println!("  {:<20} {:>8.1} ms  {} spans", a.name, a.ms, a.spans);
        }
        let worst = report.adversarial.iter().map(|a| a.ms).fold(0.0, f64::max);
        println!("  slowest: {worst:.0} ms");
    }
    Ok(())
}

/// `draco bench idle`: runs this same executable as the daemon.
pub fn idle_bench_command(args: &IdleBenchArgs) -> Result<()> {
    use crate::bench::idle;
    if args.scans == 0 || !(1..=59).contains(&args.interval_secs) {
        return Err(UsageError(
            "`draco bench idle` needs --scans ≥ 1 and --interval-secs from 1 to 59".into(),
        )
        .into());
    }
    if args.settle_ms >= args.interval_secs * 1000 {
        return Err(UsageError(
            "--settle-ms must be shorter than --interval-secs, or the next scan is sampled".into(),
        )
        .into());
    }
    let settings = idle::IdleSettings {
        exe: std::env::current_exe().context("cannot find this executable to run as the daemon")?,
        scans: args.scans,
        interval_secs: args.interval_secs,
        settle: std::time::Duration::from_millis(args.settle_ms),
    };
    let report = idle::measure(&settings)?;
    if args.output.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "Idle `draco run` on the demo data: {} scans, one every {} s, memory read {:.1} s after each",
        report.scans, report.interval_secs, report.settle_secs
    );
    println!("{:>6} {:>10} {:>10}", "SCAN", "RSS MB", "PEAK MB");
    for s in &report.samples {
        println!(
            "{:>6} {:>10.1} {:>10.1}",
            s.scan,
            s.rss_kib as f64 * 1024.0 / 1e6,
            s.peak_kib as f64 * 1024.0 / 1e6
        );
    }
    println!(
        "Idle RSS: {:.1} MB after the first scan, {:.1} MB after the last, {:.1} MB at most (target < {:.0} MB: {})",
        report.first_mb,
        report.last_mb,
        report.max_mb,
        report.target_mb,
        if report.meets_target() {
            "met"
        } else {
            "NOT met"
        }
    );
    if report.scans >= 4 {
        println!(
            "Growth after the first scan: {:+.1} KiB per scan; peak while scanning {:.1} MB",
            report.slope_kib_per_scan, report.peak_mb
        );
    } else {
        println!(
            "Growth: too few scans to tell (--scans 20 or more); peak while scanning {:.1} MB",
            report.peak_mb
        );
    }
    println!(
        "SIGTERM to exit: {:.2} s ({})",
        report.shutdown_secs,
        if report.clean_exit {
            "exit status 0"
        } else {
            "did not exit cleanly"
        }
    );
    Ok(())
}

/// `draco bench footprint`: idle memory, binary size, start-up time and one
/// large scan, each on this same executable run as a child (see
/// [`crate::bench::footprint`]).
pub fn footprint_bench_command(args: &FootprintBenchArgs) -> Result<()> {
    use crate::bench::{estate::EstateSpec, footprint};
    if args.idle_scans == 0 || args.starts == 0 || args.accounts == 0 || args.instances == 0 {
        return Err(UsageError(
            "--idle-scans, --starts, --accounts and --instances must be at least 1".into(),
        )
        .into());
    }
    if !(1..=crate::bench::AWS_REGIONS.len()).contains(&args.regions) {
        return Err(UsageError(format!(
            "--regions is from 1 to {}",
            crate::bench::AWS_REGIONS.len()
        ))
        .into());
    }
    if !(0.0..=100.0).contains(&args.bad_percent) {
        return Err(UsageError("--bad-percent is from 0 to 100".into()).into());
    }
    let settings = footprint::FootprintSettings {
        exe: std::env::current_exe().context("cannot find this executable to measure")?,
        idle_scans: args.idle_scans,
        starts: args.starts,
        estate: EstateSpec {
            accounts: args.accounts,
            regions: args.regions,
            instances: args.instances,
            bad_percent: args.bad_percent,
            seed: args.seed,
        },
        cost_series: args.cost_series,
        cost_days: args.cost_days,
    };
    let report = footprint::measure(&settings)?;
    if args.output.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let mb = |bytes: u64| bytes as f64 / 1e6;
    println!(
        "Footprint of draco {} ({})",
        report.version,
        if report.release_build {
            "release build"
        } else {
            "debug build: not the product's figures"
        }
    );
    println!(
        "Binary: {} bytes ({:.1} MB)",
        report.binary_bytes,
        mb(report.binary_bytes)
    );
    println!(
        "Idle `draco run` after {} scans of the demo set: RSS {:.1} MB (target < {:.0} MB: {}), peak {:.1} MB",
        report.idle.scans,
        report.idle.rss_mb,
        report.idle.target_mb,
        if report.idle.target_met {
            "met"
        } else {
            "NOT met"
        },
        report.idle.peak_mb
    );
    println!(
        "Start-up to /readyz 200 on a fresh data directory: {:.3} s median of {} ({})",
        report.startup_median_secs,
        report.startup_secs.len(),
        report
            .startup_secs
            .iter()
            .map(|s| format!("{s:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let s = &report.scan;
    println!(
        "One scan of {} accounts × {} regions × {} instances ({} resources) and {} cost series × {} days ({} rows, {:.1} MB of fixtures): {:.1} s, peak RSS {:.1} MB, {} findings",
        s.accounts,
        s.regions,
        s.instances_per_region,
        s.resources,
        s.cost_series,
        s.cost_days,
        s.cost_rows,
        mb(s.fixture_bytes),
        s.seconds,
        s.peak_mb,
        s.findings.map_or_else(|| "?".to_owned(), |n| n.to_string())
    );
    Ok(())
}

fn print_quality(r: &QualityReport) {
    print!("\n{r}");
}

/// `draco bench estate`: scans of a generated estate until every finding
/// has its change request (see [`crate::bench::estate`]).
/// `draco bench store`: finding upserts and audit appends per second on a
/// fresh SQLite database in a scratch directory, or (`--postgres URL`) a
/// scratch database created on that PostgreSQL server and dropped after.
pub async fn store_bench_command(args: &crate::cli::StoreBenchArgs) -> Result<()> {
    use crate::store::{DatabaseLocation, DatabaseStore, PostgresStore, ScratchDatabase};
    if args.findings == 0 || args.audit_events == 0 {
        return Err(UsageError("--findings and --audit-events must be at least 1".into()).into());
    }
    let scratch = tempfile::tempdir().context("cannot create a scratch directory")?;
    let report = match &args.postgres {
        None => {
            let store = crate::store::SqliteStore::open(&scratch.path().join("draco.db")).await?;
            let report =
                crate::bench::store::measure(&store, args.findings, args.audit_events).await;
            store.close().await;
            report?
        }
        Some(server) => {
            let password = std::env::var("DRACO_DATABASE_PASSWORD")
                .ok()
                .map(secrecy::SecretString::from);
            let DatabaseLocation::Postgres(server) =
                DatabaseLocation::resolve(Some(server), password, scratch.path())
                    .map_err(|e| UsageError(format!("--postgres: {e}")))?
            else {
                return Err(UsageError("--postgres takes a postgres:// URL".into()).into());
            };
            let database = ScratchDatabase::create(&server, "draco_bench").await?;
            let store = PostgresStore::connect(database.url()).await?;
            let report =
                crate::bench::store::measure(&store, args.findings, args.audit_events).await;
            DatabaseStore::close(&store).await;
            report?
        }
    };
    if args.output.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "Store ({}): {} findings: {:.0} inserts/s, {:.0} updates/s (one scan each); {} audit events: {:.0} appends/s (one transaction each). Target: 2,000 upserts/s.",
        report.backend,
        report.findings,
        report.inserts_per_sec,
        report.updates_per_sec,
        report.audit_events,
        report.audit_appends_per_sec
    );
    Ok(())
}

pub async fn estate_bench_command(args: &EstateBenchArgs) -> Result<()> {
    use crate::bench::estate;
    use crate::gitops::config::Grouping;
    let group = match args.group.as_str() {
        "finding" => Grouping::Finding,
        "kind-account-region" => Grouping::KindAccountRegion,
        other => {
            return Err(UsageError(format!(
                "--group is `finding` or `kind-account-region`, not `{}`",
                crate::domain::neutralise(other)
            ))
            .into());
        }
    };
    if args.accounts == 0 || args.instances == 0 || args.max_new_per_scan == 0 {
        return Err(UsageError(
            "--accounts, --instances and --max-new-per-scan must be at least 1".into(),
        )
        .into());
    }
    if !(0.0..=100.0).contains(&args.bad_percent) {
        return Err(UsageError("--bad-percent is from 0 to 100".into()).into());
    }
    let spec = estate::EstateSpec {
        accounts: args.accounts,
        regions: args.regions,
        instances: args.instances,
        bad_percent: args.bad_percent,
        seed: args.seed,
    };
    let scratch = tempfile::tempdir().context("cannot create a scratch directory")?;
    let report = estate::measure(
        &spec,
        scratch.path(),
        group,
        args.max_new_per_scan,
        args.max_scans,
    )
    .await?;
    if args.output.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "Estate: {} accounts × {} regions × {} instances, {}% bad (seed {}): {} resources; gitops.max_new_per_scan = {}, gitops.group = {}",
        spec.accounts,
        spec.regions,
        spec.instances,
        spec.bad_percent,
        spec.seed,
        report.resources,
        report.max_new_per_scan,
        args.group
    );
    println!(
        "{:>5} {:>9} {:>9} {:>12} {:>9} {:>8}",
        "SCAN", "SECONDS", "FINDINGS", "GIVEN A CR", "NEW CRS", "QUEUED"
    );
    for s in &report.scans {
        println!(
            "{:>5} {:>9.2} {:>9} {:>12} {:>9} {:>8}",
            s.scan,
            s.seconds,
            s.findings_detected,
            s.findings_given_change_requests,
            s.change_requests,
            s.queued
        );
    }
    let total: f64 = report.scans.iter().map(|s| s.seconds).sum();
    let given: usize = report
        .scans
        .iter()
        .map(|s| s.findings_given_change_requests)
        .sum();
    match report.rescan_seconds {
        Some(rescan) => println!(
            "Every finding has its change request after {} scans, {total:.1} s in all ({:.1} ms per finding); a re-scan with nothing new: {rescan:.2} s",
            report.scans.len(),
            1000.0 * total / given.max(1) as f64
        ),
        None => println!(
            "Still queued after {} scans ({total:.1} s): raise --max-scans or --max-new-per-scan",
            report.scans.len()
        ),
    }
    Ok(())
}
