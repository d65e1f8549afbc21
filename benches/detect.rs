//! Detector throughput: `cargo bench --bench detect`.
//! Target: at least 5 million points a second on one core for the streaming
//! detector; the memory it keeps is bounded by its windows, not by the history.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use draco::bench::cost;
use draco::detect::cost::{self as cost_detector, CostConfig};
use draco::detect::stream::{StreamConfig, StreamDetector};

fn series(n: usize) -> Vec<f64> {
    // A daily-periodic signal with deterministic noise and a few jumps.
    (0..n)
        .map(|i| {
            let t = i as f64;
            let noise = ((i * 7919) % 101) as f64 / 101.0 - 0.5;
            let jump = if i % 5000 < 50 { 40.0 } else { 0.0 };
            50.0 + 10.0 * (t * 2.0 * std::f64::consts::PI / 288.0).sin() + 3.0 * noise + jump
        })
        .collect()
}

fn stream(c: &mut Criterion) {
    let values = series(1_000_000);
    // Five-minute samples, as in much of NAB: the time-of-day model is exercised.
    let start = chrono::NaiveDate::from_ymd_opt(2026, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .expect("a valid start time");
    let timestamps: Vec<chrono::NaiveDateTime> = (0..values.len())
        .map(|i| start + chrono::Duration::minutes(5 * i as i64))
        .collect();
    let mut group = c.benchmark_group("stream_detector");
    group.throughput(Throughput::Elements(values.len() as u64));
    group.sample_size(10);
    group.bench_function("score_1M_points", |b| {
        b.iter(|| {
            let mut detector = StreamDetector::new(StreamConfig::default());
            let mut sum = 0.0;
            for (&t, &v) in timestamps.iter().zip(&values) {
                sum += detector.update_at(t, v);
            }
            black_box(sum)
        })
    });
    group.finish();
}

fn daily_cost(c: &mut Criterion) {
    let data = cost::generate(1, 500, 180);
    let mut group = c.benchmark_group("cost_detector");
    group.throughput(Throughput::Elements(data.points.len() as u64));
    group.sample_size(10);
    group.bench_function("500_series_180_days", |b| {
        b.iter(|| black_box(cost_detector::detect(&data.points, &CostConfig::default()).len()))
    });
    group.finish();
}

criterion_group!(benches, stream, daily_cost);
criterion_main!(benches);
