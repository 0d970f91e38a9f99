//! `network_data.json`: OpenStack's network metadata as Ironic writes it
//! onto the virtual media (`openstack/latest/network_data.json`, from the
//! node's `network_data` or Neutron's ports) and as glean reads it.
//!
//! Parsing never fails on one bad item: a link, network, route or DNS
//! server that cannot be used is dropped with a sentence saying why
//! ([`NetworkData::problems`], printed on the console), and the rest is
//! kept, so the links it leaves out keep DHCP. Only text that is not a
//! JSON object at all is an error.
//!
//! Accepted (Ironic's schema, `network-data-schema.json`, plus what Nova
//! and glean add): links of type `phy`, `vif`, `ethernet` and the other L2
//! types of the schema (all "a NIC with this MAC"), `bond` (`bond_mode`,
//! `bond_links`, `bond_miimon`, `bond_xmit_hash_policy`,
//! `bond_lacp_rate`), `vlan` (`vlan_link`, `vlan_id`, `vlan_mac_address`);
//! networks `ipv4`, `ipv4_dhcp`, `ipv6`, `ipv6_dhcp`, `ipv6_slaac` and
//! Nova's `ipv6_dhcpv6-stateful` / `ipv6_dhcpv6-stateless`; netmasks
//! dotted or in IPv6 address form, or a `/NN` on `ip_address`; routes;
//! DNS from top-level `services` and each network's `services` and
//! `dns_nameservers`. Unlike glean, a link of a type nobody defined is
//! ignored (its NIC keeps DHCP) rather than guessed to be a NIC, and a
//! network whose id repeats is kept (glean overwrites the first).

use crate::error::{AgentError, Kind, Result};
use serde_json::{Map, Value};
use std::net::IpAddr;

/// Link types that all mean "the NIC with this MAC": the schema's `l2_link`
/// types and Nova's `ethernet`.
const PHY_TYPES: &[&str] = &[
    "phy",
    "vif",
    "ethernet",
    "bridge",
    "dvs",
    "hw_veb",
    "hyperv",
    "ovs",
    "tap",
    "vhostuser",
];

/// Bonding modes by their network_data (and kernel) names: BOND_MODE_*.
const BOND_MODES: &[(&str, u8)] = &[
    ("balance-rr", 0),
    ("active-backup", 1),
    ("balance-xor", 2),
    ("broadcast", 3),
    ("802.3ad", 4),
    ("balance-tlb", 5),
    ("balance-alb", 6),
];

