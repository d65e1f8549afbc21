//! Break case 2 at scale: an ordinary spike one to three days before a
//! shift, on N random series (the generator of `break_cases`); prints the
//! series that lose the spike or the shift and how many:
//! `cargo run --release --example spike_shift_probe -- 1000`.
use chrono::{Datelike, Duration, NaiveDate};
use draco::detect::cost::{CostConfig, detect};
use draco::domain::{AccountId, FindingKind};
use draco::sources::CostPoint;

struct Rng(u64);
impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.unit()
    }
    fn normal(&mut self) -> f64 {
        let u = self.unit().max(1e-12);
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let start = NaiveDate::from_ymd_opt(2026, 1, 5).unwrap();
    let (mut lost_spike, mut lost_shift) = (0, 0);
    for seed in 0..n {
        let mut rng = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x5eed);
        let level = 10f64.powf(rng.range(1.5, 3.0));
        let weekend = rng.range(0.5, 1.0);
        let noise = rng.range(0.01f64.ln(), 0.12f64.ln()).exp();
        let spike_day = 60 + (rng.unit() * 20.0) as usize;
        let gap = 1 + (seed % 3) as usize;
        let shift_day = spike_day + 1 + gap;
        let spike = level * rng.range(1.0, 4.0).max(10.0 * noise);
        let shift = level * rng.range(0.5, 2.0).max(8.0 * noise);
        let points: Vec<CostPoint> = (0..shift_day + 40)
            .map(|i| {
                let d = start + Duration::days(i as i64);
                let weekly = if d.weekday().num_days_from_monday() >= 5 {
                    weekend
                } else {
                    1.0
                };
                let base = level * weekly + if i >= shift_day { shift } else { 0.0 };
                let extra = if i == spike_day { spike } else { 0.0 };
                CostPoint {
                    day: d,
                    account: AccountId::parse("123456789012").unwrap(),
                    service: "Amazon EC2".into(),
                    amount_usd: base * (1.0 + noise * rng.normal()).max(0.0) + extra,
                    estimated: false,
                }
            })
            .collect();
        let found = detect(&points, &CostConfig::default());
        let starting = |kind: FindingKind, day: usize| {
            let day = (start + Duration::days(day as i64)).to_string();
            found.iter().any(|f| {
                f.resource == "service:Amazon EC2"
                    && f.kind == kind
                    && f.evidence["start"] == day.as_str()
            })
        };
        let spike_ok = starting(FindingKind::CostSpike, spike_day);
        let shift_ok =
            (shift_day..=shift_day + 3).any(|d| starting(FindingKind::CostLevelShift, d));
        if !spike_ok {
            lost_spike += 1;
        }
        if !shift_ok {
            lost_shift += 1;
        }
        if !spike_ok || !shift_ok {
            println!(
                "seed {seed} gap {gap} spike/level {:.2} shift/level {:.2} noise {:.3} spike_ok {spike_ok} shift_ok {shift_ok}",
                spike / level,
                shift / level,
                noise
            );
        }
    }
    println!("{n} series: lost spikes {lost_spike}, lost shifts {lost_shift}");
}
