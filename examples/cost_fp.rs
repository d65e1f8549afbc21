//! Lists the cost findings of `draco bench cost` that match no planted anomaly:
//! `cargo run --release --example cost_fp -- 1`
use draco::bench::cost;
use draco::detect::cost::{self as detector, CostConfig};

fn main() {
    let seed = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let data = cost::generate(seed, 500, 180);
    for f in detector::detect(&data.points, &CostConfig::default()) {
        let planted = data
            .planted
            .iter()
            .find(|p| f.resource == format!("service:{}", p.service));
        if planted.is_some_and(|p| p.kind == f.kind) {
            continue;
        }
        println!("{} {} days={}", f.kind, f.title, f.evidence["days"]);
    }
}
