//! rtnetlink (`NETLINK_ROUTE`), the kernel interface `ip` itself uses:
//! list links and addresses, create bonds and VLANs, set links up, give
//! them addresses and routes. The ramdisk configures its network with this
//! instead of running `ip` (network_data.json, DHCPv6).
//!
//! Messages are built by [`Msg`] and read by [`messages`] / [`attrs`],
//! plain functions over byte buffers with unit tests against the layouts
//! of include/uapi/linux/{netlink,rtnetlink,if_link,if_addr}.h (values
//! checked against the C headers); [`Netlink`] only sends them and waits
//! for the kernel's answer.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

// include/uapi/linux/netlink.h
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;
const HDR: usize = 16;

// include/uapi/linux/rtnetlink.h
pub const RTM_NEWLINK: u16 = 16;
pub const RTM_DELLINK: u16 = 17;
pub const RTM_GETLINK: u16 = 18;
pub const RTM_NEWADDR: u16 = 20;
pub const RTM_DELADDR: u16 = 21;
pub const RTM_GETADDR: u16 = 22;
pub const RTM_NEWROUTE: u16 = 24;
const RT_TABLE_MAIN: u8 = 254;
/// `ip route add`'s default protocol.
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
const RTN_UNICAST: u8 = 1;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PRIORITY: u16 = 6;

// include/uapi/linux/if_link.h
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_LINK: u16 = 5;
const IFLA_MASTER: u16 = 10;
const IFLA_PROTINFO: u16 = 12;
const IFLA_LINKINFO: u16 = 18;
const IFLA_CARRIER: u16 = 33;
const IFLA_PERM_ADDRESS: u16 = 54;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_INET6_FLAGS: u16 = 1;
const IFLA_VLAN_ID: u16 = 1;
const IFLA_BOND_MODE: u16 = 1;
const IFLA_BOND_MIIMON: u16 = 3;
const IFLA_BOND_XMIT_HASH_POLICY: u16 = 14;
const IFLA_BOND_AD_LACP_RATE: u16 = 21;

// include/uapi/linux/if_addr.h
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const IFA_CACHEINFO: u16 = 6;
const IFA_FLAGS: u16 = 8;
pub const IFA_F_DADFAILED: u32 = 0x08;
pub const IFA_F_TENTATIVE: u32 = 0x40;

// include/net/if_inet6.h (kernel-internal, reported in IFLA_INET6_FLAGS)
/// The last router advertisement had the M (managed address) flag.
pub const IF_RA_MANAGED: u32 = 0x40;
/// The last router advertisement had the O (other configuration) flag.
pub const IF_RA_OTHERCONF: u32 = 0x80;
/// A router advertisement was received.
pub const IF_RA_RCVD: u32 = 0x20;

const AF_INET: u8 = libc::AF_INET as u8;
const AF_INET6: u8 = libc::AF_INET6 as u8;
const IFF_UP: u32 = libc::IFF_UP as u32;

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// A request being built: `nlmsghdr`, the fixed family header, then
/// attributes, each padded to 4 bytes.
#[derive(Debug)]
pub struct Msg {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

impl Msg {
    fn new(ty: u16, flags: u16, fixed: &[u8]) -> Msg {
        let mut buf = vec![0u8; HDR];
        buf[4..6].copy_from_slice(&ty.to_ne_bytes());
        buf[6..8].copy_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        buf.extend_from_slice(fixed);
        buf.resize(align4(buf.len()), 0);
        Msg { buf, nests: vec![] }
    }

    fn attr(&mut self, ty: u16, data: &[u8]) -> &mut Msg {
        let len = 4 + data.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.buf.resize(align4(self.buf.len()), 0);
        self
    }

    fn u8(&mut self, ty: u16, v: u8) -> &mut Msg {
        self.attr(ty, &[v])
    }

    fn u16(&mut self, ty: u16, v: u16) -> &mut Msg {
        self.attr(ty, &v.to_ne_bytes())
    }

    fn u32(&mut self, ty: u16, v: u32) -> &mut Msg {
        self.attr(ty, &v.to_ne_bytes())
    }

