//! Fixture sources: cost and inventory read from files, for `draco demo` and
//! for operators who want to try Draco without AWS credentials.
//!
//! Layout of a fixture directory:
//! - `cost.csv` with header `date,account_id,service,amount_usd,estimated`
//! - `ec2/<account_id>/<region>.json`: an object with the EC2 `Describe*`
//!   response members `SecurityGroups`, `Volumes`, `Snapshots`, `Addresses`,
//!   `Reservations`.
//!
//! The demo set is compiled into the binary so `draco demo` works from any
//! directory and with no network.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use chrono::NaiveDate;
use include_dir::{Dir, include_dir};
use serde::Deserialize;

use super::inventory::{Address, Image, Reservation, SecurityGroup, Snapshot, Volume};
use super::{
    CostFetch, CostPoint, CostSource, CostWindow, PostureScan, PostureSource, RegionInventory,
    ScanError, SourceError,
};
use crate::domain::AccountId;

static DEMO: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/fixtures/demo");

/// A set of fixture files, embedded or on disk.
#[derive(Debug, Clone)]
pub enum FixtureSet {
    EmbeddedDemo,
    Directory(PathBuf),
}

impl FixtureSet {
    /// Writes the built-in demo set under `dir` (created if missing) in the
    /// directory layout above, for a `fixtures` source that needs files on
    /// disk (`draco bench idle` runs the daemon on it).
    pub fn write_demo(dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        DEMO.extract(dir)
    }

    fn label(&self) -> String {
        match self {
            FixtureSet::EmbeddedDemo => "fixtures:demo (built in)".to_owned(),
            FixtureSet::Directory(dir) => format!("fixtures:{}", dir.display()),
        }
    }

    fn display_path(&self, relative: &str) -> String {
        match self {
            FixtureSet::EmbeddedDemo => format!("fixtures/demo/{relative}"),
            FixtureSet::Directory(dir) => dir.join(relative).display().to_string(),
        }
    }

    fn read(&self, relative: &str) -> Result<Vec<u8>, SourceError> {
        match self {
            FixtureSet::EmbeddedDemo => DEMO
                .get_file(relative)
                .map(|f| f.contents().to_vec())
                .ok_or_else(|| self.error(relative, "file is missing")),
            FixtureSet::Directory(dir) => std::fs::read(dir.join(relative))
                .map_err(|e| self.error(relative, &format!("cannot read: {e}"))),
        }
    }

    /// `(account directory name, region file stem, relative path)` of each inventory file, sorted.
    fn inventory_files(&self) -> Result<Vec<(String, String, String)>, SourceError> {
        let mut files = Vec::new();
        match self {
            FixtureSet::EmbeddedDemo => {
                let Some(inventory_dir) = DEMO.get_dir("ec2") else {
                    return Ok(files);
                };
                for account_dir in inventory_dir.dirs() {
                    for file in account_dir.files() {
                        push_inventory_file(&mut files, file.path());
                    }
                }
            }
            FixtureSet::Directory(dir) => {
                let inventory_dir = dir.join("ec2");
                if !inventory_dir.exists() {
                    return Ok(files);
                }
                for account_dir in
                    read_dir_sorted(&inventory_dir).map_err(|e| self.error("ec2", &e))?
                {
                    if !account_dir.is_dir() {
                        continue;
                    }
                    for file in read_dir_sorted(&account_dir).map_err(|e| self.error("ec2", &e))? {
                        if let Ok(relative) = file.strip_prefix(dir) {
                            push_inventory_file(&mut files, relative);
                        }
                    }
                }
            }
        }
        files.sort();
        Ok(files)
    }

    fn error(&self, relative: &str, message: &str) -> SourceError {
        SourceError::Fixture {
            path: self.display_path(relative),
            message: message.to_owned(),
        }
    }
}

