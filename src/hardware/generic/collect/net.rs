//! Network interfaces for the inventory: IPA's `netutils.py`
//! (`list_interfaces`, `get_mac_addr`, `interface_has_carrier`, ...) and
//! the psutil address lookups, from /sys/class/net and /proc/net.

use crate::hardware::inventory::NetworkInterface;
use crate::root::Root;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

/// IPA's `list_interfaces`: NICs with a `device` link, VLANs named
/// `<if>.<id>` and bonds; never `lo` (it has none of the three).
pub fn interface_names(root: &Root) -> Vec<String> {
    let mut names: Vec<String> = root
        .list("/sys/class/net")
        .into_iter()
        .filter(|n| {
            is_vlan(n)
                || root.exists(format!("/sys/class/net/{n}/device"))
                || root.exists(format!("/sys/class/net/{n}/bonding"))
        })
        .collect();
    crate::util::sort_small_by(&mut names, |a, b| crate::disk::list::natural_cmp(a, b));
    names
}

/// `netutils.is_vlan`: "eth0.100" (Python's `isdigit` on the part after
/// the first dot).
pub fn is_vlan(name: &str) -> bool {
    match name.split_once('.') {
        Some((_, v)) => !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    }
}

/// Colon-separated lower-case hex, as psutil and IPA print MACs.
pub fn format_mac(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// What the address lookups share across interfaces, read once per
/// inventory.
pub struct AddressTables {
    /// Interface → IPv4 addresses (fixture roots: /proc/net/fib_trie +
    /// /proc/net/route).
    ipv4: BTreeMap<String, Vec<Ipv4Addr>>,
    /// Interface → IPv6 addresses in /proc/net/if_inet6 order, with scope.
    ipv6: BTreeMap<String, Vec<(Ipv6Addr, u8)>>,
    /// The real root asks the kernel directly.
    sock: Option<crate::sys::net::IfSocket>,
}

impl AddressTables {
    pub fn read(root: &Root) -> AddressTables {
        let sock = if root.is_real() {
            crate::sys::net::IfSocket::new().ok()
        } else {
            None
        };
        let ipv4 = if sock.is_some() {
            BTreeMap::new()
        } else {
            ipv4_by_interface(
                &root.read("/proc/net/fib_trie").unwrap_or_default(),
                &root.read("/proc/net/route").unwrap_or_default(),
            )
        };
        AddressTables {
            ipv4,
            ipv6: parse_if_inet6(&root.read("/proc/net/if_inet6").unwrap_or_default()),
            sock,
        }
    }

    /// The permanent MAC from the driver (`ethtool -P`), real root only.
    pub fn permanent_mac(&self, name: &str) -> Option<String> {
        let s = self.sock.as_ref()?;
        match s.permanent_mac(name) {
            Ok(m) => m.map(|b| format_mac(&b)),
            Err(e) => {
                crate::util::log_at!(Debug, "no permanent MAC for {name}: {e}");
                None
            }
        }
    }

    /// The first IPv4 address of the interface, as psutil's first
    /// AF_INET entry: the primary address.
    pub fn ipv4(&self, name: &str) -> Option<String> {
        if let Some(s) = &self.sock {
            return match s.ipv4_address(name) {
                Ok(a) => a.map(|a| a.to_string()),
                Err(e) => {
                    crate::util::log_at!(Debug, "no IPv4 address for {name}: {e}");
                    None
                }
            };
        }
        self.ipv4
            .get(name)
            .and_then(|v| v.first())
            .map(|a| a.to_string())
    }

    /// One IPv6 address: global (and site/ULA) scope before link-local;
    /// a link-local address carries its zone ("fe80::1%eth0"), as psutil
    /// prints it.
    pub fn ipv6(&self, name: &str) -> Option<String> {
        let v = self.ipv6.get(name)?;
        let pick = v
            .iter()
            .find(|(_, scope)| *scope == 0x00)
            .or_else(|| v.iter().find(|(_, scope)| *scope != 0x20 && *scope != 0x10))
            .or_else(|| v.iter().find(|(_, scope)| *scope == 0x20))?;
        Some(if pick.1 == 0x20 {
            format!("{}%{name}", pick.0)
        } else {
            pick.0.to_string()
        })
    }
}

/// /proc/net/if_inet6: "<32 hex> <ifindex> <prefixlen> <scope> <flags>
/// <name>". Tentative-failed addresses (IFA_F_DADFAILED) are left out.
pub fn parse_if_inet6(text: &str) -> BTreeMap<String, Vec<(Ipv6Addr, u8)>> {
    const IFA_F_DADFAILED: u32 = 0x08;
    let mut out: BTreeMap<String, Vec<(Ipv6Addr, u8)>> = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || f[0].len() != 32 {
            continue;
        }
        let Ok(bits) = u128::from_str_radix(f[0], 16) else {
            continue;
        };
        let scope = u8::from_str_radix(f[3], 16).unwrap_or(0xff);
        let flags = u32::from_str_radix(f[4], 16).unwrap_or(0);
        if flags & IFA_F_DADFAILED != 0 {
            continue;
        }
        out.entry(f[5].to_string())
            .or_default()
            .push((Ipv6Addr::from(bits), scope));
    }
    out
}

