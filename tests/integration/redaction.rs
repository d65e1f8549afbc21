//! Nothing personal reaches an advisor: every request the pipeline hands to
//! one is captured and searched for the fixture's emails, IPs, account ids
//! and names.

use std::collections::BTreeSet;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::Utc;
use regex::Regex;
use serde_json::Value;

use draco::detect::DetectConfig;
use draco::gitops::local::LocalGit;
use draco::pipeline::Pipeline;
use draco::redact::{Redacted, Redactor};
use draco::remediate::templates::{Catalog, TemplateAdvisor};
use draco::remediate::{AdviceError, AdviceRequest, Advisor, Recommendation};
use draco::sources::fixtures::{FixtureSet, FixtureSource};
use draco::store::{ChangeRequestStore, ScanStore, SqliteStore};

use crate::support::demo_fixtures;

/// Records the exact JSON every request would be sent as, then answers like the template advisor.
struct Recording {
    inner: TemplateAdvisor,
    payloads: Mutex<Vec<String>>,
}

#[async_trait]
impl Advisor for Recording {
    fn name(&self) -> &str {
        "recording"
    }
    async fn recommend(
        &self,
        request: &Redacted<AdviceRequest>,
    ) -> Result<Recommendation, AdviceError> {
        let body = request.to_json()?.to_string();
        self.payloads.lock().map(|mut p| p.push(body)).ok();
        self.inner.recommend(request).await
    }
}

/// Every personal value planted in the demo fixtures, read from the files themselves.
fn planted_personal_values() -> BTreeSet<String> {
    let mut values = BTreeSet::new();
    let dir = demo_fixtures();
    let email = Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}").expect("regex");
    let ipv4 = Regex::new(r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b").expect("regex");
    let mut texts = vec![std::fs::read_to_string(dir.join("cost.csv")).expect("cost.csv")];
    for account in std::fs::read_dir(dir.join("ec2")).expect("ec2 dir") {
        let account = account.expect("entry");
        values.insert(account.file_name().to_string_lossy().into_owned());
        for file in std::fs::read_dir(account.path()).expect("account dir") {
            let text = std::fs::read_to_string(file.expect("entry").path()).expect("inventory");
            let json: Value = serde_json::from_str(&text).expect("inventory json");
            collect_names(&json, &mut values);
            texts.push(text);
        }
    }
    for text in &texts {
        values.extend(email.find_iter(text).map(|m| m.as_str().to_owned()));
        values.extend(
            ipv4.find_iter(text)
                .map(|m| m.as_str().to_owned())
                .filter(|ip| ip != "0.0.0.0"),
        );
    }
    values
}

