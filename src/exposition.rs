//! Prometheus metrics: the recorder behind the `metrics` facade and the text
//! exposition served at `GET /metrics`.
//!
//! Code anywhere records through `metrics::counter!` / `gauge!` /
//! `histogram!` with the names below; this module installs one recorder per
//! process and renders it in the Prometheus text format (version 0.0.4).
//! Nothing is pushed anywhere: Prometheus scrapes the daemon.
//!
//! Names follow Prometheus' naming practice (`_total` for counters, base
//! units such as `_seconds`): <https://prometheus.io/docs/practices/naming/>.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, OnceLock};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Scans by final status (`ok`, `partial`, `failed`, `interrupted`). Counter.
pub const SCANS_TOTAL: &str = "draco_scans_total";
/// Wall-clock seconds of each scan. Histogram.
pub const SCAN_DURATION_SECONDS: &str = "draco_scan_duration_seconds";
/// Findings in the store by `kind`, `severity` and `status`, set after each
/// scan and at start. Gauge.
pub const FINDINGS: &str = "draco_findings";
/// Requests sent to an outside provider (`provider`: a model provider's
/// name; `outcome`: `ok`, `retried` for a failed attempt that is tried
/// again, `error` for the last failed attempt). Calls refused locally (budget,
/// circuit breaker) send nothing and are not counted. Counter.
pub const PROVIDER_REQUESTS_TOTAL: &str = "draco_provider_requests_total";
/// Billable Cost Explorer requests (each costs USD 0.01, per AWS Cost
/// Explorer pricing). Counter.
pub const COST_EXPLORER_REQUESTS_TOTAL: &str = "draco_cost_explorer_requests_total";
/// Always 1, labelled with the running `version`. Gauge.
pub const BUILD_INFO: &str = "draco_build_info";

/// Buckets for scan durations, seconds: a demo scan takes well under a
/// second, a large estate minutes.
const SCAN_DURATION_BUCKETS: [f64; 12] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's metrics, installing the recorder on first use. When another
/// recorder was installed first (an embedding program's), Draco keeps its
/// own private handle: `/metrics` then shows only what was recorded before,
/// which is none of Draco's, and says nothing wrong.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(SCAN_DURATION_SECONDS.to_owned()),
                &SCAN_DURATION_BUCKETS,
            )
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics stays empty");
        }
        describe();
        metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        handle
    })
}

/// Scan statuses that `draco_scans_total` starts at 0 for, so a rate over
/// them is defined before the first scan of each kind.
const SCAN_STATUSES: [&str; 4] = ["ok", "partial", "failed", "interrupted"];

fn describe() {
    for status in SCAN_STATUSES {
        metrics::counter!(SCANS_TOTAL, "status" => status).absolute(0);
    }
    metrics::counter!(COST_EXPLORER_REQUESTS_TOTAL).absolute(0);
    metrics::describe_counter!(SCANS_TOTAL, "Scans by final status.");
    metrics::describe_histogram!(
        SCAN_DURATION_SECONDS,
        metrics::Unit::Seconds,
        "Wall-clock duration of each scan."
    );
    metrics::describe_gauge!(
        FINDINGS,
        "Findings in the store by kind, severity and status."
    );
    metrics::describe_counter!(
        PROVIDER_REQUESTS_TOTAL,
        "Requests to outside providers by provider and outcome."
    );
    metrics::describe_counter!(
        COST_EXPLORER_REQUESTS_TOTAL,
        "Billable AWS Cost Explorer requests."
    );
    metrics::describe_gauge!(BUILD_INFO, "Always 1; labelled with the running version.");
}

/// Label sets of `draco_findings` set to a non-zero value last time, so a
/// combination that disappears goes back to 0 instead of keeping its count.
static FINDING_LABELS: Mutex<BTreeSet<(String, String, String)>> = Mutex::new(BTreeSet::new());

/// Sets `draco_findings` to the count of each `(kind, severity, status)`.
pub fn set_findings<'a>(findings: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>) {
    handle();
    let mut counts: BTreeMap<(String, String, String), u64> = BTreeMap::new();
    for (kind, severity, status) in findings {
        *counts
            .entry((kind.to_owned(), severity.to_owned(), status.to_owned()))
            .or_default() += 1;
    }
    // A plain set of strings, valid whatever a panicking holder did.
    let mut previous = FINDING_LABELS.lock().unwrap_or_else(|p| p.into_inner());
    for labels in previous.iter() {
        if !counts.contains_key(labels) {
            gauge(labels).set(0.0);
        }
    }
    for (labels, count) in &counts {
        gauge(labels).set(*count as f64);
    }
    *previous = counts.into_keys().collect();
}

fn gauge((kind, severity, status): &(String, String, String)) -> metrics::Gauge {
    metrics::gauge!(
        FINDINGS,
        "kind" => kind.clone(),
        "severity" => severity.clone(),
        "status" => status.clone()
    )
}

/// The current metrics in the Prometheus text format.
pub fn render() -> String {
    handle().render()
}
