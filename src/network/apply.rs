//! Applying `network_data.json` to the NICs that are present: what
//! glean writes as interface files and ifupdown then runs, done directly
//! through the kernel ([`Kernel`], rtnetlink on the ramdisk).
//!
//! Every failure stays local. A link that cannot be configured (its MAC
//! matches no NIC, the bonding driver is missing, an address the kernel
//! refuses) is reported and its NICs are handed back to DHCP
//! ([`Outcome::dhcp`]); everything else is still configured. NICs the
//! data does not describe are not touched here: the caller gives them
//! DHCP, as glean's fallback does.

use super::data::{mac_text, LinkKind, NetKind, NetworkData, Route};
use crate::sys::netlink::{BondOptions, LinkChange};
use std::io;
use std::net::IpAddr;

/// A NIC found on the machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nic {
    pub name: String,
    /// The permanent MAC when the kernel knows it, else the current one.
    pub mac: [u8; 6],
}

/// What applying needs from the kernel, by interface name.
pub trait Kernel {
    fn set_link(&mut self, dev: &str, change: &LinkChange) -> io::Result<()>;
    fn add_bond(&mut self, name: &str, mac: Option<[u8; 6]>, o: &BondOptions) -> io::Result<()>;
    fn enslave(&mut self, slave: &str, bond: &str) -> io::Result<()>;
    fn add_vlan(
        &mut self,
        name: &str,
        parent: &str,
        id: u16,
        mac: Option<[u8; 6]>,
    ) -> io::Result<()>;
    fn add_addr(&mut self, dev: &str, ip: IpAddr, prefix: u8) -> io::Result<()>;
    fn add_route(&mut self, dev: &str, r: &Route) -> io::Result<()>;
}

/// What happened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// NICs the data configured (or enslaved): no DHCP on them.
    pub configured: Vec<String>,
    /// Devices to run DHCP on: `ipv4_dhcp` networks, and the links that
    /// could not be configured (the fallback).
    pub dhcp: Vec<String>,
    /// Devices whose `ipv6_dhcp` network asks for a DHCPv6 address
    /// whatever their router advertisements say.
    pub dhcp6: Vec<String>,
    /// One line per configured device for the console.
    pub done: Vec<String>,
    /// What was not applied and why.
    pub problems: Vec<String>,
}

/// Linux interface names: 1..15 bytes, no '/', ':', whitespace.
pub fn valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() < 16
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':')
}

#[inline(never)]
fn push_unique(v: &mut Vec<String>, s: &str) {
    if !v.iter().any(|x| x == s) {
        v.push(s.to_string());
    }
}

/// The interface name a bond or VLAN gets: `wanted` when it is a valid
/// name nobody has (glean names bonds by link id and VLANs
/// `<parent>.<id>`), else the first free one of `more`.
fn pick_name(wanted: &str, more: impl Iterator<Item = String>, taken: &[String]) -> String {
    std::iter::once(wanted.to_string())
        .chain(more)
        .find(|n| valid_ifname(n) && !taken.contains(n))
        .expect("a free name")
}

fn bond_names() -> impl Iterator<Item = String> {
    (0..).map(|i| format!("bond{i}"))
}

fn vlan_names(id: u16) -> impl Iterator<Item = String> {
    std::iter::once(format!("vlan{id}")).chain((1..).map(move |i| format!("vlan{id}_{i}")))
}

struct Dev {
    link: String,
    name: String,
    /// NICs below this device (itself for a NIC).
    nics: Vec<String>,
    /// The device DHCP falls back to when something on top fails.
    fallback: Vec<String>,
}

