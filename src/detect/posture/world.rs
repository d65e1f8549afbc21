//! Which addresses are "the internet", and whether a set of CIDRs covers it.
//!
//! A security group is open to the world when what it admits covers every
//! globally reachable address of a family, not when a rule happens to read
//! `0.0.0.0/0`: `0.0.0.0/1` + `128.0.0.0/1`, or 223 `/8`s, are the same exposure.
//! Addresses no internet client can connect from may be missing from the union
//! and it is still the whole internet. They are:
//!
//! - IPv4: the entries of IANA's IPv4 Special-Purpose Address Registry
//!   (RFC 6890, updated by RFC 8190) marked *Globally Reachable: False*, the
//!   deprecated 6to4 relay anycast block (RFC 7526), and multicast
//!   `224.0.0.0/4` (RFC 5771), which is never a source address.
//! - IPv6: everything outside `2000::/3`, the only block IANA allocates for
//!   global unicast (RFC 4291 §2.4; loopback, IPv4-mapped, `fc00::/7`,
//!   `fe80::/10`, `ff00::/8`, `64:ff9b::/96` … lie outside it), and inside it
//!   the IPv6 Special-Purpose Registry's IETF, documentation and 6to4 blocks.
//!
//! Everything else is "global". The rule errs towards reporting: a group that
//! admits every global address but, say, `192.0.2.0/24` is still world-open.

use std::net::IpAddr;
use std::sync::LazyLock;

use ipnet::IpNet;
use serde::Serialize;

/// An address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    pub fn of(net: &IpNet) -> Self {
        match net {
            IpNet::V4(_) => Family::Ipv4,
            IpNet::V6(_) => Family::Ipv6,
        }
    }

    fn last_address(self) -> u128 {
        match self {
            Family::Ipv4 => u128::from(u32::MAX),
            Family::Ipv6 => u128::MAX,
        }
    }
}

/// IPv4 ranges outside the global set (see the module documentation).
const NON_GLOBAL_V4: [&str; 15] = [
    "0.0.0.0/8",       // "this network", RFC 791
    "10.0.0.0/8",      // private, RFC 1918
    "100.64.0.0/10",   // shared address space (carrier-grade NAT), RFC 6598
    "127.0.0.0/8",     // loopback, RFC 1122
    "169.254.0.0/16",  // link local, RFC 3927
    "172.16.0.0/12",   // private, RFC 1918
    "192.0.0.0/24", // IETF protocol assignments, RFC 6890 (its anycast /32s .9 and .10 are services, never clients)
    "192.0.2.0/24", // TEST-NET-1, RFC 5737
    "192.88.99.0/24", // 6to4 relay anycast, deprecated by RFC 7526
    "192.168.0.0/16", // private, RFC 1918
    "198.18.0.0/15", // benchmarking, RFC 2544
    "198.51.100.0/24", // TEST-NET-2, RFC 5737
    "203.0.113.0/24", // TEST-NET-3, RFC 5737
    "224.0.0.0/4",  // multicast, RFC 5771
    "240.0.0.0/4",  // reserved, RFC 1112 §4 (holds 255.255.255.255, RFC 919)
];

/// The IPv6 global unicast block, RFC 4291 §2.4.
const GLOBAL_UNICAST_V6: &str = "2000::/3";

/// IPv6 ranges inside `2000::/3` that are not global.
const NON_GLOBAL_V6: [&str; 4] = [
    "2001::/23", // IETF protocol assignments, RFC 2928 (Teredo, AMT, ORCHID relays, not clients)
    "2001:db8::/32", // documentation, RFC 3849
    "2002::/16", // 6to4, RFC 3056 (Globally Reachable: N/A)
    "3fff::/20", // documentation, RFC 9637
];

/// An inclusive range of addresses as integers.
type Span = (u128, u128);

fn net(cidr: &str) -> IpNet {
    cidr.parse()
        .expect("the special-purpose tables hold valid CIDRs")
}

fn span(net: &IpNet) -> Span {
    match net {
        IpNet::V4(n) => (
            u128::from(u32::from(n.network())),
            u128::from(u32::from(n.broadcast())),
        ),
        IpNet::V6(n) => (u128::from(n.network()), u128::from(n.broadcast())),
    }
}

