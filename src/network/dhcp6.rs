//! `ironic-agent dhcp6 IFACE`: a stateful DHCPv6 client (RFC 8415) for
//! links whose router advertisements set the M flag, as IPA's DIB images
//! get from `dhcp-all-interfaces` (rdisc6, then `dhclient -6`): Debian's
//! busybox-static has no udhcpc6, so the ramdisk has this instead.
//!
//! It waits for the kernel to have received a router advertisement
//! (rtnetlink `IFLA_INET6_FLAGS`, the flags of the last RA) and then:
//! - M (managed): Solicit → Advertise → Request → Reply for one IA_NA
//!   address, added as a /128 with the lease's lifetimes (the on-link
//!   prefix comes from the RA, as with every DHCPv6 client); Renew at T1,
//!   Rebind at T2, start over when the lease runs out or the server says
//!   NoBinding / NotOnLink;
//! - O only (other configuration): one Information-request for DNS;
//! - neither: nothing (SLAAC is the kernel's).
//!
//! DNS servers go to `/run/resolv.dhcp6.IFACE`, merged into
//! `/etc/resolv.conf` like the DHCPv4 hook's. `--stateful` (a
//! network_data `ipv6_dhcp` network) solicits without waiting for an RA.
//! The client identifier is a DUID-LL of the NIC's MAC and the IAID its
//! last four bytes, both stable across restarts (udhcpc6 picks a random
//! IAID), so the server hands the same address back.
//!
//! Message encoding and the checks on what comes back are plain functions
//! with unit tests; the loop around them is exercised in the VM
//! (tests/vm/network.py, dnsmasq with `--enable-ra`).
//!
//! Why here rather than busybox's udhcpc6 built from source: building
//! busybox would add a C build (toolchain, pinned source, its own CVE
//! watch) to ramdisk/build for one applet, and udhcpc6 alone is not
//! enough: it never reads router advertisements, so something must still
//! ask the kernel for the M/O flags (rtnetlink, which the agent already
//! speaks for network_data) and a hook script must install what it leased
//! (`ip` calls in shell). Here the flags, the exchange and the address
//! are one program on the netlink code the agent already has, ~15 KiB of
//! the static binary (measured: the `dhcp6` symbols and their share of
//! `main`), no new crate.

use crate::error::{AgentError, Kind, Result};
use crate::root::Root;
use crate::sys::netlink::{self, Lifetimes, Netlink, IF_RA_MANAGED, IF_RA_OTHERCONF, IF_RA_RCVD};
use std::ffi::OsString;
use std::net::{IpAddr, Ipv6Addr, SocketAddrV6, UdpSocket};
use std::time::{Duration, Instant};

// RFC 8415 §7.3 message types
pub const SOLICIT: u8 = 1;
pub const ADVERTISE: u8 = 2;
pub const REQUEST: u8 = 3;
pub const RENEW: u8 = 5;
pub const REBIND: u8 = 6;
pub const REPLY: u8 = 7;
pub const INFORMATION_REQUEST: u8 = 11;
// §21 options
const OPT_CLIENTID: u16 = 1;
const OPT_SERVERID: u16 = 2;
const OPT_IA_NA: u16 = 3;
const OPT_IAADDR: u16 = 5;
const OPT_ORO: u16 = 6;
const OPT_PREFERENCE: u16 = 7;
const OPT_ELAPSED_TIME: u16 = 8;
const OPT_STATUS_CODE: u16 = 13;
// RFC 3646
const OPT_DNS_SERVERS: u16 = 23;
const OPT_DOMAIN_LIST: u16 = 24;
// §21.13 status codes
const STATUS_SUCCESS: u16 = 0;
const STATUS_NO_ADDRS_AVAIL: u16 = 2;
const STATUS_NO_BINDING: u16 = 3;
const STATUS_NOT_ON_LINK: u16 = 4;