/// Values of tags whose key names a person.
fn collect_names(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            if let (Some(Value::String(k)), Some(Value::String(v))) =
                (map.get("Key"), map.get("Value"))
                && ["Owner", "CreatedBy", "Contact"].contains(&k.as_str())
            {
                out.insert(v.clone());
            }
            map.values().for_each(|v| collect_names(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_names(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn advisor_payloads_carry_no_personal_data_and_proposals_get_it_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("draco.db"))
        .await
        .expect("store");
    let git = LocalGit::open_or_init(&dir.path().join("repo.git"))
        .await
        .expect("repo");
    let advisor = Recording {
        inner: TemplateAdvisor::new(Catalog::builtin().expect("templates")),
        payloads: Mutex::new(Vec::new()),
    };
    let source = FixtureSource::new(FixtureSet::EmbeddedDemo);
    let redactor = Redactor::default();
    let detect = DetectConfig::default();
    let pipeline = Pipeline {
        cost: &source,
        posture: &source,
        detect: &detect,
        redactor: &redactor,
        advisor: &advisor,
        fallback: None,
        catalog: advisor.inner.catalog(),
        change_requests: &git,
        publish_redact: &[],
        max_new_per_scan: 20,
        group: draco::gitops::config::Grouping::Finding,
        store: &store,
    };
    let report = pipeline.scan(Utc::now()).await.expect("scan");
    assert_eq!(report.change_requests_opened.len(), 8, "{report:?}");

    let planted = planted_personal_values();
    // The fixtures really do hold personal data of every kind we promise to remove.
    assert!(planted.iter().any(|v| v.contains('@')), "{planted:?}");
    assert!(
        planted.contains("402917364518")
            && planted.contains("52.23.184.7")
            && planted.contains("Priya Raman"),
        "{planted:?}"
    );

    let payloads = advisor
        .payloads
        .lock()
        .map(|p| p.clone())
        .unwrap_or_default();
    assert_eq!(payloads.len(), 8);
    for payload in &payloads {
        for value in &planted {
            assert!(
                !payload.contains(value.as_str()),
                "`{value}` leaked to the advisor in {payload}"
            );
        }
        assert!(payload.contains("<ACCOUNT_ID_1>"), "{payload}");
    }
    let all = payloads.join("\n");
    for placeholder in ["<EMAIL_1>", "<NAME_1>", "<IPV4_1>"] {
        assert!(
            all.contains(placeholder),
            "no {placeholder} anywhere: redaction did not run on tags or addresses"
        );
    }

    // Locally, the rendered proposals carry the real values again.
    let findings = store.findings().await.expect("findings");
    let eip = findings
        .iter()
        .find(|f| f.finding.kind.as_str() == "eip_unassociated")
        .expect("eip finding");
    let proposal = store
        .proposal(eip.id)
        .await
        .expect("proposal")
        .expect("saved");
    assert!(
        proposal.rollback.contains("34.201.77.140"),
        "{}",
        proposal.rollback
    );
    let spike = findings
        .iter()
        .find(|f| f.finding.kind.as_str() == "cost_spike")
        .expect("spike");
    let proposal = store
        .proposal(spike.id)
        .await
        .expect("proposal")
        .expect("saved");
    assert!(
        proposal.body.contains("--account-id '402917364518'"),
        "{}",
        proposal.body
    );
}

#[test]
fn draco_redact_filters_stdin_and_reports_byte_spans() {
    let input = "café owner=jane.doe@example.com from 10.0.0.7\nOwner: Jane Doe\n";
    let run = |args: &[&str]| crate::support::run_with_stdin(args, input);
    assert_eq!(
        run(&["redact"]),
        "café owner=<EMAIL_1> from <IPV4_1>\nOwner: <NAME_1>\n"
    );
    let spans: Vec<Value> = run(&["redact", "--spans"])
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let found: Vec<(String, &str)> = spans
        .iter()
        .map(|s| {
            let (start, end) = (
                s["start"].as_u64().unwrap_or(0) as usize,
                s["end"].as_u64().unwrap_or(0) as usize,
            );
            (
                s["kind"].as_str().unwrap_or_default().to_owned(),
                &input[start..end],
            )
        })
        .collect();
    // Byte offsets: the two-byte `é` shifts everything after it by one more than characters would.
    assert_eq!(
        found,
        vec![
            ("email".to_owned(), "jane.doe@example.com"),
            ("ipv4".to_owned(), "10.0.0.7"),
            ("name".to_owned(), "Jane Doe"),
        ]
    );
}

/// Peak resident memory of the child `pid` in KiB, reaped with `wait4` (so
/// no other process counts), and whether it exited with success.
#[cfg(target_os = "linux")]
fn wait_peak_kib(pid: u32) -> (i64, bool) {
    let pid = libc::pid_t::try_from(pid).expect("a pid fits pid_t");
    let mut status = 0;
    // SAFETY: `rusage` is plain data that wait4 fills in; `status` and
    // `usage` outlive the call.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid, "wait4: {}", std::io::Error::last_os_error());
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    (usage.ru_maxrss, ok)
}

/// Pipes `bytes` of generated log lines through `draco redact`; returns the
/// child's peak RSS in KiB, and how many lines came out and how many of
/// them still held a planted value.
#[cfg(target_os = "linux")]
// The child is reaped by `wait4` in `wait_peak_kib`, which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn redact_lines_peak(bytes: usize) -> (i64, usize, usize, usize) {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};

    let mut child = Command::new(crate::support::BIN)
        .arg("redact")
        .env("DRACO_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("draco runs");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        let mut written = 0;
        let mut lines = 0usize;
        while written < bytes {
            let line = format!(
                "2026-12-05T10:00:{:02}Z user=user{lines}@example.com password: hunter{lines}x \
                 token=ghp_{lines:036} from 10.1.{}.{} ok\n",
                lines % 60,
                lines / 256 % 256,
                lines % 256
            );
            stdin.write_all(line.as_bytes()).expect("draco reads");
            written += line.len();
            lines += 1;
        }
        lines
    });
    let stdout = child.stdout.take().expect("stdout");
    let (mut out_lines, mut leaks) = (0usize, 0usize);
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("UTF-8 out");
        out_lines += 1;
        if line.contains("@example.com") || line.contains("hunter") || line.contains("ghp_") {
            leaks += 1;
        }
    }
    let lines = writer.join().expect("the writer ends");
    let (peak_kib, ok) = wait_peak_kib(child.id());
    assert!(ok, "draco redact failed");
    (peak_kib, lines, out_lines, leaks)
}

/// `draco redact` used to hold its whole input and output (2 GB of memory
/// for 1 GB in). It streams now: 64 MiB of log lines (some 2 million
/// distinct values) pass through in a few MiB more than 64 KiB do, and
/// each value in them is still replaced. The binary's own size (a debug
/// build maps tens of MiB) is measured on the small input and taken off.
#[cfg(target_os = "linux")]
#[test]
fn draco_redact_streams_in_bounded_memory() {
    const INPUT: usize = 64 << 20;
    const GROWTH_KIB: i64 = 24 << 10;
    let (small_kib, ..) = redact_lines_peak(64 << 10);
    let (peak_kib, lines, out_lines, leaks) = redact_lines_peak(INPUT);
    assert_eq!(out_lines, lines);
    assert_eq!(leaks, 0, "values survived redaction");
    assert!(
        peak_kib - small_kib < GROWTH_KIB,
        "peak RSS {peak_kib} KiB for {} MiB in, {small_kib} KiB for 64 KiB",
        INPUT >> 20
    );
}
