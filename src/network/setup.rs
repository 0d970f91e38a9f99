//! `ironic-agent network-setup`: what the ramdisk's /init runs before it
//! starts DHCP and the agent (DIB's order: IPA's copy_config_from_vmedia
//! and glean, then DHCP on the rest, then the agent).
//!
//! 1. The virtual media: with `boot_method=vmedia`, wait (up to `--wait`
//!    seconds) for a device labelled `config-2` or `VMEDIA_BOOT_ISO` and
//!    copy IPA's configuration from it ([`vmedia::copy_config`]), so the
//!    agent, started afterwards, finds Ironic's CA and config files where
//!    IPA's would.
//! 2. The network data: `openstack/latest/network_data.json` from the
//!    `config-2` device whose ISO publisher is this boot's `ir_pub_id`
//!    (ironic-python-agent-builder's resolve-configdrive rule: a PXE boot,
//!    `BOOTIF` without `ir_pub_id`, reads no configuration drive; a stale
//!    `config-2` of another boot is never used), applied through
//!    rtnetlink ([`apply`]). DNS servers go to `/run/resolv.network-data`,
//!    merged into `/etc/resolv.conf` with the DHCP clients' files.
//! 3. The state file (`--state`, `/run/ironic-agent/network`) tells /init
//!    what to leave alone and what to give DHCP:
//!    `configured NIC...` (no DHCP), `dhcp DEV...` (DHCP although
//!    described: `ipv4_dhcp`, or a link that could not be configured) and
//!    `dhcp6 DEV...` (`ipv6_dhcp` networks).
//!
//! Anything wrong is said on the console and the boot goes on with DHCP:
//! this never fails the boot. With `--root DIR` (tests, a look at what
//! would happen) the kernel is not touched: the console lines say what
//! would be configured.

use super::apply::{self, Kernel, Nic, Outcome};
use super::data::{self, parse_mac, Route};
use super::vmedia::{self, Iso, Medium};
use crate::error::{Context, Kind, Result};
use crate::root::Root;
use crate::sys::netlink::{self, BondOptions, LinkChange, Netlink};
use std::ffi::OsString;
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const PREFIX: &str = "ironic-agent network-setup";

fn say(msg: &str) {
    // one write per line: the console is shared with /init's messages;
    // the uptime as /init's say() gives it
    let up = std::fs::read_to_string("/proc/uptime").unwrap_or_default();
    let up = up.split_whitespace().next().unwrap_or("?");
    let line = format!("{PREFIX}: {msg} (uptime {up})\n");
    let _ = io::Write::write_all(&mut io::stderr().lock(), line.as_bytes());
}

/// The options of the subcommand.
#[derive(Clone, Debug)]
pub struct Opts {
    pub root: PathBuf,
    pub state: PathBuf,
    /// Seconds to wait for the virtual media to appear (vmedia boots only).
    pub wait: u64,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            root: PathBuf::from("/"),
            state: PathBuf::from("/run/ironic-agent/network"),
            wait: 15,
        }
    }
}

const USAGE: &str = "usage: ironic-agent network-setup [--root DIR] [--state FILE] [--wait SECS]\n\
    Copy IPA's configuration from the virtual media and apply its\n\
    network_data.json before DHCP (the ramdisk's /init runs this).\n";

fn parse_opts(args: impl IntoIterator<Item = OsString>) -> Result<Opts> {
    use lexopt::prelude::*;
    let mut o = Opts::default();
    let mut p = lexopt::Parser::from_args(args);
    let bad = |e: lexopt::Error| crate::error::AgentError::invalid_params(e.to_string());
    while let Some(a) = p.next().map_err(bad)? {
        match a {
            Long("root") => o.root = p.value().map_err(bad)?.into(),
            Long("state") => o.state = p.value().map_err(bad)?.into(),
            Long("wait") => {
                o.wait = p
                    .value()
                    .map_err(bad)?
                    .string()
                    .map_err(bad)?
                    .parse()
                    .map_err(|_| crate::error::AgentError::invalid_params("--wait: seconds"))?
            }
            other => return Err(bad(other.unexpected())),
        }
    }
    if o.root != std::path::Path::new("/") && o.state == Opts::default().state {
        o.state = Root::new(&o.root).path("/run/ironic-agent/network");
    }
    Ok(o)
}

