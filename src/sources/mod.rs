//! Where observations come from: daily cost series and EC2 inventory.
//!
//! Each source is a trait so the pipeline runs the same against the embedded
//! demo fixtures and, later, against the AWS APIs.

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

#[async_trait]
pub trait CostSource: Send + Sync {
    /// A short label for summaries and the audit log (`fixtures:demo`, `aws:cost-explorer`).
    fn describe(&self) -> String;
    async fn daily_costs(&self) -> Result<Vec<CostPoint>, SourceError>;
}

#[async_trait]
pub trait PostureSource: Send + Sync {
    fn describe(&self) -> String;
    async fn inventory(&self) -> Result<Vec<RegionInventory>, SourceError>;
}
