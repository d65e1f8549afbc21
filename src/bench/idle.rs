//! `draco bench idle`: the resident memory of an idle `draco run` between
//! scans of the demo data, and whether it grows from one scan to the next.
//!
//! The daemon sleeps for hours between scans, so what it holds while idle is
//! what an operator pays for. This runs the real binary as a child process
//! (a fresh data directory, the built-in demo fixtures on disk, the HTTP
//! server on a loopback port the kernel picks, a schedule firing every few
//! seconds), waits for each `scan finished` log line, lets the daemon settle
//! and reads `VmRSS` from `/proc/<pid>/status` (proc(5)). Linux only.
//!
//! Nothing leaves the machine: the child gets no `DRACO_*` variable from
//! the caller (so no model key or AWS source), only the settings written here.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::sources::fixtures::FixtureSet;

/// The target for an idle daemon after a demo scan, in megabytes
/// (10^6 bytes).
pub const TARGET_MB: f64 = 30.0;

/// Log lines kept to explain a daemon that stopped early.
const LOG_TAIL_LINES: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum IdleError {
    #[error("`draco bench idle` reads /proc/<pid>/status and needs Linux")]
    Unsupported,
    #[error("cannot prepare the scratch data directory: {0}")]
    Setup(std::io::Error),
    #[error("cannot start {exe}: {source}")]
    Spawn { exe: String, source: std::io::Error },
    #[error(
        "no scan finished within {waited_secs} s (scan {scan} of {of}); the daemon's last log lines:\n{log}"
    )]
    NoScan {
        scan: usize,
        of: usize,
        waited_secs: u64,
        log: String,
    },
    #[error("cannot read the daemon's memory from {path}: {message}")]
    Proc { path: String, message: String },
    #[error("the daemon exited ({status}) during the benchmark; its last log lines:\n{log}")]
    DaemonExited { status: String, log: String },
    #[error("interrupted: the daemon was stopped and the scratch directory removed")]
    Interrupted,
}

/// Set by SIGINT, SIGTERM or SIGHUP (a closed terminal) while the benchmark runs, so that it stops its
/// daemon and removes its scratch directory instead of dying with both left.
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
}

fn catch_interrupts() {
    // SAFETY: `on_signal` only stores to an atomic, which is
    // async-signal-safe; the handler stays valid for the process lifetime.
    unsafe {
        for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::signal(signal, on_signal as *const () as libc::sighandler_t);
        }
    }
}

fn interrupted() -> bool {
    INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst)
}

/// What to run and how often to sample.
#[derive(Debug, Clone)]
pub struct IdleSettings {
    /// The `draco` executable to run as the daemon.
    pub exe: PathBuf,
    /// Scans to wait for; one sample after each.
    pub scans: usize,
    /// Seconds between scheduled scans (a six-field cron `*/N` on seconds,
    /// so 1 to 59).
    pub interval_secs: u64,
    /// How long after a scan's `scan finished` line the sample is taken.
    pub settle: Duration,
}

/// One sample: the daemon's memory after a scan, in kibibytes as proc(5)
/// reports them.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// 1 for the first scan.
    pub scan: usize,
    /// Resident set size (`VmRSS`), KiB.
    pub rss_kib: u64,
    /// Peak resident set size so far (`VmHWM`), KiB.
    pub peak_kib: u64,
}

/// The measurement. Sizes in megabytes (10^6 bytes).
#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    pub scans: usize,
    pub interval_secs: u64,
    pub settle_secs: f64,
    pub samples: Vec<Sample>,
    /// Idle RSS after the first scan (the demo scan), MB.
    pub first_mb: f64,
    /// Idle RSS after the last scan, MB.
    pub last_mb: f64,
    /// Largest idle RSS over all samples, MB.
    pub max_mb: f64,
    /// Peak RSS while scanning (`VmHWM` at the last sample), MB.
    pub peak_mb: f64,
    /// Least-squares slope of idle RSS over the scans after the first, KiB
    /// per scan: about 0 when memory stays flat.
    pub slope_kib_per_scan: f64,
    /// Seconds from SIGTERM to the daemon's exit.
    pub shutdown_secs: f64,
    /// Whether the daemon exited with status 0 after SIGTERM.
    pub clean_exit: bool,
    pub target_mb: f64,
    /// Whether `max_mb` is under `target_mb`.
    pub target_met: bool,
}