/// Configure what `nd` describes on `nics` through `k`.
pub fn apply(nd: &NetworkData, nics: &[Nic], k: &mut dyn Kernel) -> Outcome {
    let mut out = Outcome::default();
    // plain vectors: a BTreeSet's collect() would link std's sort for a
    // handful of names
    let mut taken: Vec<String> = nics.iter().map(|n| n.name.clone()).collect();
    let mut devs: Vec<Dev> = vec![];
    let find = |devs: &[Dev], link: &str| devs.iter().position(|d| d.link == link);
    let slaves: Vec<&str> = nd
        .links
        .iter()
        .filter_map(|l| match &l.kind {
            LinkKind::Bond { slaves, .. } => Some(slaves.iter().map(String::as_str)),
            _ => None,
        })
        .flatten()
        .collect();

    // 1. NICs by MAC
    for l in nd.links.iter().filter(|l| l.kind == LinkKind::Phy) {
        let mac = l.mac.expect("phy links have a MAC");
        let Some(nic) = nics.iter().find(|n| n.mac == mac) else {
            out.problems.push(format!(
                "link {:?}: no NIC has MAC {}; ignored with its networks",
                l.id,
                mac_text(&mac)
            ));
            continue;
        };
        if devs.iter().any(|d| d.name == nic.name) {
            out.problems.push(format!(
                "link {:?}: NIC {} ({}) is already link {:?}; ignored",
                l.id,
                nic.name,
                mac_text(&mac),
                devs.iter()
                    .find(|d| d.name == nic.name)
                    .map_or("", |d| &d.link)
            ));
            continue;
        }
        let change = if slaves.contains(&l.id.as_str()) {
            // enslaving needs the NIC down; the bond brings it up
            LinkChange {
                up: Some(false),
                mtu: l.mtu,
                ..LinkChange::default()
            }
        } else {
            LinkChange {
                up: Some(true),
                mtu: l.mtu,
                ..LinkChange::default()
            }
        };
        if let Err(e) = k.set_link(&nic.name, &change) {
            out.problems.push(format!(
                "link {:?}: setting up {}: {e}; DHCP on it instead",
                l.id, nic.name
            ));
            push_unique(&mut out.dhcp, &nic.name);
            continue;
        }
        devs.push(Dev {
            link: l.id.clone(),
            name: nic.name.clone(),
            nics: vec![nic.name.clone()],
            fallback: vec![nic.name.clone()],
        });
    }

    // 2. bonds
    for l in &nd.links {
        let LinkKind::Bond {
            mode,
            slaves,
            miimon,
            xmit_hash_policy,
            lacp_rate,
        } = &l.kind
        else {
            continue;
        };
        let members: Vec<String> = slaves
            .iter()
            .filter_map(|s| find(&devs, s).map(|i| devs[i].name.clone()))
            .collect();
        if members.is_empty() {
            out.problems.push(format!(
                "bond {:?}: none of its links ({}) is present; ignored with its networks",
                l.id,
                slaves.join(", ")
            ));
            continue;
        }
        let name = pick_name(&l.id, bond_names(), &taken);
        let opts = BondOptions {
            mode: *mode,
            miimon: miimon.unwrap_or(100),
            xmit_hash_policy: *xmit_hash_policy,
            lacp_rate: if *mode == 4 { *lacp_rate } else { None },
        };
        let made = k.add_bond(&name, l.mac, &opts).and_then(|()| {
            for m in &members {
                k.enslave(m, &name)?;
            }
            k.set_link(
                &name,
                &LinkChange {
                    up: Some(true),
                    mtu: l.mtu,
                    ..LinkChange::default()
                },
            )
        });
        if let Err(e) = made {
            let hint = if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
                " (no bonding driver in this ramdisk?)"
            } else {
                ""
            };
            out.problems.push(format!(
                "bond {:?} ({name} of {}): {e}{hint}; DHCP on {} instead",
                l.id,
                members.join(", "),
                members.join(", ")
            ));
            for m in &members {
                // best effort: a half-made bond may hold some of them
                let _ = k.set_link(
                    m,
                    &LinkChange {
                        up: Some(true),
                        ..LinkChange::default()
                    },
                );
                push_unique(&mut out.dhcp, m);
            }
            devs.retain(|d| !members.contains(&d.name));
            continue;
        }
        taken.push(name.clone());
        out.done.push(format!(
            "bond {name} ({}) of {}",
            BOND_NAMES[usize::from(*mode).min(6)],
            members.join(", ")
        ));
        devs.push(Dev {
            link: l.id.clone(),
            name: name.clone(),
            nics: members.clone(),
            fallback: vec![name],
        });
    }

    // 3. VLANs
    for l in &nd.links {
        let LinkKind::Vlan { parent, id } = &l.kind else {
            continue;
        };
        let Some(p) = find(&devs, parent) else {
            out.problems.push(format!(
                "vlan {:?}: its link {parent:?} is not configured; ignored with its networks",
                l.id
            ));
            continue;
        };
        let parent_dev = devs[p].name.clone();
        let wanted = format!("{parent_dev}.{id}");
        let name = pick_name(&wanted, vlan_names(*id), &taken);
        let made = k.add_vlan(&name, &parent_dev, *id, l.mac).and_then(|()| {
            k.set_link(
                &name,
                &LinkChange {
                    up: Some(true),
                    mtu: l.mtu,
                    ..LinkChange::default()
                },
            )
        });
        if let Err(e) = made {
            out.problems.push(format!(
                "vlan {:?} ({name} on {parent_dev}): {e}; DHCP on {parent_dev} instead",
                l.id
            ));
            for f in devs[p].fallback.clone() {
                push_unique(&mut out.dhcp, &f);
            }
            continue;
        }
        taken.push(name.clone());
        out.done
            .push(format!("vlan {name} (id {id} on {parent_dev})"));
        let (nics_below, fallback) = (devs[p].nics.clone(), devs[p].fallback.clone());
        devs.push(Dev {
            link: l.id.clone(),
            name,
            nics: nics_below,
            fallback,
        });
    }

    // 4. networks
    for n in &nd.networks {
        let Some(d) = find(&devs, &n.link) else {
            // the link's own problem was reported above
            continue;
        };
        let dev = devs[d].name.clone();
        match n.kind {
            NetKind::Ipv4Dhcp => {
                push_unique(&mut out.dhcp, &dev);
                out.done.push(format!("{dev}: DHCP (network {:?})", n.id));
            }
            NetKind::Ipv6Dhcp => {
                push_unique(&mut out.dhcp6, &dev);
                out.done.push(format!("{dev}: DHCPv6 (network {:?})", n.id));
            }
            NetKind::Ipv6Slaac => {
                out.done.push(format!(
                    "{dev}: IPv6 from router advertisements (network {:?})",
                    n.id
                ));
            }
            NetKind::Ipv4 | NetKind::Ipv6 => {
                let (ip, prefix) = n.address.expect("static networks have an address");
                if let Err(e) = k.add_addr(&dev, ip, prefix) {
                    out.problems.push(format!(
                        "network {:?}: adding {ip}/{prefix} to {dev}: {e}; DHCP on {} instead",
                        n.id,
                        devs[d].fallback.join(", ")
                    ));
                    for f in devs[d].fallback.clone() {
                        push_unique(&mut out.dhcp, &f);
                    }
                    continue;
                }
                let mut line = format!("{dev}: {ip}/{prefix}");
                for r in &n.routes {
                    match k.add_route(&dev, r) {
                        Ok(()) => {
                            line += &format!(", route {}/{} via {}", r.dst, r.prefix, r.gateway)
                        }
                        Err(e) => out.problems.push(format!(
                            "network {:?}: route {}/{} via {} on {dev}: {e}; left out",
                            n.id, r.dst, r.prefix, r.gateway
                        )),
                    }
                }
                out.done.push(line);
            }
        }
    }

    // what is configured: NICs whose every device on top came up and that
    // DHCP was not given back to
    for d in &devs {
        for nic in &d.nics {
            if !out.dhcp.contains(nic) {
                push_unique(&mut out.configured, nic);
            }
        }
    }
    out
}