fn push_inventory_file(files: &mut Vec<(String, String, String)>, relative: &Path) {
    if relative.extension().and_then(|e| e.to_str()) != Some("json") {
        return;
    }
    let account = relative
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str());
    let region = relative.file_stem().and_then(|n| n.to_str());
    if let (Some(account), Some(region), Some(path)) = (account, region, relative.to_str()) {
        files.push((account.to_owned(), region.to_owned(), path.to_owned()));
    }
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut entries = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    entries.sort();
    Ok(entries)
}

#[derive(Debug, Clone)]
pub struct FixtureSource {
    set: FixtureSet,
}

impl FixtureSource {
    pub fn new(set: FixtureSet) -> Self {
        Self { set }
    }
}

#[derive(Deserialize)]
struct CostRow {
    date: String,
    account_id: String,
    service: String,
    amount_usd: String,
    estimated: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct InventoryFile {
    #[serde(default)]
    security_groups: Vec<SecurityGroup>,
    #[serde(default)]
    volumes: Vec<Volume>,
    #[serde(default)]
    snapshots: Vec<Snapshot>,
    #[serde(default)]
    addresses: Vec<Address>,
    #[serde(default)]
    reservations: Vec<Reservation>,
    #[serde(default)]
    images: Vec<Image>,
    /// The `EbsEncryptionByDefault` member of `GetEbsEncryptionByDefault`.
    #[serde(default)]
    ebs_encryption_by_default: Option<bool>,
}

/// Parses the cost CSV; the first bad row aborts with its line number so a
/// half-read file never reaches the store (the scan then goes on without
/// cost, `partial`). Amounts go through [`super::cost_amount`].
pub fn parse_cost_csv(bytes: &[u8], path: &str) -> Result<Vec<CostPoint>, SourceError> {
    // Spreadsheets save CSV with a UTF-8 byte-order mark; it is not part of the header.
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let expected_header = ["date", "account_id", "service", "amount_usd", "estimated"];
    let header = reader
        .headers()
        .map_err(|e| SourceError::Fixture {
            path: path.to_owned(),
            message: format!("cannot read the header: {e}"),
        })?
        .clone();
    if header.iter().ne(expected_header) {
        return Err(SourceError::Fixture {
            path: path.to_owned(),
            message: format!(
                "header is `{}`, expected `{}`",
                header.iter().collect::<Vec<_>>().join(","),
                expected_header.join(",")
            ),
        });
    }
    let mut points = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| SourceError::FixtureRow {
            path: path.to_owned(),
            line: e.position().map_or(0, |p| p.line()),
            message: e.to_string(),
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let row_error = |message: String| SourceError::FixtureRow {
            path: path.to_owned(),
            line,
            message,
        };
        let row: CostRow = record
            .deserialize(Some(&header))
            .map_err(|e| row_error(e.to_string()))?;
        let day = NaiveDate::parse_from_str(&row.date, "%Y-%m-%d")
            .map_err(|_| row_error(format!("date `{}` is not YYYY-MM-DD", row.date)))?;
        let account = AccountId::parse(&row.account_id).map_err(|e| row_error(e.to_string()))?;
        if row.service.is_empty() {
            return Err(row_error("service is empty".to_owned()));
        }
        let amount_usd = super::cost_amount(&row.amount_usd)
            .map_err(|e| row_error(format!("amount_usd {e}")))?;
        let estimated = match row.estimated.as_str() {
            "true" => true,
            "false" => false,
            other => {
                return Err(row_error(format!(
                    "estimated `{other}` must be `true` or `false`"
                )));
            }
        };
        points.push(CostPoint {
            day,
            account,
            service: row.service,
            amount_usd,
            estimated,
        });
    }
    Ok(points)
}

#[async_trait]
impl CostSource for FixtureSource {
    fn describe(&self) -> String {
        self.set.label()
    }

    /// Fixtures are small: always the whole file, whatever is stored already.
    async fn daily_costs(&self, _window: CostWindow) -> Result<CostFetch, SourceError> {
        let bytes = self.set.read("cost.csv")?;
        let points = parse_cost_csv(&bytes, &self.set.display_path("cost.csv"))?;
        Ok(CostFetch {
            points,
            requests: 0,
            complete: true,
            errors: Vec::new(),
        })
    }
}

#[async_trait]
impl PostureSource for FixtureSource {
    fn describe(&self) -> String {
        self.set.label()
    }

