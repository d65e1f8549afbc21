//! Security and waste rules over one region's EC2 inventory.
//!
//! One problem is reported once: a group open on every port gets a single
//! `sg_open_all` finding, not one per sensitive port besides.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::domain::{Finding, FindingKind, Fingerprint, Severity};
use crate::sources::RegionInventory;
use crate::sources::inventory::{IpPermission, SecurityGroup, Tag};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostureConfig {
    /// An unattached volume younger than this is probably being moved, not forgotten.
    pub unattached_volume_min_age_days: i64,
}

impl Default for PostureConfig {
    fn default() -> Self {
        Self {
            unattached_volume_min_age_days: 7,
        }
    }
}

pub const ADMIN_PORTS: [i32; 2] = [22, 3389];
pub const DB_PORTS: [i32; 7] = [3306, 5432, 1433, 1521, 27017, 6379, 9200];

/// Hourly price of an idle Elastic IP (public IPv4 charge), times 730 hours.
pub const EIP_IDLE_USD_MONTHLY: f64 = 0.005 * 730.0;

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
    for group in &inventory.security_groups {
        findings.extend(security_group_findings(inventory, group));
    }
    for volume in &inventory.volumes {
        let evidence = json!({
            "volume_id": volume.volume_id,
            "size_gib": volume.size,
            "volume_type": volume.volume_type,
            "state": volume.state,
            "encrypted": volume.encrypted,
            "created": volume.create_time,
            "availability_zone": volume.availability_zone,
            "attached_to": volume.attachments.iter().map(|a| &a.instance_id).collect::<Vec<_>>(),
            "tags": tags_object(&volume.tags),
        });
        if !volume.encrypted {
            findings.push(finding(
                inventory,
                FindingKind::EbsUnencrypted,
                Severity::Medium,
                format!(
                    "EBS volume {} ({} GiB {}) is not encrypted",
                    volume.volume_id, volume.size, volume.volume_type
                ),
                &volume.volume_id,
                None,
                evidence.clone(),
            ));
        }
        let age_days = (now - volume.create_time).num_days();
        if volume.state == "available" && age_days >= config.unattached_volume_min_age_days {
            let monthly = f64::from(volume.size) * ebs_usd_per_gib_month(&volume.volume_type);
            let mut evidence = evidence;
            evidence["age_days"] = json!(age_days);
            evidence["usd_per_gib_month"] = json!(ebs_usd_per_gib_month(&volume.volume_type));
            findings.push(finding(
                inventory,
                FindingKind::EbsUnattached,
                Severity::for_monthly_cost(monthly),
                format!(
                    "EBS volume {} ({} GiB {}) has been unattached for {age_days} days",
                    volume.volume_id, volume.size, volume.volume_type
                ),
                &volume.volume_id,
                Some(monthly),
                evidence,
            ));
        }
    }
    for snapshot in &inventory.snapshots {
        if snapshot.is_public() {
            findings.push(finding(
                inventory,
                FindingKind::SnapshotPublic,
                Severity::Critical,
                format!(
                    "EBS snapshot {} can be copied by any AWS account",
                    snapshot.snapshot_id
                ),
                &snapshot.snapshot_id,
                None,
                json!({
                    "snapshot_id": snapshot.snapshot_id,
                    "volume_id": snapshot.volume_id,
                    "volume_size_gib": snapshot.volume_size,
                    "encrypted": snapshot.encrypted,
                    "owner_id": snapshot.owner_id,
                    "started": snapshot.start_time,
                    "description": snapshot.description,
                    "create_volume_permissions": snapshot.create_volume_permissions,
                    "tags": tags_object(&snapshot.tags),
                }),
            ));
        }
    }
    for address in &inventory.addresses {
        let associated = address.association_id.is_some()
            || address.instance_id.is_some()
            || address.network_interface_id.is_some();
        if !associated {
            let resource = address
                .allocation_id
                .clone()
                .unwrap_or_else(|| address.public_ip.clone());
            findings.push(finding(
                inventory,
                FindingKind::EipUnassociated,
                Severity::for_monthly_cost(EIP_IDLE_USD_MONTHLY),
                format!(
                    "Elastic IP {} ({resource}) is not associated with anything",
                    address.public_ip
                ),
                &resource,
                Some(EIP_IDLE_USD_MONTHLY),
                json!({
                    "allocation_id": address.allocation_id,
                    "public_ip": address.public_ip,
                    "domain": address.domain,
                    "tags": tags_object(&address.tags),
                }),
            ));
        }
    }
    findings
}

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

