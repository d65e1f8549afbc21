//! What a set of ingress rules admits from the whole internet, per transport
//! protocol and port, taking the union across *all* the rules.
//!
//! EC2 evaluates a group's rules (and an instance's groups) as one union:
//! a packet is allowed when any rule allows it. So the question "is TCP 22
//! open to the world?" is asked of every rule that admits TCP 22 at once —
//! `tcp 22 from 0.0.0.0/1` plus `-1 from 128.0.0.0/1` is SSH open to every
//! IPv4 address. "The world" is [`world::covers_world`].
//!
//! Read here: `tcp`/`6`, `udp`/`17` with their port range (an absent or
//! negative bound means the open end), and `-1` (every protocol, every port).
//! ICMP and other protocols carry no ports these rules look at. Rules that
//! admit another security group (`UserIdGroupPairs`) admit only interfaces in
//! that group, never the internet; rules that admit a managed prefix list
//! (`PrefixListIds`) are not resolved (that needs
//! `GetManagedPrefixListEntries`), so a world-wide prefix list is not seen.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use serde::Serialize;
use serde_json::{Value, json};

use super::world::{self, Family};
use crate::sources::inventory::IpPermission;

/// The transport protocols whose ports the rules look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Tcp,
    Udp,
}

const BOTH: [Transport; 2] = [Transport::Tcp, Transport::Udp];
const LAST_PORT: u32 = 65535;

/// One permission as the union reads it.
struct Rule<'a> {
    /// Index of the group it belongs to, in the caller's order.
    owner: usize,
    permission: &'a IpPermission,
    transports: &'static [Transport],
    /// Inclusive port range.
    from: u32,
    to: u32,
    /// Parsed networks with the text they were written as.
    nets: Vec<(IpNet, &'a str, Option<&'a str>)>,
}

/// A port range of one transport that the union opens to every global
/// address of one family, with the ranges that did it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorldOpening {
    pub protocol: Transport,
    pub from_port: u32,
    pub to_port: u32,
    pub family: Family,
    /// The CIDRs, as written in the rules, that admit global addresses here.
    pub ranges: Vec<String>,
}

impl WorldOpening {
    pub fn is_every_port(&self) -> bool {
        self.from_port == 0 && self.to_port == LAST_PORT
    }

    pub fn contains(&self, port: u32) -> bool {
        (self.from_port..=self.to_port).contains(&port)
    }
}

/// The union of some ingress rules, and what it opens to the world.
pub struct Ingress<'a> {
    rules: Vec<Rule<'a>>,
    openings: Vec<WorldOpening>,
}

fn transports(protocol: &str) -> &'static [Transport] {
    let p = protocol.trim();
    if p == "-1" || p.eq_ignore_ascii_case("all") {
        &BOTH
    } else if p == "6" || p.eq_ignore_ascii_case("tcp") {
        &BOTH[..1]
    } else if p == "17" || p.eq_ignore_ascii_case("udp") {
        &BOTH[1..]
    } else {
        &[]
    }
}

fn port_range(permission: &IpPermission, every_port: bool) -> Option<(u32, u32)> {
    if every_port {
        return Some((0, LAST_PORT));
    }
    let bound = |p: Option<i32>| {
        p.and_then(|p| u32::try_from(p).ok())
            .filter(|p| *p <= LAST_PORT)
    };
    let from = bound(permission.from_port).unwrap_or(0);
    let to = bound(permission.to_port).unwrap_or(LAST_PORT);
    (from <= to).then_some((from, to))
}