impl IdleReport {
    /// Whether the largest idle RSS is under [`TARGET_MB`].
    pub fn meets_target(&self) -> bool {
        self.target_met
    }
}

/// Runs the daemon, samples it after each of `settings.scans` scans, stops
/// it with SIGTERM and reports.
///
/// # Errors
/// [`IdleError::Unsupported`] off Linux; otherwise when the scratch
/// directory cannot be written, the daemon cannot start, a scan does not
/// finish within three intervals plus a minute, or `/proc` cannot be read.
/// The daemon is killed on every error.
pub fn measure(settings: &IdleSettings) -> Result<IdleReport, IdleError> {
    if !cfg!(target_os = "linux") {
        return Err(IdleError::Unsupported);
    }
    catch_interrupts();
    let scratch = tempfile::Builder::new()
        .prefix("draco-bench-idle-")
        .tempdir()
        .map_err(IdleError::Setup)?;
    let config = prepare(scratch.path(), settings.interval_secs).map_err(IdleError::Setup)?;
    let mut daemon = Daemon::start(settings, &config, &scratch.path().join("data"))?;
    let result = sample_scans(&mut daemon, settings);
    let (shutdown_secs, clean_exit) = daemon.stop();
    let samples = result?;
    Ok(summarise(settings, samples, shutdown_secs, clean_exit))
}

/// The demo fixtures and a config file under `root`; returns the config's path.
fn prepare(root: &Path, interval_secs: u64) -> std::io::Result<PathBuf> {
    let fixtures = root.join("fixtures");
    FixtureSet::write_demo(&fixtures)?;
    write_config(
        root,
        &fixtures,
        &format!("*/{interval_secs} * * * * *"),
        "127.0.0.1:0",
    )
}

/// A config file under `root` (`draco.toml`) selecting the fixtures in
/// `fixtures`, scanning on `schedule` (six-field cron) and serving on
/// `listen`; returns its path. Shared with `bench footprint`.
pub(crate) fn write_config(
    root: &Path,
    fixtures: &Path,
    schedule: &str,
    listen: &str,
) -> std::io::Result<PathBuf> {
    let config = root.join("draco.toml");
    let fixtures_dir = toml::Value::String(fixtures.display().to_string());
    let schedule = toml::Value::String(schedule.to_owned());
    let listen = toml::Value::String(listen.to_owned());
    std::fs::write(
        &config,
        format!(
            "schedule = {schedule}\n\
             [source]\nkind = \"fixtures\"\nfixtures_dir = {fixtures_dir}\n\
             [server]\nlisten = {listen}\nshutdown_grace_secs = 5\n"
        ),
    )?;
    Ok(config)
}