    fn str(&mut self, ty: u16, s: &str) -> &mut Msg {
        let mut b = s.as_bytes().to_vec();
        b.push(0);
        self.attr(ty, &b)
    }

    fn ip(&mut self, ty: u16, ip: IpAddr) -> &mut Msg {
        match ip {
            IpAddr::V4(a) => self.attr(ty, &a.octets()),
            IpAddr::V6(a) => self.attr(ty, &a.octets()),
        }
    }

    fn begin(&mut self, ty: u16) -> &mut Msg {
        self.nests.push(self.buf.len());
        self.attr(ty | NLA_F_NESTED, &[])
    }

    fn end(&mut self) -> &mut Msg {
        let at = self.nests.pop().expect("end() after begin()");
        let len = (self.buf.len() - at) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    /// The message's bytes with its length and sequence number filled in.
    pub fn finish(mut self, seq: u32) -> Vec<u8> {
        assert!(self.nests.is_empty(), "unclosed nested attribute");
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}

/// `struct ifinfomsg` (16 bytes).
fn ifinfomsg(family: u8, index: u32, flags: u32, change: u32) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0] = family;
    b[4..8].copy_from_slice(&index.to_ne_bytes());
    b[8..12].copy_from_slice(&flags.to_ne_bytes());
    b[12..16].copy_from_slice(&change.to_ne_bytes());
    b
}

/// `struct ifaddrmsg` (8 bytes).
fn ifaddrmsg(family: u8, prefix: u8, scope: u8, index: u32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0] = family;
    b[1] = prefix;
    b[3] = scope;
    b[4..8].copy_from_slice(&index.to_ne_bytes());
    b
}

fn family(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        AF_INET
    } else {
        AF_INET6
    }
}

/// RTM_GETLINK dump of every link. With `AF_INET6` the kernel answers
/// with its IPv6 view of each link (`IFLA_PROTINFO`: the RA flags).
pub fn get_links(family: u8) -> Msg {
    Msg::new(RTM_GETLINK, NLM_F_DUMP, &ifinfomsg(family, 0, 0, 0))
}

/// RTM_GETADDR dump of every address.
pub fn get_addrs() -> Msg {
    Msg::new(RTM_GETADDR, NLM_F_DUMP, &ifaddrmsg(0, 0, 0, 0))
}

/// What to change on an existing link (`ip link set`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkChange {
    pub up: Option<bool>,
    pub mtu: Option<u32>,
    pub mac: Option<Vec<u8>>,
    /// Enslave to this bond (the link must be down).
    pub master: Option<u32>,
}

/// RTM_NEWLINK on an existing link: `ip link set dev X [up|down] [mtu N]
/// [address MAC] [master BOND]`.
pub fn set_link(index: u32, c: &LinkChange) -> Msg {
    let (flags, change) = match c.up {
        Some(true) => (IFF_UP, IFF_UP),
        Some(false) => (0, IFF_UP),
        None => (0, 0),
    };
    let mut m = Msg::new(RTM_NEWLINK, NLM_F_ACK, &ifinfomsg(0, index, flags, change));
    if let Some(mtu) = c.mtu {
        m.u32(IFLA_MTU, mtu);
    }
    if let Some(mac) = &c.mac {
        m.attr(IFLA_ADDRESS, mac);
    }
    if let Some(master) = c.master {
        m.u32(IFLA_MASTER, master);
    }
    m
}

/// RTM_DELLINK: `ip link del dev X`.
pub fn del_link(index: u32) -> Msg {
    Msg::new(RTM_DELLINK, NLM_F_ACK, &ifinfomsg(0, index, 0, 0))
}

/// Bonding driver settings (Documentation/networking/bonding.rst).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BondOptions {
    /// BOND_MODE_*: 0 balance-rr, 1 active-backup, 2 balance-xor,
    /// 3 broadcast, 4 802.3ad, 5 balance-tlb, 6 balance-alb.
    pub mode: u8,
    pub miimon: u32,
    /// BOND_XMIT_POLICY_*: 0 layer2, 1 layer3+4, 2 layer2+3, 3 encap2+3,
    /// 4 encap3+4, 5 vlan+srcmac.
    pub xmit_hash_policy: Option<u8>,
    /// 0 slow, 1 fast (802.3ad only).
    pub lacp_rate: Option<u8>,
}