/// BOND_XMIT_POLICY_* by name.
const XMIT_POLICIES: &[(&str, u8)] = &[
    ("layer2", 0),
    ("layer3+4", 1),
    ("layer2+3", 2),
    ("encap2+3", 3),
    ("encap3+4", 4),
    ("vlan+srcmac", 5),
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkKind {
    /// A NIC, found by its MAC.
    Phy,
    Bond {
        /// BOND_MODE_*.
        mode: u8,
        /// Ids of the links enslaved.
        slaves: Vec<String>,
        miimon: Option<u32>,
        xmit_hash_policy: Option<u8>,
        lacp_rate: Option<u8>,
    },
    Vlan {
        /// Id of the link it sits on.
        parent: String,
        id: u16,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub id: String,
    pub kind: LinkKind,
    /// `ethernet_mac_address` (`vlan_mac_address` for a VLAN).
    pub mac: Option<[u8; 6]>,
    pub mtu: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetKind {
    Ipv4,
    Ipv4Dhcp,
    Ipv6,
    /// `ipv6_dhcp`, `ipv6_dhcpv6-stateful`: an address from DHCPv6.
    Ipv6Dhcp,
    /// `ipv6_slaac`, `ipv6_dhcpv6-stateless`: router advertisements.
    Ipv6Slaac,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub dst: IpAddr,
    pub prefix: u8,
    pub gateway: IpAddr,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Network {
    pub id: String,
    /// Id of the link it configures.
    pub link: String,
    pub kind: NetKind,
    /// The static address and prefix length (static types only).
    pub address: Option<(IpAddr, u8)>,
    pub routes: Vec<Route>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkData {
    pub links: Vec<Link>,
    pub networks: Vec<Network>,
    pub dns: Vec<IpAddr>,
    /// What was dropped and why, one sentence each.
    pub problems: Vec<String>,
}

/// Parse a MAC (`aa:bb:cc:dd:ee:ff` or with `-`, any case).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = s.trim().split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (m, p) in mac.iter_mut().zip(parts) {
        if p.len() != 2 {
            return None;
        }
        *m = u8::from_str_radix(p, 16).ok()?;
    }
    Some(mac)
}

pub fn mac_text(m: &[u8]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Prefix length of a contiguous netmask in address form (`255.255.255.0`,
/// `ffff:ffff:ffff:ffff::`) or as a number (`24`).
pub fn prefix_of_mask(mask: &str, v6: bool) -> Option<u8> {
    let mask = mask.trim();
    let max = if v6 { 128 } else { 32 };
    if let Ok(n) = mask.parse::<u8>() {
        return (n <= max).then_some(n);
    }
    let bits: u128 = match mask.parse::<IpAddr>().ok()? {
        IpAddr::V4(a) if !v6 => u128::from(u32::from(a)) << 96,
        IpAddr::V6(a) if v6 => u128::from(a),
        _ => return None,
    };
    let ones = bits.leading_ones();
    // contiguous: nothing set after the first zero
    (bits.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

/// Whether `ip` has host bits set below `prefix` (not a network address).
fn host_bits(ip: IpAddr, prefix: u8) -> bool {
    let (v, width) = match ip {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    };
    let keep = u32::from(prefix).min(width);
    let host_mask = 1u128.checked_shl(width - keep).map_or(u128::MAX, |b| b - 1);
    v & host_mask != 0
}

// The lookups and messages below are out of line: inlined at each of
// their dozens of call sites they cost the static binary kilobytes.
#[inline(never)]
fn field<'a>(o: &'a Map<String, Value>, k: &str) -> Option<&'a Value> {
    o.get(k)
}

#[inline(never)]
fn text<'a>(o: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    field(o, k).and_then(Value::as_str).map(str::trim)
}

/// An integer given as a number or a numeric string (`"100"`).
#[inline(never)]
fn int(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// What an item is called in messages: its id, else its position.
#[inline(never)]
fn name_of(o: &Map<String, Value>, what: &str, i: usize) -> String {
    match text(o, "id") {
        Some(id) if !id.is_empty() => format!("{what} {id:?}"),
        _ => format!("{what} #{}", i + 1),
    }
}

/// Parse `network_data.json`. Errors only when the text is not a JSON
/// object; everything else is best effort with [`NetworkData::problems`].
pub fn parse(text_in: &str) -> Result<NetworkData> {
    let v: Value = serde_json::from_str(text_in).map_err(|e| {
        AgentError::new(
            Kind::InvalidContentError,
            format!("network_data.json is not valid JSON: {e}"),
        )
    })?;
    let Value::Object(top) = v else {
        return Err(AgentError::new(
            Kind::InvalidContentError,
            "network_data.json is not a JSON object",
        ));
    };
    let mut nd = NetworkData::default();
    let list = |k: &str, nd: &mut NetworkData| -> &[Value] {
        match top.get(k) {
            Some(Value::Array(a)) => a,
            None | Some(Value::Null) => &[],
            Some(_) => {
                nd.problems.push(format!("{k:?} is not a list; ignored"));
                &[]
            }
        }
    };
    for (i, l) in list("links", &mut nd).iter().enumerate() {
        match link(l, i) {
            Ok(l) if nd.links.iter().any(|o| o.id == l.id) => nd.problems.push(format!(
                "link {:?} is defined twice; the second one is ignored",
                l.id
            )),
            Ok(l) => nd.links.push(l),
            Err(why) => nd.problems.push(why.into_details()),
        }
    }
    // links referring to links: bond slaves must be NICs, VLAN parents
    // NICs or bonds (glean's rules); drop what does not resolve
    let phys: Vec<String> = nd
        .links
        .iter()
        .filter(|l| l.kind == LinkKind::Phy)
        .map(|l| l.id.clone())
        .collect();
    let mut keep = vec![];
    for mut l in std::mem::take(&mut nd.links) {
        if let LinkKind::Bond { slaves, .. } = &mut l.kind {
            let (ok, bad): (Vec<String>, Vec<String>) =
                slaves.drain(..).partition(|s| phys.contains(s));
            for s in &bad {
                nd.problems.push(format!(
                    "bond {:?}: bond_links entry {s:?} is not a physical link; left out",
                    l.id
                ));
            }
            if ok.is_empty() {
                nd.problems
                    .push(format!("bond {:?} has no usable bond_links; ignored", l.id));
                continue;
            }
            *slaves = ok;
        }
        keep.push(l);
    }
    nd.links = keep;
    let bonds: Vec<String> = nd
        .links
        .iter()
        .filter(|l| matches!(l.kind, LinkKind::Bond { .. }))
        .map(|l| l.id.clone())
        .collect();
    let mut dropped_vlans = vec![];
    nd.links.retain(|l| match &l.kind {
        LinkKind::Vlan { parent, .. } if !phys.contains(parent) && !bonds.contains(parent) => {
            dropped_vlans.push(format!(
                "vlan {:?}: vlan_link {parent:?} is not a physical or bond link; ignored",
                l.id
            ));
            false
        }
        _ => true,
    });
    nd.problems.extend(dropped_vlans);

    for (i, n) in list("networks", &mut nd).iter().enumerate() {
        match network(n, i, &nd.links) {
            Ok((net, notes)) => {
                nd.problems.extend(notes);
                nd.networks.push(net);
            }
            Err(why) => nd.problems.push(why.into_details()),
        }
    }
    // DNS: top-level and per-network `services` of type dns, and each
    // network's `dns_nameservers`
    let mut addrs: Vec<&Value> = vec![];
    dns_services(list("services", &mut nd), &mut addrs);
    for n in top
        .get("networks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(s) = n.get("services").and_then(Value::as_array) {
            dns_services(s, &mut addrs);
        }
        if let Some(d) = n.get("dns_nameservers").and_then(Value::as_array) {
            addrs.extend(d);
        }
    }
    for a in addrs {
        match a.as_str().and_then(|a| a.trim().parse::<IpAddr>().ok()) {
            Some(ip) if !nd.dns.contains(&ip) => nd.dns.push(ip),
            Some(_) => {}
            None => nd
                .problems
                .push(format!("DNS server {a} is not an IP address; ignored")),
        }
    }
    Ok(nd)
}

/// The addresses of the `{"type": "dns", "address": ...}` items of `v`.
fn dns_services<'a>(v: &'a [Value], out: &mut Vec<&'a Value>) {
    for s in v.iter().filter_map(Value::as_object) {
        if text(s, "type") == Some("dns") {
            out.extend(s.get("address"));
        }
    }
}

#[inline(never)]
fn bad(details: String) -> AgentError {
    AgentError::new(Kind::InvalidContentError, details)
}

/// The one message of a dropped item: `{name}: {key} {value} {why};
/// ignored` (one formatting site for all of them: each costs the static
/// binary code).
#[inline(never)]
fn dropped(name: &str, key: &str, value: Option<&Value>, why: &str) -> AgentError {
    let v = value.map(|v| format!(" {v}")).unwrap_or_default();
    bad(format!("{name}: {key}{v} {why}; ignored"))
}

fn link(v: &Value, i: usize) -> Result<Link> {
    let Some(o) = v.as_object() else {
        return Err(bad(format!("link #{} is not an object; ignored", i + 1)));
    };
    let name = name_of(o, "link", i);
    let id = match text(o, "id") {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => return Err(dropped(&name, "id", None, "is missing")),
    };
    let ty = text(o, "type").unwrap_or("");
    let mac_of = |key: &str| -> Result<Option<[u8; 6]>> {
        match field(o, key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_str()
                .and_then(parse_mac)
                .map(Some)
                .ok_or_else(|| dropped(&name, key, Some(v), "is not a MAC address")),
        }
    };
    let mtu = match field(o, "mtu") {
        None | Some(Value::Null) => None,
        Some(m) => match int(m) {
            Some(n) if (68..=65535).contains(&n) => Some(n as u32),
            _ => return Err(dropped(&name, "mtu", Some(m), "is not 68..65535")),
        },
    };
    let (kind, mac) = if PHY_TYPES.contains(&ty) {
        let Some(mac) = mac_of("ethernet_mac_address")? else {
            return Err(dropped(&name, "ethernet_mac_address", None, "is missing"));
        };
        (LinkKind::Phy, Some(mac))
    } else if ty == "bond" {
        let mode_name = text(o, "bond_mode").unwrap_or("");
        let Some(&(_, mode)) = BOND_MODES.iter().find(|(n, _)| *n == mode_name) else {
            return Err(dropped(
                &name,
                "bond_mode",
                field(o, "bond_mode"),
                "is not a bonding mode",
            ));
        };
        let slaves: Vec<String> = match field(o, "bond_links") {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|s| s.as_str().map(|s| s.trim().to_string()))
                .collect(),
            _ => vec![],
        };
        if slaves.is_empty() {
            return Err(dropped(&name, "bond_links", None, "is missing or empty"));
        }
        let miimon = match field(o, "bond_miimon") {
            None | Some(Value::Null) => None,
            Some(m) => Some(
                int(m)
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| dropped(&name, "bond_miimon", Some(m), "is not a number"))?,
            ),
        };
        let xmit_hash_policy = match text(o, "bond_xmit_hash_policy") {
            None | Some("") => None,
            Some(p) => Some(
                XMIT_POLICIES
                    .iter()
                    .find(|(n, _)| *n == p)
                    .map(|&(_, v)| v)
                    .ok_or_else(|| {
                        dropped(
                            &name,
                            "bond_xmit_hash_policy",
                            field(o, "bond_xmit_hash_policy"),
                            "is not a hash policy",
                        )
                    })?,
            ),
        };
        let lacp_rate = match field(o, "bond_lacp_rate") {
            None | Some(Value::Null) => None,
            Some(r) => match (r.as_str().map(str::trim), int(r)) {
                (Some("slow"), _) | (_, Some(0)) => Some(0),
                (Some("fast"), _) | (_, Some(1)) => Some(1),
                _ => {
                    return Err(dropped(
                        &name,
                        "bond_lacp_rate",
                        Some(r),
                        "is not slow or fast",
                    ))
                }
            },
        };
        (
            LinkKind::Bond {
                mode,
                slaves,
                miimon,
                xmit_hash_policy,
                lacp_rate,
            },
            mac_of("ethernet_mac_address")?,
        )
    } else if ty == "vlan" {
        let Some(parent) = text(o, "vlan_link").filter(|p| !p.is_empty()) else {
            return Err(dropped(&name, "vlan_link", None, "is missing"));
        };
        let id = match field(o, "vlan_id").and_then(int) {
            Some(n) if (1..=4094).contains(&n) => n as u16,
            _ => {
                return Err(dropped(
                    &name,
                    "vlan_id",
                    field(o, "vlan_id"),
                    "is not 1..4094",
                ))
            }
        };
        (
            LinkKind::Vlan {
                parent: parent.to_string(),
                id,
            },
            mac_of("vlan_mac_address")?,
        )
    } else {
        return Err(dropped(
            &name,
            "type",
            field(o, "type"),
            "is unknown (phy, vif, bond, vlan, ...)",
        ));
    };
    Ok(Link { id, kind, mac, mtu })
}

/// One network, with notes about what was dropped from it (routes).
fn network(v: &Value, i: usize, links: &[Link]) -> Result<(Network, Vec<String>)> {
    let Some(o) = v.as_object() else {
        return Err(bad(format!("network #{} is not an object; ignored", i + 1)));
    };
    let name = name_of(o, "network", i);
    let id = text(o, "id")
        .filter(|s| !s.is_empty())
        .map(String::from)
        .unwrap_or_else(|| format!("#{}", i + 1));
    let link = text(o, "link").unwrap_or("");
    if !links.iter().any(|l| l.id == link) {
        return Err(dropped(
            &name,
            "link",
            field(o, "link"),
            "is not a link that was accepted",
        ));
    }
    let ty = text(o, "type").unwrap_or("");
    let kind = match ty {
        "ipv4" => NetKind::Ipv4,
        "ipv4_dhcp" => NetKind::Ipv4Dhcp,
        "ipv6" => NetKind::Ipv6,
        "ipv6_dhcp" | "ipv6_dhcpv6-stateful" | "ipv6_dhcpv6_stateful" => NetKind::Ipv6Dhcp,
        "ipv6_slaac" | "ipv6_dhcpv6-stateless" => NetKind::Ipv6Slaac,
        _ => return Err(dropped(&name, "type", field(o, "type"), "is unknown")),
    };
    let mut notes = vec![];
    let mut address = None;
    if matches!(kind, NetKind::Ipv4 | NetKind::Ipv6) {
        let v6 = kind == NetKind::Ipv6;
        let raw = text(o, "ip_address").unwrap_or("");
        let (ip_text, len_text) = match raw.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (raw, None),
        };
        let ip: IpAddr = match ip_text.parse() {
            Ok(ip @ IpAddr::V4(_)) if !v6 => ip,
            Ok(ip @ IpAddr::V6(_)) if v6 => ip,
            _ => {
                let why = if v6 {
                    "is not an IPv6 address"
                } else {
                    "is not an IPv4 address"
                };
                return Err(dropped(&name, "ip_address", field(o, "ip_address"), why));
            }
        };
        let prefix = match (len_text, text(o, "netmask")) {
            (Some(l), _) => prefix_of_mask(l, v6),
            (None, Some(m)) => prefix_of_mask(m, v6),
            (None, None) if v6 => {
                notes.push(format!("{name}: no netmask; assuming /64"));
                Some(64)
            }
            (None, None) => None,
        };
        let Some(prefix) = prefix else {
            let (key, v) = match field(o, "netmask") {
                Some(m) if len_text.is_none() => ("netmask", Some(m)),
                _ => ("ip_address", field(o, "ip_address")),
            };
            return Err(dropped(&name, key, v, "has no valid prefix length"));
        };
        if ip.is_unspecified() || ip.is_multicast() {
            let v = field(o, "ip_address");
            return Err(dropped(&name, "ip_address", v, "cannot be a host address"));
        }
        address = Some((ip, prefix));
    }
    let mut routes = vec![];
    if let Some(rs) = field(o, "routes") {
        let Some(rs) = rs.as_array() else {
            return Err(dropped(&name, "routes", None, "is not a list"));
        };
        for (j, r) in rs.iter().enumerate() {
            match route(r) {
                Some(rt) => match address {
                    Some((ip, _)) if ip.is_ipv4() != rt.dst.is_ipv4() => notes.push(format!(
                        "{name}: route #{} is not {}; left out",
                        j + 1,
                        if ip.is_ipv4() { "IPv4" } else { "IPv6" }
                    )),
                    _ => routes.push(rt),
                },
                None => notes.push(format!(
                    "{name}: route #{} ({r}) needs network, netmask and gateway of one \
                     address family; left out",
                    j + 1
                )),
            }
        }
    }
    Ok((
        Network {
            id,
            link: link.to_string(),
            kind,
            address,
            routes,
        },
        notes,
    ))
}

