//! Where observations come from: daily cost series and EC2 inventory.
//!
//! Each source is a trait so the pipeline runs the same against the embedded
//! demo fixtures and, later, against the AWS APIs.

pub mod aws;
pub mod fixtures;
pub mod inventory;

use async_trait::async_trait;
use chrono::NaiveDate;
use serde::Serialize;

use crate::domain::AccountId;
pub use inventory::RegionInventory;

/// One day of spend for one service in one account, as Cost Explorer reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostPoint {
    pub day: NaiveDate,
    pub account: AccountId,
    pub service: String,
    pub amount_usd: f64,
    /// Cost Explorer marks recent days as estimated; they may still be restated.
    pub estimated: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: {message}")]
    Fixture { path: String, message: String },
    #[error("{path}:{line}: {message}")]
    FixtureRow {
        path: String,
        line: u64,
        message: String,
    },
}

/// A part of a scan that failed (an account, a region, a service) while the
/// rest went on. Its findings are neither created nor resolved this scan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScanError {
    pub account: Option<AccountId>,
    pub region: Option<String>,
    /// `ec2`, `ce` or `sts`.
    pub service: &'static str,
    pub message: String,
}

impl std::fmt::Display for ScanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let account = self
            .account
            .as_ref()
            .map_or_else(|| "-".to_owned(), |a| a.to_string());
        let region = self.region.as_deref().unwrap_or("-");
        write!(
            f,
            "account {account}, region {region}, {}: {}",
            self.service, self.message
        )
    }
}

/// What a cost source needs to know to fetch only what is missing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CostWindow {
    /// The last day already stored, if any.
    pub last_stored_day: Option<NaiveDate>,
    /// Today (UTC); today's spend is incomplete and never fetched.
    pub today: NaiveDate,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CostFetch {
    pub points: Vec<CostPoint>,
    /// Billable API requests made (Cost Explorer charges per request).
    pub requests: u32,
    /// `false` when the fetch failed; nothing from it was kept.
    pub complete: bool,
    pub errors: Vec<ScanError>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PostureScan {
    /// One per account and region that was read completely.
    pub inventories: Vec<RegionInventory>,
    pub errors: Vec<ScanError>,
}

#[async_trait]
pub trait CostSource: Send + Sync {
    /// A short label for summaries and the audit log (`fixtures:demo`, `aws`).
    fn describe(&self) -> String;
    async fn daily_costs(&self, window: CostWindow) -> Result<CostFetch, SourceError>;
}

#[async_trait]
pub trait PostureSource: Send + Sync {
    fn describe(&self) -> String;
    async fn inventory(&self) -> Result<PostureScan, SourceError>;
}