/// RTM_NEWLINK creating a bond: `ip link add NAME [address MAC] type bond
/// mode M miimon N ...`.
pub fn new_bond(name: &str, mac: Option<&[u8]>, o: &BondOptions) -> Msg {
    let mut m = Msg::new(
        RTM_NEWLINK,
        NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        &ifinfomsg(0, 0, 0, 0),
    );
    m.str(IFLA_IFNAME, name);
    if let Some(mac) = mac {
        m.attr(IFLA_ADDRESS, mac);
    }
    m.begin(IFLA_LINKINFO).str(IFLA_INFO_KIND, "bond");
    m.begin(IFLA_INFO_DATA)
        .u8(IFLA_BOND_MODE, o.mode)
        .u32(IFLA_BOND_MIIMON, o.miimon);
    if let Some(p) = o.xmit_hash_policy {
        m.u8(IFLA_BOND_XMIT_HASH_POLICY, p);
    }
    if let Some(r) = o.lacp_rate {
        m.u8(IFLA_BOND_AD_LACP_RATE, r);
    }
    m.end().end();
    m
}

/// RTM_NEWLINK creating a VLAN: `ip link add link PARENT name NAME
/// [address MAC] type vlan id ID`.
pub fn new_vlan(name: &str, parent: u32, id: u16, mac: Option<&[u8]>) -> Msg {
    let mut m = Msg::new(
        RTM_NEWLINK,
        NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        &ifinfomsg(0, 0, 0, 0),
    );
    m.u32(IFLA_LINK, parent).str(IFLA_IFNAME, name);
    if let Some(mac) = mac {
        m.attr(IFLA_ADDRESS, mac);
    }
    m.begin(IFLA_LINKINFO).str(IFLA_INFO_KIND, "vlan");
    m.begin(IFLA_INFO_DATA).u16(IFLA_VLAN_ID, id);
    m.end().end();
    m
}

/// Address lifetimes in seconds (`preferred_lft`, `valid_lft`);
/// `u32::MAX` is forever.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetimes {
    pub preferred: u32,
    pub valid: u32,
}

/// RTM_NEWADDR (create or replace): `ip addr replace IP/PREFIX dev X
/// [broadcast +] [preferred_lft P valid_lft V]`.
pub fn add_addr(index: u32, ip: IpAddr, prefix: u8, life: Option<Lifetimes>) -> Msg {
    let mut m = Msg::new(
        RTM_NEWADDR,
        NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        &ifaddrmsg(family(ip), prefix, RT_SCOPE_UNIVERSE, index),
    );
    m.ip(IFA_LOCAL, ip).ip(IFA_ADDRESS, ip);
    if let IpAddr::V4(v4) = ip {
        if prefix < 31 {
            let host = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
            let b = Ipv4Addr::from(u32::from(v4) | host);
            m.ip(IFA_BROADCAST, IpAddr::V4(b));
        }
    }
    if let Some(l) = life {
        // struct ifa_cacheinfo { ifa_prefered, ifa_valid, cstamp, tstamp }
        let mut ci = [0u8; 16];
        ci[0..4].copy_from_slice(&l.preferred.to_ne_bytes());
        ci[4..8].copy_from_slice(&l.valid.to_ne_bytes());
        m.attr(IFA_CACHEINFO, &ci);
    }
    m
}

/// RTM_DELADDR: `ip addr del IP/PREFIX dev X`.
pub fn del_addr(index: u32, ip: IpAddr, prefix: u8) -> Msg {
    let mut m = Msg::new(
        RTM_DELADDR,
        NLM_F_ACK,
        &ifaddrmsg(family(ip), prefix, RT_SCOPE_UNIVERSE, index),
    );
    m.ip(IFA_LOCAL, ip).ip(IFA_ADDRESS, ip);
    m
}

