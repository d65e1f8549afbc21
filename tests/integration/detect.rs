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
            "timestamp,value\n2026-01-01,1\n2026-01-02,\n",
            ":3: `` is not a finite number",
        ),
        (
            "timestamp,value\n2026-01-01,1\n2026-01-02\n",
            ":3: `2026-01-02` is not `timestamp,value`",
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

/// The rows of `draco detect`'s output, split into fields.
fn rows(out: &std::process::Output) -> Vec<Vec<String>> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect()
}

/// Five-minute rows from 2014-03-08 00:00 with a small daily wave.
fn five_minute_rows(n: usize) -> Vec<(String, f64)> {
    let start = chrono::NaiveDate::from_ymd_opt(2014, 3, 8)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .expect("a valid start");
    (0..n)
        .map(|i| {
            let t = start + chrono::Duration::minutes(5 * i as i64);
            let v = 10.0 + (i as f64 / 288.0 * std::f64::consts::TAU).sin() + (i % 5) as f64 * 0.1;
            (t.format("%Y-%m-%d %H:%M:%S").to_string(), v)
        })
        .collect()
}

fn csv_of(rows: &[(String, f64)]) -> String {
    let mut csv = String::from("timestamp,value\n");
    for (t, v) in rows {
        csv.push_str(&format!("{t},{v}\n"));
    }
    csv
}

#[test]
fn a_daylight_saving_repeat_and_a_clock_step_back_are_scored_in_file_order_with_one_warning() {
    // As CloudWatch exports it at the change to summer time: thirteen rows
    // stamped 03:00:00 where 02:00 to 03:00 would be; later a clock that
    // steps back (NAB's machine_temperature file): 12 + 1 rows out of order.
    let mut rows = five_minute_rows(1200);
    assert_eq!(rows[312].0, "2014-03-09 02:00:00");
    for row in &mut rows[312..=324] {
        row.0 = "2014-03-09 03:00:00".into();
    }
    let back = rows[900].0.clone();
    rows.insert(1000, (back, 10.0));
    let out = detect(&csv_of(&rows));
    assert!(out.status.success(), "{}", describe(&out));
    let printed = self::rows(&out);
    assert_eq!(printed.len(), rows.len());
    for (p, (t, v)) in printed.iter().zip(&rows) {
        assert_eq!(&p[0], t);
        assert_eq!(p[1].parse::<f64>().ok(), Some(*v));
    }
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("warning").count(), 1, "{err}");
    assert!(
        err.contains("13 rows repeat or go back in time (first at line 315"),
        "{err}"
    );
}

#[test]
fn timestamps_are_echoed_exactly_as_given() {
    let start = chrono::NaiveDate::from_ymd_opt(2026, 1, 1)
        .and_then(|d| d.and_hms_milli_opt(0, 0, 0, 0))
        .expect("a valid start");
    let mut given = Vec::new();
    for i in 0..400 {
        let t = start + chrono::Duration::milliseconds(250 * i);
        let text = match i % 4 {
            0 => t.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
            1 => t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
            2 => t.format("%Y-%m-%dT%H:%M:%S%.3f+00:00").to_string(),
            _ => t.format("%Y-%m-%d %H:%M:%S%.f").to_string(),
        };
        given.push((text, 1.0 + (i % 3) as f64));
    }
    let out = detect(&csv_of(&given));
    assert!(out.status.success(), "{}", describe(&out));
    let printed: Vec<String> = rows(&out).into_iter().map(|r| r[0].clone()).collect();
    let expected: Vec<String> = given.into_iter().map(|(t, _)| t).collect();
    assert_eq!(printed, expected);
    assert!(expected[1].ends_with(".250000Z"));
}

/// SplitMix64's output function: a well-mixed hash of `i`, uniform in [0, 1).
fn uniform(i: u64) -> f64 {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) as f64 / 2f64.powi(64)
}

/// Values uniform in [1, 2] (a fixed hash), one `extreme` at row 2000 and a
/// spike to 8 at `spike`, five minutes apart.
fn one_extreme_then_a_spike(extreme: f64, spike: usize) -> String {
    let start = chrono::NaiveDate::from_ymd_opt(2026, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .expect("a valid start");
    let mut csv = String::from("timestamp,value\n");
    for i in 0..spike + 10 {
        let v = match i {
            2000 => extreme,
            i if i == spike => 8.0,
            _ => 1.0 + uniform(i as u64),
        };
        let t = start + chrono::Duration::minutes(5 * i as i64);
        csv.push_str(&format!("{},{v}\n", t.format("%Y-%m-%d %H:%M:%S")));
    }
    csv
}

#[test]
fn one_extreme_value_does_not_blind_detect_beyond_its_documented_bound() {
    // README: a few extreme values blind the detector for at most 550
    // points after the last of them.
    for extreme in [1e6, -1e6] {
        for spike in [2800, 4321] {
            let out = detect(&one_extreme_then_a_spike(extreme, spike));
            assert!(out.status.success(), "{}", describe(&out));
            let row = &rows(&out)[spike];
            let score: f64 = row[2].parse().expect("a score");
            assert!(
                score >= 0.99,
                "extreme {extreme}, spike at {spike}: {row:?}"
            );
            assert_eq!(row[3], "1", "flagged at the default threshold");
        }
    }
}

/// 150 days of a weekly-seasonal daily cost with a one-day spike on day 120
/// and a lasting shift from day 135.
fn daily_cost_csv() -> String {
    let start = chrono::NaiveDate::from_ymd_opt(2026, 3, 2).expect("date");
    let mut csv = String::from("timestamp,value\n");
    for i in 0..150u32 {
        let day = start + chrono::Duration::days(i64::from(i));
        let weekly = if i % 7 >= 5 { 60.0 } else { 100.0 };
        let noise = f64::from((i * 37) % 11) - 5.0;
        let mut value = weekly + noise;
        if i == 120 {
            value += 400.0;
        }
        if i >= 135 {
            value += 150.0;
        }
        csv.push_str(&format!("{day},{value}\n"));
    }
    csv
}

fn flagged_days(stdout: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .skip(1)
        .filter(|line| line.ends_with(",1"))
        .map(|line| line.split(',').next().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn daily_data_is_scored_with_the_daily_cost_model() {
    let out = detect(&daily_cost_csv());
    assert!(out.status.success(), "{}", describe(&out));
    let note = String::from_utf8_lossy(&out.stderr);
    assert!(note.contains("daily cost model"), "{note}");
    let flagged = flagged_days(&out.stdout);
    // The spike on its day; the shift from its first day while it is
    // ongoing, and no longer once it is the new baseline (at most 21 days,
    // README); nothing in the ordinary weeks before.
    assert!(flagged.contains(&"2026-06-30".to_owned()), "{flagged:?}");
    assert!(flagged.contains(&"2026-07-15".to_owned()), "{flagged:?}");
    for day in &flagged {
        let spike = day == "2026-06-30";
        let shift = ("2026-07-15".."2026-08-05").contains(&day.as_str());
        assert!(spike || shift, "{day} flagged: {flagged:?}");
    }
    assert!(
        !flagged.contains(&"2026-07-29".to_owned()),
        "re-baselined after a steady week: {flagged:?}"
    );
}

#[test]
fn the_streaming_detector_can_still_be_asked_for_on_daily_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("daily.csv");
    std::fs::write(&path, daily_cost_csv()).expect("write");
    let out = std::process::Command::new(BIN)
        .args(["detect", "--model", "stream", "--input"])
        .arg(&path)
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", describe(&out));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("daily cost model"));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 151);
}