/// `exe --config <config> --data-dir <data_dir>` with none of the caller's
/// environment but `PATH`, `HOME` and `TMPDIR`, dying with this process
/// (Linux `PR_SET_PDEATHSIG`). The caller adds the command and its
/// arguments. Shared with `bench footprint`.
pub(crate) fn draco_command(exe: &Path, config: &Path, data_dir: &Path) -> Command {
    let mut command = Command::new(exe);
    // Nothing of the caller's environment but what a process needs:
    // no `DRACO_*` setting (a model key, an AWS source), no proxy, and
    // no allocator tuning that would change what is measured. `PATH`
    // for git (the change-request repository).
    command.env_clear();
    for kept in ["PATH", "HOME", "TMPDIR"] {
        if let Some(value) = std::env::var_os(kept) {
            command.env(kept, value);
        }
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt as _;
        // SAFETY: prctl(2) is async-signal-safe and touches no memory
        // of this process; the closure allocates nothing.
        unsafe {
            command.pre_exec(|| {
                // The child dies with the benchmark, however it ends.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
    }
    command
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data_dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    command
}

/// The child process, with its stderr read line by line on a thread.
struct Daemon {
    child: Child,
    finished: mpsc::Receiver<()>,
    tail: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<String>>>,
}

impl Daemon {
    fn start(settings: &IdleSettings, config: &Path, data_dir: &Path) -> Result<Self, IdleError> {
        let mut command = draco_command(&settings.exe, config, data_dir);
        command
            .args(["run", "--scan-on-start"])
            .env("DRACO_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|source| IdleError::Spawn {
            exe: settings.exe.display().to_string(),
            source,
        })?;
        let (sender, finished) = mpsc::channel();
        let tail = std::sync::Arc::new(std::sync::Mutex::new(std::collections::VecDeque::new()));
        if let Some(stderr) = child.stderr.take() {
            let tail = std::sync::Arc::clone(&tail);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if line.contains("scan finished") && sender.send(()).is_err() {
                        break;
                    }
                    if let Ok(mut tail) = tail.lock() {
                        if tail.len() == LOG_TAIL_LINES {
                            tail.pop_front();
                        }
                        tail.push_back(line);
                    }
                }
            });
        }
        Ok(Self {
            child,
            finished,
            tail,
        })
    }

    /// The error for a daemon that has exited, if it has.
    fn exited(&mut self) -> Option<IdleError> {
        let status = self.child.try_wait().ok()??;
        // Let the reader thread take the last lines.
        std::thread::sleep(Duration::from_millis(100));
        Some(IdleError::DaemonExited {
            status: status.to_string(),
            log: self.log_tail(),
        })
    }

    fn log_tail(&self) -> String {
        self.tail
            .lock()
            .map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }

    /// SIGTERM, then the time to exit (killed after 30 s).
    fn stop(mut self) -> (f64, bool) {
        let started = Instant::now();
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) with a pid this process spawned and has not
            // reaped yet (so it cannot have been reused).
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = started + Duration::from_secs(30);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return (started.elapsed().as_secs_f64(), status.success()),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return (started.elapsed().as_secs_f64(), false);
                }
            }
        }
    }
}

fn sample_scans(daemon: &mut Daemon, settings: &IdleSettings) -> Result<Vec<Sample>, IdleError> {
    let wait = Duration::from_secs(settings.interval_secs * 3 + 60);
    let status = PathBuf::from(format!("/proc/{}/status", daemon.child.id()));
    let mut samples = Vec::with_capacity(settings.scans);
    for scan in 1..=settings.scans {
        let started = Instant::now();
        loop {
            if interrupted() {
                return Err(IdleError::Interrupted);
            }
            match daemon.finished.recv_timeout(Duration::from_millis(200)) {
                Ok(()) => break,
                Err(mpsc::RecvTimeoutError::Timeout) if started.elapsed() < wait => {}
                Err(_) => {
                    if let Some(exited) = daemon.exited() {
                        return Err(exited);
                    }
                    return Err(IdleError::NoScan {
                        scan,
                        of: settings.scans,
                        waited_secs: wait.as_secs(),
                        log: daemon.log_tail(),
                    });
                }
            }
        }
        std::thread::sleep(settings.settle);
        if interrupted() {
            return Err(IdleError::Interrupted);
        }
        // A daemon that died leaves a zombie whose status has no memory lines.
        if let Some(exited) = daemon.exited() {
            return Err(exited);
        }
        let (rss_kib, peak_kib) = read_status(&status)?;
        samples.push(Sample {
            scan,
            rss_kib,
            peak_kib,
        });
    }
    Ok(samples)
}

