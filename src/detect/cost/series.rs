//! The daily series the cost detector scores, built from Cost Explorer points.
//!
//! Cost Explorer partitions an account's spend twice: by service, and (when
//! `aws.cost.group_by_tag` is set) by the values of one tag, stored as series
//! named `tag:<key>=<value>`. The account total is the sum of the service
//! partition only; adding the tag partition would count every dollar twice.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate};

use crate::domain::AccountId;
use crate::sources::CostPoint;

/// The name the account-total series goes by in `ignore_services` and `overrides`.
pub const ACCOUNT_TOTAL: &str = "(account total)";
/// The sum of every account's total, when there are several accounts.
pub const ORGANIZATION_TOTAL: &str = "(organization total)";

/// Which partition of an account's spend a series belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Service,
    Tag,
    AccountTotal,
    Organization,
}

impl Level {
    pub fn of(name: &str) -> Level {
        if name == ACCOUNT_TOTAL {
            Level::AccountTotal
        } else if name == ORGANIZATION_TOTAL {
            Level::Organization
        } else if name.starts_with("tag:") {
            Level::Tag
        } else {
            Level::Service
        }
    }

    /// The drill-down dimension this level is listed under.
    pub fn dimension(self) -> &'static str {
        match self {
            Level::Service => "service",
            Level::Tag => "tag",
            Level::AccountTotal => "account",
            Level::Organization => "organization",
        }
    }
}

/// One account's spend on one series, dense from the table's first day.
#[derive(Debug, Clone)]
pub struct Series {
    /// For the organization total, which spans every account, the lowest
    /// account id only (see [`Series::owner`]).
    pub account: AccountId,
    pub name: String,
    pub level: Level,
    /// Index 0 is [`Table::first_day`]; absent days are zero (Cost Explorer omits them).
    pub values: Vec<f64>,
    /// First day Cost Explorer marked as estimated (may still be restated).
    pub estimated_from: Option<NaiveDate>,
}

impl Series {
    /// Index of the first billed day (see [`super::billing::is_billed`]:
    /// credits, refunds and sub-cent residues are not billing), if the series was ever billed.
    pub fn first_billed(&self) -> Option<usize> {
        self.values
            .iter()
            .position(|&v| super::billing::is_billed(v))
    }

    /// The account the series belongs to; `None` for the organization total.
    pub fn owner(&self) -> Option<&AccountId> {
        (self.level != Level::Organization).then_some(&self.account)
    }

    pub fn is_estimated(&self, day: NaiveDate) -> bool {
        self.estimated_from.is_some_and(|e| day >= e)
    }
}

/// All series over a common range of days.
#[derive(Debug, Clone)]
pub struct Table {
    pub first_day: NaiveDate,
    pub last_day: NaiveDate,
    pub series: Vec<Series>,
}

impl Table {
    /// `in_total` says which (account, service) series count towards the
    /// totals (ignored services and accounts must not come back through them).
    pub fn build(
        points: &[CostPoint],
        in_total: impl Fn(&AccountId, &str) -> bool,
    ) -> Option<Table> {
        let first_day = points.iter().map(|p| p.day).min()?;
        let last_day = points.iter().map(|p| p.day).max()?;
        let len = (last_day - first_day).num_days() as usize + 1;
        let mut by_key: BTreeMap<(AccountId, String), Series> = BTreeMap::new();
        let mut add = |account: &AccountId, name: &str, index: usize, p: &CostPoint| {
            let s = by_key
                .entry((account.clone(), name.to_owned()))
                .or_insert_with(|| Series {
                    account: account.clone(),
                    name: name.to_owned(),
                    level: Level::of(name),
                    values: vec![0.0; len],
                    estimated_from: None,
                });
            s.values[index] += p.amount_usd;
            if p.estimated {
                s.estimated_from = Some(s.estimated_from.map_or(p.day, |d| d.min(p.day)));
            }
        };
        for p in points {
            let index = (p.day - first_day).num_days() as usize;
            add(&p.account, &p.service, index, p);
            if Level::of(&p.service) == Level::Service && in_total(&p.account, &p.service) {
                add(&p.account, ACCOUNT_TOTAL, index, p);
            }
        }
        let mut series: Vec<Series> = by_key.into_values().collect();
        let totals: Vec<&Series> = series
            .iter()
            .filter(|s| s.level == Level::AccountTotal)
            .collect();
        if totals.len() >= 2 {
            let mut organization = Series {
                account: totals[0].account.clone(),
                name: ORGANIZATION_TOTAL.to_owned(),
                level: Level::Organization,
                values: vec![0.0; len],
                estimated_from: totals.iter().filter_map(|t| t.estimated_from).min(),
            };
            for t in &totals {
                for (sum, v) in organization.values.iter_mut().zip(&t.values) {
                    *sum += v;
                }
            }
            series.push(organization);
        }
        Some(Table {
            first_day,
            last_day,
            series,
        })
    }

    pub fn day(&self, index: usize) -> NaiveDate {
        self.first_day + Duration::days(index as i64)
    }

    pub fn index(&self, day: NaiveDate) -> usize {
        (day - self.first_day).num_days() as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(day: &str, account: &str, service: &str, amount: f64) -> CostPoint {
        CostPoint {
            day: NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap(),
            account: AccountId::parse(account).unwrap(),
            service: service.into(),
            amount_usd: amount,
            estimated: false,
        }
    }

    #[test]
    fn account_total_sums_services_but_not_tag_values() {
        let table = Table::build(
            &[
                point("2026-03-01", "111111111111", "Amazon EC2", 10.0),
                point("2026-03-01", "111111111111", "AWS Lambda", 5.0),
                point("2026-03-01", "111111111111", "tag:team=payments", 15.0),
                point("2026-03-03", "111111111111", "Amazon EC2", 7.0),
                point("2026-03-02", "222222222222", "Amazon EC2", 1.0),
                point("2026-03-02", "222222222222", "Amazon Ignored", 5.0),
            ],
            |_, service| service != "Amazon Ignored",
        )
        .unwrap();
        let total = |account: &str| {
            table
                .series
                .iter()
                .find(|s| s.account.as_str() == account && s.level == Level::AccountTotal)
                .unwrap()
                .values
                .clone()
        };
        assert_eq!(total("111111111111"), vec![15.0, 0.0, 7.0]);
        assert_eq!(total("222222222222"), vec![0.0, 1.0, 0.0]);
        // Five services and tags, two account totals, the organization total.
        assert_eq!(table.series.len(), 8);
        let organization = table.series.iter().find(|s| s.owner().is_none()).unwrap();
        assert_eq!(organization.values, vec![15.0, 1.0, 7.0]);
        assert_eq!(Level::of("tag:team=payments"), Level::Tag);
    }
}