const ALL_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);
const CLIENT_PORT: u16 = 546;
const SERVER_PORT: u16 = 547;
const INFINITY: u32 = u32::MAX;

/// What the client sends about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    /// DUID-LL (RFC 8415 §11.4): type 3, hardware type 1, the MAC.
    pub duid: Vec<u8>,
    pub iaid: u32,
}

impl Client {
    pub fn new(mac: [u8; 6]) -> Client {
        let mut duid = vec![0, 3, 0, 1];
        duid.extend_from_slice(&mac);
        Client {
            duid,
            iaid: u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]),
        }
    }
}

fn opt(out: &mut Vec<u8>, code: u16, data: &[u8]) {
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
}

/// An address held (or offered) in an IA_NA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IaAddr {
    pub addr: Ipv6Addr,
    pub preferred: u32,
    pub valid: u32,
}

/// Build a client message. `server` is the server's DUID (Request,
/// Renew), `addr` the address asked for or held; `elapsed` in
/// hundredths of a second since the exchange began.
pub fn build(
    ty: u8,
    xid: [u8; 3],
    c: &Client,
    server: Option<&[u8]>,
    addr: Option<&IaAddr>,
    elapsed: u16,
) -> Vec<u8> {
    let mut m = vec![ty, xid[0], xid[1], xid[2]];
    opt(&mut m, OPT_CLIENTID, &c.duid);
    if let Some(s) = server {
        opt(&mut m, OPT_SERVERID, s);
    }
    opt(&mut m, OPT_ELAPSED_TIME, &elapsed.to_be_bytes());
    let mut oro = vec![];
    oro.extend_from_slice(&OPT_DNS_SERVERS.to_be_bytes());
    oro.extend_from_slice(&OPT_DOMAIN_LIST.to_be_bytes());
    opt(&mut m, OPT_ORO, &oro);
    if ty != INFORMATION_REQUEST {
        // IA_NA: IAID, T1 and T2 0 (the server chooses), then the address
        let mut ia = c.iaid.to_be_bytes().to_vec();
        ia.extend_from_slice(&[0; 8]);
        if let Some(a) = addr {
            let mut ad = a.addr.octets().to_vec();
            // lifetimes in a client's IAADDR are hints; 0 = no preference
            ad.extend_from_slice(&[0; 8]);
            opt(&mut ia, OPT_IAADDR, &ad);
        }
        opt(&mut m, OPT_IA_NA, &ia);
    }
    m
}

/// The options of a message body: (code, data); stops at the first one
/// that runs past the end.
fn options(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = vec![];
    while b.len() >= 4 {
        let code = u16::from_be_bytes([b[0], b[1]]);
        let len = usize::from(u16::from_be_bytes([b[2], b[3]]));
        let Some(data) = b.get(4..4 + len) else { break };
        out.push((code, data));
        b = &b[4 + len..];
    }
    out
}

fn status(data: &[u8]) -> (u16, String) {
    let code = data
        .get(..2)
        .map_or(STATUS_SUCCESS, |c| u16::from_be_bytes([c[0], c[1]]));
    let msg = String::from_utf8_lossy(data.get(2..).unwrap_or(&[])).into_owned();
    (code, msg)
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// A server's Advertise or Reply, checked against what we sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Answer {
    pub ty: u8,
    pub server: Vec<u8>,
    pub preference: u8,
    /// Message-level status (Success when absent).
    pub status: u16,
    pub status_text: String,
    /// Our IA_NA's status (Success when absent).
    pub ia_status: u16,
    pub t1: u32,
    pub t2: u32,
    /// Addresses in our IA_NA whose own status is Success.
    pub addrs: Vec<IaAddr>,
    pub dns: Vec<Ipv6Addr>,
}

