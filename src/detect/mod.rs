//! Turns observations into findings. Pure functions: no I/O, no clock (the
//! scan time is passed in), so every rule is unit-testable.

pub mod cost;
pub mod posture;
pub mod series_csv;
pub mod stream;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::Finding;
use crate::sources::{CostPoint, RegionInventory};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectConfig {
    pub cost: cost::CostConfig,
    pub posture: posture::PostureConfig,
}

/// Runs every detector; findings come back most severe first, then by kind and resource,
/// so output is stable from scan to scan.
pub fn detect(
    costs: &[CostPoint],
    inventories: &[RegionInventory],
    config: &DetectConfig,
    now: DateTime<Utc>,
) -> Vec<Finding> {
    let mut findings = cost::detect(costs, &config.cost);
    for inventory in inventories {
        findings.extend(posture::evaluate(inventory, &config.posture, now));
    }
    // Outside text (tags, names, service names) is neutralised once, here, for every detector.
    findings.iter_mut().for_each(Finding::neutralise);
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.kind.cmp(&b.kind))
            .then(a.account.cmp(&b.account))
            .then(a.resource.cmp(&b.resource))
    });
    findings
}
