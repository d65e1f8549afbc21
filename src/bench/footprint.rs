//! `draco bench footprint`: what running Draco costs an operator, measured
//! on the real binary as child processes. Linux only (it reads `/proc` and
//! reaps children with `wait4`).
//!
//! - **Idle memory**: `VmRSS` and `VmHWM` of `draco run` after scans of the
//!   demo set, by [`super::idle::measure`] (the same code as
//!   `draco bench idle`).
//! - **Binary size**: the executable's length, in bytes.
//! - **Start-up**: from spawning `draco run` on a fresh data directory (so
//!   the database is created and migrated) to its first `200` on
//!   `GET /readyz`, polled every 5 ms over loopback.
//! - **A large scan**: a generated estate (accounts × regions × instances,
//!   by [`super::estate::write_estate`], with its daily cost series by
//!   [`super::estate::write_costs`]) written as fixture files, scanned by
//!   one `draco scan --once` child: its wall time and its peak resident
//!   memory (`ru_maxrss` from `wait4(2)`: the largest of Draco and the git
//!   processes it waited for).
//!
//! Nothing leaves the machine: every child gets only the settings written
//! here (fixtures, SQLite and the local change-request repository in a
//! scratch directory, the template advisor, the server on loopback).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::estate::{self, CostSpec, EstateSpec};
use super::idle::{self, IdleReport, IdleSettings};
use crate::sources::fixtures::FixtureSet;

/// A schedule that never fires while a start-up is measured (midnight on
/// the first of January).
const NEVER_SOON: &str = "0 0 0 1 1 *";

/// How long a start-up may take before it is reported as failed, seconds.
const START_LIMIT_SECS: u64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum FootprintError {
    #[error("`draco bench footprint` reads /proc and reaps children with wait4: it needs Linux")]
    Unsupported,
    #[error("cannot prepare the scratch directory: {0}")]
    Setup(std::io::Error),
    #[error("cannot read the size of {exe}: {source}")]
    Size { exe: String, source: std::io::Error },
    #[error("the idle measurement failed: {0}")]
    Idle(#[from] idle::IdleError),
    #[error("cannot generate the estate: {0}")]
    Estate(#[from] estate::EstateError),
    #[error("cannot start {exe}: {source}")]
    Spawn { exe: String, source: std::io::Error },
    #[error("`draco run` was not ready on {addr} within {waited_secs} s{}", exited.as_ref().map(|s| format!(" (it exited: {s})")).unwrap_or_default())]
    NotReady {
        addr: SocketAddr,
        waited_secs: u64,
        exited: Option<String>,
    },
    #[error("waiting for the scan child failed: {0}")]
    Wait(std::io::Error),
    #[error(
        "`draco scan --once` on the generated estate failed ({status}); its last output:\n{log}"
    )]
    Scan { status: String, log: String },
}

/// What to measure, and on how large an estate.
#[derive(Debug, Clone, Serialize)]
pub struct FootprintSettings {
    /// The `draco` executable measured.
    pub exe: PathBuf,
    /// Scans of the demo set the idle daemon runs; memory is read after each.
    pub idle_scans: usize,
    /// Start-ups measured; the median is reported.
    pub starts: usize,
    /// The generated estate (posture inventory).
    pub estate: EstateSpec,
    /// Daily cost series of the generated estate.
    pub cost_series: usize,
    /// Days per cost series.
    pub cost_days: usize,
}

/// The idle daemon's figures, in megabytes (10^6 bytes).
#[derive(Debug, Clone, Serialize)]
pub struct IdleFigures {
    pub scans: usize,
    /// Largest `VmRSS` after a scan, MB.
    pub rss_mb: f64,
    /// `VmHWM` (peak RSS over the daemon's life, scans included), MB.
    pub peak_mb: f64,
    /// The target for an idle daemon, MB.
    pub target_mb: f64,
    pub target_met: bool,
}