/// Parse a server message for us: `None` unless it is an Advertise or
/// Reply with our transaction id, our client id and a server id
/// (RFC 8415 §16.3, §16.10).
pub fn parse_answer(b: &[u8], xid: [u8; 3], c: &Client) -> Option<Answer> {
    if b.len() < 4 || !matches!(b[0], ADVERTISE | REPLY) || b[1..4] != xid {
        return None;
    }
    let mut a = Answer {
        ty: b[0],
        ..Answer::default()
    };
    let mut ours = false;
    for (code, data) in options(&b[4..]) {
        match code {
            OPT_CLIENTID => ours = data == c.duid.as_slice(),
            OPT_SERVERID => a.server = data.to_vec(),
            OPT_PREFERENCE => a.preference = data.first().copied().unwrap_or(0),
            OPT_STATUS_CODE => (a.status, a.status_text) = status(data),
            OPT_DNS_SERVERS => {
                a.dns = data
                    .chunks_exact(16)
                    .map(|c| Ipv6Addr::from(<[u8; 16]>::try_from(c).expect("16 bytes")))
                    .collect()
            }
            OPT_IA_NA if data.len() >= 12 && be32(data) == c.iaid => {
                a.t1 = be32(&data[4..]);
                a.t2 = be32(&data[8..]);
                for (code, d) in options(&data[12..]) {
                    match code {
                        OPT_STATUS_CODE => a.ia_status = status(d).0,
                        OPT_IAADDR if d.len() >= 24 => {
                            let addr = Ipv6Addr::from(<[u8; 16]>::try_from(&d[..16]).ok()?);
                            let (preferred, valid) = (be32(&d[16..]), be32(&d[20..]));
                            let ok = options(&d[24..])
                                .iter()
                                .all(|(c, s)| *c != OPT_STATUS_CODE || status(s).0 == 0);
                            // §18.2.10.1: preferred over valid is ignored
                            if ok && preferred <= valid && !addr.is_multicast() {
                                a.addrs.push(IaAddr {
                                    addr,
                                    preferred,
                                    valid,
                                });
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    (ours && !a.server.is_empty()).then_some(a)
}

/// When to renew and rebind (§21.4): the server's T1/T2, else 0.5 and
/// 0.8 of the shortest preferred lifetime; `None` when the lease is
/// forever.
pub fn timers(a: &Answer) -> Option<(Duration, Duration, Duration)> {
    let preferred = a.addrs.iter().map(|x| x.preferred).min()?;
    let valid = a.addrs.iter().map(|x| x.valid).min()?;
    if valid == INFINITY {
        return None;
    }
    let t1 = if a.t1 == 0 || a.t1 > a.t2 && a.t2 != 0 {
        preferred / 2
    } else {
        a.t1
    };
    let t2 = if a.t2 == 0 || a.t2 < t1 {
        (preferred / 5).saturating_mul(4)
    } else {
        a.t2
    };
    let s = |x: u32| Duration::from_secs(u64::from(x.min(valid)));
    Some((s(t1), s(t2.max(t1)), s(valid)))
}

/// §15: retransmission with ±10 % jitter, doubling up to `max`.
fn next_rt(rt: Duration, max: Duration) -> Duration {
    let mut b = [0u8; 1];
    let _ = crate::sys::getrandom(&mut b);
    // 2 RT x (0.9 .. 1.1), in milliseconds
    let ms = rt.as_millis() as u64 * (1800 + u64::from(b[0]) * 400 / 255) / 1000;
    Duration::from_millis(ms).min(max)
}

fn xid() -> [u8; 3] {
    let mut b = [0u8; 3];
    let _ = crate::sys::getrandom(&mut b);
    b
}

fn say(iface: &str, msg: &str) {
    let line = format!("ironic-agent dhcp6: {iface}: {msg}\n");
    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
}

/// The link: its index and MAC from sysfs.
struct Iface {
    name: String,
    index: u32,
    mac: [u8; 6],
}

fn iface(root: &Root, name: &str) -> Result<Iface> {
    let base = format!("/sys/class/net/{name}");
    let index = root
        .read_u64(format!("{base}/ifindex"))
        .ok_or_else(|| AgentError::new(Kind::DeviceNotFound, format!("no interface {name}")))?;
    let mac = root
        .read(format!("{base}/address"))
        .and_then(|m| super::data::parse_mac(&m))
        .ok_or_else(|| AgentError::new(Kind::DeviceNotFound, format!("{name} has no MAC")))?;
    Ok(Iface {
        name: name.to_string(),
        index: index as u32,
        mac,
    })
}

/// The link-local address to send from, once it has finished DAD.
fn link_local(nl: &mut Netlink, index: u32) -> Option<Ipv6Addr> {
    nl.addrs().ok()?.into_iter().find_map(|a| match a.ip {
        IpAddr::V6(v6)
            if a.index == index && (v6.segments()[0] & 0xffc0) == 0xfe80 && !a.tentative() =>
        {
            Some(v6)
        }
        _ => None,
    })
}

/// What the last router advertisement said (IF_RA_*), 0 before one.
fn ra_flags(nl: &mut Netlink, index: u32) -> u32 {
    nl.inet6_flags()
        .ok()
        .and_then(|v| v.into_iter().find(|(i, _)| *i == index))
        .map_or(0, |(_, f)| f)
}

/// One exchange: send `msg(elapsed)` until an acceptable answer arrives,
/// retransmitting from `irt` doubling to `mrt`, at most `mrc` times
/// (0 = no limit) and until `deadline`.
struct Exchange {
    irt: Duration,
    mrt: Duration,
    mrc: u32,
    deadline: Option<Instant>,
}

struct Link {
    nl: Netlink,
    sock: UdpSocket,
    dst: SocketAddrV6,
    client: Client,
    i: Iface,
    root: Root,
}

impl Link {
    fn exchange(
        &mut self,
        ty: u8,
        server: Option<&[u8]>,
        addr: Option<&IaAddr>,
        ex: &Exchange,
        accept: impl Fn(&Answer) -> bool,
    ) -> Option<Answer> {
        let id = xid();
        let start = Instant::now();
        let mut rt = ex.irt;
        let mut sent = 0u32;
        let mut buf = [0u8; 1500];
        loop {
            let elapsed = (start.elapsed().as_millis() / 10).min(0xffff) as u16;
            let m = build(ty, id, &self.client, server, addr, elapsed);
            if let Err(e) = self.sock.send_to(&m, self.dst) {
                say(&self.i.name, &format!("sending: {e}"));
            }
            sent += 1;
            let until = Instant::now() + rt;
            while let Some(left) = until.checked_duration_since(Instant::now()) {
                if left.is_zero() {
                    break;
                }
                let _ = self.sock.set_read_timeout(Some(left));
                let Ok((n, from)) = self.sock.recv_from(&mut buf) else {
                    break;
                };
                if from.port() != SERVER_PORT {
                    continue;
                }
                if let Some(a) = parse_answer(&buf[..n], id, &self.client) {
                    if accept(&a) {
                        return Some(a);
                    }
                }
            }
            if ex.mrc > 0 && sent >= ex.mrc {
                return None;
            }
            if ex.deadline.is_some_and(|d| Instant::now() >= d) {
                return None;
            }
            rt = next_rt(rt, ex.mrt);
        }
    }

    fn dns(&self, dns: &[Ipv6Addr]) {
        if dns.is_empty() {
            return;
        }
        let text: String = dns.iter().map(|d| format!("nameserver {d}\n")).collect();
        let f = self.root.path(format!("/run/resolv.dhcp6.{}", self.i.name));
        if std::fs::write(f, text).is_ok() {
            let _ = super::setup::merge_resolv(&self.root);
        }
    }

    fn install(&mut self, a: &Answer) {
        for x in &a.addrs {
            let life = Lifetimes {
                preferred: x.preferred,
                valid: x.valid,
            };
            if let Err(e) = self.nl.ack(netlink::add_addr(
                self.i.index,
                IpAddr::V6(x.addr),
                128,
                Some(life),
            )) {
                say(&self.i.name, &format!("adding {}/128: {e}", x.addr));
            }
        }
        self.dns(&a.dns);
    }

    fn remove(&mut self, addrs: &[IaAddr]) {
        for x in addrs {
            let _ = self
                .nl
                .ack(netlink::del_addr(self.i.index, IpAddr::V6(x.addr), 128));
        }
    }

    /// Solicit and request until bound; then renew/rebind for ever.
    fn stateful(&mut self) -> ! {
        let mut held: Vec<IaAddr> = vec![];
        loop {
            // §18.2.1: SOL_TIMEOUT 1 s, SOL_MAX_RT 3600 s (60 here: a
            // provisioning network's server may simply start late)
            let adv = self
                .exchange(
                    SOLICIT,
                    None,
                    held.first(),
                    &Exchange {
                        irt: Duration::from_secs(1),
                        mrt: Duration::from_secs(60),
                        mrc: 0,
                        deadline: None,
                    },
                    |a| a.ty == ADVERTISE && a.status == STATUS_SUCCESS && !a.addrs.is_empty(),
                )
                .expect("solicit retries for ever");
            let server = adv.server.clone();
            let want = adv.addrs[0];
            // §18.2.2: REQ_TIMEOUT 1 s, REQ_MAX_RT 30 s, REQ_MAX_RC 10
            let reply = self.exchange(
                REQUEST,
                Some(&server),
                Some(&want),
                &Exchange {
                    irt: Duration::from_secs(1),
                    mrt: Duration::from_secs(30),
                    mrc: 10,
                    deadline: None,
                },
                |a| a.ty == REPLY,
            );
            let Some(reply) = reply.filter(|r| self.usable(r)) else {
                std::thread::sleep(Duration::from_secs(1));
                continue;
            };
            self.install(&reply);
            held = reply.addrs.clone();
            let shown: Vec<String> = held.iter().map(|x| x.addr.to_string()).collect();
            say(
                &self.i.name,
                &format!(
                    "DHCPv6 bound {} (valid {} s)",
                    shown.join(" "),
                    held[0].valid
                ),
            );
            // renew and rebind until the lease is lost
            let mut lease = reply;
            loop {
                let Some((t1, t2, valid)) = timers(&lease) else {
                    // forever: nothing more to do
                    loop {
                        std::thread::sleep(Duration::from_secs(3600));
                    }
                };
                let bound_at = Instant::now();
                std::thread::sleep(t1);
                // §18.2.4: REN_TIMEOUT 10 s, REN_MAX_RT 600 s, until T2
                let renewed = self.exchange(
                    RENEW,
                    Some(&lease.server),
                    held.first(),
                    &Exchange {
                        irt: Duration::from_secs(10),
                        mrt: Duration::from_secs(600),
                        mrc: 0,
                        deadline: Some(bound_at + t2),
                    },
                    |a| a.ty == REPLY,
                );
                let renewed = match renewed {
                    Some(r) => Some(r),
                    // §18.2.5: Rebind to any server until the lease ends
                    None => self.exchange(
                        REBIND,
                        None,
                        held.first(),
                        &Exchange {
                            irt: Duration::from_secs(10),
                            mrt: Duration::from_secs(600),
                            mrc: 0,
                            deadline: Some(bound_at + valid),
                        },
                        |a| a.ty == REPLY,
                    ),
                };
                match renewed.filter(|r| self.usable(r)) {
                    Some(r) => {
                        self.install(&r);
                        let gone: Vec<IaAddr> = held
                            .iter()
                            .filter(|h| !r.addrs.iter().any(|x| x.addr == h.addr))
                            .copied()
                            .collect();
                        self.remove(&gone);
                        held = r.addrs.clone();
                        lease = r;
                    }
                    None => {
                        say(&self.i.name, "DHCPv6 lease lost; soliciting again");
                        self.remove(&held);
                        break;
                    }
                }
            }
        }
    }

    /// A Reply worth taking: success everywhere and an address.
    fn usable(&self, r: &Answer) -> bool {
        if r.status != STATUS_SUCCESS || r.ia_status != STATUS_SUCCESS || r.addrs.is_empty() {
            let why = match (r.status, r.ia_status) {
                (STATUS_NO_ADDRS_AVAIL, _) | (_, STATUS_NO_ADDRS_AVAIL) => "no addresses available",
                (STATUS_NO_BINDING, _) | (_, STATUS_NO_BINDING) => "no binding",
                (STATUS_NOT_ON_LINK, _) | (_, STATUS_NOT_ON_LINK) => "not on link",
                _ => "no address",
            };
            say(
                &self.i.name,
                &format!("DHCPv6 reply: {why} {}", r.status_text.trim()),
            );
            return false;
        }
        true
    }

    /// O flag only: DNS servers from an Information-request.
    fn stateless(&mut self) {
        let a = self.exchange(
            INFORMATION_REQUEST,
            None,
            None,
            &Exchange {
                irt: Duration::from_secs(1),
                mrt: Duration::from_secs(120),
                mrc: 5,
                deadline: None,
            },
            |a| a.ty == REPLY,
        );
        if let Some(a) = a {
            self.dns(&a.dns);
            say(
                &self.i.name,
                &format!("DHCPv6 information: DNS {:?}", a.dns),
            );
        }
    }
}

const USAGE: &str = "usage: ironic-agent dhcp6 IFACE [--stateful] [--root DIR]\n\
    Stateful DHCPv6 on IFACE when its router advertisements set the M flag\n\
    (DNS only with the O flag); runs until killed. --stateful: without\n\
    waiting for an RA.\n";

/// Entry point; returns only on a usage error or when the interface is
/// missing.
pub fn main(args: impl IntoIterator<Item = OsString>) -> i32 {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let (mut name, mut stateful, mut root) = (None, false, Root::new("/"));
    loop {
        match p.next() {
            Ok(None) => break,
            Ok(Some(Long("stateful"))) => stateful = true,
            Ok(Some(Long("root"))) => match p.value() {
                Ok(v) => root = Root::new(v),
                Err(e) => {
                    eprint!("ironic-agent dhcp6: {e}\n{USAGE}");
                    return 2;
                }
            },
            Ok(Some(Value(v))) if name.is_none() => name = Some(v.to_string_lossy().into_owned()),
            Ok(Some(other)) => {
                eprint!("ironic-agent dhcp6: {}\n{USAGE}", other.unexpected());
                return 2;
            }
            Err(e) => {
                eprint!("ironic-agent dhcp6: {e}\n{USAGE}");
                return 2;
            }
        }
    }
    let Some(name) = name else {
        eprint!("{USAGE}");
        return 2;
    };
    match run(&root, &name, stateful) {
        Ok(never) => match never {},
        Err(e) => {
            say(&name, &e.to_string());
            1
        }
    }
}

/// Wait for the link-local address and the RA, then act on its flags.
fn run(root: &Root, name: &str, stateful: bool) -> Result<std::convert::Infallible> {
    let i = iface(root, name)?;
    let mut nl = Netlink::open()
        .map_err(|e| AgentError::io(Kind::CommandExecutionError, "opening rtnetlink", e))?;
    let t0 = Instant::now();
    let poll = |t0: Instant| {
        if t0.elapsed() < Duration::from_secs(60) {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(5)
        }
    };
    let ll = loop {
        if let Some(a) = link_local(&mut nl, i.index) {
            break a;
        }
        std::thread::sleep(poll(t0));
    };
    let sock = UdpSocket::bind(SocketAddrV6::new(ll, CLIENT_PORT, 0, i.index)).map_err(|e| {
        AgentError::io(
            Kind::CommandExecutionError,
            format!("binding [{ll}]:546"),
            e,
        )
    })?;
    let mut link = Link {
        nl,
        sock,
        dst: SocketAddrV6::new(ALL_SERVERS, SERVER_PORT, 0, i.index),
        client: Client::new(i.mac),
        i,
        root: root.clone(),
    };
    if stateful {
        say(name, "soliciting a DHCPv6 address (network_data ipv6_dhcp)");
        link.stateful();
    }
    let (mut informed, mut told) = (false, false);
    loop {
        let f = ra_flags(&mut link.nl, link.i.index);
        if f & IF_RA_MANAGED != 0 {
            say(
                name,
                "router advertisement with the M flag: soliciting a DHCPv6 address",
            );
            link.stateful();
        }
        if f & IF_RA_OTHERCONF != 0 && !informed {
            link.stateless();
            informed = true;
        } else if f & IF_RA_RCVD != 0 && !told {
            say(
                name,
                "router advertisement without the M flag: no DHCPv6 address (SLAAC only)",
            );
            told = true;
        }
        std::thread::sleep(poll(t0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        Client::new([0x52, 0x54, 0, 0x12, 0x34, 0x56])
    }

    #[test]
    fn solicit_bytes() {
        let m = build(SOLICIT, [1, 2, 3], &client(), None, None, 0);
        let want: Vec<u8> = [
            &[1u8, 1, 2, 3][..],
            // client id: DUID-LL, Ethernet, MAC
            &[0, 1, 0, 10, 0, 3, 0, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x56],
            // elapsed time 0
            &[0, 8, 0, 2, 0, 0],
            // ORO: DNS servers, domain list
            &[0, 6, 0, 4, 0, 23, 0, 24],
            // IA_NA: IAID = last 4 MAC bytes, T1 = T2 = 0
            &[0, 3, 0, 12, 0, 0x12, 0x34, 0x56, 0, 0, 0, 0, 0, 0, 0, 0],
        ]
        .concat();
        assert_eq!(m, want);
    }

    #[test]
    fn request_carries_server_and_address() {
        let a = IaAddr {
            addr: "fd00:6::105".parse().unwrap(),
            preferred: 100,
            valid: 200,
        };
        let m = build(
            REQUEST,
            [9, 9, 9],
            &client(),
            Some(&[0, 1, 2]),
            Some(&a),
            150,
        );
        let o = options(&m[4..]);
        assert_eq!(o[1], (OPT_SERVERID, &[0u8, 1, 2][..]));
        assert_eq!(o[2], (OPT_ELAPSED_TIME, &[0u8, 150][..]));
        let ia = options(&o[4].1[12..]);
        assert_eq!(ia[0].0, OPT_IAADDR);
        assert_eq!(&ia[0].1[..16], &a.addr.octets());
        // no IA_NA in an Information-request
        let m = build(INFORMATION_REQUEST, [0; 3], &client(), None, None, 0);
        assert!(options(&m[4..]).iter().all(|(c, _)| *c != OPT_IA_NA));
    }

    /// A Reply as dnsmasq sends it: server id, client id, IA_NA with one
    /// IAADDR, a status, DNS.
    fn reply(xid: [u8; 3], c: &Client, iaid: u32, addr_status: Option<u16>) -> Vec<u8> {
        let mut m = vec![REPLY, xid[0], xid[1], xid[2]];
        opt(&mut m, OPT_SERVERID, &[0, 1, 0, 1, 1, 2, 3, 4]);
        opt(&mut m, OPT_CLIENTID, &c.duid);
        let mut ad: Vec<u8> = "fd00:6::105".parse::<Ipv6Addr>().unwrap().octets().to_vec();
        ad.extend_from_slice(&1800u32.to_be_bytes());
        ad.extend_from_slice(&3600u32.to_be_bytes());
        if let Some(s) = addr_status {
            let mut st = s.to_be_bytes().to_vec();
            st.extend_from_slice(b"x");
            opt(&mut ad, OPT_STATUS_CODE, &st);
        }
        let mut ia = iaid.to_be_bytes().to_vec();
        ia.extend_from_slice(&900u32.to_be_bytes());
        ia.extend_from_slice(&1440u32.to_be_bytes());
        opt(&mut ia, OPT_IAADDR, &ad);
        opt(&mut m, OPT_IA_NA, &ia);
        opt(&mut m, OPT_STATUS_CODE, &[0, 0, b'o', b'k']);
        opt(
            &mut m,
            OPT_DNS_SERVERS,
            &"fd00:6::1".parse::<Ipv6Addr>().unwrap().octets(),
        );
        m
    }

    #[test]
    fn parses_a_reply() {
        let c = client();
        let r = reply([4, 5, 6], &c, c.iaid, None);
        let a = parse_answer(&r, [4, 5, 6], &c).unwrap();
        assert_eq!(a.ty, REPLY);
        assert_eq!(a.server, [0, 1, 0, 1, 1, 2, 3, 4]);
        assert_eq!((a.t1, a.t2), (900, 1440));
        assert_eq!(
            a.addrs,
            [IaAddr {
                addr: "fd00:6::105".parse().unwrap(),
                preferred: 1800,
                valid: 3600
            }]
        );
        assert_eq!(a.dns, ["fd00:6::1".parse::<Ipv6Addr>().unwrap()]);
        assert_eq!(
            timers(&a),
            Some((
                Duration::from_secs(900),
                Duration::from_secs(1440),
                Duration::from_secs(3600)
            ))
        );
        // someone else's transaction, client or IAID
        assert!(parse_answer(&r, [4, 5, 7], &c).is_none());
        let other = Client::new([2, 0, 0, 0, 0, 1]);
        assert!(parse_answer(&r, [4, 5, 6], &other).is_none());
        let r2 = reply([4, 5, 6], &c, 77, None);
        assert!(parse_answer(&r2, [4, 5, 6], &c).unwrap().addrs.is_empty());
        // an address with a failure status is not taken
        let r3 = reply([4, 5, 6], &c, c.iaid, Some(STATUS_NOT_ON_LINK));
        assert!(parse_answer(&r3, [4, 5, 6], &c).unwrap().addrs.is_empty());
    }

    #[test]
    fn timers_without_t1_t2() {
        let a = Answer {
            addrs: vec![IaAddr {
                addr: Ipv6Addr::LOCALHOST,
                preferred: 1000,
                valid: 2000,
            }],
            ..Answer::default()
        };
        assert_eq!(
            timers(&a),
            Some((
                Duration::from_secs(500),
                Duration::from_secs(800),
                Duration::from_secs(2000)
            ))
        );
        let forever = Answer {
            addrs: vec![IaAddr {
                addr: Ipv6Addr::LOCALHOST,
                preferred: INFINITY,
                valid: INFINITY,
            }],
            ..Answer::default()
        };
        assert_eq!(timers(&forever), None);
        assert_eq!(timers(&Answer::default()), None);
    }

    #[test]
    fn truncated_answers_never_panic() {
        let c = client();
        let r = reply([1, 1, 1], &c, c.iaid, None);
        for cut in 0..r.len() {
            let _ = parse_answer(&r[..cut], [1, 1, 1], &c);
        }
        let mut rng = fastrand::Rng::with_seed(6);
        for _ in 0..2000 {
            let mut b = r.clone();
            for _ in 0..rng.usize(1..8) {
                let at = rng.usize(..b.len());
                b[at] = rng.u8(..);
            }
            let _ = parse_answer(&b, [1, 1, 1], &c);
        }
    }

    #[test]
    fn retransmission_grows_to_its_cap() {
        let mut rt = Duration::from_secs(1);
        for _ in 0..20 {
            rt = next_rt(rt, Duration::from_secs(60));
        }
        assert!(
            rt <= Duration::from_secs(60) && rt >= Duration::from_secs(50),
            "{rt:?}"
        );
    }
}