/// What one ingress permission exposes to the whole internet.
enum Exposure {
    None,
    AllTraffic,
    Ports { from: i32, to: i32 },
}

fn world_exposure(permission: &IpPermission) -> (Exposure, Vec<String>) {
    let world_cidrs: Vec<String> = permission
        .ip_ranges
        .iter()
        .map(|r| r.cidr_ip.as_str())
        .chain(permission.ipv6_ranges.iter().map(|r| r.cidr_ipv6.as_str()))
        .filter(|cidr| *cidr == "0.0.0.0/0" || *cidr == "::/0")
        .map(str::to_owned)
        .collect();
    if world_cidrs.is_empty() {
        return (Exposure::None, world_cidrs);
    }
    let exposure = match permission.ip_protocol.as_str() {
        "-1" | "all" => Exposure::AllTraffic,
        "tcp" | "6" | "udp" | "17" => {
            let from = permission.from_port.unwrap_or(0);
            let to = permission.to_port.unwrap_or(65535);
            if from <= 0 && to >= 65535 {
                Exposure::AllTraffic
            } else {
                Exposure::Ports { from, to }
            }
        }
        // ICMP and other protocols carry no ports worth flagging here.
        _ => Exposure::None,
    };
    (exposure, world_cidrs)
}

fn security_group_findings(inventory: &RegionInventory, group: &SecurityGroup) -> Vec<Finding> {
    let mut open_all = Vec::new();
    let mut admin: BTreeSet<i32> = BTreeSet::new();
    let mut db: BTreeSet<i32> = BTreeSet::new();
    let mut admin_rules = Vec::new();
    let mut db_rules = Vec::new();
    for permission in &group.ip_permissions {
        let (exposure, cidrs) = world_exposure(permission);
        let rule = json!({
            "protocol": permission.ip_protocol,
            "from_port": permission.from_port,
            "to_port": permission.to_port,
            "cidrs": cidrs,
            "descriptions": permission.ip_ranges.iter().filter_map(|r| r.description.clone()).collect::<Vec<_>>(),
        });
        match exposure {
            Exposure::None => {}
            Exposure::AllTraffic => open_all.push(rule),
            Exposure::Ports { from, to } => {
                let hits_admin: Vec<i32> = ADMIN_PORTS
                    .into_iter()
                    .filter(|p| (from..=to).contains(p))
                    .collect();
                let hits_db: Vec<i32> = DB_PORTS
                    .into_iter()
                    .filter(|p| (from..=to).contains(p))
                    .collect();
                if !hits_admin.is_empty() {
                    admin.extend(hits_admin);
                    admin_rules.push(rule.clone());
                }
                if !hits_db.is_empty() {
                    db.extend(hits_db);
                    db_rules.push(rule);
                }
            }
        }
    }
    let evidence = |rules: Vec<Value>, ports: &BTreeSet<i32>| {
        json!({
            "group_id": group.group_id,
            "group_name": group.group_name,
            "vpc_id": group.vpc_id,
            "open_rules": rules,
            "ports": ports,
            "tags": tags_object(&group.tags),
        })
    };
    let name = if group.group_name.is_empty() {
        group.group_id.clone()
    } else {
        format!("{} ({})", group.group_id, group.group_name)
    };
    if !open_all.is_empty() {
        return vec![finding(
            inventory,
            FindingKind::SgOpenAll,
            Severity::Critical,
            format!("Security group {name} allows all traffic from the internet"),
            &group.group_id,
            None,
            evidence(open_all, &BTreeSet::new()),
        )];
    }
    let mut findings = Vec::new();
    if !admin.is_empty() {
        findings.push(finding(
            inventory,
            FindingKind::SgOpenAdminPort,
            Severity::Critical,
            format!(
                "Security group {name} allows {} from the internet",
                port_list(&admin)
            ),
            &group.group_id,
            None,
            evidence(admin_rules, &admin),
        ));
    }
    if !db.is_empty() {
        findings.push(finding(
            inventory,
            FindingKind::SgOpenDbPort,
            Severity::High,
            format!(
                "Security group {name} exposes database {} to the internet",
                port_list(&db)
            ),
            &group.group_id,
            None,
            evidence(db_rules, &db),
        ));
    }
    findings
}

