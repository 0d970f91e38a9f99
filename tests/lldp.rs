//! LLDP on live interfaces: real 802.1AB frames over veth pairs in a
//! network namespace this test creates (and deletes), the agent running in
//! it (`ip netns exec`) with a fixture root that lists the veth ends as
//! NICs, and a fake Ironic bound inside the namespace receiving the
//! inspection data. tests/lib/lldp.py plays the switch on the other ends.
//!
//! Needs root (network namespaces): see tests/common/tools.rs's skip
//! policy.

mod common;

use common::ironic::*;
use common::test_dir;
use common::tools::{must, need, precondition};
use ironic_agent::hardware::generic::collect::lldp;
use serde_json::{json, Value};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const SWITCH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/lib/lldp.py");
static NS_COUNT: AtomicUsize = AtomicUsize::new(0);
const UUID: &str = "5a1d2c6e-7b3f-4f4e-9a0d-2c1b0e9f8a77";

/// A network namespace, deleted (with its veth pairs) when dropped.
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let name = format!(
            "ia-lldp-{}-{}",
            std::process::id(),
            NS_COUNT.fetch_add(1, Ordering::SeqCst)
        );
        must(&["ip", "netns", "add", &name]);
        let ns = Netns(name);
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    fn ip(&self, args: &[&str]) -> String {
        let mut a = vec!["ip", "-n", &self.0];
        a.extend(args);
        must(&a)
    }

    /// `ip netns exec <ns>`, to put in front of a command.
    fn exec(&self) -> Vec<&str> {
        vec!["ip", "netns", "exec", &self.0]
    }

    /// Run `f` on a thread inside the namespace (setns(2) changes only
    /// the calling thread's namespace): sockets it creates live there.
    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.0);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).expect("opening the namespace");
            // SAFETY: setns(2) with an open namespace descriptor and the
            // matching type; it touches no memory of ours and only moves
            // this thread into the namespace.
            let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("thread in the namespace")
    }

    /// `make()` run inside the namespace, dropped there too.
    fn make<T: Send + 'static>(&self, make: impl FnOnce() -> T + Send + 'static) -> InNs<T> {
        InNs(Some(self.run(make)), self.0.clone())
    }

    /// The veth pair eth<i> (the NIC the agent sees) and sw<i> (the
    /// switch's end, up); eth<i> up when `up`. Returns sw<i>'s name.
    fn veth(&self, i: usize, up: bool) -> String {
        let (eth, sw) = (format!("eth{i}"), format!("sw{i}"));
        self.ip(&["link", "add", &eth, "type", "veth", "peer", "name", &sw]);
        self.ip(&["link", "set", &sw, "up"]);
        if up {
            self.ip(&["link", "set", &eth, "up"]);
        }
        sw
    }

    /// Whether `dev` is administratively up.
    fn is_up(&self, dev: &str) -> bool {
        let out = self.ip(&["-o", "link", "show", dev]);
        let flags = out.split('<').nth(1).and_then(|f| f.split('>').next());
        flags.is_some_and(|f| f.split(',').any(|x| x == "UP"))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A value made inside a namespace and dropped there too: a FakeIronic's
/// stop connects to its own listener, which only that namespace reaches.
struct InNs<T: Send + 'static>(Option<T>, String);

impl<T: Send + 'static> std::ops::Deref for InNs<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.0.as_ref().expect("present until dropped")
    }
}

impl<T: Send + 'static> Drop for InNs<T> {
    fn drop(&mut self) {
        if let Some(v) = self.0.take() {
            let ns = Netns(self.1.clone());
            ns.run(move || drop(v));
            std::mem::forget(ns); // the namespace's owner deletes it
        }
    }
}

/// A switch port sending LLDP out of `iface` until dropped.
struct Switch(Child);