    /// One file per account and region; a file that cannot be read fails
    /// that account-region alone (a scan error naming the file), as a failed
    /// AWS region does, and the other files are still read.
    async fn inventory(&self) -> Result<PostureScan, SourceError> {
        let mut inventories = Vec::new();
        let mut errors = Vec::new();
        for (account_dir, region, relative) in self.set.inventory_files()? {
            let read = AccountId::parse(&account_dir)
                .map_err(|e| self.set.error(&relative, &format!("directory name: {e}")))
                .and_then(|account| {
                    let bytes = self.set.read(&relative)?;
                    let file: InventoryFile = serde_json::from_slice(&bytes).map_err(|e| {
                        self.set
                            .error(&relative, &format!("invalid inventory JSON: {e}"))
                    })?;
                    Ok((account, file))
                });
            let (account, file) = match read {
                Ok(read) => read,
                Err(error) => {
                    errors.push(ScanError {
                        account: AccountId::parse(&account_dir).ok(),
                        region: Some(region),
                        service: "inventory",
                        message: error.to_string(),
                    });
                    continue;
                }
            };
            inventories.push(RegionInventory {
                account,
                region,
                security_groups: file.security_groups,
                volumes: file.volumes,
                snapshots: file.snapshots,
                addresses: file.addresses,
                instances: file
                    .reservations
                    .into_iter()
                    .flat_map(|r| r.instances)
                    .collect(),
                images: file.images,
                ebs_encryption_by_default: file.ebs_encryption_by_default,
            });
        }
        Ok(PostureScan {
            inventories,
            errors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_amount_names_its_line() {
        let csv = "date,account_id,service,amount_usd,estimated\n\
                   2026-01-01,111111111111,Amazon EC2,1.5,false\n\
                   2026-01-02,111111111111,Amazon EC2,abc,false\n";
        let err = parse_cost_csv(csv.as_bytes(), "cost.csv").unwrap_err();
        assert_eq!(
            err.to_string(),
            "cost.csv:3: amount_usd `abc` is not a number"
        );
    }

    #[test]
    fn a_byte_order_mark_and_crlf_line_ends_are_read() {
        let csv = "\u{feff}date,account_id,service,amount_usd,estimated\r\n\
                   2026-01-01,111111111111,Amazon EC2,1.5,false\r\n";
        let points = parse_cost_csv(csv.as_bytes(), "cost.csv").unwrap();
        assert_eq!(points.len(), 1);
        assert_eq!(points[0].amount_usd, 1.5);
    }

    #[test]
    fn a_wrong_header_is_rejected() {
        let err = parse_cost_csv(b"day,amount\n", "cost.csv").unwrap_err();
        assert!(
            err.to_string().contains("expected `date,account_id"),
            "{err}"
        );
    }

    #[test]
    fn credits_are_kept_and_residues_rounded_away() {
        let csv = "date,account_id,service,amount_usd,estimated\n\
                   2026-01-01,111111111111,Amazon EC2,-1,false\n\
                   2026-01-02,111111111111,AWS Data Transfer,-0.0000000092,false\n";
        let points = parse_cost_csv(csv.as_bytes(), "cost.csv").unwrap();
        let amounts: Vec<f64> = points.iter().map(|p| p.amount_usd).collect();
        assert_eq!(amounts, vec![-1.0, 0.0]);
    }

    #[test]
    fn a_non_finite_amount_is_rejected() {
        let csv = "date,account_id,service,amount_usd,estimated\n\
                   2026-01-01,111111111111,Amazon EC2,NaN,false\n";
        let err = parse_cost_csv(csv.as_bytes(), "cost.csv").unwrap_err();
        assert_eq!(
            err.to_string(),
            "cost.csv:2: amount_usd `NaN` is not a finite number"
        );
    }
}
