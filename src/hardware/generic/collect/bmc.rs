//! The BMC's LAN addresses, IPA's `get_bmc_address`, `get_bmc_mac` and
//! `get_bmc_v6address` without ipmitool: "Get LAN Configuration
//! Parameters" (IPMI v2.0 §23.2, NetFn Transport 0x0C, command 0x02) sent
//! through the kernel's IPMI device, channels 1–11 as IPA walks them.
//!
//! Parameters used (IPMI v2.0 table 23-4, IPv6 ones from the v2.0 rev 1.1
//! errata): 3 IP address, 5 MAC address, 51 IPv6/IPv4 addressing enables,
//! 55 IPv6 status, 56 IPv6 static addresses, 59 IPv6 dynamic addresses.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

const PARAM_IP: u8 = 3;
const PARAM_MAC: u8 = 5;
const PARAM_IPV6_ENABLES: u8 = 51;
const PARAM_IPV6_STATUS: u8 = 55;
const PARAM_IPV6_STATIC: u8 = 56;
const PARAM_IPV6_DYNAMIC: u8 = 59;
/// Address sets looked at per kind; BMCs have a handful.
const MAX_SETS: u8 = 16;

/// Something that answers "Get LAN Configuration Parameters".
pub trait LanParams {
    /// `Ok(Some(data))`: the parameter data (after completion code and
    /// parameter revision); `Ok(None)`: the BMC refused (invalid channel,
    /// unsupported parameter: a non-zero completion code); `Err`: no BMC
    /// to talk to (the caller stops asking).
    fn get(&mut self, channel: u8, param: u8, set: u8) -> std::io::Result<Option<Vec<u8>>>;
}

/// A raw response (completion code, revision, data...) as [`LanParams::get`]
/// reports it.
pub fn parse_response(r: &[u8]) -> Option<Vec<u8>> {
    match r {
        [0, _rev, data @ ..] => Some(data.to_vec()),
        _ => None,
    }
}

/// The IPMI device through the kernel driver.
pub struct Device {
    dev: crate::sys::ipmi::Ipmi,
}

impl Device {
    pub fn open(path: &Path) -> std::io::Result<Device> {
        Ok(Device {
            dev: crate::sys::ipmi::Ipmi::open(path)?,
        })
    }
}

impl LanParams for Device {
    fn get(&mut self, channel: u8, param: u8, set: u8) -> std::io::Result<Option<Vec<u8>>> {
        self.dev
            .request(0x0c, 0x02, &[channel & 0x0f, param, set, 0], 2000)
            .map(|r| parse_response(&r))
    }
}

/// The IPMI device node IPA's `any_ipmi_device_exists` looks for
/// (/dev/ipmi*, /dev/ipmi/*, /dev/ipmidev/*, character devices). Fixture
/// roots stand a regular file in for the device.
pub fn device_path(root: &crate::root::Root) -> Option<PathBuf> {
    use std::os::unix::fs::FileTypeExt;
    let mut candidates: Vec<String> = root
        .list("/dev")
        .into_iter()
        .filter(|n| n.starts_with("ipmi"))
        .map(|n| format!("/dev/{n}"))
        .collect();
    for d in ["/dev/ipmi", "/dev/ipmidev"] {
        candidates.extend(root.list(d).into_iter().map(|n| format!("{d}/{n}")));
    }
    candidates.into_iter().map(|c| root.path(c)).find(|p| {
        std::fs::metadata(p)
            .map(|m| m.file_type().is_char_device() || (!root.is_real() && m.file_type().is_file()))
            .unwrap_or(false)
    })
}

/// What the inventory reports about the BMC.
#[derive(Clone, Debug, PartialEq)]
pub struct BmcInfo {
    pub address: String,
    pub v6address: String,
    pub mac: Option<String>,
}

