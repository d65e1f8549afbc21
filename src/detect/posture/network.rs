//! Exposure to the internet: security groups whose rules, taken together,
//! admit every global address ([`super::ingress`], [`super::world`]),
//! instances with a public address behind such groups, idle Elastic IPs.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde_json::{Value, json};

use super::ingress::{Ingress, WorldOpening, openings_evidence};
use super::world::Family;
use super::{EIP_IDLE_USD_MONTHLY, finding, tags_object};
use crate::domain::{Finding, FindingKind, Severity};
use crate::sources::RegionInventory;
use crate::sources::inventory::SecurityGroup;

pub const ADMIN_PORTS: [i32; 2] = [22, 3389];
pub const DB_PORTS: [i32; 7] = [3306, 5432, 1433, 1521, 27017, 6379, 9200];

pub(super) fn evaluate(inventory: &RegionInventory, findings: &mut Vec<Finding>) {
    for group in &inventory.security_groups {
        findings.extend(security_group_findings(inventory, group));
    }
    for instance in &inventory.instances {
        if instance.state.name != "running" {
            continue;
        }
        // The internet reaches an instance over the families it has a public
        // address in: its public IPv4 (AWS assigns only public ones there), or
        // an IPv6 in the global unicast block 2000::/3 (not a unique-local one).
        let addresses: Vec<(Family, &str)> = [
            instance.public_ip_address.as_deref(),
            instance.ipv6_address.as_deref(),
        ]
        .into_iter()
        .flatten()
        .filter_map(|address| match address.trim().parse::<IpAddr>().ok()? {
            IpAddr::V4(_) => Some((Family::Ipv4, address)),
            IpAddr::V6(v6) => {
                (v6.segments()[0] & 0xe000 == 0x2000).then_some((Family::Ipv6, address))
            }
        })
        .collect();
        if addresses.is_empty() {
            continue;
        }
        let reachable = |o: &WorldOpening| addresses.iter().any(|(f, _)| *f == o.family);
        // An instance is reached through the union of all its groups' rules.
        let groups: Vec<&SecurityGroup> = instance
            .security_groups
            .iter()
            .filter_map(|g| {
                inventory
                    .security_groups
                    .iter()
                    .find(|sg| sg.group_id == g.group_id)
            })
            .collect();
        let ingress = Ingress::new(
            groups
                .iter()
                .enumerate()
                .flat_map(|(i, g)| g.ip_permissions.iter().map(move |p| (i, p))),
        );
        if !ingress.openings().iter().any(reachable) {
            continue;
        }
        let behind = ingress.rules_behind(|o, _, _| reachable(o));
        let exposing: Vec<Value> = groups
            .iter()
            .enumerate()
            .filter_map(|(i, sg)| {
                let rules: Vec<&Value> = behind.iter().filter(|(owner, _)| *owner == i).map(|(_, r)| r).collect();
                (!rules.is_empty()).then(|| json!({ "group_id": sg.group_id, "group_name": sg.group_name, "open_rules": rules }))
            })
            .collect();
        findings.push(finding(
            inventory,
            FindingKind::InstancePublicExposed,
            Severity::High,
            format!(
                "Instance {} has public address {} and security groups open to the internet",
                instance.instance_id,
                addresses
                    .iter()
                    .map(|(_, a)| *a)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            &instance.instance_id,
            None,
            json!({
                "instance_id": instance.instance_id,
                "instance_type": instance.instance_type,
                "public_ip": instance.public_ip_address,
                "ipv6_address": instance.ipv6_address,
                "groups": exposing,
                "world_open": openings_evidence(ingress.openings().iter().filter(|o| reachable(o))),
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

fn security_group_findings(inventory: &RegionInventory, group: &SecurityGroup) -> Vec<Finding> {
    let ingress = Ingress::new(group.ip_permissions.iter().map(|p| (0, p)));
    if ingress.openings().is_empty() {
        return Vec::new();
    }
    let evidence = |wanted: &dyn Fn(&WorldOpening, u32, u32) -> bool, ports: &BTreeSet<i32>| {
        let rules: Vec<Value> = ingress
            .rules_behind(wanted)
            .into_iter()
            .map(|(_, rule)| rule)
            .collect();
        let openings = ingress
            .openings()
            .iter()
            .filter(|o| wanted(o, o.from_port, o.to_port));
        json!({
            "group_id": group.group_id,
            "group_name": group.group_name,
            "vpc_id": group.vpc_id,
            "open_rules": rules,
            "ports": ports,
            "world_open": openings_evidence(openings),
            "tags": tags_object(&group.tags),
        })
    };
    let name = if group.group_name.is_empty() {
        group.group_id.clone()
    } else {
        format!("{} ({})", group.group_id, group.group_name)
    };
    // Every port of TCP or UDP open to the world is one problem, reported once.
    if ingress.openings().iter().any(WorldOpening::is_every_port) {
        return vec![finding(
            inventory,
            FindingKind::SgOpenAll,
            Severity::Critical,
            format!("Security group {name} allows all traffic from the internet"),
            &group.group_id,
            None,
            evidence(&|o, _, _| o.is_every_port(), &BTreeSet::new()),
        )];
    }
    let admitting = |ports: &BTreeSet<i32>| {
        let ports: Vec<u32> = ports
            .iter()
            .filter_map(|p| u32::try_from(*p).ok())
            .collect();
        move |_: &WorldOpening, lo: u32, hi: u32| ports.iter().any(|p| (lo..=hi).contains(p))
    };
    let mut findings = Vec::new();
    let admin = ingress.open_ports(&ADMIN_PORTS);
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
            evidence(&admitting(&admin), &admin),
        ));
    }
    let db = ingress.open_ports(&DB_PORTS);
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
            evidence(&admitting(&db), &db),
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
    use crate::sources::inventory::{IpPermission, IpRange};

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
    fn ssh_open_to_every_address_in_two_halves_is_critical_with_both_halves_as_evidence() {
        let mut findings = Vec::new();
        evaluate(
            &inventory(vec![group(vec![
                ("tcp", Some(22), Some(22), "0.0.0.0/1"),
                ("tcp", Some(22), Some(22), "128.0.0.0/1"),
            ])]),
            &mut findings,
        );
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].kind, FindingKind::SgOpenAdminPort);
        assert_eq!(findings[0].severity, Severity::Critical);
        let cidrs: Vec<&Value> = findings[0].evidence["open_rules"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|r| r["cidrs"].as_array().into_iter().flatten())
            .collect();
        assert_eq!(cidrs, vec!["0.0.0.0/1", "128.0.0.0/1"]);
        assert_eq!(
            findings[0].evidence["world_open"][0]["ranges"],
            json!(["0.0.0.0/1", "128.0.0.0/1"])
        );
    }

    #[test]
    fn half_the_internet_or_only_private_space_is_not_the_world() {
        assert!(kinds(vec![group(vec![("tcp", Some(22), Some(22), "0.0.0.0/1")])]).is_empty());
        assert!(
            kinds(vec![group(vec![
                ("tcp", Some(22), Some(22), "10.0.0.0/8"),
                ("tcp", Some(22), Some(22), "172.16.0.0/12"),
                ("tcp", Some(22), Some(22), "192.168.0.0/16"),
            ])])
            .is_empty()
        );
    }

    #[test]
    fn every_port_in_pieces_is_all_traffic() {
        assert_eq!(
            kinds(vec![group(vec![
                ("tcp", Some(0), Some(30000), "0.0.0.0/0"),
                ("tcp", Some(30001), Some(65535), "0.0.0.0/0"),
            ])]),
            vec![FindingKind::SgOpenAll]
        );
    }

    #[test]
    fn an_instance_is_exposed_by_the_union_of_its_groups() {
        use crate::sources::inventory::{GroupIdentifier, Instance, InstanceState};
        let mut a = group(vec![("tcp", Some(443), Some(443), "0.0.0.0/1")]);
        a.group_id = "sg-a".into();
        let mut b = group(vec![("-1", None, None, "128.0.0.0/1")]);
        b.group_id = "sg-b".into();
        let mut inventory = inventory(vec![a, b]);
        inventory.instances = vec![Instance {
            instance_id: "i-1".into(),
            instance_type: "t3.micro".into(),
            state: InstanceState {
                name: "running".into(),
            },
            launch_time: None,
            public_ip_address: Some("203.0.113.10".into()),
            ipv6_address: None,
            private_ip_address: None,
            security_groups: ["sg-a", "sg-b"]
                .into_iter()
                .map(|id| GroupIdentifier {
                    group_id: id.into(),
                    group_name: None,
                })
                .collect(),
            metadata_options: None,
            state_transition_reason: None,
            block_device_mappings: vec![],
            tags: vec![],
        }];
        let mut findings = Vec::new();
        evaluate(&inventory, &mut findings);
        let exposed: Vec<&Finding> = findings
            .iter()
            .filter(|f| f.kind == FindingKind::InstancePublicExposed)
            .collect();
        assert_eq!(exposed.len(), 1, "{findings:?}");
        let groups = exposed[0].evidence["groups"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let ids: Vec<&str> = groups
            .iter()
            .filter_map(|g| g["group_id"].as_str())
            .collect();
        assert_eq!(ids, vec!["sg-a", "sg-b"]);
        // Neither group alone is open to the world.
        assert!(
            findings
                .iter()
                .all(|f| f.kind == FindingKind::InstancePublicExposed)
        );
    }

    #[test]
    fn an_instance_is_reached_only_over_the_families_it_has_a_global_address_in() {
        use crate::sources::inventory::{GroupIdentifier, Instance, InstanceState};
        let mut v6_open = group(vec![]);
        v6_open.ip_permissions = vec![IpPermission {
            ip_protocol: "tcp".into(),
            from_port: Some(443),
            to_port: Some(443),
            ip_ranges: vec![],
            ipv6_ranges: vec![crate::sources::inventory::Ipv6Range {
                cidr_ipv6: "::/0".into(),
                description: None,
            }],
        }];
        let instance = |public: Option<&str>, v6: Option<&str>| Instance {
            instance_id: "i-1".into(),
            instance_type: "t3.micro".into(),
            state: InstanceState {
                name: "running".into(),
            },
            launch_time: None,
            public_ip_address: public.map(str::to_owned),
            ipv6_address: v6.map(str::to_owned),
            private_ip_address: None,
            security_groups: vec![GroupIdentifier {
                group_id: "sg-1".into(),
                group_name: None,
            }],
            metadata_options: None,
            state_transition_reason: None,
            block_device_mappings: vec![],
            tags: vec![],
        };
        let exposed = |i: Instance| {
            let mut inventory = inventory(vec![v6_open.clone()]);
            inventory.instances = vec![i];
            let mut findings = Vec::new();
            evaluate(&inventory, &mut findings);
            findings
                .iter()
                .any(|f| f.kind == FindingKind::InstancePublicExposed)
        };
        assert!(
            !exposed(instance(Some("198.51.100.7"), None)),
            "no IPv6 address"
        );
        assert!(
            exposed(instance(None, Some("2600:1f18::7"))),
            "IPv6-only and open to ::/0"
        );
        assert!(
            !exposed(instance(None, Some("fd00::7"))),
            "a unique-local address is not reachable"
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