/// RTM_NEWROUTE (create or replace) in the main table: `ip route replace
/// DST/PREFIX [via GW] dev X [metric N]`; without a gateway the route is
/// on-link (scope link).
pub fn add_route(dst: IpAddr, prefix: u8, gw: Option<IpAddr>, oif: u32, metric: u32) -> Msg {
    let mut rt = [0u8; 12];
    rt[0] = family(dst);
    rt[1] = prefix;
    rt[4] = RT_TABLE_MAIN;
    rt[5] = RTPROT_BOOT;
    rt[6] = if gw.is_some() {
        RT_SCOPE_UNIVERSE
    } else {
        RT_SCOPE_LINK
    };
    rt[7] = RTN_UNICAST;
    let mut m = Msg::new(RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, &rt);
    if prefix > 0 {
        m.ip(RTA_DST, dst);
    }
    if let Some(g) = gw {
        m.ip(RTA_GATEWAY, g);
    }
    m.u32(RTA_OIF, oif);
    if metric > 0 {
        m.u32(RTA_PRIORITY, metric);
    }
    m
}

/// One message of a reply: type, flags, sequence number, payload.
pub struct Reply<'a> {
    pub ty: u16,
    pub seq: u32,
    pub payload: &'a [u8],
}

/// The messages in one datagram from the kernel; stops at the first
/// malformed header.
pub fn messages(buf: &[u8]) -> Vec<Reply<'_>> {
    let mut out = vec![];
    let mut at = 0;
    while at + HDR <= buf.len() {
        let len = u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
        if len < HDR || at + len > buf.len() {
            break;
        }
        out.push(Reply {
            ty: u16::from_ne_bytes([buf[at + 4], buf[at + 5]]),
            seq: u32::from_ne_bytes([buf[at + 8], buf[at + 9], buf[at + 10], buf[at + 11]]),
            payload: &buf[at + HDR..at + len],
        });
        at += align4(len);
    }
    out
}

/// The attributes in `data`: (type without the nested/byte-order flags,
/// payload); stops at the first malformed one.
pub fn attrs(data: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = vec![];
    let mut at = 0;
    while at + 4 <= data.len() {
        let len = usize::from(u16::from_ne_bytes([data[at], data[at + 1]]));
        let ty = u16::from_ne_bytes([data[at + 2], data[at + 3]]) & NLA_TYPE_MASK;
        if len < 4 || at + len > data.len() {
            break;
        }
        out.push((ty, &data[at + 4..at + len]));
        at += align4(len);
    }
    out
}

fn ne_u32(b: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(..4)?.try_into().ok()?))
}

fn c_string(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// A link as RTM_NEWLINK describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// IFF_* flags.
    pub flags: u32,
    pub mac: Option<Vec<u8>>,
    /// The permanent (burned-in) MAC, which a bond slave keeps while its
    /// current address is the bond's.
    pub perm_mac: Option<Vec<u8>>,
    pub mtu: Option<u32>,
    pub master: Option<u32>,
    /// `IFLA_INFO_KIND`: "bond", "vlan", ...; none for plain NICs.
    pub kind: Option<String>,
    pub carrier: Option<bool>,
    /// `IFLA_INET6_FLAGS` (in an AF_INET6 dump only): IF_RA_*.
    pub inet6_flags: Option<u32>,
}

impl Link {
    pub fn is_up(&self) -> bool {
        self.flags & IFF_UP != 0
    }
}

/// Parse one RTM_NEWLINK payload.
pub fn parse_link(p: &[u8]) -> Option<Link> {
    if p.len() < 16 {
        return None;
    }
    let mut l = Link {
        index: ne_u32(&p[4..8])?,
        flags: ne_u32(&p[8..12])?,
        ..Link::default()
    };
    for (ty, v) in attrs(&p[16..]) {
        match ty {
            IFLA_IFNAME => l.name = c_string(v),
            IFLA_ADDRESS if !v.is_empty() => l.mac = Some(v.to_vec()),
            IFLA_PERM_ADDRESS if v.iter().any(|&b| b != 0) => l.perm_mac = Some(v.to_vec()),
            IFLA_MTU => l.mtu = ne_u32(v),
            IFLA_MASTER => l.master = ne_u32(v).filter(|&m| m != 0),
            IFLA_CARRIER => l.carrier = v.first().map(|&c| c != 0),
            IFLA_LINKINFO => {
                for (t, k) in attrs(v) {
                    if t == IFLA_INFO_KIND {
                        l.kind = Some(c_string(k));
                    }
                }
            }
            IFLA_PROTINFO => {
                for (t, f) in attrs(v) {
                    if t == IFLA_INET6_FLAGS {
                        l.inet6_flags = ne_u32(f);
                    }
                }
            }
            _ => {}
        }
    }
    Some(l)
}