impl Switch {
    fn start(ns: &Netns, iface: &str, extra: &[&str]) -> Switch {
        let mut args = ns.exec();
        args.extend(["python3", SWITCH, "send", "--iface", iface, "--count", "0"]);
        args.extend(extra);
        let child = Command::new(args[0])
            .args(&args[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("starting tests/lib/lldp.py");
        Switch(child)
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The TLVs the agent should report for lldp.py's frame with `args`.
fn expected_tlvs(args: &[&str]) -> Value {
    let mut a = vec!["python3", SWITCH, "hex"];
    a.extend(args);
    let hex = must(&a);
    let bytes: Vec<u8> = (0..hex.trim().len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex.trim()[i..i + 2], 16).unwrap())
        .collect();
    json!(lldp::encode(&lldp::parse_frame(&bytes).unwrap()))
}

/// make_root's one virtio NIC `eth0`, plus eth1.. with their own MACs.
fn root_with_nics(dir: &Path, n: usize) -> std::path::PathBuf {
    // agent_args makes its own root in `dir`: this one goes beside it
    let dir = dir.join("nics");
    std::fs::create_dir_all(&dir).unwrap();
    let root = make_root(&dir, MAC);
    for i in 1..n {
        let d = root.join(format!("sys/class/net/eth{i}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("address"), format!("52:54:00:12:35:{i:02x}\n")).unwrap();
        std::fs::write(d.join("carrier"), "1\n").unwrap();
        std::os::unix::fs::symlink(
            "../../../devices/pci0000:00/0000:00:03.0/virtio0",
            d.join("device"),
        )
        .unwrap();
    }
    root
}

/// A fake Ironic inside `ns` that answers an inspection: lookup with
/// `tok`, `continue_inspection` accepted, every other POST 202.
fn inspecting_ironic(ns: &Netns, tok: &str) -> InNs<FakeIronic> {
    let tok = tok.to_string();
    ns.make(move || {
        FakeIronic::start(move |r: &Req| match (r.method.as_str(), r.path.as_str()) {
            ("GET", "/") => (200, root_doc("1.115")),
            ("GET", "/v1/lookup") => (200, lookup_doc(UUID, &tok, 300)),
            ("POST", "/v1/continue_inspection") => (202, json!({"uuid": UUID}).to_string()),
            ("POST", _) => (202, String::new()),
            _ => (404, ironic_error("Resource could not be found.")),
        })
    })
}

fn can_run() -> bool {
    need(&["ip", "python3"]);
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    precondition(root, "root (network namespaces, raw sockets)")
}

/// Four NICs, inspected with `ipa-collect-lldp` and the `lldp` collector:
/// eth0 hears a switch that sends bad frames before each good one, eth1
/// only a flood of bad frames (given up on after 256), eth2 nothing, eth3
/// is down (brought up for the listen, down again after). One listen of
/// at most the timeout serves the inventory and `lldp_raw` alike.
#[test]
fn inspection_hears_four_nics_in_one_timeout() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    for i in 0..4 {
        ns.veth(i, i != 3);
    }
    let tok = token('l');
    let ironic = inspecting_ironic(&ns, &tok);
    let dir = test_dir("lldp-four");
    let root = root_with_nics(&dir, 4);
    let port0 = ["--port-id", "Ethernet1/7", "--vlan", "100:provisioning"];
    let port3 = ["--port-id", "Ethernet1/9", "--system-name", "tor-2"];
    let _s0 = Switch::start(
        &ns,
        "sw0",
        &[&["--interval", "0.3", "--garbage", "3"][..], &port0[..]].concat(),
    );
    let _s1 = Switch::start(
        &ns,
        "sw1",
        &["--interval", "0.002", "--garbage", "20", "--only-garbage"],
    );
    let _s3 = Switch::start(
        &ns,
        "sw3",
        &[&["--interval", "0.3"][..], &port3[..]].concat(),
    );
    let timeout = 3.0;
    let t0 = Instant::now();
    let args = agent_args(
        &dir,
        &ironic.url(),
        &[
            "--root",
            root.to_str().unwrap(),
            "--inspection-callback-url",
            &format!("{}/v1/continue_inspection", ironic.url()),
            "--inspection-collectors",
            "default,lldp",
            "--inspection-dhcp-wait-timeout",
            "0",
            "--collect-lldp",
            "--lldp-timeout",
            &timeout.to_string(),
        ],
    );
    let agent = AgentProc::start_wrapped(&dir, &ns.exec(), &args);
    let posts = ironic.wait_for(
        "POST",
        "/v1/continue_inspection",
        1,
        Duration::from_secs(30),
    );
    let took = t0.elapsed().as_secs_f64();
    let data = posts[0].json();
    let log = agent.log_text();
    assert_eq!(data["error"], Value::Null, "{log}");

    let raw = &data["lldp_raw"];
    assert_eq!(raw["eth0"], expected_tlvs(&port0), "{log}");
    assert_eq!(raw["eth1"], json!([]));
    assert_eq!(raw["eth2"], json!([]));
    assert_eq!(raw["eth3"], expected_tlvs(&port3), "{log}");
    // the inventory carries the same, from the same listen
    for iface in data["inventory"]["interfaces"].as_array().unwrap() {
        let name = iface["name"].as_str().unwrap();
        assert_eq!(iface["lldp"], raw[name], "{name}");
    }
    assert_eq!(log.matches("Waiting on LLDP info").count(), 1, "{log}");
    assert!(log.contains("eth3 is down: bringing it up"), "{log}");
    assert!(log.contains("and no valid LLDPDU among them"), "{log}");
    assert!(
        log.contains("LLDP timed out, remaining interfaces: [\"eth2\"]"),
        "{log}"
    );
    // eth3 is down again; the others are as they were
    assert!(!ns.is_up("eth3"));
    assert!(ns.is_up("eth0") && ns.is_up("eth2"));
    // eth2 never answers: the whole collection waits the timeout once
    // (agent start and the rest of inspection included in `took`)
    assert!(took >= timeout - 0.2, "{took:.2} s");
    assert!(
        took < timeout + 4.0,
        "{took:.2} s for a {timeout} s timeout"
    );
    eprintln!("4 NICs inspected with LLDP in {took:.2} s (lldp_timeout {timeout} s)");
    agent.assert_clean_log(&[&tok]);
}

/// Every NIC hears its switch: the listen ends at the last frame, long
/// before the timeout, and the NICs are left as they were.
#[test]
fn no_waiting_when_every_nic_answers() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let mut switches = vec![];
    for i in 0..2 {
        let sw = ns.veth(i, true);
        switches.push(Switch::start(&ns, &sw, &["--interval", "0.2"]));
    }
    let tok = token('k');
    let ironic = inspecting_ironic(&ns, &tok);
    let dir = test_dir("lldp-all");
    let root = root_with_nics(&dir, 2);
    let t0 = Instant::now();
    let args = agent_args(
        &dir,
        &ironic.url(),
        &[
            "--root",
            root.to_str().unwrap(),
            "--inspection-callback-url",
            &format!("{}/v1/continue_inspection", ironic.url()),
            "--inspection-dhcp-wait-timeout",
            "0",
            "--collect-lldp",
            "--lldp-timeout",
            "30",
        ],
    );
    let agent = AgentProc::start_wrapped(&dir, &ns.exec(), &args);
    let posts = ironic.wait_for(
        "POST",
        "/v1/continue_inspection",
        1,
        Duration::from_secs(30),
    );
    let took = t0.elapsed().as_secs_f64();
    let data = posts[0].json();
    let want = expected_tlvs(&[]);
    for iface in data["inventory"]["interfaces"].as_array().unwrap() {
        assert_eq!(iface["lldp"], want, "{}", agent.log_text());
    }
    // IPA's default collectors (default,logs): no lldp_raw
    assert!(data.get("lldp_raw").is_none());
    assert!(took < 10.0, "{took:.2} s with a 30 s timeout");
    assert!(ns.is_up("eth0") && ns.is_up("eth1"));
    agent.assert_clean_log(&[&tok]);
}