fn port_list(ports: &BTreeSet<i32>) -> String {
    let list: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
    let noun = if ports.len() == 1 { "port" } else { "ports" };
    format!("{noun} {}", list.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::AccountId;
    use crate::sources::inventory::IpRange;

    fn inventory(groups: Vec<SecurityGroup>) -> RegionInventory {
        RegionInventory {
            account: AccountId::parse("123456789012").unwrap(),
            region: "us-east-1".into(),
            security_groups: groups,
            volumes: vec![],
            snapshots: vec![],
            addresses: vec![],
            instances: vec![],
        }
    }

    fn group(rules: Vec<(&str, Option<i32>, Option<i32>, &str)>) -> SecurityGroup {
        SecurityGroup {
            group_id: "sg-1".into(),
            group_name: "g".into(),
            vpc_id: None,
            ip_permissions: rules
                .into_iter()
                .map(|(proto, from, to, cidr)| IpPermission {
                    ip_protocol: proto.into(),
                    from_port: from,
                    to_port: to,
                    ip_ranges: vec![IpRange {
                        cidr_ip: cidr.into(),
                        description: None,
                    }],
                    ipv6_ranges: vec![],
                })
                .collect(),
            tags: vec![],
        }
    }

    fn kinds(groups: Vec<SecurityGroup>) -> Vec<FindingKind> {
        evaluate(&inventory(groups), &PostureConfig::default(), Utc::now())
            .into_iter()
            .map(|f| f.kind)
            .collect()
    }

    #[test]
    fn ssh_open_to_the_world_is_critical_admin_exposure() {
        assert_eq!(
            kinds(vec![group(vec![("tcp", Some(22), Some(22), "0.0.0.0/0")])]),
            vec![FindingKind::SgOpenAdminPort]
        );
    }

    #[test]
    fn ssh_open_to_a_private_range_is_fine() {
        assert!(kinds(vec![group(vec![("tcp", Some(22), Some(22), "10.0.0.0/8")])]).is_empty());
    }

    #[test]
    fn all_ports_is_reported_once_not_per_port() {
        assert_eq!(
            kinds(vec![group(vec![
                ("-1", None, None, "0.0.0.0/0"),
                ("tcp", Some(22), Some(22), "0.0.0.0/0"),
            ])]),
            vec![FindingKind::SgOpenAll]
        );
        assert_eq!(
            kinds(vec![group(vec![(
                "tcp",
                Some(0),
                Some(65535),
                "0.0.0.0/0"
            )])]),
            vec![FindingKind::SgOpenAll]
        );
    }

    #[test]
    fn a_port_range_covering_a_database_port_is_flagged() {
        assert_eq!(
            kinds(vec![group(vec![(
                "tcp",
                Some(5000),
                Some(6000),
                "0.0.0.0/0"
            )])]),
            vec![FindingKind::SgOpenDbPort]
        );
    }

    #[test]
    fn https_open_to_the_world_is_not_a_finding() {
        assert!(
            kinds(vec![group(vec![(
                "tcp",
                Some(443),
                Some(443),
                "0.0.0.0/0"
            )])])
            .is_empty()
        );
    }
}
