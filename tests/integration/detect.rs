//! `draco detect`: a CSV in, one scored row out per row in, no look-ahead.

use crate::support::{BIN, describe};

fn detect(csv: &str) -> std::process::Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("series.csv");
    std::fs::write(&path, csv).expect("write");
    std::process::Command::new(BIN)
        .args(["detect", "--input"])
        .arg(&path)
        .output()
        .expect("runs")
}

#[test]
fn every_input_row_gets_a_score_and_a_flag_in_order() {
    let start = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").expect("time");
    let mut csv = String::from("timestamp,value\n");
    for i in 0..2000 {
        let v = if (1500..1510).contains(&i) {
            500.0
        } else {
            10.0 + (i % 7) as f64
        };
        let t = start + chrono::Duration::minutes(i);
        csv.push_str(&format!("{},{v}\n", t.to_rfc3339()));
    }
    let out = detect(&csv);
    assert!(out.status.success(), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("timestamp,value,score,anomaly"));
    let rows: Vec<Vec<String>> = lines
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect();
    assert_eq!(rows.len(), 2000);
    for row in &rows {
        let score: f64 = row[2].parse().expect("score");
        assert!((0.0..=1.0).contains(&score));
        assert!(row[3] == "0" || row[3] == "1");
    }
    assert!(
        rows[1500..1510].iter().any(|r| r[3] == "1"),
        "the jump is flagged"
    );
    assert!(
        rows[200..1500].iter().all(|r| r[3] == "0"),
        "the steady part is not"
    );
}

#[test]
fn bad_input_names_the_line() {
    for (csv, expected) in [
        (
            "timestamp,value\n2026-01-01,1\n2026-01-02,abc\n",
            ":3: `abc` is not a finite number",
        ),
        (
            "timestamp,value\n2026-01-01,1\n2026-01-01,2\n",
            ":3: duplicate timestamp",
        ),
        (
            "timestamp,value\n2026-01-02,1\n2026-01-01,2\n",
            ":3: timestamp 2026-01-01 00:00:00 goes back in time",
        ),
        (
            "timestamp,value\n2026-01-01,NaN\n",
            ":2: `NaN` is not a finite number",
        ),
        (
            "timestamp,value\nyesterday,1\n",
            ":2: `yesterday` is not a timestamp",
        ),
        ("", ":1: the file is empty"),
        ("time,val\n", ":1: header is `time,val`"),
    ] {
        let out = detect(csv);
        assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "expected `{expected}` in: {err}");
    }
}