impl<'a> Ingress<'a> {
    /// Reads `(owner, permission)` pairs; `owner` is echoed in the evidence so
    /// a caller with several groups knows which group a rule belongs to.
    /// Unparseable CIDRs are skipped with a warning.
    pub fn new(permissions: impl IntoIterator<Item = (usize, &'a IpPermission)>) -> Self {
        let mut rules = Vec::new();
        for (owner, permission) in permissions {
            let transports = transports(&permission.ip_protocol);
            if transports.is_empty() {
                continue;
            }
            let Some((from, to)) = port_range(permission, transports.len() == 2) else {
                continue;
            };
            let written = permission
                .ip_ranges
                .iter()
                .map(|r| (r.cidr_ip.as_str(), r.description.as_deref()))
                .chain(
                    permission
                        .ipv6_ranges
                        .iter()
                        .map(|r| (r.cidr_ipv6.as_str(), r.description.as_deref())),
                );
            let mut nets = Vec::new();
            for (text, description) in written {
                match world::parse_cidr(text) {
                    Some(net) => nets.push((net, text, description)),
                    None => tracing::warn!(cidr = text, "ingress range is not a CIDR; ignored"),
                }
            }
            rules.push(Rule {
                owner,
                permission,
                transports,
                from,
                to,
                nets,
            });
        }
        let mut ingress = Self {
            rules,
            openings: Vec::new(),
        };
        ingress.openings = ingress.find_openings();
        ingress
    }

    /// Every port range the union opens to the world, by transport and family.
    pub fn openings(&self) -> &[WorldOpening] {
        &self.openings
    }

    /// The ports of `candidates` open to the world over TCP or UDP.
    pub fn open_ports(&self, candidates: &[i32]) -> BTreeSet<i32> {
        candidates
            .iter()
            .copied()
            .filter(|p| {
                u32::try_from(*p).is_ok_and(|p| self.openings.iter().any(|o| o.contains(p)))
            })
            .collect()
    }

    fn find_openings(&self) -> Vec<WorldOpening> {
        let mut openings = Vec::new();
        for transport in BOTH {
            for family in [Family::Ipv4, Family::Ipv6] {
                let applicable: Vec<&Rule> = self
                    .rules
                    .iter()
                    .filter(|r| r.transports.contains(&transport))
                    .filter(|r| r.nets.iter().any(|(n, ..)| Family::of(n) == family))
                    .collect();
                if applicable.is_empty() {
                    continue;
                }
                // Elementary port segments: no rule starts or ends inside one.
                let mut bounds: BTreeSet<u32> = BTreeSet::from([0, LAST_PORT + 1]);
                for r in &applicable {
                    bounds.insert(r.from);
                    bounds.insert(r.to + 1);
                }
                let bounds: Vec<u32> = bounds.into_iter().collect();
                let mut current: Option<WorldOpening> = None;
                for pair in bounds.windows(2) {
                    let (start, end) = (pair[0], pair[1] - 1);
                    let covering: Vec<&&Rule> = applicable
                        .iter()
                        .filter(|r| r.from <= start && end <= r.to)
                        .collect();
                    let nets = covering
                        .iter()
                        .flat_map(|r| &r.nets)
                        .filter(|(n, ..)| Family::of(n) == family);
                    if !world::covers_world(family, nets.clone().map(|(n, ..)| n)) {
                        openings.extend(current.take());
                        continue;
                    }
                    let ranges = nets
                        .filter(|(n, ..)| world::reaches_global(n))
                        .map(|(_, text, _)| (*text).to_owned());
                    let opening = current.get_or_insert_with(|| WorldOpening {
                        protocol: transport,
                        from_port: start,
                        to_port: end,
                        family,
                        ranges: Vec::new(),
                    });
                    opening.to_port = end;
                    for range in ranges {
                        if !opening.ranges.contains(&range) {
                            opening.ranges.push(range);
                        }
                    }
                }
                openings.extend(current);
            }
        }
        openings
    }

    /// The rules behind the openings `wanted` accepts, as evidence that
    /// revokes exactly them: `(owner, rule)` where the rule is
    /// `{protocol, from_port, to_port, cidrs, descriptions}` as written, with
    /// only its CIDRs that admit global addresses of an open family.
    /// `wanted` sees each opening with the part of its port range the rule admits.
    pub fn rules_behind(
        &self,
        wanted: impl Fn(&WorldOpening, u32, u32) -> bool,
    ) -> Vec<(usize, Value)> {
        let mut evidence = Vec::new();
        for rule in &self.rules {
            let families: BTreeSet<Family> = self
                .openings
                .iter()
                .filter(|o| rule.transports.contains(&o.protocol))
                .filter_map(|o| {
                    let (lo, hi) = (rule.from.max(o.from_port), rule.to.min(o.to_port));
                    (lo <= hi && wanted(o, lo, hi)).then_some(o.family)
                })
                .collect();
            let mut cidrs: Vec<&str> = Vec::new();
            let mut descriptions: Vec<&str> = Vec::new();
            for (net, text, description) in &rule.nets {
                if families.contains(&Family::of(net))
                    && world::reaches_global(net)
                    && !cidrs.contains(text)
                {
                    cidrs.push(text);
                    descriptions.extend(description);
                }
            }
            if cidrs.is_empty() {
                continue;
            }
            let p = rule.permission;
            evidence.push((
                rule.owner,
                json!({
                    "protocol": p.ip_protocol,
                    "from_port": p.from_port,
                    "to_port": p.to_port,
                    "cidrs": cidrs,
                    "descriptions": descriptions,
                }),
            ));
        }
        evidence
    }
}

/// Openings as evidence, grouped for reading: `[{protocol, from_port, to_port, family, ranges}]`.
pub fn openings_evidence<'o>(openings: impl IntoIterator<Item = &'o WorldOpening>) -> Value {
    let mut sorted: BTreeMap<(Transport, u32, Family), &WorldOpening> = BTreeMap::new();
    for o in openings {
        sorted.insert((o.protocol, o.from_port, o.family), o);
    }
    json!(sorted.values().collect::<Vec<_>>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::inventory::{IpRange, Ipv6Range};

    fn rule(protocol: &str, from: Option<i32>, to: Option<i32>, cidrs: &[&str]) -> IpPermission {
        IpPermission {
            ip_protocol: protocol.into(),
            from_port: from,
            to_port: to,
            ip_ranges: cidrs
                .iter()
                .filter(|c| !c.contains(':'))
                .map(|c| IpRange {
                    cidr_ip: (*c).into(),
                    description: None,
                })
                .collect(),
            ipv6_ranges: cidrs
                .iter()
                .filter(|c| c.contains(':'))
                .map(|c| Ipv6Range {
                    cidr_ipv6: (*c).into(),
                    description: None,
                })
                .collect(),
        }
    }

    fn openings(rules: &[IpPermission]) -> Vec<(Transport, u32, u32, Family)> {
        Ingress::new(rules.iter().map(|r| (0, r)))
            .openings()
            .iter()
            .map(|o| (o.protocol, o.from_port, o.to_port, o.family))
            .collect()
    }

    #[test]
    fn halves_in_separate_rules_and_protocols_add_up() {
        let rules = [
            rule("tcp", Some(22), Some(22), &["0.0.0.0/1"]),
            rule("-1", None, None, &["128.0.0.0/1"]),
        ];
        assert_eq!(
            openings(&rules),
            vec![(Transport::Tcp, 22, 22, Family::Ipv4)]
        );
    }

    #[test]
    fn port_ranges_are_cut_where_the_union_changes() {
        let rules = [
            rule("tcp", Some(0), Some(1000), &["0.0.0.0/1"]),
            rule("tcp", Some(500), Some(3000), &["128.0.0.0/1"]),
            rule("6", Some(2000), Some(2999), &["0.0.0.0/0"]),
        ];
        assert_eq!(
            openings(&rules),
            vec![
                (Transport::Tcp, 500, 1000, Family::Ipv4),
                (Transport::Tcp, 2000, 2999, Family::Ipv4)
            ]
        );
    }

    #[test]
    fn the_families_are_judged_apart() {
        let rules = [
            rule(
                "udp",
                Some(53),
                Some(53),
                &["::/1", "8000::/1", "0.0.0.0/1"],
            ),
            rule("icmp", Some(-1), Some(-1), &["0.0.0.0/0"]),
        ];
        assert_eq!(
            openings(&rules),
            vec![(Transport::Udp, 53, 53, Family::Ipv6)]
        );
    }

    #[test]
    fn the_evidence_names_the_rules_and_ranges_that_did_it() {
        let rules = [
            rule("tcp", Some(22), Some(22), &["0.0.0.0/1", "10.0.0.0/8"]),
            rule("tcp", Some(20), Some(30), &["128.0.0.0/1"]),
            rule("tcp", Some(443), Some(443), &["0.0.0.0/0"]),
        ];
        let ingress = Ingress::new(rules.iter().map(|r| (7, r)));
        assert_eq!(ingress.open_ports(&[22, 3389]), BTreeSet::from([22]));
        let behind = ingress.rules_behind(|_, lo, hi| (lo..=hi).contains(&22));
        assert_eq!(behind.len(), 2);
        assert_eq!(behind[0].0, 7);
        assert_eq!(behind[0].1["cidrs"], json!(["0.0.0.0/1"]));
        assert_eq!(behind[1].1["cidrs"], json!(["128.0.0.0/1"]));
        assert_eq!(behind[1].1["from_port"], json!(20));
        let opening = &ingress.openings()[0];
        assert_eq!(opening.ranges, vec!["0.0.0.0/1", "128.0.0.0/1"]);
    }
}
