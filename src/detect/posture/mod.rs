//! Security and waste rules over one region's EC2 inventory.
//!
//! One problem is reported once (Prowler's habit): a group open on every port
//! gets a single `sg_open_all` finding, not one per sensitive port besides.
//!
//! "Open to the internet" is decided on parsed CIDRs, as the union of every
//! rule that admits a protocol and port, against every globally reachable
//! address of a family ([`world`], [`ingress`]); never by matching `0.0.0.0/0`.

mod compute;
pub mod ingress;
mod network;
mod storage;
pub mod world;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::{Finding, FindingKind, Fingerprint, Severity};
use crate::sources::RegionInventory;
use crate::sources::inventory::Tag;

pub use network::{ADMIN_PORTS, DB_PORTS};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostureConfig {
    /// An unattached volume younger than this is probably being moved, not forgotten.
    pub unattached_volume_min_age_days: i64,
    /// A snapshot whose volume is gone is reported once it is this old.
    pub orphaned_snapshot_min_age_days: i64,
    /// An instance stopped this long, with volumes still billed, is reported.
    pub stopped_instance_min_days: i64,
}

impl Default for PostureConfig {
    fn default() -> Self {
        Self {
            unattached_volume_min_age_days: 7,
            orphaned_snapshot_min_age_days: 30,
            stopped_instance_min_days: 30,
        }
    }
}

/// Hourly price of an idle Elastic IP (public IPv4 charge), times 730 hours.
pub const EIP_IDLE_USD_MONTHLY: f64 = 0.005 * 730.0;
/// EBS snapshot storage, standard tier, USD per GiB-month (us-east-1). Snapshots
/// are incremental, so size × price is an upper bound.
pub const SNAPSHOT_USD_PER_GIB_MONTH: f64 = 0.05;

/// On-demand EBS list price in USD per GiB-month (us-east-1). Other regions
/// differ by a few percent: good enough to rank waste, not to bill it.
pub fn ebs_usd_per_gib_month(volume_type: &str) -> f64 {
    match volume_type {
        "gp3" => 0.08,
        "gp2" => 0.10,
        "io1" | "io2" => 0.125,
        "st1" => 0.045,
        "sc1" => 0.015,
        _ => 0.05, // "standard" magnetic, and anything new defaults to the cheapest known rate
    }
}

pub fn evaluate(
    inventory: &RegionInventory,
    config: &PostureConfig,
    now: DateTime<Utc>,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    network::evaluate(inventory, &mut findings);
    storage::evaluate(inventory, config, now, &mut findings);
    compute::evaluate(inventory, config, now, &mut findings);
    findings
}

/// Builds a finding in this inventory's account and region.
fn finding(
    inventory: &RegionInventory,
    kind: FindingKind,
    severity: Severity,
    title: String,
    resource: &str,
    monthly_waste: Option<f64>,
    evidence: Value,
) -> Finding {
    let monthly = monthly_waste.map(|usd| (usd * 100.0).round() / 100.0);
    Finding {
        kind,
        severity,
        title,
        resource: resource.to_owned(),
        account: inventory.account.clone(),
        region: Some(inventory.region.clone()),
        // For waste, "expected" spend is zero and "actual" is what it costs now.
        expected: monthly.map(|_| 0.0),
        actual: monthly,
        impact_usd_monthly: monthly,
        evidence,
        fingerprint: Fingerprint::of(&[
            kind.as_str(),
            inventory.account.as_str(),
            &inventory.region,
            resource,
        ]),
    }
}

fn tags_object(tags: &[Tag]) -> Value {
    Value::Object(
        tags.iter()
            .map(|t| (t.key.clone(), Value::String(t.value.clone())))
            .collect(),
    )
}

#[cfg(test)]
pub(crate) mod test_support {
    use chrono::{Duration, Utc};

    use super::{PostureConfig, evaluate};
    use crate::domain::{AccountId, FindingKind};
    use crate::sources::RegionInventory;
    use crate::sources::inventory::Volume;

    /// The kinds every rule finds in `inventory`, with the default thresholds.
    pub fn kinds(inventory: &RegionInventory) -> Vec<FindingKind> {
        evaluate(inventory, &PostureConfig::default(), Utc::now())
            .into_iter()
            .map(|f| f.kind)
            .collect()
    }

    /// An encrypted, year-old volume.
    pub fn volume(id: &str, size: u32, volume_type: &str, state: &str) -> Volume {
        Volume {
            volume_id: id.into(),
            size,
            volume_type: volume_type.into(),
            encrypted: true,
            state: state.into(),
            create_time: Utc::now() - Duration::days(365),
            availability_zone: None,
            attachments: vec![],
            tags: vec![],
        }
    }

    pub fn empty_inventory() -> RegionInventory {
        RegionInventory {
            account: AccountId::parse("123456789012").expect("valid"),
            region: "us-east-1".into(),
            security_groups: vec![],
            volumes: vec![],
            snapshots: vec![],
            addresses: vec![],
            instances: vec![],
            images: vec![],
            ebs_encryption_by_default: None,
        }
    }
}
