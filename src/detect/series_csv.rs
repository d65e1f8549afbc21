//! Reads a `timestamp,value` series as monitoring tools export it: the one
//! reader behind `draco detect` and `draco bench nab`.
//!
//! Real exports are not tidy. CloudWatch repeats `2014-03-09 03:00:00` for an
//! hour at a daylight-saving change; a machine log steps back in time when
//! its clock is reset (both occur in NAB's real files). Such rows are kept
//! and scored in file order: the reader counts them
//! ([`Series::out_of_order`]) so the caller can warn once, and only a row
//! that cannot be parsed (no timestamp, a value that is not a finite
//! number, a missing column) is an error, named by its line.

use std::path::Path;

use chrono::{DateTime, NaiveDate, NaiveDateTime};

/// A row that cannot be used, or a file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SeriesCsvError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    /// `line` is 1-based and counts the header.
    #[error("{path}:{line}: {message}")]
    Row {
        path: String,
        line: usize,
        message: String,
    },
}

/// One data row.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesRow {
    /// The timestamp field exactly as the file gives it (surrounding
    /// whitespace and CSV quoting removed), for echoing back unchanged.
    pub raw_timestamp: String,
    /// The parsed timestamp; an offset, when given, is applied (UTC).
    pub at: NaiveDateTime,
    /// A finite number.
    pub value: f64,
}

/// Where the first repeated or backward timestamp is, for a warning.
#[derive(Debug, Clone, PartialEq)]
pub struct OutOfOrder {
    /// 1-based line of the first row whose timestamp is not after the one
    /// before it.
    pub line: usize,
    pub raw_timestamp: String,
    pub previous: String,
}

/// A whole series, rows in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub rows: Vec<SeriesRow>,
    /// Rows whose timestamp repeats the previous row's or goes back in time
    /// from it. They are kept, in file order.
    pub out_of_order: usize,
    /// The first of them, if any.
    pub first_out_of_order: Option<OutOfOrder>,
}

impl Series {
    pub fn timestamps(&self) -> Vec<NaiveDateTime> {
        self.rows.iter().map(|r| r.at).collect()
    }

    pub fn values(&self) -> Vec<f64> {
        self.rows.iter().map(|r| r.value).collect()
    }

    /// The one warning a caller prints when rows are out of order, e.g.
    /// `12 rows repeat or go back in time (first at line 2121: …); scored in
    /// file order`. `None` when every timestamp is after the one before.
    pub fn out_of_order_warning(&self) -> Option<String> {
        let first = self.first_out_of_order.as_ref()?;
        let rows = if self.out_of_order == 1 {
            "1 row repeats or goes".to_owned()
        } else {
            format!("{} rows repeat or go", self.out_of_order)
        };
        Some(format!(
            "{rows} back in time (first at line {}: `{}` after `{}`); scored in file order",
            first.line, first.raw_timestamp, first.previous
        ))
    }
}

/// Reads the file at `path`; see [`parse`].
pub fn read(path: &Path) -> Result<Series, SeriesCsvError> {
    let display = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| SeriesCsvError::File {
        path: display.clone(),
        message: e.to_string(),
    })?;
    parse(&text, &display)
}

/// Parses CSV text with the header `timestamp,value` (any case, quoted or
/// not, a UTF-8 byte-order mark allowed) and one `timestamp,value` row per
/// line; blank lines are skipped. Timestamps: see [`parse_timestamp`].
/// `path` only names the input in errors.
///
/// Errors: an empty file, another header, a row without exactly two
/// fields, a timestamp that is not one, a value that is not a finite
/// number, no data rows.
pub fn parse(text: &str, path: &str) -> Result<Series, SeriesCsvError> {
    let row_error = |line: usize, message: String| SeriesCsvError::Row {
        path: path.to_owned(),
        line,
        message,
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut records = reader.records();
    match records.next() {
        None => return Err(row_error(1, "the file is empty".into())),
        Some(Err(e)) => return Err(row_error(1, e.to_string())),
        Some(Ok(header)) => {
            let fields: Vec<String> = header.iter().map(|f| f.trim().to_lowercase()).collect();
            if fields != ["timestamp", "value"] {
                let shown = text.lines().next().unwrap_or_default();
                return Err(row_error(
                    1,
                    format!("header is `{shown}`, expected `timestamp,value`"),
                ));
            }
        }
    }
    let mut series = Series {
        rows: Vec::new(),
        out_of_order: 0,
        first_out_of_order: None,
    };
    for record in records {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| line_at(text, p.byte()));
            row_error(line, e.to_string())
        })?;
        // Found from the byte offset only when needed: the reader's own line
        // count skips blank lines.
        let line = || record.position().map_or(0, |p| line_at(text, p.byte()));
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let (Some(raw), Some(value), None) = (record.get(0), record.get(1), record.get(2)) else {
            let shown: Vec<&str> = record.iter().collect();
            return Err(row_error(
                line(),
                format!("`{}` is not `timestamp,value`", shown.join(",")),
            ));
        };
        let raw = raw.trim();
        let at = parse_timestamp(raw)
            .ok_or_else(|| row_error(line(), format!("`{raw}` is not a timestamp")))?;
        let value = value.trim();
        let number: f64 = value
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| row_error(line(), format!("`{value}` is not a finite number")))?;
        if let Some(last) = series.rows.last()
            && at <= last.at
        {
            series.out_of_order += 1;
            if series.first_out_of_order.is_none() {
                series.first_out_of_order = Some(OutOfOrder {
                    line: line(),
                    raw_timestamp: raw.to_owned(),
                    previous: last.raw_timestamp.clone(),
                });
            }
        }
        series.rows.push(SeriesRow {
            raw_timestamp: raw.to_owned(),
            at,
            value: number,
        });
    }
    if series.rows.is_empty() {
        return Err(row_error(2, "no data rows".into()));
    }
    Ok(series)
}