/// `VmRSS` and `VmHWM` from a proc(5) status file, in KiB.
fn read_status(path: &Path) -> Result<(u64, u64), IdleError> {
    let error = |message: String| IdleError::Proc {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .ok_or_else(|| error(format!("no {name} line")))
    };
    Ok((field("VmRSS")?, field("VmHWM")?))
}

fn summarise(
    settings: &IdleSettings,
    samples: Vec<Sample>,
    shutdown_secs: f64,
    clean_exit: bool,
) -> IdleReport {
    let mb = |kib: u64| kib as f64 * 1024.0 / 1e6;
    let first = samples.first().map_or(0, |s| s.rss_kib);
    let last = samples.last().map_or(0, |s| s.rss_kib);
    let max = samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    let peak = samples.last().map_or(0, |s| s.peak_kib);
    // The first scan fills caches that later scans reuse; growth is judged
    // on the scans after it.
    let later: Vec<(f64, f64)> = samples
        .iter()
        .skip(1)
        .map(|s| (s.scan as f64, s.rss_kib as f64))
        .collect();
    IdleReport {
        scans: samples.len(),
        interval_secs: settings.interval_secs,
        settle_secs: settings.settle.as_secs_f64(),
        first_mb: mb(first),
        last_mb: mb(last),
        max_mb: mb(max),
        peak_mb: mb(peak),
        slope_kib_per_scan: slope(&later),
        shutdown_secs,
        clean_exit,
        target_mb: TARGET_MB,
        target_met: mb(max) < TARGET_MB,
        samples,
    }
}

/// Least-squares slope of `y` over `x`; 0 for fewer than two points.
fn slope(points: &[(f64, f64)]) -> f64 {
    if points.len() < 2 {
        return 0.0;
    }
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let (num, den) = points.iter().fold((0.0, 0.0), |(num, den), (x, y)| {
        (
            num + (x - mean_x) * (y - mean_y),
            den + (x - mean_x) * (x - mean_x),
        )
    });
    if den == 0.0 { 0.0 } else { num / den }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_is_zero_when_flat_and_follows_a_line() {
        assert_eq!(slope(&[(2.0, 100.0), (3.0, 100.0), (4.0, 100.0)]), 0.0);
        let s = slope(&[(2.0, 100.0), (3.0, 110.0), (4.0, 120.0)]);
        assert!((s - 10.0).abs() < 1e-9, "{s}");
        assert_eq!(slope(&[(1.0, 5.0)]), 0.0);
    }

    #[test]
    fn reads_rss_and_peak_from_a_proc_status_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status");
        std::fs::write(
            &path,
            "Name:\tdraco\nVmPeak:\t  900000 kB\nVmHWM:\t   41000 kB\nVmRSS:\t   28000 kB\n",
        )
        .unwrap();
        assert_eq!(read_status(&path).unwrap(), (28_000, 41_000));
        std::fs::write(&path, "Name:\tdraco\n").unwrap();
        let error = read_status(&path).unwrap_err().to_string();
        assert!(error.contains("no VmRSS line"), "{error}");
    }

    #[test]
    fn the_config_written_for_the_daemon_loads_and_selects_the_demo_fixtures() {
        let dir = tempfile::tempdir().unwrap();
        let config = prepare(dir.path(), 3).unwrap();
        assert!(dir.path().join("fixtures/cost.csv").is_file());
        let loaded = crate::config::load(Some(&config), &Default::default()).unwrap();
        assert_eq!(loaded.config.schedule, "*/3 * * * * *");
        assert!(crate::config::parse_schedule(&loaded.config.schedule).is_ok());
        match crate::config::selected_source(&loaded).unwrap() {
            Some(crate::config::SourceSelection::Fixtures(d)) => {
                assert_eq!(d, dir.path().join("fixtures"));
            }
            other => panic!("unexpected source {other:?}"),
        }
    }
}