/// Entry point: exit status 0 whatever happened to the network (the boot
/// goes on with DHCP), 2 on a bad command line.
pub fn main(args: impl IntoIterator<Item = OsString>) -> i32 {
    let o = match parse_opts(args) {
        Ok(o) => o,
        Err(e) => {
            eprint!("{PREFIX}: {e}\n{USAGE}");
            return 2;
        }
    };
    let root = Root::new(&o.root);
    let report = if root.is_real() {
        match RealKernel::open() {
            Ok(mut k) => run(&root, &o, &mut k),
            Err(e) => {
                say(&format!("opening rtnetlink: {e}; DHCP on every NIC"));
                Outcome::default()
            }
        }
    } else {
        run(&root, &o, &mut DryRun)
    };
    if let Err(e) = write_state(&o.state, &report) {
        say(&format!("writing {}: {e}", o.state.display()));
    }
    0
}

/// The value of the last `key=value` word of the kernel command line (as
/// IPA's `_read_params_from_file`).
fn karg(cmdline: &str, key: &str) -> Option<String> {
    cmdline
        .split_whitespace()
        .rev()
        .find_map(|w| w.split_once('=').filter(|(k, _)| *k == key))
        .map(|(_, v)| v.to_string())
}

/// NICs as /init sees them (`/sys/class/net/X/device` exists) with their
/// MAC; glean also keeps only these.
fn nics(root: &Root) -> Vec<Nic> {
    root.list("/sys/class/net")
        .into_iter()
        .filter(|n| root.exists(format!("/sys/class/net/{n}/device")))
        .filter_map(|name| {
            let mac = parse_mac(&root.read(format!("/sys/class/net/{name}/address"))?)?;
            Some(Nic { name, mac })
        })
        .collect()
}

/// Find, copy, parse, apply. Every step reports on the console.
pub fn run(root: &Root, o: &Opts, k: &mut dyn Kernel) -> Outcome {
    let args = std::fs::read_to_string(root.path("/proc/cmdline")).unwrap_or_default();
    let vmedia = karg(&args, "boot_method").as_deref() == Some("vmedia");
    let pub_id = karg(&args, "ir_pub_id");
    if !vmedia && karg(&args, "BOOTIF").is_some() && pub_id.is_none() {
        // resolve-configdrive: "Non-vmedia based deploy detected"
        return Outcome::default();
    }
    let media = wait_for_media(root, if vmedia { o.wait } else { 0 });
    if vmedia {
        removable(root, &args);
    }
    if vmedia && media.is_empty() {
        say(&format!(
            "boot_method=vmedia, but no virtual media labelled config-2 or VMEDIA_BOOT_ISO \
             appeared within {} s; no configuration copied, DHCP on every NIC",
            o.wait
        ));
        return Outcome::default();
    }
    if vmedia {
        // IPA: the first device found by label, config-2 or not
        match Iso::open(root, &media[0]).and_then(|iso| vmedia::copy_config(root, &iso)) {
            Ok(files) if files.is_empty() => say(&format!(
                "{} ({}): no IPA configuration files on it",
                media[0].dev(),
                media[0].volume.label
            )),
            Ok(files) => say(&format!(
                "copied from {} ({}): {}",
                media[0].dev(),
                media[0].volume.label,
                files.join(" ")
            )),
            Err(e) => say(&format!(
                "copying IPA's configuration from {}: {e}",
                media[0].dev()
            )),
        }
    }
    let want = pub_id.clone().unwrap_or_default();
    let drives: Vec<&Medium> = media
        .iter()
        .filter(|m| m.volume.label.eq_ignore_ascii_case("config-2"))
        .collect();
    let Some(drive) = drives.iter().find(|m| m.published_by(&want)) else {
        for m in &drives {
            say(&format!(
                "ignoring {} (config-2): its publisher {:?} is not this boot's ir_pub_id {:?}",
                m.dev(),
                m.volume.publisher,
                want
            ));
        }
        return Outcome::default();
    };
    let text = match Iso::open(root, drive).and_then(|iso| iso.read(vmedia::NETWORK_DATA)) {
        Ok(Some(t)) => t,
        Ok(None) => {
            say(&format!(
                "{}: no {}; DHCP on every NIC",
                drive.dev(),
                vmedia::NETWORK_DATA
            ));
            return Outcome::default();
        }
        Err(e) => {
            say(&format!("{e}; DHCP on every NIC"));
            return Outcome::default();
        }
    };
    let nd = match data::parse(&String::from_utf8_lossy(&text)) {
        Ok(nd) => nd,
        Err(e) => {
            say(&format!(
                "ignoring {} from {}: {}; DHCP on every NIC",
                vmedia::NETWORK_DATA,
                drive.dev(),
                e.details
            ));
            return Outcome::default();
        }
    };
    for p in &nd.problems {
        say(&format!("network_data.json: {p}"));
    }
    let present = nics(root);
    let out = apply::apply(&nd, &present, k);
    for p in &out.problems {
        say(&format!("network_data.json: {p}"));
    }
    for d in &out.done {
        say(&format!("configured {d}"));
    }
    if !nd.dns.is_empty() {
        if let Err(e) = write_dns(root, &nd.dns) {
            say(&format!("writing DNS servers: {e}"));
        }
    }
    let undescribed: Vec<&str> = present
        .iter()
        .map(|n| n.name.as_str())
        .filter(|n| !out.configured.iter().any(|c| c == n))
        .collect();
    say(&format!(
        "network_data.json from {} applied: {} configured, DHCP on {}",
        drive.dev(),
        if out.configured.is_empty() {
            "no NIC".to_string()
        } else {
            out.configured.join(" ")
        },
        {
            let mut d: Vec<&str> = undescribed;
            for x in &out.dhcp {
                if !d.contains(&x.as_str()) {
                    d.push(x);
                }
            }
            if d.is_empty() {
                "nothing".to_string()
            } else {
                d.join(" ")
            }
        }
    ));
    out
}