/// Ask the BMC for all three, the way IPA does; a BMC that does not
/// answer gives IPA's "nothing configured" values.
pub fn query(b: &mut dyn LanParams) -> BmcInfo {
    let mut dead = false;
    let address = bmc_address(b, &mut dead);
    let v6address = bmc_v6address(b, &mut dead);
    let mac = bmc_mac(b, &mut dead);
    BmcInfo {
        address,
        v6address,
        mac,
    }
}

fn get(b: &mut dyn LanParams, dead: &mut bool, ch: u8, param: u8, set: u8) -> Option<Vec<u8>> {
    if *dead {
        return None;
    }
    match b.get(ch, param, set) {
        Ok(v) => v,
        Err(e) => {
            crate::util::log_at!(Warn, "Cannot get BMC information: {e}");
            *dead = true;
            None
        }
    }
}

fn ipv4(d: &[u8]) -> Option<Ipv4Addr> {
    (d.len() >= 4).then(|| Ipv4Addr::new(d[0], d[1], d[2], d[3]))
}

/// `get_bmc_address`: the first channel's non-zero IPv4 address, else
/// "0.0.0.0".
fn bmc_address(b: &mut dyn LanParams, dead: &mut bool) -> String {
    for ch in 1..=11 {
        if let Some(ip) = get(b, dead, ch, PARAM_IP, 0).as_deref().and_then(ipv4) {
            if !ip.is_unspecified() {
                return ip.to_string();
            }
        }
    }
    "0.0.0.0".into()
}

/// `get_bmc_mac`: the MAC of the first channel that has an IPv4 address,
/// or failing that a configured (not link-local) IPv6 address; `None`
/// when there is none (IPA then leaves the key out).
fn bmc_mac(b: &mut dyn LanParams, dead: &mut bool) -> Option<String> {
    for ch in 1..=11 {
        let Some(ip) = get(b, dead, ch, PARAM_IP, 0).as_deref().and_then(ipv4) else {
            continue;
        };
        let Some(mac) = get(b, dead, ch, PARAM_MAC, 0).filter(|m| m.len() >= 6) else {
            continue;
        };
        if ip.is_unspecified() {
            let configured = ipv6_addresses(b, dead, ch)
                .iter()
                .any(|a| !a.address.is_unspecified() && !is_link_local(&a.address));
            if !configured {
                continue;
            }
        }
        if mac[..6].iter().any(|x| *x != 0) {
            return Some(super::net::format_mac(&mac[..6]));
        }
    }
    None
}

/// `get_bmc_v6address`: on the first channel with IPv6 enabled, the first
/// active dynamic (SLAAC/DHCPv6) address, else the first active enabled
/// static one; "::/0" when none.
fn bmc_v6address(b: &mut dyn LanParams, dead: &mut bool) -> String {
    for ch in 1..=11 {
        let enabled = get(b, dead, ch, PARAM_IPV6_ENABLES, 0);
        // 0 = IPv4 only, 1 = IPv6 only, 2 = both
        if !matches!(enabled.as_deref(), Some([1 | 2, ..])) {
            continue;
        }
        let addrs = ipv6_addresses(b, dead, ch);
        let usable = |a: &&V6Addr| a.active && !a.address.is_unspecified();
        let pick = addrs
            .iter()
            .filter(|a| a.dynamic && a.enabled)
            .find(usable)
            .or_else(|| {
                addrs
                    .iter()
                    .filter(|a| !a.dynamic && a.enabled)
                    .find(usable)
            });
        if let Some(a) = pick {
            return a.address.to_string();
        }
    }
    "::/0".into()
}

fn is_link_local(a: &Ipv6Addr) -> bool {
    (a.segments()[0] & 0xffc0) == 0xfe80
}

#[derive(Debug, PartialEq)]
pub struct V6Addr {
    pub address: Ipv6Addr,
    pub prefix: u8,
    pub dynamic: bool,
    /// Static: the enable bit; dynamic: learnt by SLAAC or DHCPv6.
    pub enabled: bool,
    pub active: bool,
}