/// Sorted and merged: touching or overlapping spans become one.
fn merge(mut spans: Vec<Span>) -> Vec<Span> {
    spans.sort_unstable();
    let mut merged: Vec<Span> = Vec::with_capacity(spans.len());
    for (start, end) in spans {
        match merged.last_mut() {
            Some(last) if last.1 == u128::MAX || start <= last.1 + 1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

/// The non-global spans of each family, merged: `[IPv4, IPv6]`.
static NON_GLOBAL: LazyLock<[Vec<Span>; 2]> = LazyLock::new(|| {
    let v4 = merge(NON_GLOBAL_V4.iter().map(|c| span(&net(c))).collect());
    let (unicast_start, unicast_end) = span(&net(GLOBAL_UNICAST_V6));
    let mut v6: Vec<Span> = NON_GLOBAL_V6.iter().map(|c| span(&net(c))).collect();
    v6.push((0, unicast_start - 1));
    v6.push((unicast_end + 1, u128::MAX));
    [v4, merge(v6)]
});

fn non_global(family: Family) -> &'static [Span] {
    match family {
        Family::Ipv4 => &NON_GLOBAL[0],
        Family::Ipv6 => &NON_GLOBAL[1],
    }
}

/// Reads a CIDR as EC2 holds it. Host bits are dropped (`10.1.2.3/8` is
/// `10.0.0.0/8`, as the network sees it) and a bare address is a `/32` or
/// `/128`. `None` for anything else.
pub fn parse_cidr(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .map(|n| n.trunc())
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

/// Whether `net` holds at least one globally reachable address.
pub fn reaches_global(net: &IpNet) -> bool {
    let (start, end) = span(net);
    // The non-global spans are merged, so a contiguous net inside their
    // union lies inside one of them.
    !non_global(Family::of(net))
        .iter()
        .any(|&(a, b)| a <= start && end <= b)
}

/// Whether the union of `nets` (those of `family`; others are ignored)
/// covers every globally reachable address of `family`.
pub fn covers_world<'a>(family: Family, nets: impl IntoIterator<Item = &'a IpNet>) -> bool {
    let mut spans = non_global(family).to_vec();
    spans.extend(
        nets.into_iter()
            .filter(|n| Family::of(n) == family)
            .map(span),
    );
    merge(spans) == [(0, family.last_address())]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn covers(family: Family, cidrs: &[&str]) -> bool {
        let nets: Vec<IpNet> = cidrs.iter().filter_map(|c| parse_cidr(c)).collect();
        covers_world(family, &nets)
    }

    #[test]
    fn the_whole_space_in_one_or_many_pieces_is_the_world() {
        assert!(covers(Family::Ipv4, &["0.0.0.0/0"]));
        assert!(covers(Family::Ipv4, &["0.0.0.0/1", "128.0.0.0/1"]));
        let slash8: Vec<String> = (0..=255).map(|i| format!("{i}.0.0.0/8")).collect();
        let slash8: Vec<&str> = slash8.iter().map(String::as_str).collect();
        assert!(covers(Family::Ipv4, &slash8));
        assert!(covers(Family::Ipv6, &["::/0"]));
        assert!(covers(Family::Ipv6, &["::/1", "8000::/1"]));
        assert!(covers(Family::Ipv6, &["2000::/3"]));
    }

    #[test]
    fn missing_only_private_reserved_and_multicast_space_is_still_the_world() {
        // Every /8 a client can come from: 1–223 without 10 and 127.
        let public: Vec<String> = (1..=223)
            .filter(|i| *i != 10 && *i != 127)
            .map(|i| format!("{i}.0.0.0/8"))
            .collect();
        let public: Vec<&str> = public.iter().map(String::as_str).collect();
        assert!(covers(Family::Ipv4, &public));
        // The global IPv6 unicast block without 6to4 (2002::/16).
        assert!(covers(
            Family::Ipv6,
            &[
                "2000::/15",
                "2003::/16",
                "2004::/14",
                "2008::/13",
                "2010::/12",
                "2020::/11",
                "2040::/10",
                "2080::/9",
                "2100::/8",
                "2200::/7",
                "2400::/6",
                "2800::/5",
                "3000::/4",
            ]
        ));
    }

    #[test]
    fn a_gap_of_global_addresses_is_not_the_world() {
        assert!(!covers(Family::Ipv4, &["0.0.0.0/1"]));
        assert!(!covers(Family::Ipv4, &["0.0.0.0/1", "128.0.0.0/2"]));
        // Only multicast and reserved space (224.0.0.0/3) missing.
        assert!(covers(
            Family::Ipv4,
            &["0.0.0.0/1", "128.0.0.0/2", "192.0.0.0/3"]
        ));
        assert!(
            !covers(
                Family::Ipv4,
                &[
                    "0.0.0.0/5",
                    "9.0.0.0/8",
                    "10.0.0.0/7",
                    "12.0.0.0/6",
                    "16.0.0.0/4",
                    "32.0.0.0/3",
                    "64.0.0.0/2",
                    "128.0.0.0/1"
                ]
            ),
            "8.0.0.0/8 is missing"
        );
        assert!(!covers(Family::Ipv6, &["2000::/4"]));
        // The other family never counts.
        assert!(!covers(Family::Ipv6, &["0.0.0.0/0"]));
        assert!(!covers(Family::Ipv4, &["::/0"]));
    }

    #[test]
    fn cidrs_are_read_as_the_network_sees_them() {
        assert_eq!(parse_cidr(" 10.1.2.3/8 "), parse_cidr("10.0.0.0/8"));
        assert_eq!(parse_cidr("203.0.113.7"), parse_cidr("203.0.113.7/32"));
        assert_eq!(parse_cidr("2001:DB8::/32"), parse_cidr("2001:db8::/32"));
        assert_eq!(parse_cidr("0.0.0.0/33"), None);
        assert_eq!(parse_cidr("anywhere"), None);
    }

    #[test]
    fn private_and_documentation_ranges_reach_no_one() {
        for cidr in [
            "10.0.0.0/8",
            "192.168.1.0/24",
            "fe80::/64",
            "fd00::/8",
            "2001:db8::/48",
            "224.0.0.1/32",
        ] {
            assert!(!reaches_global(&parse_cidr(cidr).unwrap()), "{cidr}");
        }
        for cidr in ["0.0.0.0/0", "8.8.8.8/32", "0.0.0.0/1", "2600::/12", "::/0"] {
            assert!(reaches_global(&parse_cidr(cidr).unwrap()), "{cidr}");
        }
    }
}