/// An address as RTM_NEWADDR describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addr {
    pub index: u32,
    pub ip: IpAddr,
    pub prefix: u8,
    pub scope: u8,
    /// IFA_F_*; the 32-bit IFA_FLAGS when present.
    pub flags: u32,
}

impl Addr {
    pub fn tentative(&self) -> bool {
        self.flags & IFA_F_TENTATIVE != 0
    }
}

fn ip_of(family: u8, v: &[u8]) -> Option<IpAddr> {
    match (family, v.len()) {
        (AF_INET, 4) => Some(IpAddr::V4(Ipv4Addr::new(v[0], v[1], v[2], v[3]))),
        (AF_INET6, 16) => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(v).ok()?))),
        _ => None,
    }
}

/// Parse one RTM_NEWADDR payload.
pub fn parse_addr(p: &[u8]) -> Option<Addr> {
    if p.len() < 8 {
        return None;
    }
    let fam = p[0];
    let mut local = None;
    let mut address = None;
    let mut flags = u32::from(p[2]);
    for (ty, v) in attrs(&p[8..]) {
        match ty {
            IFA_LOCAL => local = ip_of(fam, v),
            IFA_ADDRESS => address = ip_of(fam, v),
            IFA_FLAGS => flags = ne_u32(v).unwrap_or(flags),
            _ => {}
        }
    }
    Some(Addr {
        index: ne_u32(&p[4..8])?,
        ip: local.or(address)?,
        prefix: p[1],
        scope: p[3],
        flags,
    })
}

/// The errno of an NLMSG_ERROR payload (0 = the ACK of success).
fn error_code(p: &[u8]) -> Option<i32> {
    Some(i32::from_ne_bytes(p.get(..4)?.try_into().ok()?))
}

/// How long the kernel may take to answer one request (it answers at once;
/// this only keeps a lost answer from hanging the boot).
const ANSWER_MS: i32 = 5000;

/// An rtnetlink socket.
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

impl Netlink {
    pub fn open() -> io::Result<Netlink> {
        // SAFETY: socket(2) with constant arguments; a valid fd is owned
        // by nobody else and is wrapped at once.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by socket(2) and is not owned
        // elsewhere.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_nl is plain data; all-zero is "the kernel picks
        // our port id, no multicast groups".
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: the pointer and length describe `sa`, alive for the call.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut seed = [0u8; 4];
        let _ = super::getrandom(&mut seed);
        Ok(Netlink {
            fd,
            seq: u32::from_ne_bytes(seed) >> 1,
        })
    }

