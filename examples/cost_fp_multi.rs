//! Lists the scan's findings on `draco bench cost`'s several-events set that
//! match no event: `cargo run --release --example cost_fp_multi -- 12`; with
//! `-- 12 svc-0193 2026-12-15` it prints that series' scores for three weeks.
use chrono::Datelike;
use draco::bench::cost::multi;
use draco::detect::cost::{self as detector, CostConfig};
use draco::domain::FindingKind;

fn main() {
    let seed = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let data = multi::generate_multi(seed, 200, 365);
    if let (Some(svc), Some(from)) = (std::env::args().nth(2), std::env::args().nth(3)) {
        let from = chrono::NaiveDate::parse_from_str(&from, "%Y-%m-%d").unwrap();
        let rows: Vec<f64> = data
            .points
            .iter()
            .filter(|p| p.service == svc)
            .map(|p| p.amount_usd)
            .collect();
        let first = multi::first_day();
        let config = CostConfig::default();
        let mut model = draco::detect::cost::SeriesModel::new(
            &config,
            draco::detect::cost::Thresholds::of(&config),
        );
        for (i, v) in rows.iter().enumerate() {
            let d = first + chrono::Duration::days(i as i64);
            let s = model.push(d, *v);
            if d >= from
                && d < from + chrono::Duration::days(21)
                && let Some(s) = s
            {
                println!(
                    "{} {:?} act {:.0} exp {:.0} z {:.1} scale {:.0} anom {}",
                    d,
                    d.weekday(),
                    s.actual,
                    s.expected,
                    s.z,
                    s.scale,
                    s.anomalous
                );
            }
        }
        for a in model.finish() {
            if a.start() >= from {
                println!("{} {:?} {}", a.start(), a.state, a.days.len());
            }
        }
        return;
    }
    for f in detector::detect(&data.points, &CostConfig::default()) {
        let svc = f
            .resource
            .strip_prefix("service:")
            .unwrap_or(&f.resource)
            .to_owned();
        let field = if f.kind == FindingKind::CostNewService {
            "first_billed"
        } else {
            "start"
        };
        let Some(start) = f.evidence.get(field).and_then(|v| v.as_str()) else {
            println!("NOSTART {}", f.title);
            continue;
        };
        let start = chrono::NaiveDate::parse_from_str(start, "%Y-%m-%d").unwrap();
        let matched = data.events.iter().any(|e| {
            e.service == svc
                && e.kind.is_anomaly()
                && start >= e.start - chrono::Duration::days(1)
                && start <= e.start + chrono::Duration::days(e.kind.match_days())
                && ((e.kind == multi::EventKind::Spike) == (f.kind == FindingKind::CostSpike))
        });
        if matched {
            continue;
        }
        let near: Vec<String> = data
            .events
            .iter()
            .filter(|e| e.service == svc)
            .map(|e| format!("{}@{:+}", e.kind.as_str(), (e.start - start).num_days()))
            .collect();
        let vals: Vec<String> = data
            .points
            .iter()
            .filter(|p| {
                p.service == svc
                    && (start - p.day).num_days() < 15
                    && (p.day - start).num_days() <= 7
            })
            .map(|p| format!("{:.0}", p.amount_usd))
            .collect();
        println!(
            "{} {} {} {:?} state={} days={} near=[{}]\n   vals={}",
            f.kind,
            svc,
            start,
            start.weekday(),
            f.evidence["state"],
            f.evidence["days"],
            near.join(","),
            vals.join(" ")
        );
    }
}