/// Devices labelled as IPA looks for, waiting up to `wait` seconds for the
/// first one, or for Ironic's parameters image (a CD-ROM or USB stick is
/// probed asynchronously after its driver loads).
fn wait_for_media(root: &Root, wait: u64) -> Vec<Medium> {
    let deadline = Instant::now() + Duration::from_secs(wait);
    loop {
        let m = vmedia::find(root, &vmedia::CONFIG_LABELS);
        if !m.is_empty() || Instant::now() >= deadline || vmedia::removable_params(root).is_some() {
            return m;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Where the agent's command line goes when a parameters image adds to it
/// (/init starts the agent with `--cmdline` of this file when it exists).
pub const CMDLINE: &str = "/run/ironic-agent/cmdline";

/// IPA's get_agent_params on a virtual-media boot: `parameters.txt` of the
/// `ir-vfd-dev` image wins over the kernel command line. The agent reads
/// both from [`CMDLINE`], the image's words last (the last one wins).
fn removable(root: &Root, cmdline: &str) {
    let Some((dev, text)) = vmedia::removable_params(root) else {
        return;
    };
    let words: Vec<&str> = text
        .split_whitespace()
        .filter(|w| w.contains('='))
        .collect();
    // names only: the agent token is a secret
    let keys: Vec<&str> = words.iter().filter_map(|w| w.split('=').next()).collect();
    let merged = format!("{} {}\n", cmdline.trim(), words.join(" "));
    let path = root.path(CMDLINE);
    if let Some(d) = path.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    match std::fs::write(&path, merged) {
        Ok(()) => say(&format!(
            "parameters from {dev} ({}) override the kernel command line: {}",
            vmedia::PARAMS_LABEL,
            keys.join(" ")
        )),
        Err(e) => say(&format!("writing {CMDLINE}: {e}")),
    }
}

/// `/run/resolv.network-data`, then `/etc/resolv.conf` as the DHCP
/// clients' hook makes it: every `/run/resolv.*`, duplicates dropped.
fn write_dns(root: &Root, dns: &[IpAddr]) -> Result<()> {
    let mine: String = dns.iter().map(|d| format!("nameserver {d}\n")).collect();
    let own = root.path("/run/resolv.network-data");
    std::fs::write(&own, mine).ctx(Kind::CommandExecutionError, || {
        format!("writing {}", own.display())
    })?;
    merge_resolv(root)
}

/// `/etc/resolv.conf` from every `/run/resolv.*` (ramdisk/udhcpc.script's
/// `resolv`).
pub fn merge_resolv(root: &Root) -> Result<()> {
    let mut seen: Vec<String> = vec![];
    let mut text = String::new();
    for f in root.list("/run") {
        if !f.starts_with("resolv.") {
            continue;
        }
        for line in std::fs::read_to_string(root.path(format!("/run/{f}")))
            .unwrap_or_default()
            .lines()
        {
            if !seen.iter().any(|s| s == line) {
                seen.push(line.to_string());
                text += line;
                text.push('\n');
            }
        }
    }
    std::fs::write(root.path("/etc/resolv.conf"), text).ctx(Kind::CommandExecutionError, || {
        "writing /etc/resolv.conf".into()
    })
}

fn write_state(path: &std::path::Path, o: &Outcome) -> io::Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(
        path,
        format!(
            "configured {}\ndhcp {}\ndhcp6 {}\n",
            o.configured.join(" "),
            o.dhcp.join(" "),
            o.dhcp6.join(" ")
        ),
    )
}

/// The kernel through rtnetlink, by interface name.
pub struct RealKernel {
    nl: Netlink,
}

impl RealKernel {
    pub fn open() -> io::Result<RealKernel> {
        Ok(RealKernel {
            nl: Netlink::open()?,
        })
    }

    fn index(&mut self, name: &str) -> io::Result<u32> {
        self.nl
            .links()?
            .into_iter()
            .find(|l| l.name == name)
            .map(|l| l.index)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no interface {name}")))
    }
}

impl Kernel for RealKernel {
    fn set_link(&mut self, dev: &str, c: &LinkChange) -> io::Result<()> {
        let i = self.index(dev)?;
        self.nl.ack(netlink::set_link(i, c))
    }

    fn add_bond(&mut self, name: &str, mac: Option<[u8; 6]>, o: &BondOptions) -> io::Result<()> {
        let mac = mac.as_ref().map(|m| &m[..]);
        match self.nl.ack(netlink::new_bond(name, mac, o)) {
            // Loading the bonding driver (the kernel asks for
            // rtnl-link-bond) makes an empty "bond0" of its own
            // (max_bonds=1): take its place.
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                let old = self.nl.links()?.into_iter().find(|l| l.name == name);
                match old {
                    Some(l) if l.kind.as_deref() == Some("bond") => {
                        self.nl.ack(netlink::del_link(l.index))?;
                        self.nl.ack(netlink::new_bond(name, mac, o))
                    }
                    _ => Err(e),
                }
            }
            r => r,
        }
    }

    fn enslave(&mut self, slave: &str, bond: &str) -> io::Result<()> {
        let (s, b) = (self.index(slave)?, self.index(bond)?);
        self.nl.ack(netlink::set_link(
            s,
            &LinkChange {
                master: Some(b),
                ..LinkChange::default()
            },
        ))
    }

    fn add_vlan(
        &mut self,
        name: &str,
        parent: &str,
        id: u16,
        mac: Option<[u8; 6]>,
    ) -> io::Result<()> {
        let p = self.index(parent)?;
        self.nl
            .ack(netlink::new_vlan(name, p, id, mac.as_ref().map(|m| &m[..])))
    }

    fn add_addr(&mut self, dev: &str, ip: IpAddr, prefix: u8) -> io::Result<()> {
        let i = self.index(dev)?;
        self.nl.ack(netlink::add_addr(i, ip, prefix, None))
    }

    fn add_route(&mut self, dev: &str, r: &Route) -> io::Result<()> {
        let i = self.index(dev)?;
        self.nl
            .ack(netlink::add_route(r.dst, r.prefix, Some(r.gateway), i, 0))
    }
}

/// `--root`: the kernel is not touched; the console lines of `apply`
/// (`configured ...`) say what would have been done.
struct DryRun;

impl Kernel for DryRun {
    fn set_link(&mut self, _: &str, _: &LinkChange) -> io::Result<()> {
        Ok(())
    }
    fn add_bond(&mut self, _: &str, _: Option<[u8; 6]>, _: &BondOptions) -> io::Result<()> {
        Ok(())
    }
    fn enslave(&mut self, _: &str, _: &str) -> io::Result<()> {
        Ok(())
    }
    fn add_vlan(&mut self, _: &str, _: &str, _: u16, _: Option<[u8; 6]>) -> io::Result<()> {
        Ok(())
    }
    fn add_addr(&mut self, _: &str, _: IpAddr, _: u8) -> io::Result<()> {
        Ok(())
    }
    fn add_route(&mut self, _: &str, _: &Route) -> io::Result<()> {
        Ok(())
    }
}