    fn send(&mut self, m: Msg) -> io::Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let bytes = m.finish(self.seq);
        // SAFETY: the pointer and length describe `bytes`; a connected-less
        // send on a netlink socket goes to the kernel (port 0).
        let n = unsafe { libc::send(self.fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(self.seq)
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let ready = super::poll_readable([self.fd.as_raw_fd()], ANSWER_MS)?;
        if !ready[0] {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the kernel did not answer a netlink request",
            ));
        }
        // SAFETY: the pointer and length describe `buf`, which the kernel
        // fills with at most `buf.len()` bytes.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Send a request that asks for an ACK; the kernel's errno as an error.
    pub fn ack(&mut self, m: Msg) -> io::Result<()> {
        let seq = self.send(m)?;
        let mut buf = vec![0u8; 8192];
        loop {
            let n = self.recv(&mut buf)?;
            for r in messages(&buf[..n]) {
                if r.seq != seq || r.ty != NLMSG_ERROR {
                    continue;
                }
                return match error_code(r.payload) {
                    Some(0) => Ok(()),
                    Some(e) => Err(io::Error::from_raw_os_error(-e)),
                    None => Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "short netlink error message",
                    )),
                };
            }
        }
    }

    /// Send a dump request; every answer's payload of type `ty`.
    fn dump(&mut self, m: Msg, ty: u16) -> io::Result<Vec<Vec<u8>>> {
        let seq = self.send(m)?;
        let mut buf = vec![0u8; 32768];
        let mut out = vec![];
        loop {
            let n = self.recv(&mut buf)?;
            for r in messages(&buf[..n]) {
                if r.seq != seq {
                    continue;
                }
                match r.ty {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => match error_code(r.payload) {
                        Some(0) => return Ok(out),
                        Some(e) => return Err(io::Error::from_raw_os_error(-e)),
                        None => return Ok(out),
                    },
                    t if t == ty => out.push(r.payload.to_vec()),
                    _ => {}
                }
            }
        }
    }

    /// Every link (`ip link show`).
    pub fn links(&mut self) -> io::Result<Vec<Link>> {
        let all = self.dump(get_links(0), RTM_NEWLINK)?;
        Ok(all.iter().filter_map(|p| parse_link(p)).collect())
    }

    /// Every link's IPv6 flags (`IF_RA_*`), by index.
    pub fn inet6_flags(&mut self) -> io::Result<Vec<(u32, u32)>> {
        let all = self.dump(get_links(AF_INET6), RTM_NEWLINK)?;
        Ok(all
            .iter()
            .filter_map(|p| parse_link(p))
            .filter_map(|l| Some((l.index, l.inet6_flags?)))
            .collect())
    }

    /// Every address (`ip addr show`).
    pub fn addrs(&mut self) -> io::Result<Vec<Addr>> {
        let all = self.dump(get_addrs(), RTM_NEWADDR)?;
        Ok(all.iter().filter_map(|p| parse_addr(p)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// Headers are native-endian; these tests run on little-endian hosts
    /// (x86_64, aarch64), as the agent does.
    #[test]
    fn set_link_up_with_mtu() {
        let m = set_link(
            7,
            &LinkChange {
                up: Some(true),
                mtu: Some(9000),
                ..Default::default()
            },
        )
        .finish(42);
        // nlmsghdr: len 40, RTM_NEWLINK, REQUEST|ACK, seq 42, pid 0
        assert_eq!(hex(&m[..16]), "28000000100005002a00000000000000");
        // ifinfomsg: AF_UNSPEC, index 7, flags IFF_UP, change IFF_UP
        assert_eq!(hex(&m[16..32]), "00000000070000000100000001000000");
        // IFLA_MTU (4) = 9000
        assert_eq!(hex(&m[32..40]), "0800040028230000");
        assert_eq!(m.len(), 40);
    }

    #[test]
    fn bond_is_nested_linkinfo() {
        let m = new_bond(
            "bond0",
            Some(&[0x52, 0x54, 0, 0, 0, 1]),
            &BondOptions {
                mode: 1,
                miimon: 100,
                xmit_hash_policy: Some(1),
                lacp_rate: None,
            },
        )
        .finish(1);
        assert_eq!(u16::from_ne_bytes([m[6], m[7]]), 0x0605); // REQ|ACK|EXCL|CREATE
        let a = attrs(&m[32..]);
        assert_eq!(a[0], (IFLA_IFNAME, &b"bond0\0"[..]));
        assert_eq!(a[1], (IFLA_ADDRESS, &[0x52, 0x54, 0, 0, 0, 1][..]));
        assert_eq!(a[2].0, IFLA_LINKINFO);
        // the nested flag is set on the wire, masked when read
        let raw_ty = u16::from_ne_bytes([m[32 + 12 + 12 + 2], m[32 + 12 + 12 + 3]]);
        assert_eq!(raw_ty, IFLA_LINKINFO | NLA_F_NESTED);
        let info = attrs(a[2].1);
        assert_eq!(info[0], (IFLA_INFO_KIND, &b"bond\0"[..]));
        let data = attrs(info[1].1);
        assert_eq!(
            data,
            vec![
                (IFLA_BOND_MODE, &[1u8][..]),
                (IFLA_BOND_MIIMON, &100u32.to_ne_bytes()[..]),
                (IFLA_BOND_XMIT_HASH_POLICY, &[1u8][..]),
            ]
        );
        // every length covers exactly its content, padded
        assert_eq!(m.len() % 4, 0);
        assert_eq!(
            u32::from_ne_bytes([m[0], m[1], m[2], m[3]]) as usize,
            m.len()
        );
    }

    #[test]
    fn vlan_names_parent_and_id() {
        let m = new_vlan("bond0.101", 9, 101, None).finish(3);
        let a = attrs(&m[32..]);
        assert_eq!(a[0], (IFLA_LINK, &9u32.to_ne_bytes()[..]));
        assert_eq!(a[1], (IFLA_IFNAME, &b"bond0.101\0"[..]));
        let info = attrs(a[2].1);
        assert_eq!(info[0].1, b"vlan\0");
        assert_eq!(
            attrs(info[1].1),
            vec![(IFLA_VLAN_ID, &101u16.to_ne_bytes()[..])]
        );
    }

    #[test]
    fn del_link_is_an_empty_ifinfomsg() {
        let m = del_link(12).finish(2);
        assert_eq!(hex(&m[..8]), "2000000011000500");
        assert_eq!(hex(&m[16..]), "000000000c0000000000000000000000");
    }

    #[test]
    fn ipv4_address_gets_broadcast() {
        let m = add_addr(3, "192.0.2.10".parse().unwrap(), 24, None).finish(5);
        // ifaddrmsg: AF_INET, /24, flags 0, scope universe, index 3
        assert_eq!(hex(&m[16..24]), "0218000003000000");
        let a = attrs(&m[24..]);
        assert_eq!(a[0], (IFA_LOCAL, &[192, 0, 2, 10][..]));
        assert_eq!(a[1], (IFA_ADDRESS, &[192, 0, 2, 10][..]));
        assert_eq!(a[2], (IFA_BROADCAST, &[192, 0, 2, 255][..]));
        // /32 and /31 have no broadcast address
        let m = add_addr(3, "192.0.2.10".parse().unwrap(), 32, None).finish(5);
        assert_eq!(attrs(&m[24..]).len(), 2);
    }

    #[test]
    fn ipv6_address_with_lifetimes() {
        let ip: IpAddr = "fd00:6::105".parse().unwrap();
        let m = add_addr(
            2,
            ip,
            128,
            Some(Lifetimes {
                preferred: 1800,
                valid: 3600,
            }),
        )
        .finish(9);
        assert_eq!(m[16], AF_INET6);
        assert_eq!(m[17], 128);
        let a = attrs(&m[24..]);
        assert_eq!(a.len(), 3);
        assert_eq!(a[2].0, IFA_CACHEINFO);
        assert_eq!(&a[2].1[..8], &[8, 7, 0, 0, 0x10, 0x0e, 0, 0]);
        let d = del_addr(2, ip, 128).finish(10);
        assert_eq!(u16::from_ne_bytes([d[4], d[5]]), RTM_DELADDR);
    }

    #[test]
    fn routes() {
        let m = add_route(
            "0.0.0.0".parse().unwrap(),
            0,
            Some("192.0.2.1".parse().unwrap()),
            4,
            0,
        )
        .finish(1);
        // rtmsg: AF_INET /0, main table, proto boot, scope universe, unicast
        assert_eq!(hex(&m[16..28]), "02000000fe03000100000000");
        let a = attrs(&m[28..]);
        assert_eq!(
            a,
            vec![
                (RTA_GATEWAY, &[192, 0, 2, 1][..]),
                (RTA_OIF, &4u32.to_ne_bytes()[..])
            ]
        );
        let m = add_route("2001:db8::".parse().unwrap(), 64, None, 4, 1024).finish(1);
        assert_eq!(m[16 + 6], RT_SCOPE_LINK);
        let a = attrs(&m[28..]);
        assert_eq!(a[0].0, RTA_DST);
        assert_eq!(a[2], (RTA_PRIORITY, &1024u32.to_ne_bytes()[..]));
    }

    /// An RTM_NEWLINK as the kernel sends it for a bond slave, and a
    /// truncated one.
    #[test]
    fn parses_links() {
        let mut m = Msg::new(RTM_NEWLINK, 0, &ifinfomsg(0, 3, IFF_UP, 0));
        m.str(IFLA_IFNAME, "eth1")
            .attr(IFLA_ADDRESS, &[0x52, 0x54, 0, 0, 0, 1])
            .attr(IFLA_PERM_ADDRESS, &[0x52, 0x54, 0, 0, 0, 2])
            .u32(IFLA_MTU, 1500)
            .u32(IFLA_MASTER, 5)
            .u8(IFLA_CARRIER, 1);
        m.begin(IFLA_PROTINFO)
            .u32(IFLA_INET6_FLAGS, IF_RA_RCVD | IF_RA_MANAGED);
        m.end();
        let bytes = m.finish(0);
        let r = messages(&bytes);
        assert_eq!(r.len(), 1);
        let l = parse_link(r[0].payload).unwrap();
        assert_eq!(
            l,
            Link {
                index: 3,
                name: "eth1".into(),
                flags: IFF_UP,
                mac: Some(vec![0x52, 0x54, 0, 0, 0, 1]),
                perm_mac: Some(vec![0x52, 0x54, 0, 0, 0, 2]),
                mtu: Some(1500),
                master: Some(5),
                kind: None,
                carrier: Some(true),
                inet6_flags: Some(0x60),
            }
        );
        assert!(l.is_up());
        // cut anywhere: never a panic, at worst fewer attributes
        for cut in 0..bytes.len() {
            for r in messages(&bytes[..cut]) {
                let _ = parse_link(r.payload);
            }
            let _ = parse_link(&bytes[16..cut.max(16)]);
        }
    }

    #[test]
    fn parses_addrs() {
        let mut m = Msg::new(RTM_NEWADDR, 0, &ifaddrmsg(AF_INET6, 64, 0, 2));
        m.ip(IFA_ADDRESS, "fe80::1".parse().unwrap())
            .u32(IFA_FLAGS, IFA_F_TENTATIVE | 0x100);
        let bytes = m.finish(0);
        let a = parse_addr(messages(&bytes)[0].payload).unwrap();
        assert_eq!(a.ip, "fe80::1".parse::<IpAddr>().unwrap());
        assert_eq!((a.index, a.prefix), (2, 64));
        assert!(a.tentative());
        // a wrong-sized address is no address
        let mut m = Msg::new(RTM_NEWADDR, 0, &ifaddrmsg(AF_INET, 24, 0, 2));
        m.attr(IFA_LOCAL, &[1, 2, 3]);
        assert!(parse_addr(messages(&m.finish(0))[0].payload).is_none());
    }

    /// The real kernel, read-only: this machine's links and addresses.
    #[test]
    fn live_dumps() {
        let Ok(mut nl) = Netlink::open() else {
            return; // no netlink in this sandbox
        };
        let links = nl.links().unwrap();
        let lo = links
            .iter()
            .find(|l| l.name == "lo")
            .expect("a loopback link");
        assert!(lo.index > 0);
        let addrs = nl.addrs().unwrap();
        assert!(addrs
            .iter()
            .any(|a| a.index == lo.index && a.ip.is_loopback()));
        // the IPv6 view exists when the kernel has IPv6
        if std::path::Path::new("/proc/net/if_inet6").exists() {
            assert!(!nl.inet6_flags().unwrap().is_empty());
        }
        // an error comes back as the kernel's errno: no link has index 0
        let e = nl.ack(set_link(0, &LinkChange::default())).unwrap_err();
        assert!(e.raw_os_error().is_some(), "{e}");
    }

    #[test]
    fn error_messages() {
        // NLMSG_ERROR with -EEXIST and the echoed header
        let mut b = vec![0u8; 36];
        b[0..4].copy_from_slice(&36u32.to_ne_bytes());
        b[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        b[8..12].copy_from_slice(&7u32.to_ne_bytes());
        b[16..20].copy_from_slice(&(-libc::EEXIST).to_ne_bytes());
        let r = messages(&b);
        assert_eq!((r[0].ty, r[0].seq), (NLMSG_ERROR, 7));
        assert_eq!(error_code(r[0].payload), Some(-libc::EEXIST));
        // a length past the buffer ends the walk
        b[0..4].copy_from_slice(&400u32.to_ne_bytes());
        assert!(messages(&b).is_empty());
    }
}