/// Local IPv4 addresses per interface from /proc/net/fib_trie (the
/// `/32 host LOCAL` leaves of the Local table) matched against the
/// interface routes of /proc/net/route (longest prefix wins). Loopback
/// addresses are left out.
pub fn ipv4_by_interface(fib_trie: &str, route: &str) -> BTreeMap<String, Vec<Ipv4Addr>> {
    let locals = local_addresses(fib_trie);
    let routes = parse_routes(route);
    let mut out: BTreeMap<String, Vec<Ipv4Addr>> = BTreeMap::new();
    for a in locals {
        if a.is_loopback() {
            continue;
        }
        let ip = u32::from(a);
        let best = routes
            .iter()
            .filter(|r| r.mask != 0 && ip & r.mask == r.dest & r.mask)
            .max_by_key(|r| r.mask.count_ones());
        if let Some(r) = best {
            let v = out.entry(r.iface.clone()).or_default();
            if !v.contains(&a) {
                v.push(a);
            }
        }
    }
    out
}

/// The netmask of `ip` on `iface`: the longest prefix of the interface
/// routes in /proc/net/route that hold it (what SIOCGIFNETMASK answers
/// for a primary address).
pub fn ipv4_netmask(route: &str, iface: &str, ip: Ipv4Addr) -> Option<Ipv4Addr> {
    let ip = u32::from(ip);
    parse_routes(route)
        .into_iter()
        .filter(|r| r.iface == iface && r.mask != 0 && ip & r.mask == r.dest & r.mask)
        .max_by_key(|r| r.mask.count_ones())
        .map(|r| Ipv4Addr::from(r.mask))
}

/// The `/32 host LOCAL` entries of the Local table (or of the only table
/// on kernels that print one), in file order.
fn local_addresses(fib_trie: &str) -> Vec<Ipv4Addr> {
    let has_tables = fib_trie.lines().any(|l| l.trim_end() == "Local:");
    let mut in_local = !has_tables;
    let mut last: Option<Ipv4Addr> = None;
    let mut out = vec![];
    for line in fib_trie.lines() {
        if !line.starts_with(' ') {
            in_local = !has_tables || line.trim_end() == "Local:";
            last = None;
            continue;
        }
        let t = line.trim();
        if let Some(a) = t.strip_prefix("|-- ") {
            last = a.trim().parse().ok();
        } else if t.starts_with('/') && t.contains("host LOCAL") && in_local {
            if let Some(a) = last {
                if !out.contains(&a) {
                    out.push(a);
                }
            }
        }
    }
    out
}

struct Route {
    iface: String,
    dest: u32,
    mask: u32,
}

/// /proc/net/route: destination and mask are the raw `__be32` printed as
/// a host-order hex number, so `to_ne_bytes` gives the address bytes.
fn parse_routes(text: &str) -> Vec<Route> {
    let mut out = vec![];
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let (Ok(d), Ok(m)) = (u32::from_str_radix(f[1], 16), u32::from_str_radix(f[7], 16)) else {
            continue;
        };
        out.push(Route {
            iface: f[0].to_string(),
            dest: u32::from(Ipv4Addr::from(d.to_ne_bytes())),
            mask: u32::from(Ipv4Addr::from(m.to_ne_bytes())),
        });
    }
    out
}