/// One scan of the generated estate.
#[derive(Debug, Clone, Serialize)]
pub struct ScanFigures {
    pub accounts: usize,
    pub regions: usize,
    pub instances_per_region: usize,
    /// Resources in the inventory files (instances, volumes, security groups).
    pub resources: usize,
    pub cost_series: usize,
    pub cost_days: usize,
    /// Rows of `cost.csv`.
    pub cost_rows: usize,
    /// Size of the fixture files written, bytes.
    pub fixture_bytes: u64,
    /// Findings the scan reported.
    pub findings: Option<u64>,
    /// Wall time of `draco scan --once`, seconds.
    pub seconds: f64,
    /// Peak resident memory of the scan (`ru_maxrss`), MB.
    pub peak_mb: f64,
}

/// The report, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct FootprintReport {
    pub version: &'static str,
    /// Whether the measured executable was built with optimisations
    /// (`cargo build --release`); debug figures are not the product's.
    pub release_build: bool,
    /// Size of the executable, bytes.
    pub binary_bytes: u64,
    pub idle: IdleFigures,
    /// Each start-up to the first `/readyz` 200, seconds.
    pub startup_secs: Vec<f64>,
    /// Their median, seconds.
    pub startup_median_secs: f64,
    pub scan: ScanFigures,
}

/// Runs every measurement in turn.
///
/// # Errors
/// [`FootprintError::Unsupported`] off Linux; otherwise when a scratch
/// directory cannot be written, a child cannot start, `draco run` is not
/// ready within a minute, or the scan fails. Children are killed on every
/// error (and die with this process: `PR_SET_PDEATHSIG`).
pub fn measure(settings: &FootprintSettings) -> Result<FootprintReport, FootprintError> {
    if !cfg!(target_os = "linux") {
        return Err(FootprintError::Unsupported);
    }
    let binary_bytes = std::fs::metadata(&settings.exe)
        .map_err(|source| FootprintError::Size {
            exe: settings.exe.display().to_string(),
            source,
        })?
        .len();
    let idle = idle_figures(&idle::measure(&IdleSettings {
        exe: settings.exe.clone(),
        scans: settings.idle_scans,
        interval_secs: 3,
        settle: Duration::from_millis(1500),
    })?);
    let mut startup_secs = Vec::with_capacity(settings.starts);
    for _ in 0..settings.starts {
        startup_secs.push(startup(&settings.exe)?);
    }
    let startup_median_secs = median(&startup_secs);
    let scan = large_scan(settings)?;
    Ok(FootprintReport {
        version: env!("CARGO_PKG_VERSION"),
        release_build: !cfg!(debug_assertions),
        binary_bytes,
        idle,
        startup_secs,
        startup_median_secs,
        scan,
    })
}

fn idle_figures(report: &IdleReport) -> IdleFigures {
    IdleFigures {
        scans: report.scans,
        rss_mb: report.max_mb,
        peak_mb: report.peak_mb,
        target_mb: report.target_mb,
        target_met: report.meets_target(),
    }
}