/// 1-based line of the record starting at byte `offset` (the reader places
/// a record after blank lines at the first of them: they are passed over).
fn line_at(text: &str, offset: u64) -> usize {
    let bytes = text.as_bytes();
    let mut end = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    while end < bytes.len() && matches!(bytes[end], b'\n' | b'\r') {
        end += 1;
    }
    bytes[..end].iter().filter(|&&b| b == b'\n').count() + 1
}

/// Parses the timestamp forms monitoring exports use:
/// `YYYY-MM-DD HH:MM[:SS[.fff…]]` with a space or `T` (or `/` between the
/// date parts), optionally followed by `Z` or an offset such as `+02:00`
/// (converted to UTC); a bare date `YYYY-MM-DD` (midnight); Unix time in
/// seconds (9–10 integer digits, fraction allowed) or milliseconds (12–13
/// digits). Anything else is `None`.
pub fn parse_timestamp(text: &str) -> Option<NaiveDateTime> {
    let text = text.trim();
    const NAIVE: [&str; 6] = [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
        "%Y/%m/%d %H:%M:%S%.f",
        "%Y/%m/%d %H:%M",
    ];
    const ZONED: [&str; 2] = ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"];
    NAIVE
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
        .or_else(|| {
            DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|t| t.naive_utc())
        })
        .or_else(|| {
            ZONED
                .iter()
                .find_map(|f| DateTime::parse_from_str(text, f).ok())
                .map(|t| t.naive_utc())
        })
        .or_else(|| {
            let zulu = text.strip_suffix('Z').or_else(|| text.strip_suffix('z'))?;
            NAIVE[..2]
                .iter()
                .find_map(|f| NaiveDateTime::parse_from_str(zulu, f).ok())
        })
        .or_else(|| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
        .or_else(|| parse_unix_time(text))
}

/// Unix time: 9–10 integer digits are seconds, 12–13 are milliseconds
/// (the lengths of 1973–2286 in either unit), so a bare year or a small
/// count is never taken for a time.
fn parse_unix_time(text: &str) -> Option<NaiveDateTime> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let number: f64 = text.parse().ok()?;
    let millis = match whole.len() {
        9 | 10 => number * 1000.0,
        12 | 13 => number,
        _ => return None,
    };
    DateTime::from_timestamp_millis(millis.round() as i64).map(|t| t.naive_utc())
}