/// One inventory interface, or `None` when IPA would skip it (no MAC, or a
/// MAC starting with "fa:").
pub fn interface(root: &Root, tables: &AddressTables, name: &str) -> Option<NetworkInterface> {
    let base = format!("/sys/class/net/{name}");
    let current = root.read_nonempty(format!("{base}/address"));
    // Permanent MAC: the driver's (real root), else what bonding recorded
    // for an enslaved NIC, else the current address (IPA falls back to the
    // AF_PACKET address when ethtool has none).
    let mac = tables
        .permanent_mac(name)
        .or_else(|| root.read_nonempty(format!("{base}/bonding_slave/perm_hwaddr")))
        .or_else(|| current.clone())
        .map(|m| m.to_ascii_lowercase());
    let Some(mac) = mac else {
        crate::util::log_at!(Debug, "interface {name} has no MAC address, skipping it");
        return None;
    };
    if mac.starts_with("fa:") {
        crate::util::log_at!(
            Warn,
            "Interface mac address {mac} for interface {name} is being ignored because it \
             appears to be a locally assigned address and is unexpected"
        );
        return None;
    }
    let speed = root
        .read(format!("{base}/speed"))
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|s| *s > 0)
        .map(|s| s as u64);
    Some(NetworkInterface {
        name: name.to_string(),
        ipv4_address: tables.ipv4(name),
        ipv6_address: tables.ipv6(name),
        has_carrier: root.read(format!("{base}/carrier")).as_deref() == Some("1"),
        lldp: None,
        vendor: root.read(format!("{base}/device/vendor")),
        product: root.read(format!("{base}/device/device")),
        client_id: None,
        biosdevname: None,
        speed_mbps: speed,
        pci_address: root.link_name(format!("{base}/device")),
        driver: root.link_name(format!("{base}/device/driver")),
        current_mac: current
            .map(|c| c.to_ascii_lowercase())
            .filter(|c| *c != mac),
        mac_address: Some(mac),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIB: &str = "Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 192.0.2.0/24 2 0 2
        |-- 192.0.2.0
           /24 link UNICAST
        |-- 192.0.2.2
           /32 host LOCAL
Local:
  +-- 0.0.0.0/0 3 0 5
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
     +-- 10.0.0.0/16 2 0 2
        |-- 10.0.0.5
           /32 host LOCAL
        |-- 10.0.1.5
           /32 host LOCAL
        |-- 10.0.1.6
           /32 host LOCAL
        |-- 10.0.255.255
           /32 link BROADCAST
     +-- 192.0.2.0/24 2 0 2
        |-- 192.0.2.2
           /32 host LOCAL
";
    const ROUTE: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
eno1\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
bond0\t0001000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
";

    #[test]
    fn ipv4_from_fib_trie_and_routes() {
        let m = ipv4_by_interface(FIB, ROUTE);
        assert_eq!(m["eth0"], vec![Ipv4Addr::new(192, 0, 2, 2)]);
        assert_eq!(m["eno1"], vec![Ipv4Addr::new(10, 0, 0, 5)]);
        assert_eq!(
            m["bond0"],
            vec![Ipv4Addr::new(10, 0, 1, 5), Ipv4Addr::new(10, 0, 1, 6)]
        );
        assert!(!m.values().flatten().any(|a| a.is_loopback()));
        // garbage in, nothing out, no panic
        assert!(ipv4_by_interface("Local:\n  |-- x\n  /32 host LOCAL", "h\nbad").is_empty());
        assert!(ipv4_by_interface("", "").is_empty());
        let a = Ipv4Addr::new(10, 0, 0, 5);
        assert_eq!(
            ipv4_netmask(ROUTE, "eno1", a),
            Some(Ipv4Addr::new(255, 255, 255, 0))
        );
        assert_eq!(ipv4_netmask(ROUTE, "eth0", a), None);
    }

    #[test]
    fn ipv6_order_and_zone() {
        let t = "fe8000000000000000fc00fffe000001 04 40 20 80     eth0
fd000000000000000000000000000002 04 40 00 82     eth0
20010db8000000000000000000000009 05 40 00 08     eth1
fe800000000000000000000000000009 05 40 20 80     eth1
00000000000000000000000000000001 01 80 10 80       lo
zz 1 2 3
";
        let tables = AddressTables {
            ipv4: BTreeMap::new(),
            ipv6: parse_if_inet6(t),
            sock: None,
        };
        assert_eq!(tables.ipv6("eth0").as_deref(), Some("fd00::2"));
        // the global address failed DAD: only the link-local one is left
        assert_eq!(tables.ipv6("eth1").as_deref(), Some("fe80::9%eth1"));
        assert_eq!(tables.ipv6("lo"), None); // host scope only
        assert_eq!(tables.ipv6("nope"), None);
    }

    #[test]
    fn vlan_names() {
        assert!(is_vlan("eth0.100"));
        assert!(!is_vlan("eth0."));
        assert!(!is_vlan("eth0"));
        assert!(!is_vlan("br.lan"));
        assert_eq!(
            format_mac(&[0x52, 0x54, 0, 0xab, 0xcd, 0xef]),
            "52:54:00:ab:cd:ef"
        );
    }
}