const BOND_NAMES: [&str; 7] = [
    "balance-rr",
    "active-backup",
    "balance-xor",
    "broadcast",
    "802.3ad",
    "balance-tlb",
    "balance-alb",
];

#[cfg(test)]
mod tests {
    use super::super::data::parse;
    use super::*;

    /// Records calls; fails the ones whose text contains `fail`.
    #[derive(Default)]
    struct Fake {
        calls: Vec<String>,
        fail: Vec<&'static str>,
    }

    impl Fake {
        fn call(&mut self, s: String) -> io::Result<()> {
            let bad = self.fail.iter().any(|f| s.contains(f));
            self.calls.push(s);
            if bad {
                Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP))
            } else {
                Ok(())
            }
        }
    }

    impl Kernel for Fake {
        fn set_link(&mut self, dev: &str, c: &LinkChange) -> io::Result<()> {
            self.call(format!("set {dev} up={:?} mtu={:?}", c.up, c.mtu))
        }
        fn add_bond(
            &mut self,
            name: &str,
            mac: Option<[u8; 6]>,
            o: &BondOptions,
        ) -> io::Result<()> {
            self.call(format!(
                "bond {name} mac={} mode={} miimon={}",
                mac.map(|m| mac_text(&m)).unwrap_or_default(),
                o.mode,
                o.miimon
            ))
        }
        fn enslave(&mut self, slave: &str, bond: &str) -> io::Result<()> {
            self.call(format!("enslave {slave} {bond}"))
        }
        fn add_vlan(
            &mut self,
            name: &str,
            parent: &str,
            id: u16,
            _mac: Option<[u8; 6]>,
        ) -> io::Result<()> {
            self.call(format!("vlan {name} on {parent} id {id}"))
        }
        fn add_addr(&mut self, dev: &str, ip: IpAddr, prefix: u8) -> io::Result<()> {
            self.call(format!("addr {dev} {ip}/{prefix}"))
        }
        fn add_route(&mut self, dev: &str, r: &Route) -> io::Result<()> {
            self.call(format!(
                "route {dev} {}/{} via {}",
                r.dst, r.prefix, r.gateway
            ))
        }
    }

    fn nics() -> Vec<Nic> {
        vec![
            Nic {
                name: "eth0".into(),
                mac: [0x52, 0x54, 0, 0, 0, 1],
            },
            Nic {
                name: "eth1".into(),
                mac: [0x52, 0x54, 0, 0, 0, 2],
            },
            Nic {
                name: "eth2".into(),
                mac: [0x52, 0x54, 0, 0, 0, 3],
            },
        ]
    }

    const DOC: &str = r#"{"links": [
        {"id": "port0", "type": "phy", "ethernet_mac_address": "52:54:00:00:00:01"},
        {"id": "port1", "type": "phy", "ethernet_mac_address": "52:54:00:00:00:02", "mtu": 9000},
        {"id": "bond0", "type": "bond", "ethernet_mac_address": "52:54:00:00:00:01",
         "bond_mode": "active-backup", "bond_links": ["port0", "port1"]},
        {"id": "bond0.101", "type": "vlan", "vlan_link": "bond0", "vlan_id": 101}],
      "networks": [
        {"id": "v4", "type": "ipv4", "link": "bond0.101", "ip_address": "192.0.2.10",
         "netmask": "255.255.255.0",
         "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "192.0.2.1"}]},
        {"id": "v6", "type": "ipv6", "link": "bond0.101", "ip_address": "2001:db8::10/64"}],
      "services": []}"#;

    #[test]
    fn bond_vlan_in_order() {
        let nd = parse(DOC).unwrap();
        let mut k = Fake::default();
        let o = apply(&nd, &nics(), &mut k);
        assert_eq!(
            k.calls,
            [
                "set eth0 up=Some(false) mtu=None",
                "set eth1 up=Some(false) mtu=Some(9000)",
                "bond bond0 mac=52:54:00:00:00:01 mode=1 miimon=100",
                "enslave eth0 bond0",
                "enslave eth1 bond0",
                "set bond0 up=Some(true) mtu=None",
                "vlan bond0.101 on bond0 id 101",
                "set bond0.101 up=Some(true) mtu=None",
                "addr bond0.101 192.0.2.10/24",
                "route bond0.101 0.0.0.0/0 via 192.0.2.1",
                "addr bond0.101 2001:db8::10/64",
            ]
        );
        assert_eq!(o.configured, ["eth0", "eth1"]);
        assert!(o.dhcp.is_empty() && o.problems.is_empty(), "{o:?}");
        assert_eq!(o.done.len(), 4);
    }

    /// No bonding driver: the slaves come back up with DHCP, the VLAN and
    /// addresses on top are not attempted.
    #[test]
    fn failed_bond_falls_back_to_dhcp_on_its_nics() {
        let nd = parse(DOC).unwrap();
        let mut k = Fake {
            fail: vec!["bond bond0"],
            ..Fake::default()
        };
        let o = apply(&nd, &nics(), &mut k);
        assert_eq!(o.dhcp, ["eth0", "eth1"]);
        assert!(o.configured.is_empty());
        assert!(!k
            .calls
            .iter()
            .any(|c| c.starts_with("vlan") || c.starts_with("addr")));
        assert!(k
            .calls
            .contains(&"set eth0 up=Some(true) mtu=None".to_string()));
        let p = o.problems.join("\n");
        assert!(p.contains("no bonding driver"), "{p}");
        assert!(
            p.contains("vlan \"bond0.101\": its link \"bond0\" is not configured"),
            "{p}"
        );
    }

    #[test]
    fn failed_address_gives_the_bond_dhcp() {
        let nd = parse(DOC).unwrap();
        let mut k = Fake {
            fail: vec!["addr bond0.101 192.0.2.10"],
            ..Fake::default()
        };
        let o = apply(&nd, &nics(), &mut k);
        assert_eq!(o.dhcp, ["bond0"]);
        // the slaves stay enslaved: configured, no DHCP of their own
        assert_eq!(o.configured, ["eth0", "eth1"]);
        // the IPv6 address still went on
        assert!(k
            .calls
            .contains(&"addr bond0.101 2001:db8::10/64".to_string()));
    }

    #[test]
    fn missing_nic_and_dhcp_networks() {
        let s = r#"{"links": [
            {"id": "a", "type": "phy", "ethernet_mac_address": "52:54:00:00:00:03"},
            {"id": "gone", "type": "phy", "ethernet_mac_address": "52:54:00:00:00:99"},
            {"id": "a.5", "type": "vlan", "vlan_link": "a", "vlan_id": 5},
            {"id": "g.6", "type": "vlan", "vlan_link": "gone", "vlan_id": 6}],
          "networks": [
            {"id": "d4", "type": "ipv4_dhcp", "link": "a.5"},
            {"id": "d6", "type": "ipv6_dhcp", "link": "a"},
            {"id": "s", "type": "ipv4", "link": "gone", "ip_address": "10.0.0.2", "netmask": "255.0.0.0"}],
          "services": []}"#;
        let nd = parse(s).unwrap();
        let mut k = Fake::default();
        let o = apply(&nd, &nics(), &mut k);
        assert_eq!(o.configured, ["eth2"]);
        assert_eq!(o.dhcp, ["eth2.5"]);
        assert_eq!(o.dhcp6, ["eth2"]);
        let p = o.problems.join("\n");
        assert!(p.contains("no NIC has MAC 52:54:00:00:00:99"), "{p}");
        assert!(p.contains("vlan \"g.6\": its link \"gone\""), "{p}");
    }

    #[test]
    fn names() {
        let taken = ["eth0".to_string(), "bond0".to_string()];
        assert_eq!(pick_name("bond0", bond_names(), &taken), "bond1");
        assert_eq!(
            pick_name("e1c90e9f-eafc-4e2d-8ec9", bond_names(), &taken),
            "bond1"
        );
        assert_eq!(pick_name("prov", bond_names(), &taken), "prov");
        assert_eq!(
            pick_name("enp129s0f1np1.101", vlan_names(101), &taken),
            "vlan101"
        );
        let taken = ["vlan7".to_string()];
        assert_eq!(pick_name("x/y", vlan_names(7), &taken), "vlan7_1");
        assert!(!valid_ifname("a/b") && !valid_ifname("a b") && !valid_ifname(""));
        assert!(valid_ifname("bond0.101"));
    }
}