/// The sampling interval of a series in seconds: the median of the steps
/// between consecutive timestamps that move forward (repeated and backward
/// steps are left out, so a daylight-saving repeat does not count).
/// `None` when no step moves forward. For the even count the lower middle
/// step is taken, so the result is always an actual step.
pub fn median_step_seconds(timestamps: &[NaiveDateTime]) -> Option<f64> {
    let mut steps: Vec<f64> = timestamps
        .windows(2)
        .map(|w| (w[1] - w[0]).as_seconds_f64())
        .filter(|s| *s > 0.0)
        .collect();
    if steps.is_empty() {
        return None;
    }
    let middle = (steps.len() - 1) / 2;
    let (_, median, _) = steps.select_nth_unstable_by(middle, f64::total_cmp);
    Some(*median)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").expect("a test timestamp")
    }

    #[test]
    fn repeated_and_backward_timestamps_are_kept_in_file_order_and_counted() {
        let text = "timestamp,value\n\
            2014-03-09 02:55:00,1\n\
            2014-03-09 03:00:00,2\n\
            2014-03-09 03:00:00,3\n\
            2014-03-09 02:00:00,4\n\
            2014-03-09 03:05:00,5\n";
        let series = parse(text, "x.csv").expect("parses");
        assert_eq!(series.values(), [1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(series.out_of_order, 2);
        let first = series.first_out_of_order.clone().expect("a first");
        assert_eq!(first.line, 4);
        assert_eq!(first.raw_timestamp, "2014-03-09 03:00:00");
        let warning = series.out_of_order_warning().expect("a warning");
        assert!(warning.starts_with("2 rows repeat or go back in time (first at line 4"));
    }

    #[test]
    fn the_timestamp_is_kept_as_given() {
        let text = "\u{feff}Timestamp,Value\r\n\
            \"2026-01-01 00:00:00.250\",1.5\r\n\
            2026-01-01T00:00:00.5+01:00 , 2\r\n";
        let series = parse(text, "x.csv").expect("parses");
        assert_eq!(series.rows[0].raw_timestamp, "2026-01-01 00:00:00.250");
        assert_eq!(series.rows[0].at, at("2026-01-01 00:00:00.250"));
        assert_eq!(series.rows[1].raw_timestamp, "2026-01-01T00:00:00.5+01:00");
        assert_eq!(series.rows[1].at, at("2025-12-31 23:00:00.5"));
        assert_eq!(series.out_of_order, 1);
    }

    #[test]
    fn export_timestamp_forms_parse() {
        for (text, expected) in [
            ("2014-03-09 03:00:00", "2014-03-09 03:00:00"),
            ("2014-03-09T03:00:00Z", "2014-03-09 03:00:00"),
            ("2014-03-09 03:00:00Z", "2014-03-09 03:00:00"),
            ("2014-03-09 03:00:00+0200", "2014-03-09 01:00:00"),
            ("2014-03-09 03:00:00-05:00", "2014-03-09 08:00:00"),
            ("2014-03-09 03:00", "2014-03-09 03:00:00"),
            ("2014/03/09 03:00:00", "2014-03-09 03:00:00"),
            ("2014-03-09", "2014-03-09 00:00:00"),
            ("1394334000", "2014-03-09 03:00:00"),
            ("1394334000500", "2014-03-09 03:00:00.5"),
        ] {
            assert_eq!(parse_timestamp(text), Some(at(expected)), "{text}");
        }
        for text in ["", "yesterday", "2026", "12345", "2014-13-01", "1e9"] {
            assert_eq!(parse_timestamp(text), None, "{text}");
        }
    }

    #[test]
    fn rows_that_cannot_be_parsed_name_their_line() {
        for (text, expected) in [
            (
                "timestamp,value\n2026-01-01,1\n2026-01-02,abc\n",
                "x.csv:3: `abc` is not a finite number",
            ),
            (
                "timestamp,value\n2026-01-01,inf\n",
                "x.csv:2: `inf` is not a finite number",
            ),
            (
                "timestamp,value\n2026-01-01,1\n\nsoon,2\n",
                "x.csv:4: `soon` is not a timestamp",
            ),
            (
                "timestamp,value\n2026-01-01,1,2\n",
                "x.csv:2: `2026-01-01,1,2` is not `timestamp,value`",
            ),
            (
                "timestamp,value\n2026-01-01\n",
                "x.csv:2: `2026-01-01` is not `timestamp,value`",
            ),
            ("", "x.csv:1: the file is empty"),
            ("time,val\n", "x.csv:1: header is `time,val`"),
            ("timestamp,value\n", "x.csv:2: no data rows"),
        ] {
            let error = parse(text, "x.csv").expect_err(text).to_string();
            assert!(error.starts_with(expected), "{error} (expected {expected})");
        }
    }

    #[test]
    fn the_median_step_ignores_repeats_and_steps_back() {
        let five = |i: i64| at("2014-03-09 00:00:00") + chrono::Duration::minutes(5 * i);
        let mut timestamps: Vec<NaiveDateTime> = (0..10).map(five).collect();
        timestamps.extend([five(9), five(9), five(3)]);
        timestamps.extend((10..20).map(five));
        assert_eq!(median_step_seconds(&timestamps), Some(300.0));
        assert_eq!(median_step_seconds(&timestamps[..1]), None);
        assert_eq!(median_step_seconds(&[five(1), five(1)]), None);
    }
}