/// The middle value (the mean of the two middle ones for an even count);
/// 0 for none.
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// A loopback port free now (the kernel's pick, released for the child).
fn free_loopback_port() -> std::io::Result<SocketAddr> {
    std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// Seconds from spawning `draco run` on a fresh data directory to its
/// first `200` on `/readyz`; the daemon is then stopped.
fn startup(exe: &Path) -> Result<f64, FootprintError> {
    let scratch = tempfile::Builder::new()
        .prefix("draco-bench-footprint-")
        .tempdir()
        .map_err(FootprintError::Setup)?;
    let fixtures = scratch.path().join("fixtures");
    FixtureSet::write_demo(&fixtures).map_err(FootprintError::Setup)?;
    let addr = free_loopback_port().map_err(FootprintError::Setup)?;
    let config = idle::write_config(scratch.path(), &fixtures, NEVER_SOON, &addr.to_string())
        .map_err(FootprintError::Setup)?;
    let mut command = idle::draco_command(exe, &config, &scratch.path().join("data"));
    command
        .arg("run")
        .env("DRACO_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let started = Instant::now();
    let mut child = command.spawn().map_err(|source| FootprintError::Spawn {
        exe: exe.display().to_string(),
        source,
    })?;
    let limit = Duration::from_secs(START_LIMIT_SECS);
    let outcome = loop {
        if ready(addr) {
            break Ok(started.elapsed().as_secs_f64());
        }
        let exited = child.try_wait().ok().flatten().map(|s| s.to_string());
        if exited.is_some() || started.elapsed() > limit {
            break Err(FootprintError::NotReady {
                addr,
                waited_secs: START_LIMIT_SECS,
                exited,
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    stop(&mut child);
    outcome
}

/// Whether `GET /readyz` on `addr` answers `200` (HTTP/1.1 over a plain
/// socket: the status line is all that is read).
fn ready(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

/// SIGTERM, then SIGKILL after 10 s; the child is reaped.
fn stop(child: &mut std::process::Child) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) on a child this process spawned and has not
        // reaped yet (so its pid cannot have been reused).
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Writes the large estate and times one `draco scan --once` of it.
fn large_scan(settings: &FootprintSettings) -> Result<ScanFigures, FootprintError> {
    let scratch = tempfile::Builder::new()
        .prefix("draco-bench-footprint-")
        .tempdir()
        .map_err(FootprintError::Setup)?;
    let fixtures = scratch.path().join("fixtures");
    std::fs::create_dir_all(&fixtures).map_err(FootprintError::Setup)?;
    let resources = estate::write_estate(&settings.estate, &fixtures)?;
    let cost_rows = estate::write_costs(
        &CostSpec {
            accounts: settings.estate.accounts,
            series: settings.cost_series,
            days: settings.cost_days,
            last_day: chrono::Utc::now().date_naive() - chrono::Days::new(1),
            seed: settings.estate.seed,
        },
        &fixtures,
    )?;
    let fixture_bytes = tree_bytes(&fixtures);
    let config = idle::write_config(scratch.path(), &fixtures, NEVER_SOON, "127.0.0.1:0")
        .map_err(FootprintError::Setup)?;
    let mut command = idle::draco_command(&settings.exe, &config, &scratch.path().join("data"));
    let log = scratch.path().join("scan.log");
    let out = scratch.path().join("scan.json");
    let file = |path: &Path| std::fs::File::create(path).map_err(FootprintError::Setup);
    command
        .args(["scan", "--once", "--json"])
        .env("DRACO_LOG", "warn")
        .stdout(file(&out)?)
        .stderr(file(&log)?);
    let started = Instant::now();
    let child = command.spawn().map_err(|source| FootprintError::Spawn {
        exe: settings.exe.display().to_string(),
        source,
    })?;
    let (status, maxrss_kib) = wait_with_maxrss(child)?;
    let seconds = started.elapsed().as_secs_f64();
    if !status.success() {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        return Err(FootprintError::Scan {
            status: status.to_string(),
            log: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    let findings = std::fs::read(&out)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|report| report["scan"]["findings_detected"].as_u64());
    Ok(ScanFigures {
        accounts: settings.estate.accounts,
        regions: settings.estate.regions,
        instances_per_region: settings.estate.instances,
        resources,
        cost_series: settings.cost_series,
        cost_days: settings.cost_days,
        cost_rows,
        fixture_bytes,
        findings,
        seconds,
        peak_mb: maxrss_kib as f64 * 1024.0 / 1e6,
    })
}

/// Total size of the files under `dir`, bytes (0 for what cannot be read).
fn tree_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(m) if m.is_dir() => tree_bytes(&entry.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Waits for `child` with `wait4(2)`, returning its exit status and its
/// peak resident memory (`ru_maxrss`, KiB on Linux).
fn wait_with_maxrss(
    child: std::process::Child,
) -> Result<(std::process::ExitStatus, u64), FootprintError> {
    use std::os::unix::process::ExitStatusExt as _;
    let pid = libc::pid_t::try_from(child.id()).map_err(|_| {
        FootprintError::Wait(std::io::Error::other("the child's pid does not fit pid_t"))
    })?;
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is plain data that wait4 fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: wait4 on a child of this process that nothing else reaps
        // (`child` is dropped afterwards, which neither waits nor kills);
        // `status` and `usage` are valid for writes.
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if reaped == pid {
            break;
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(FootprintError::Wait(error));
        }
    }
    drop(child);
    Ok((
        std::process::ExitStatus::from_raw(status),
        u64::try_from(usage.ru_maxrss).unwrap_or(0),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_odd_even_and_no_values() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn the_start_up_schedule_is_a_valid_cron() {
        assert!(crate::config::parse_schedule(NEVER_SOON).is_ok());
    }
}