fn route(v: &Value) -> Option<Route> {
    let o = v.as_object()?;
    let dst: IpAddr = text(o, "network")?.parse().ok()?;
    let gateway: IpAddr = text(o, "gateway")?.parse().ok()?;
    if dst.is_ipv4() != gateway.is_ipv4() {
        return None;
    }
    let prefix = prefix_of_mask(text(o, "netmask")?, dst.is_ipv6())?;
    if host_bits(dst, prefix) {
        return None;
    }
    Some(Route {
        dst,
        prefix,
        gateway,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The clean bond + VLAN example (notes §3.3).
    const BOND_VLAN: &str = r#"{
      "links": [
        {"id": "port0", "type": "phy", "ethernet_mac_address": "52:54:00:00:00:01", "mtu": 1500},
        {"id": "port1", "type": "phy", "ethernet_mac_address": "52:54:00:00:00:02", "mtu": 1500},
        {"id": "bond0", "type": "bond", "ethernet_mac_address": "52:54:00:00:00:01",
         "bond_mode": "active-backup", "bond_links": ["port0", "port1"],
         "bond_miimon": 100, "bond_xmit_hash_policy": "layer2"},
        {"id": "bond0.101", "type": "vlan", "vlan_link": "bond0", "vlan_id": 101,
         "vlan_mac_address": "52:54:00:00:00:01"}
      ],
      "networks": [
        {"id": "prov-v4", "network_id": "prov-v4", "type": "ipv4", "link": "bond0.101",
         "ip_address": "192.0.2.10", "netmask": "255.255.255.0",
         "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "192.0.2.1"},
                    {"network": "198.51.100.0", "netmask": "255.255.255.0", "gateway": "192.0.2.254"}]},
        {"id": "prov-v6", "network_id": "prov-v6", "type": "ipv6", "link": "bond0.101",
         "ip_address": "2001:db8:101::10", "netmask": "ffff:ffff:ffff:ffff::",
         "routes": [{"network": "::", "netmask": "::", "gateway": "2001:db8:101::1"}]}
      ],
      "services": [{"type": "dns", "address": "192.0.2.53"}, {"type": "dns", "address": "2001:db8:101::53"}]
    }"#;

    #[test]
    fn bond_vlan_example() {
        let nd = parse(BOND_VLAN).unwrap();
        assert_eq!(nd.problems, Vec::<String>::new());
        assert_eq!(nd.links.len(), 4);
        assert_eq!(
            nd.links[2].kind,
            LinkKind::Bond {
                mode: 1,
                slaves: vec!["port0".into(), "port1".into()],
                miimon: Some(100),
                xmit_hash_policy: Some(0),
                lacp_rate: None,
            }
        );
        assert_eq!(
            nd.links[3].kind,
            LinkKind::Vlan {
                parent: "bond0".into(),
                id: 101
            }
        );
        assert_eq!(nd.links[0].mtu, Some(1500));
        let v4 = &nd.networks[0];
        assert_eq!(v4.address, Some(("192.0.2.10".parse().unwrap(), 24)));
        assert_eq!(v4.routes.len(), 2);
        assert_eq!(v4.routes[0].prefix, 0);
        assert_eq!(v4.routes[1].dst, "198.51.100.0".parse::<IpAddr>().unwrap());
        let v6 = &nd.networks[1];
        assert_eq!(v6.address, Some(("2001:db8:101::10".parse().unwrap(), 64)));
        assert_eq!(
            v6.routes[0].gateway,
            "2001:db8:101::1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(nd.dns.len(), 2);
    }

    /// Ironic's own sample (ironic/tests/json_samples/network_data.json):
    /// the IPv6 network's /24 on ip_address, a per-network
    /// dns_nameservers, a route whose gateway is outside its subnet.
    #[test]
    fn ironic_sample() {
        let s = r#"{"links": [
          {"id": "interface2", "type": "vif", "ethernet_mac_address": "a0:36:9f:2c:e8:70",
           "vif_id": "e1c90e9f-eafc-4e2d-8ec9-58b91cebb53d", "mtu": 1500},
          {"id": "interface0", "type": "phy", "ethernet_mac_address": "a0:36:9f:2c:e8:80", "mtu": 9000},
          {"id": "interface1", "type": "phy", "ethernet_mac_address": "a0:36:9f:2c:e8:81", "mtu": 9000},
          {"id": "bond0", "type": "bond", "bond_links": ["interface0", "interface1"],
           "ethernet_mac_address": "a0:36:9f:2c:e8:82", "bond_mode": "802.3ad",
           "bond_xmit_hash_policy": "layer3+4", "bond_miimon": 100},
          {"id": "vlan0", "type": "vlan", "vlan_link": "bond0", "vlan_id": 101,
           "vlan_mac_address": "a0:36:9f:2c:e8:80", "vif_id": "e1c90e9f-eafc-4e2d-8ec9-58b91cebb53f"}],
         "networks": [
          {"id": "private-ipv4", "type": "ipv4", "link": "interface0", "ip_address": "10.184.0.244",
           "netmask": "255.255.240.0", "network_id": "da5bb487-5193-4a65-a3df-4a0055a8c0d7",
           "routes": [{"network": "10.0.0.0", "netmask": "255.0.0.0", "gateway": "11.0.0.1"},
                      {"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "23.253.157.1"}]},
          {"id": "private-ipv4", "type": "ipv6", "link": "interface0", "ip_address": "2001:cdba::3257:9652/24",
           "network_id": "da5bb487-5193-4a65-a3df-4a0055a8c0d8",
           "routes": [{"network": "::", "netmask": "::", "gateway": "fd00::1"},
                      {"network": "::", "netmask": "ffff:ffff:ffff::", "gateway": "fd00::1:1"}]},
          {"id": "publicnet-ipv4", "type": "ipv4", "link": "vlan0", "ip_address": "23.253.157.244",
           "netmask": "255.255.255.0", "dns_nameservers": ["69.20.0.164", "69.20.0.196"],
           "network_id": "62611d6f-66cb-4270-8b1f-503ef0dd4736",
           "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "23.253.157.1"}]}],
         "services": [{"type": "dns", "address": "8.8.8.8"}, {"type": "dns", "address": "8.8.4.4"}]}"#;
        let nd = parse(s).unwrap();
        assert_eq!(nd.links.len(), 5);
        assert_eq!(nd.networks.len(), 3, "{:?}", nd.problems);
        assert_eq!(
            nd.networks[1].address,
            Some(("2001:cdba::3257:9652".parse().unwrap(), 24))
        );
        assert_eq!(nd.networks[1].routes.len(), 2);
        assert_eq!(nd.networks[1].routes[1].prefix, 48);
        assert_eq!(nd.dns.len(), 4);
        assert!(nd.problems.is_empty(), "{:?}", nd.problems);
    }

    /// Neutron's builder: default route network "::0", expanded masks.
    #[test]
    fn neutron_style_ipv6() {
        let s = r#"{"links": [{"id": "p", "type": "vif", "ethernet_mac_address": "AA-BB-CC-DD-EE-FF"}],
          "networks": [{"id": "s", "link": "p", "type": "ipv6", "ip_address": "fd00::5",
            "netmask": "ffff:ffff:ffff:ffff:0000:0000:0000:0000",
            "routes": [{"network": "::0", "netmask": "::0", "gateway": "fd00::1"}]}],
          "services": []}"#;
        let nd = parse(s).unwrap();
        assert_eq!(nd.links[0].mac, Some([0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]));
        assert_eq!(nd.networks[0].address.unwrap().1, 64);
        assert_eq!(nd.networks[0].routes[0].prefix, 0);
    }

    #[test]
    fn broken_items_are_dropped_with_a_reason() {
        let s = r#"{"links": [
            {"id": "good", "type": "phy", "ethernet_mac_address": "52:54:00:00:00:01"},
            {"id": "weird", "type": "infiniband-ish", "ethernet_mac_address": "52:54:00:00:00:02"},
            {"id": "nomac", "type": "phy"},
            {"id": "badmac", "type": "phy", "ethernet_mac_address": "52:54:00:00:00"},
            {"id": "good", "type": "phy", "ethernet_mac_address": "52:54:00:00:00:09"},
            {"id": "b", "type": "bond", "bond_mode": "fastest", "bond_links": ["good"]},
            {"id": "b2", "type": "bond", "bond_mode": "802.3ad", "bond_links": ["weird", "good"],
             "bond_lacp_rate": "fast", "bond_miimon": "200"},
            {"id": "v", "type": "vlan", "vlan_link": "nomac", "vlan_id": 5},
            {"id": "v2", "type": "vlan", "vlan_link": "good", "vlan_id": 5000},
            42, null, "x",
            {"type": "phy", "ethernet_mac_address": "52:54:00:00:00:03"}],
          "networks": [
            {"id": "n1", "type": "ipv4", "link": "good", "ip_address": "10.0.0.5", "netmask": "255.0.255.0"},
            {"id": "n2", "type": "ipv4", "link": "weird", "ip_address": "10.0.0.5", "netmask": "255.255.255.0"},
            {"id": "n3", "type": "ipv4", "link": "good", "ip_address": "fd00::1", "netmask": "255.255.255.0"},
            {"id": "n4", "type": "ipv7", "link": "good"},
            {"id": "n5", "type": "ipv4", "link": "good", "ip_address": "10.0.0.5/24",
             "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0"},
                        {"network": "10.1.0.1", "netmask": "255.255.0.0", "gateway": "10.0.0.1"},
                        {"network": "::", "netmask": "::", "gateway": "fd00::1"},
                        {"network": "10.2.0.0", "netmask": "255.255.0.0", "gateway": "10.0.0.1"}]},
            {"id": "n6", "type": "ipv4_dhcp", "link": "b2"}],
          "services": [{"type": "dns", "address": "not-an-ip"}, {"type": "ntp", "address": "x"},
                       {"type": "dns", "address": "10.0.0.53"}]}"#;
        let nd = parse(s).unwrap();
        let ids: Vec<&str> = nd.links.iter().map(|l| l.id.as_str()).collect();
        assert_eq!(ids, ["good", "b2"]);
        assert_eq!(
            nd.links[1].kind,
            LinkKind::Bond {
                mode: 4,
                slaves: vec!["good".into()],
                miimon: Some(200),
                xmit_hash_policy: None,
                lacp_rate: Some(1),
            }
        );
        let nets: Vec<&str> = nd.networks.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(nets, ["n5", "n6"]);
        assert_eq!(nd.networks[0].routes.len(), 1);
        assert_eq!(nd.dns, vec!["10.0.0.53".parse::<IpAddr>().unwrap()]);
        let all = nd.problems.join("\n");
        for want in [
            "link \"weird\": type \"infiniband-ish\" is unknown",
            "link \"nomac\": ethernet_mac_address is missing",
            "ethernet_mac_address \"52:54:00:00:00\" is not a MAC address",
            "link \"good\" is defined twice",
            "bond_mode \"fastest\" is not a bonding mode",
            "bond_links entry \"weird\" is not a physical link",
            "vlan_link \"nomac\" is not a physical or bond link",
            "vlan_id 5000 is not 1..4094",
            "link #10 is not an object",
            "link #13: id is missing",
            "network \"n1\": netmask \"255.0.255.0\" has no valid prefix length",
            "network \"n2\": link \"weird\" is not a link that was accepted",
            "network \"n3\": ip_address \"fd00::1\" is not an IPv4 address",
            "network \"n4\": type \"ipv7\" is unknown",
            "network \"n5\": route #1",
            "network \"n5\": route #2",
            "network \"n5\": route #3 is not IPv4",
            "DNS server \"not-an-ip\"",
        ] {
            assert!(all.contains(want), "missing {want:?} in:\n{all}");
        }
    }

    #[test]
    fn not_json_or_not_an_object() {
        for bad in [
            "",
            "{",
            "{\"links\": [}",
            "[]",
            "\"x\"",
            "null",
            "{\"links\": 5",
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.kind, Kind::InvalidContentError, "{bad:?}");
        }
        // wrong top-level types are problems, not errors
        let nd = parse(r#"{"links": {}, "networks": "x", "services": 7}"#).unwrap();
        assert_eq!(nd.links.len(), 0);
        assert_eq!(nd.problems.len(), 3, "{:?}", nd.problems);
        // an empty object is nothing to do
        assert_eq!(parse("{}").unwrap(), NetworkData::default());
    }

    /// Random bytes and random cuts of a valid document never panic.
    #[test]
    fn hostile_input_never_panics() {
        let mut rng = fastrand::Rng::with_seed(18);
        for _ in 0..3000 {
            let mut b = BOND_VLAN.as_bytes().to_vec();
            for _ in 0..rng.usize(1..6) {
                let at = rng.usize(..b.len());
                b[at] = rng.u8(32..127);
            }
            let cut = rng.usize(..=b.len());
            let _ = parse(&String::from_utf8_lossy(&b[..cut]));
        }
        // deep nesting is refused by serde_json's recursion limit
        let deep = "[".repeat(100_000);
        assert!(parse(&deep).is_err());
    }

    #[test]
    fn masks() {
        assert_eq!(prefix_of_mask("255.255.240.0", false), Some(20));
        assert_eq!(prefix_of_mask("0.0.0.0", false), Some(0));
        assert_eq!(prefix_of_mask("255.255.255.255", false), Some(32));
        assert_eq!(prefix_of_mask("255.0.255.0", false), None);
        assert_eq!(prefix_of_mask("ffff:ffff:ffff::", true), Some(48));
        assert_eq!(prefix_of_mask("::", true), Some(0));
        assert_eq!(prefix_of_mask("64", true), Some(64));
        assert_eq!(prefix_of_mask("129", true), None);
        assert_eq!(prefix_of_mask("33", false), None);
        assert_eq!(prefix_of_mask("255.255.255.0", true), None);
        assert_eq!(
            parse_mac("52:54:00:AB:cd:0f"),
            Some([0x52, 0x54, 0, 0xab, 0xcd, 0x0f])
        );
        assert_eq!(parse_mac("52:54:00:ab:cd"), None);
        assert_eq!(parse_mac("52:54:00:ab:cd:0g"), None);
        assert_eq!(parse_mac("525:4:00:ab:cd:0f"), None);
        assert_eq!(
            mac_text(&[0x52, 0x54, 0, 0xab, 0xcd, 0x0f]),
            "52:54:00:ab:cd:0f"
        );
    }
}
