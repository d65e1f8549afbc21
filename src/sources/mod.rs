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

/// Cost amounts are kept to this many decimal places of a dollar (a
/// millionth): finer digits are floating-point residue from how AWS sums
/// line items (`-0.0000000092` after a credit), not money anyone was billed.
/// AWS's own invoices and Cost Explorer's console show cents; a micro-dollar
/// keeps the per-request prices of the cheapest services visible in daily sums.
pub const COST_DECIMALS: i32 = 6;

/// Why a cost amount was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AmountError {
    #[error("`{0}` is not a number")]
    NotANumber(String),
    #[error("`{0}` is not a finite number")]
    NotFinite(String),
}

/// The one normalisation every cost reader applies to an amount as the
/// source wrote it (CSV cell, Cost Explorer `Amount`):
/// - parsed as a decimal number; `NaN`, `inf` and overflow are refused;
/// - rounded to [`COST_DECIMALS`] places, so residues such as
///   `-0.0000000092` become `0` (never `-0`);
/// - negative amounts are kept: credits, refunds and discounts are what they
///   are, and a day or a series may be negative.
pub fn cost_amount(text: &str) -> Result<f64, AmountError> {
    let trimmed = text.trim();
    let value: f64 = trimmed
        .parse()
        .map_err(|_| AmountError::NotANumber(text.to_owned()))?;
    if !value.is_finite() {
        return Err(AmountError::NotFinite(text.to_owned()));
    }
    let scale = 10f64.powi(COST_DECIMALS);
    let scaled = value * scale;
    // Beyond 2^53 micro-dollars (about nine billion dollars) f64 cannot round
    // finer than it already holds: keep the value.
    let rounded = if scaled.abs() < 9.0e15 {
        scaled.round() / scale
    } else {
        value
    };
    Ok(if rounded == 0.0 { 0.0 } else { rounded })
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
    /// `ec2`, `ce` or `sts` for AWS; `cost` or `inventory` for a fixture file.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn residues_round_away_and_credits_stay_negative() {
        assert_eq!(cost_amount("-0.0000000092"), Ok(0.0));
        assert!(cost_amount("-0.0000000092").unwrap().is_sign_positive());
        assert_eq!(cost_amount("0.0000004"), Ok(0.0));
        assert_eq!(cost_amount("0.0000005"), Ok(0.000001));
        assert_eq!(cost_amount("-12.5"), Ok(-12.5));
        assert_eq!(cost_amount(" 1234.5678901234 "), Ok(1234.56789));
        assert_eq!(cost_amount("1e3"), Ok(1000.0));
        assert_eq!(cost_amount("1e300"), Ok(1e300));
    }

    #[test]
    fn non_numbers_and_non_finite_amounts_are_refused() {
        for bad in ["NaN", "inf", "-Infinity", "1e999"] {
            assert_eq!(
                cost_amount(bad),
                Err(AmountError::NotFinite(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(
            cost_amount("forty-two"),
            Err(AmountError::NotANumber("forty-two".into()))
        );
        assert!(cost_amount("").is_err());
    }
}
