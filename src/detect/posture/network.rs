//! Exposure to the internet: security groups open to 0.0.0.0/0 or ::/0,
//! instances with a public address behind such a group, idle Elastic IPs.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::{EIP_IDLE_USD_MONTHLY, finding, tags_object};
use crate::domain::{Finding, FindingKind, Severity};
use crate::sources::RegionInventory;
use crate::sources::inventory::{IpPermission, SecurityGroup};

pub const ADMIN_PORTS: [i32; 2] = [22, 3389];
pub const DB_PORTS: [i32; 7] = [3306, 5432, 1433, 1521, 27017, 6379, 9200];

pub(super) fn evaluate(inventory: &RegionInventory, findings: &mut Vec<Finding>) {
    for group in &inventory.security_groups {
        findings.extend(security_group_findings(inventory, group));
    }
    for instance in &inventory.instances {
        let Some(public_ip) = &instance.public_ip_address else {
            continue;
        };
        if instance.state.name != "running" {
            continue;
        }
        let exposing: Vec<Value> = instance
            .security_groups
            .iter()
            .filter_map(|g| inventory.security_groups.iter().find(|sg| sg.group_id == g.group_id))
            .filter_map(|sg| {
                let rules = world_rules(sg);
                (!rules.is_empty()).then(|| json!({ "group_id": sg.group_id, "group_name": sg.group_name, "open_rules": rules }))
            })
            .collect();
        if exposing.is_empty() {
            continue;
        }
        findings.push(finding(
            inventory,
            FindingKind::InstancePublicExposed,
            Severity::High,
            format!(
                "Instance {} has public address {public_ip} and a security group open to the internet",
                instance.instance_id
            ),
            &instance.instance_id,
            None,
            json!({
                "instance_id": instance.instance_id,
                "instance_type": instance.instance_type,
                "public_ip": public_ip,
                "groups": exposing,
                "tags": tags_object(&instance.tags),
            }),
        ));
    }
    for address in &inventory.addresses {
        let associated = address.association_id.is_some()
            || address.instance_id.is_some()
            || address.network_interface_id.is_some();
        if associated {
            continue;
        }
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

/// Every ingress rule of a group that is open to the whole internet, as evidence.
fn world_rules(group: &SecurityGroup) -> Vec<Value> {
    group
        .ip_permissions
        .iter()
        .filter_map(|p| {
            let (exposure, cidrs) = world_exposure(p);
            (!matches!(exposure, Exposure::None)).then(|| rule_evidence(p, cidrs))
        })
        .collect()
}

fn rule_evidence(permission: &IpPermission, cidrs: Vec<String>) -> Value {
    json!({
        "protocol": permission.ip_protocol,
        "from_port": permission.from_port,
        "to_port": permission.to_port,
        "cidrs": cidrs,
        "descriptions": permission.ip_ranges.iter().filter_map(|r| r.description.clone()).collect::<Vec<_>>(),
    })
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
        let rule = rule_evidence(permission, cidrs);
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
    use crate::detect::posture::test_support::empty_inventory;
    use crate::sources::inventory::IpRange;

    fn inventory(groups: Vec<SecurityGroup>) -> RegionInventory {
        RegionInventory {
            security_groups: groups,
            ..empty_inventory()
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
        let mut findings = Vec::new();
        evaluate(&inventory(groups), &mut findings);
        findings.into_iter().map(|f| f.kind).collect()
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
