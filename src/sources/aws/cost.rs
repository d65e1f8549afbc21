//! Daily cost from Cost Explorer (`GetCostAndUsage`), grouped by linked
//! account and service, optionally by one tag.
//!
//! Incremental: only days after the last stored one are fetched, plus the
//! last `restate_days` stored ones, which AWS restates. Every request costs
//! the operator money, so requests are counted and capped; a fetch that hits
//! the cap, or fails, is dropped whole rather than stored in part.

use std::collections::BTreeMap;

use aws_config::{Region, SdkConfig};
use aws_sdk_costexplorer::Client;
use aws_sdk_costexplorer::types::{
    DateInterval, Granularity, GroupDefinition, GroupDefinitionType,
};
use chrono::{Duration, NaiveDate};

use super::{AwsCostConfig, sdk_error};
use crate::domain::AccountId;
use crate::sources::{CostFetch, CostPoint, CostWindow, ScanError, cost_amount};

/// The days to ask for: `[start, end)`, as Cost Explorer's `TimePeriod` takes them.
pub fn period(config: &AwsCostConfig, window: CostWindow) -> Option<(NaiveDate, NaiveDate)> {
    let end = window.today;
    let start = match window.last_stored_day {
        Some(last) => last + Duration::days(1) - Duration::days(config.restate_days),
        None => end - Duration::days(config.initial_days),
    };
    let start = start.max(end - Duration::days(config.initial_days));
    (start < end).then_some((start, end))
}

/// The series a tag value becomes: `tag:team=payments`, or `tag:team=(untagged)`.
fn tag_series(key: &str, raw: &str) -> String {
    let value = raw.split_once('$').map_or(raw, |(_, v)| v);
    if value.is_empty() {
        format!("tag:{key}=(untagged)")
    } else {
        format!("tag:{key}={value}")
    }
}

pub(super) async fn fetch(
    sdk: &SdkConfig,
    config: &AwsCostConfig,
    window: CostWindow,
) -> CostFetch {
    let Some((start, end)) = period(config, window) else {
        return CostFetch {
            complete: true,
            ..CostFetch::default()
        };
    };
    // Cost Explorer has one endpoint, in us-east-1.
    let ce = Client::from_conf(
        aws_sdk_costexplorer::config::Builder::from(sdk)
            .region(Region::new("us-east-1"))
            .build(),
    );
    let mut requests = 0;
    let mut points = BTreeMap::new();
    let mut groupings = vec![(GroupDefinitionType::Dimension, "SERVICE".to_owned())];
    if let Some(tag) = &config.group_by_tag {
        groupings.push((GroupDefinitionType::Tag, tag.clone()));
    }
    for (kind, key) in groupings {
        let result = fetch_grouped(
            &ce,
            config,
            start,
            end,
            kind,
            &key,
            &mut requests,
            &mut points,
        )
        .await;
        if let Err(message) = result {
            return CostFetch {
                points: Vec::new(),
                requests,
                complete: false,
                errors: vec![ScanError {
                    account: None,
                    region: None,
                    service: "ce",
                    message,
                }],
            };
        }
    }
    CostFetch {
        points: points.into_values().collect(),
        requests,
        complete: true,
        errors: Vec::new(),
    }
}

#[allow(clippy::too_many_arguments)]
async fn fetch_grouped(
    ce: &Client,
    config: &AwsCostConfig,
    start: NaiveDate,
    end: NaiveDate,
    kind: GroupDefinitionType,
    key: &str,
    requests: &mut u32,
    points: &mut BTreeMap<(NaiveDate, AccountId, String), CostPoint>,
) -> Result<(), String> {
    let metric = config.metric.as_str();
    let is_tag = kind == GroupDefinitionType::Tag;
    let period = DateInterval::builder()
        .start(start.to_string())
        .end(end.to_string())
        .build()
        .map_err(|e| format!("cannot build the request period: {e}"))?;
    let mut token: Option<String> = None;
    loop {
        if *requests >= config.max_requests {
            return Err(format!(
                "stopped after {requests} Cost Explorer requests (aws.cost.max_requests = {}); nothing from this fetch was kept",
                config.max_requests
            ));
        }
        *requests += 1;
        let out = ce
            .get_cost_and_usage()
            .time_period(period.clone())
            .granularity(Granularity::Daily)
            .metrics(metric)
            .group_by(
                GroupDefinition::builder()
                    .r#type(GroupDefinitionType::Dimension)
                    .key("LINKED_ACCOUNT")
                    .build(),
            )
            .group_by(
                GroupDefinition::builder()
                    .r#type(kind.clone())
                    .key(key)
                    .build(),
            )
            .set_next_page_token(token.take())
            .send()
            .await
            .map_err(|e| sdk_error("GetCostAndUsage", &e))?;
        for result in out.results_by_time() {
            let day_text = result.time_period().map(|p| p.start()).unwrap_or_default();
            let day = NaiveDate::parse_from_str(day_text, "%Y-%m-%d")
                .map_err(|_| format!("GetCostAndUsage returned the day `{day_text}`"))?;
            for group in result.groups() {
                let keys = group.keys();
                let (Some(account), Some(series)) = (keys.first(), keys.get(1)) else {
                    return Err(format!(
                        "GetCostAndUsage returned a group with keys {keys:?}"
                    ));
                };
                let account =
                    AccountId::parse(account).map_err(|e| format!("GetCostAndUsage: {e}"))?;
                let series = if is_tag {
                    tag_series(key, series)
                } else {
                    series.clone()
                };
                let amount_text = group
                    .metrics()
                    .and_then(|m| m.get(metric))
                    .and_then(|v| v.amount())
                    .unwrap_or("0");
                // The same normalisation as every cost reader: credits stay
                // negative, float residues are rounded away.
                let amount = cost_amount(amount_text)
                    .map_err(|e| format!("GetCostAndUsage returned the amount {e}"))?;
                let point = CostPoint {
                    day,
                    account: account.clone(),
                    service: series.clone(),
                    amount_usd: amount,
                    estimated: result.estimated(),
                };
                points.insert((day, account, series), point);
            }
        }
        match out.next_page_token() {
            Some(next) if !next.is_empty() => token = Some(next.to_owned()),
            _ => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn the_first_fetch_covers_the_initial_days() {
        let config = AwsCostConfig::default();
        let window = CostWindow {
            last_stored_day: None,
            today: day("2026-11-25"),
        };
        assert_eq!(
            period(&config, window),
            Some((day("2026-07-28"), day("2026-11-25")))
        );
    }

    #[test]
    fn later_fetches_restate_the_last_days_only() {
        let config = AwsCostConfig::default();
        let window = CostWindow {
            last_stored_day: Some(day("2026-11-24")),
            today: day("2026-11-25"),
        };
        assert_eq!(
            period(&config, window),
            Some((day("2026-11-22"), day("2026-11-25")))
        );
        let config = AwsCostConfig {
            restate_days: 0,
            ..AwsCostConfig::default()
        };
        assert_eq!(period(&config, window), None);
    }

    #[test]
    fn tag_values_become_series_names() {
        assert_eq!(tag_series("team", "team$payments"), "tag:team=payments");
        assert_eq!(tag_series("team", "team$"), "tag:team=(untagged)");
    }
}