/// One IPv6 address set (parameters 56/59): set selector, source/type
/// (bit 7 enable; bits 3:0 0 = static, 1 = SLAAC, 2 = DHCPv6), 16 address
/// bytes, prefix length, status (0 = active).
pub fn parse_v6_set(d: &[u8], dynamic: bool) -> Option<V6Addr> {
    if d.len() < 20 {
        return None;
    }
    let mut a = [0u8; 16];
    a.copy_from_slice(&d[2..18]);
    let source = d[1] & 0x0f;
    Some(V6Addr {
        address: Ipv6Addr::from(a),
        prefix: d[18],
        dynamic,
        enabled: if dynamic {
            matches!(source, 1 | 2)
        } else {
            d[1] & 0x80 != 0
        },
        active: d[19] == 0,
    })
}

/// Every IPv6 address of a channel, dynamic ones first; the set counts
/// come from the IPv6 status parameter (static max, dynamic max).
fn ipv6_addresses(b: &mut dyn LanParams, dead: &mut bool, ch: u8) -> Vec<V6Addr> {
    let Some(status) = get(b, dead, ch, PARAM_IPV6_STATUS, 0) else {
        return vec![];
    };
    let (n_static, n_dynamic) = match status.as_slice() {
        [s, d, ..] => (*s, *d),
        _ => return vec![],
    };
    let mut out = vec![];
    for set in 0..n_dynamic.min(MAX_SETS) {
        if let Some(a) =
            get(b, dead, ch, PARAM_IPV6_DYNAMIC, set).and_then(|d| parse_v6_set(&d, true))
        {
            out.push(a);
        }
    }
    for set in 0..n_static.min(MAX_SETS) {
        if let Some(a) =
            get(b, dead, ch, PARAM_IPV6_STATIC, set).and_then(|d| parse_v6_set(&d, false))
        {
            out.push(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A BMC answering from recorded raw responses (completion code,
    /// revision 0x11, data), keyed by (channel, parameter, set); anything
    /// else gets completion code 0xCC (invalid data field: not a LAN
    /// channel), as real BMCs answer.
    struct Recorded {
        answers: BTreeMap<(u8, u8, u8), Vec<u8>>,
        asked: usize,
        fail: bool,
    }

    /// (channel, parameter, set selector) → raw response
    type Answers<'a> = [((u8, u8, u8), &'a [u8])];

    impl Recorded {
        fn new(list: &Answers) -> Self {
            Recorded {
                answers: list.iter().map(|(k, v)| (*k, v.to_vec())).collect(),
                asked: 0,
                fail: false,
            }
        }
    }

    impl LanParams for Recorded {
        fn get(&mut self, ch: u8, p: u8, s: u8) -> std::io::Result<Option<Vec<u8>>> {
            self.asked += 1;
            if self.fail {
                return Err(std::io::Error::from_raw_os_error(25));
            }
            let raw = self
                .answers
                .get(&(ch, p, s))
                .cloned()
                .unwrap_or_else(|| vec![0xcc]);
            Ok(parse_response(&raw))
        }
    }

    fn v6_set(set: u8, source: u8, addr: &str, prefix: u8, status: u8) -> Vec<u8> {
        let mut v = vec![0, 0x11, set, source];
        v.extend_from_slice(&addr.parse::<Ipv6Addr>().unwrap().octets());
        v.push(prefix);
        v.push(status);
        v
    }

    #[test]
    fn ipv4_bmc_on_channel_1() {
        let mut b = Recorded::new(&[
            ((1, 3, 0), &[0x00, 0x11, 10, 1, 0, 20]),
            ((1, 5, 0), &[0x00, 0x11, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0x01]),
            ((1, 51, 0), &[0x00, 0x11, 0x00]),
        ]);
        let i = query(&mut b);
        assert_eq!(i.address, "10.1.0.20");
        assert_eq!(i.v6address, "::/0");
        assert_eq!(i.mac.as_deref(), Some("aa:bb:cc:dd:ee:01"));
    }

    #[test]
    fn unconfigured_channels_then_channel_8() {
        // channel 1 is a LAN channel without an address; 8 has one
        let mut b = Recorded::new(&[
            ((1, 3, 0), &[0x00, 0x11, 0, 0, 0, 0]),
            ((1, 5, 0), &[0x00, 0x11, 0, 0, 0, 0, 0, 0]),
            ((8, 3, 0), &[0x00, 0x11, 192, 0, 2, 9]),
            ((8, 5, 0), &[0x00, 0x11, 0x3c, 0xec, 0xef, 0x00, 0x00, 0x08]),
        ]);
        let i = query(&mut b);
        assert_eq!(i.address, "192.0.2.9");
        assert_eq!(i.mac.as_deref(), Some("3c:ec:ef:00:00:08"));
    }

    #[test]
    fn ipv6_only_bmc() {
        let status: &[u8] = &[0x00, 0x11, 2, 2, 0x03];
        let dyn0 = v6_set(0, 0x01, "fe80::3eec:efff:fe00:1", 64, 0);
        let dyn1 = v6_set(1, 0x02, "2001:db8::20", 64, 1); // not active
        let st0 = v6_set(0, 0x80, "2001:db8::5", 64, 0);
        let st1 = v6_set(1, 0x00, "::", 0, 0);
        let mut b = Recorded::new(&[
            ((1, 3, 0), &[0x00, 0x11, 0, 0, 0, 0]),
            ((1, 5, 0), &[0x00, 0x11, 0x3c, 0xec, 0xef, 0, 0, 1]),
            ((1, 51, 0), &[0x00, 0x11, 0x01]),
            ((1, 55, 0), status),
            ((1, 59, 0), &dyn0),
            ((1, 59, 1), &dyn1),
            ((1, 56, 0), &st0),
            ((1, 56, 1), &st1),
        ]);
        let i = query(&mut b);
        assert_eq!(i.address, "0.0.0.0");
        // IPA takes the first active dynamic address, link-local or not
        assert_eq!(i.v6address, "fe80::3eec:efff:fe00:1");
        // no IPv4, but a configured static IPv6 address: the MAC counts
        assert_eq!(i.mac.as_deref(), Some("3c:ec:ef:00:00:01"));
    }

    #[test]
    fn no_bmc_answers() {
        let mut b = Recorded::new(&[]);
        b.fail = true;
        let i = query(&mut b);
        assert_eq!(
            i,
            BmcInfo {
                address: "0.0.0.0".into(),
                v6address: "::/0".into(),
                mac: None
            }
        );
        // the first failure stops all further requests
        assert_eq!(b.asked, 1);
        let mut b = Recorded::new(&[]);
        let i = query(&mut b);
        assert_eq!(
            (i.address.as_str(), i.v6address.as_str(), i.mac),
            ("0.0.0.0", "::/0", None)
        );
    }

    #[test]
    fn short_and_garbage_responses() {
        assert_eq!(parse_response(&[]), None);
        assert_eq!(parse_response(&[0xc1]), None);
        assert_eq!(parse_response(&[0x00]), None);
        assert_eq!(parse_response(&[0x00, 0x11]), Some(vec![]));
        assert_eq!(parse_v6_set(&[0; 19], true), None);
        let mut b = Recorded::new(&[
            ((1, 3, 0), &[0x00, 0x11, 10]),
            ((1, 5, 0), &[0x00, 0x11, 1, 2]),
            ((1, 51, 0), &[0x00, 0x11, 0x02]),
            ((1, 55, 0), &[0x00, 0x11, 200, 255]),
        ]);
        let i = query(&mut b);
        assert_eq!(
            (i.address.as_str(), i.v6address.as_str(), i.mac),
            ("0.0.0.0", "::/0", None)
        );
    }
}
