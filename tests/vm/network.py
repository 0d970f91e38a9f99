#!/usr/bin/env python3
"""Networks without DHCPv4 (issue 18) in VMs, with the real Ironic 39.

Runs INSIDE a network namespace its caller made for it (tests/vm/run.sh
phase s: `ip netns add`, `ip netns exec ... network.py`, `ip netns del`):
every server binds there, nothing touches the host's network. In it:

  * an L2 relay (a thread here) between the VMs' NICs (qemu's UDP socket
    netdev, run-vm --udp-nic) and two tap devices: `ia-untag` (untagged
    frames) and `ia-v101` (VLAN 101: the relay pops and pushes the
    802.1Q tag, so the namespace needs no 8021q or VLAN-aware bridge,
    which this host's kernel lacks);
  * Ironic 39 (tests/e2e/ironic.sh) with its own TLS ([api]
    enable_ssl_api, a test CA whose certificate names every address
    below), [agent] api_ca_file set, [agent] require_tls at its default
    (true), the API on `::` of the namespace;
  * dnsmasq (Debian's dnsmasq-base) when a phase wants DHCP: DHCPv4 on
    ia-untag, or router advertisements with the M flag and stateful
    DHCPv6 (no IPv4 at all).

Phases (each timed; PASS, FAIL, PENDING). Their letters are network.py's
own, chosen apart from run.sh's (a, c, m, ...) so a log line is unambiguous:
  v  DHCP-less: the node's network_data (set through Ironic's API, so its
     schema checked it) is a bond (active-backup) of the VM's two NICs
     with VLAN 101 on it and static IPv4/IPv6 addresses, a default route
     and DNS. The deploy ISO is built by Ironic's image_utils
     (tests/vm/ironic_iso.py): label config-2, ir_pub_id, the CA and
     ironic-tls.conf, network_data.json. The `hardware` ramdisk (bonding,
     CD-ROM drivers) boots it under SeaBIOS; no DHCP server anywhere. The
     agent verifies Ironic's certificate with the CA from the media (the
     ramdisk's own bundle does not have it), heartbeats from
     192.0.2.10 and Ironic cleans the node. The CA reaches the agent
     as it reaches IPA: network-setup copies ironic.crt and
     ironic-tls.conf ([DEFAULT] cafile) from the media, and the agent
     reads /etc/ironic-python-agent.d/*.conf.
  4  the same VM and ISO path with DHCPv4 (no network_data, the ISO
     labelled VMEDIA_BOOT_ISO): boot to first heartbeat, to compare with a
  e  broken network_data.json, two boots with DHCPv4 available: (1) JSON
     with a link of an unknown type and a link whose MAC matches no NIC
     next to a good static link; (2) text that is not JSON. The console
     says what was ignored, the other NICs get DHCP, the agent reaches
     Ironic and the node is cleaned.
  6  IPv6-only: dnsmasq sends RAs with the M flag and serves stateful
     DHCPv6; the `vm` ramdisk (kernel + initramfs) gets its address from
     the agent's DHCPv6 client, ipa-api-url is https://[fd00:6::1]:PORT,
     the callback URL is bracketed, and Ironic deploys a GPT image served
     over IPv6 (the agent powers the VM off at the end).
  t  (only when asked: --phases t) --repeat pairs of boots, static then
     DHCPv4, alternating, timed to Ironic's first heartbeat; the medians,
     and of the guest's own clock from /init's start to "network up" (the
     network set-up without the firmware's ISO boot, which varies most
     on a loaded host)
"""

import argparse
import fcntl
import hashlib
import json
import os
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "lib"))
import checks  # noqa: E402

MAC_A = ["52:54:00:5a:00:01", "52:54:00:5a:00:02"]
MAC_6 = "52:54:00:6a:00:01"
V101 = ("192.0.2.1", 24)
UNTAG = ("198.51.100.1", 24)
V6 = ("fd00:6::1", 64)
DISK_SIZE = 2 << 30


def log(msg):
    print(f"[vm-net {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(*cmd, check=True, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise checks.PhaseFailed(f"{' '.join(cmd)}: {r.stderr.strip()}")
    return r.stdout


def free_udp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


# --------------------------------------------------------------------------
# The L2 relay

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000


class Relay(threading.Thread):
    """VM NICs (UDP) <-> taps. Untagged frames go to the untagged tap;
    frames tagged with a VLAN that has a tap go there without the tag;
    every tap's frames go to every VM NIC (tagged for a VLAN tap)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sel = selectors.DefaultSelector()
        self.lock = threading.Lock()
        self.taps = {}  # vlan (None = untagged) -> fd
        self.nics = []  # (socket, vm port)
        self.frames = 0

    def tap(self, name, vlan=None):
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(),
                                               IFF_TAP | IFF_NO_PI))
        run("ip", "link", "set", name, "up")
        self.taps[vlan] = fd
        self.sel.register(fd, selectors.EVENT_READ, ("tap", vlan))
        return name

    def attach(self, count):
        """Sockets for a new VM's `count` NICs (the previous VM's are
        dropped); run-vm's --udp-nic specs."""
        with self.lock:
            for s, _ in self.nics:
                self.sel.unregister(s)
                s.close()
            self.nics = []
            specs = []
            for _ in range(count):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind(("127.0.0.1", 0))
                s.setblocking(False)
                vm = free_udp_port()
                self.nics.append((s, vm))
                self.sel.register(s, selectors.EVENT_READ, ("nic", None))
                specs.append(f"{s.getsockname()[1]}:{vm}")
            return specs

    def to_vms(self, frame):
        for s, port in self.nics:
            try:
                s.sendto(frame, ("127.0.0.1", port))
            except OSError:
                pass  # the VM is not up yet, or gone

    def run(self):
        while True:
            for key, _ in self.sel.select(timeout=0.5):
                kind, vlan = key.data
                with self.lock:
                    try:
                        if kind == "tap":
                            f = os.read(key.fd, 65536)
                            if vlan is not None:
                                f = f[:12] + struct.pack("!HH", 0x8100, vlan) + f[12:]
                            self.to_vms(f)
                        else:
                            f = key.fileobj.recv(65536)
                            self.frames += 1
                            if f[12:14] == b"\x81\x00":
                                vid = struct.unpack("!H", f[14:16])[0] & 0xFFF
                                fd = self.taps.get(vid)
                                if fd is not None:
                                    os.write(fd, f[:12] + f[16:])
                            elif None in self.taps:
                                os.write(self.taps[None], f)
                    except (BlockingIOError, ConnectionRefusedError, OSError,
                            KeyError, ValueError):
                        pass


# --------------------------------------------------------------------------


class VM:
    """One qemu, started by ramdisk/run-vm (console marker readiness)."""

    def __init__(self, t, name, udp, mac, iso=None, kernel=None, initrd=None,
                 append="", disk=None):
        self.name = name
        self.work = os.path.join(t.work, name)
        self.logfile = os.path.join(self.work, "console.log")
        self.t0 = time.monotonic()
        cmd = [os.path.join(REPO, "ramdisk", "run-vm"), "--workdir", self.work,
               "--mem", t.args.mem, "--timeout", "240", "--no-http", "--mac", mac]
        if iso:
            cmd += ["--iso", iso]
        else:
            cmd += ["--kernel", kernel, "--initrd", initrd, "--append", append]
        for u in udp:
            cmd += ["--udp-nic", u]
        if disk:
            cmd += ["--disk", f"{disk},bus=virtio,serial=NET-DISK0"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            sys.stderr.write(r.stderr)
            raise checks.PhaseFailed(f"the VM {name} did not boot; see {self.logfile}")
        env = dict(line.split("=", 1) for line in r.stdout.split() if "=" in line)
        self.pid = int(env["VM_PID"])
        log(f"  VM {name}: /init started the agent {env['VM_READY_SECONDS']} s "
            "after qemu started")

    class _Proc:
        returncode = None

    proc = _Proc()

    def alive(self):
        try:
            os.kill(self.pid, 0)
            with open(f"/proc/{self.pid}/stat") as f:
                return f.read().split(")")[-1].split()[0] != "Z"
        except OSError:
            return False

    def powered_off(self):
        return not self.alive() and "reboot: Power down" in self.log_text()

    def log_text(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def since(self):
        return time.monotonic() - self.t0

    def stop(self):
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
            for _ in range(100):
                if not self.alive():
                    break
                time.sleep(0.1)


def bond_vlan_data():
    """The node's network_data: Ironic's schema (l2_link phy, l2_bond,
    l2_vlan; ipv4 and ipv6 networks)."""
    return {
        "links": [
            {"id": "port0", "type": "phy", "ethernet_mac_address": MAC_A[0], "mtu": 1500},
            {"id": "port1", "type": "phy", "ethernet_mac_address": MAC_A[1], "mtu": 1500},
            {"id": "bond0", "type": "bond", "ethernet_mac_address": MAC_A[0],
             "bond_mode": "active-backup", "bond_links": ["port0", "port1"],
             "bond_miimon": 100, "bond_xmit_hash_policy": "layer2"},
            {"id": "bond0.101", "type": "vlan", "vlan_link": "bond0", "vlan_id": 101,
             "vlan_mac_address": MAC_A[0]},
        ],
        "networks": [
            {"id": "prov-v4", "network_id": "prov-v4", "type": "ipv4",
             "link": "bond0.101", "ip_address": "192.0.2.10",
             "netmask": "255.255.255.0",
             "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0",
                         "gateway": "192.0.2.1"}]},
            {"id": "prov-v6", "network_id": "prov-v6", "type": "ipv6",
             "link": "bond0.101", "ip_address": "2001:db8:101::10",
             "netmask": "ffff:ffff:ffff:ffff::",
             "routes": [{"network": "::", "netmask": "::",
                         "gateway": "2001:db8:101::1"}]},
        ],
        "services": [{"type": "dns", "address": "192.0.2.53"}],
    }


def partial_data():
    """What Ironic's API would refuse: a link of an unknown type, a link
    whose MAC no NIC has, next to a good static link."""
    return {
        "links": [
            {"id": "good", "type": "phy", "ethernet_mac_address": MAC_A[0]},
            {"id": "odd", "type": "token-ring", "ethernet_mac_address": MAC_A[1]},
            {"id": "ghost", "type": "phy", "ethernet_mac_address": "52:54:00:99:99:99"},
        ],
        "networks": [
            {"id": "n-good", "network_id": "n", "type": "ipv4", "link": "good",
             "ip_address": "198.51.100.50", "netmask": "255.255.255.0"},
            {"id": "n-odd", "network_id": "n", "type": "ipv4", "link": "odd",
             "ip_address": "198.51.100.51", "netmask": "255.255.255.0"},
            {"id": "n-ghost", "network_id": "n", "type": "ipv4", "link": "ghost",
             "ip_address": "198.51.100.52", "netmask": "255.255.255.0"},
        ],
        "services": [],
    }


def guest_network_seconds(text):
    """Seconds of the guest's own clock from /init's start to its
    "network up" line (the kernel's uptime that /init prints): the network
    set-up alone, without the firmware and the ISO's loading before the
    kernel, which differ between boots on a loaded host."""
    import re
    up = {}
    for key, mark in (("start", "ironic-agent-init: start"), ("up", "ironic-agent-init: network up")):
        for line in text.splitlines():
            m = re.search(r"\(uptime ([0-9.]+)\)", line) if mark in line else None
            if m:
                up[key] = float(m.group(1))
                break
    return up["up"] - up["start"] if len(up) == 2 else None


def secs(x):
    return "?" if x is None else f"{x:.2f} s"


class Test:
    def __init__(self, args):
        self.args = args
        self.work = args.work
        self.results = []
        self.vms = []
        self.procs = []  # servers started here (dnsmasq)
        self.times = {}

    # -- set-up --------------------------------------------------------------
    def pki(self):
        d = os.path.join(self.work, "pki")
        os.makedirs(d, exist_ok=True)
        self.ca = os.path.join(d, "ca.pem")
        self.cert = os.path.join(d, "ironic.pem")
        self.key = os.path.join(d, "ironic.key")
        o = lambda *a: run("openssl", *a)  # noqa: E731
        o("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
          "-nodes", "-keyout", os.path.join(d, "ca.key"), "-out", self.ca,
          "-days", "2", "-subj", "/CN=issue-18 test CA")
        o("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
          "-keyout", self.key, "-out", os.path.join(d, "ironic.csr"),
          "-subj", "/CN=ironic")
        ext = os.path.join(d, "ext.cnf")
        with open(ext, "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,IP:192.0.2.1,IP:198.51.100.1,"
                    "IP:fd00:6::1,IP:::1\n")
        o("x509", "-req", "-in", os.path.join(d, "ironic.csr"), "-CA", self.ca,
          "-CAkey", os.path.join(d, "ca.key"), "-CAcreateserial", "-out",
          self.cert, "-days", "2", "-extfile", ext)
        # the harness's own urllib calls trust it too
        os.environ["SSL_CERT_FILE"] = self.ca

    def network(self):
        run("ip", "link", "set", "lo", "up")
        self.relay = Relay()
        self.relay.tap("ia-untag")
        self.relay.tap("ia-v101", vlan=101)
        run("ip", "addr", "add", f"{V101[0]}/{V101[1]}", "dev", "ia-v101")
        run("ip", "-6", "addr", "add", "2001:db8:101::1/64", "dev", "ia-v101", "nodad")
        run("ip", "addr", "add", f"{UNTAG[0]}/{UNTAG[1]}", "dev", "ia-untag")
        self.relay.start()

    def start_ironic(self):
        self.state = os.path.join(self.work, "ironic")
        if os.path.exists(self.state):  # an earlier run's: a fresh database
            subprocess.run([self.args.ironic_sh, "stop"], capture_output=True,
                           env=dict(os.environ, IRONIC_E2E_STATE=self.state))
            shutil.rmtree(self.state)
        os.makedirs(os.path.join(self.state, "ironic.conf.d"), exist_ok=True)
        ports = os.path.join(self.state, "ports.env")
        if not os.path.exists(ports):
            api, http = sorted({self.free_tcp() for _ in range(3)})[:2]
            with open(ports, "w") as f:
                f.write(f"API_PORT={api}\nHTTP_PORT={http}\n")
        env = dict(l.split("=") for l in open(ports).read().split())
        self.api_port, self.http_port = int(env["API_PORT"]), int(env["HTTP_PORT"])
        with open(os.path.join(self.state, "ironic.conf.d", "50-issue18.conf"), "w") as f:
            f.write(f"""# tests/vm/network.py: Ironic's own TLS, the CA Ironic puts on the
# virtual media, the API on every address of the test's namespace
[api]
host_ip = ::
enable_ssl_api = true
cert_file = {self.cert}
key_file = {self.key}
[agent]
api_ca_file = {self.ca}
[service_catalog]
endpoint_override = https://{V101[0]}:{self.api_port}
[DEFAULT]
isolinux_bin = /usr/lib/ISOLINUX/isolinux.bin
ldlinux_c32 = /usr/lib/syslinux/modules/bios/ldlinux.c32
""")
        os.environ.update(IRONIC_E2E_STATE=self.state, IRONIC_E2E_BIND="::",
                          IRONIC_E2E_CACERT=self.ca)
        r = subprocess.run([self.args.ironic_sh, "start"], capture_output=True, text=True)
        sys.stderr.write(r.stderr[-2000:])
        if r.returncode != 0:
            raise checks.PhaseFailed("tests/e2e/ironic.sh start failed")
        env = dict(l.split("=", 1) for l in r.stdout.split() if "=" in l)
        self.venv = env["IRONIC_VENV"]
        self.ironic = checks.Ironic(env["IRONIC_URL"],
                                    os.path.join(self.state, "ironic.sqlite"))
        # the ramdisks, where Ironic's ISO builder fetches them from
        boot = os.path.join(self.state, "httpboot")
        for name, src in (("hw", self.args.ramdisk_hw), ("vm", self.args.ramdisk_vm)):
            for part in ("kernel", "initramfs"):
                with open(os.path.join(src, f"ironic-agent.{part}"), "rb") as a, \
                        open(os.path.join(boot, f"{name}.{part}"), "wb") as b:
                    b.write(a.read())
        log(f"Ironic at {env['IRONIC_URL']} (TLS, CA {self.ca})")

    @staticmethod
    def free_tcp():
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        p = s.getsockname()[1]
        s.close()
        return p

    def stop_all(self):
        for vm in self.vms:
            vm.stop()
        self.vms = []
        self.stop_dnsmasq()
        subprocess.run([self.args.ironic_sh, "stop"], capture_output=True)

    def dnsmasq(self, *opts):
        self.stop_dnsmasq()
        leases = os.path.join(self.work, "dnsmasq.leases")
        logf = open(os.path.join(self.work, "dnsmasq.log"), "a")
        p = subprocess.Popen(
            ["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0",
             "--interface=ia-untag", "--bind-interfaces", "--log-dhcp",
             f"--dhcp-leasefile={leases}", *opts],
            stdout=logf, stderr=subprocess.STDOUT)
        self.procs.append(p)
        time.sleep(0.3)
        if p.poll() is not None:
            raise checks.PhaseFailed(f"dnsmasq exited: see {logf.name}")

    def stop_dnsmasq(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                p.wait(5)
        self.procs = []

    def dhcp4(self):
        self.dnsmasq("--dhcp-range=198.51.100.100,198.51.100.199,255.255.255.0,1h")

    # -- nodes ---------------------------------------------------------------
    def enroll(self, name, mac, props, **extra):
        n = self.ironic.call("POST", "/v1/nodes", {
            "name": name, "driver": "fake-hardware",
            "deploy_interface": "direct", "boot_interface": "fake",
            "power_interface": "fake", "management_interface": "fake",
            "network_interface": "noop", "inspect_interface": "no-inspect",
            "raid_interface": "no-raid", "bios_interface": "no-bios",
            "vendor_interface": "no-vendor", "firmware_interface": "no-firmware",
            "console_interface": "no-console", "rescue_interface": "no-rescue",
            "properties": props, **extra})
        self.ironic.call("POST", "/v1/ports", {"node_uuid": n["uuid"], "address": mac})
        self.ironic.provision(n["uuid"], "manage")
        self.ironic.wait_state(n["uuid"], "manageable", ("enroll",), 60)
        return n["uuid"]

    def setup_nodes(self):
        base = f"http://127.0.0.1:{self.http_port}"
        self.node_a = self.enroll("net-a", MAC_A[0], {"capabilities": "boot_mode:bios"},
                                  driver_info={
                                      "deploy_kernel": f"{base}/hw.kernel",
                                      "deploy_ramdisk": f"{base}/hw.initramfs",
                                      "kernel_append_params": self.append_a()})
        # as tests/vm/ironic_vm.py: fake management knows only PXE; vendor
        # lenovo + UEFI makes the direct deploy skip set_boot_device(disk)
        self.node_6 = self.enroll("net-6", MAC_6,
                                  {"vendor": "lenovo", "capabilities": "boot_mode:uefi"},
                                  automated_clean=False)
        self.ironic.provision(self.node_6, "provide")
        self.ironic.wait_state(self.node_6, "available", ("clean failed",), 60)
        self.disk = os.path.join(self.work, "disk-a.img")
        with open(self.disk, "wb") as f:
            f.truncate(DISK_SIZE)

    @staticmethod
    def append_a():
        return "console=ttyS0 panic=-1 nofb vga=normal"

    def set_network_data(self, nd):
        op = [{"op": "add", "path": "/network_data", "value": nd}] if nd else \
            [{"op": "remove", "path": "/network_data"}]
        try:
            self.ironic.call("PATCH", f"/v1/nodes/{self.node_a}", op)
        except checks.PhaseFailed:
            if nd:
                raise  # removing what is not there is fine

    def iso(self, name, api_host, extra=()):
        """The node's deploy ISO, built by Ironic's image_utils."""
        out = os.path.join(self.work, f"{name}.iso")
        params = [f"ipa-api-url=https://{api_host}:{self.api_port}",
                  "ipa-debug=1", f"BOOTIF={MAC_A[0]}", "boot_method=vmedia"]
        cmd = [os.path.join(self.venv, "bin", "python3"), os.path.join(HERE, "ironic_iso.py"),
               "--config-file", os.path.join(self.state, "ironic.conf"),
               "--config-dir", os.path.join(self.state, "ironic.conf.d"),
               "--node", self.node_a, "--out", out, *extra]
        for p in params:
            cmd += ["--param", p]
        t0 = time.monotonic()
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise checks.PhaseFailed(f"Ironic's prepare_deploy_iso failed: {r.stderr[-1500:]}")
        label = open(out, "rb").read()[32808:32840].decode().strip()
        log(f"  ISO by Ironic's image_utils in {time.monotonic() - t0:.1f} s: "
            f"{os.path.getsize(out) >> 10} KiB, label {label}")
        return out

    def boot_a(self, name, iso):
        vm = VM(self, name, self.relay.attach(2), MAC_A[0], iso=iso, disk=self.disk)
        self.vms.append(vm)
        return vm

    def wait_heartbeat(self, uuid, vm, timeout=240, tls_pending=False):
        """Seconds from qemu's start to Ironic's first heartbeat record;
        with tls_pending, None when the agent reports an unverified
        certificate first."""
        t0 = time.monotonic()
        while True:
            self.ironic.harvest_tokens()
            dii = self.ironic.node(uuid)["driver_internal_info"]
            if dii.get("agent_last_heartbeat") and dii.get("agent_url"):
                return vm.since()
            text = vm.log_text()
            if tls_pending and "UnknownIssuer" in text:
                return None
            if not vm.alive():
                raise checks.PhaseFailed("the VM stopped before its first heartbeat")
            if time.monotonic() - t0 > timeout:
                raise checks.PhaseFailed(f"no heartbeat within {timeout} s")
            time.sleep(0.2)

    def clean_boot(self, name, iso_args, api_host, tls_pending=False):
        """provide -> clean wait -> a VM from the node's ISO -> first
        heartbeat; returns (vm, seconds to heartbeat or None)."""
        self.ironic.ensure_manageable(self.node_a)
        self.ironic.provision(self.node_a, "provide")
        self.ironic.wait_state(self.node_a, "clean wait", ("clean failed",), 60)
        iso = self.iso(name, api_host, iso_args)
        vm = self.boot_a(name, iso)
        return vm, self.wait_heartbeat(self.node_a, vm, tls_pending=tls_pending)

    def finish_clean(self, vm):
        self.ironic.wait_state(self.node_a, "available", ("clean failed",), 300, agent=vm)
        log(f"  cleaned {vm.since():.1f} s after qemu started")
        vm.stop()

    def agent_url(self, uuid):
        return self.ironic.node(uuid)["driver_internal_info"].get("agent_url", "")

    @staticmethod
    def console(vm, want, absent=()):
        text = vm.log_text()
        for w in want:
            if w not in text:
                raise checks.PhaseFailed(f"the console lacks {w!r} (see {vm.logfile})")
        for w in absent:
            if w in text:
                raise checks.PhaseFailed(f"the console has {w!r} (see {vm.logfile})")

    @staticmethod
    def lines(vm, word):
        return [l.strip() for l in vm.log_text().splitlines() if word in l]

    # -- phases --------------------------------------------------------------
    def phase(self, key, title, fn):
        if key not in self.args.phases:
            return
        log(f"phase {key}: {title}")
        t0 = time.monotonic()
        try:
            fn()
            outcome, why = "PASS", ""
        except checks.Pending as e:
            outcome, why = "PENDING", str(e)
        except checks.PhaseFailed as e:
            outcome, why = "FAIL", str(e)
        except Exception as e:  # a harness bug still reports
            outcome, why = "FAIL", f"{type(e).__name__}: {e}"
        for vm in self.vms:
            if outcome == "FAIL":
                tail = vm.log_text().splitlines()[-20:]
                log(f"  console of {vm.name} (tail):\n    " + "\n    ".join(tail))
            vm.stop()
        self.vms = []
        self.stop_dnsmasq()
        dt = time.monotonic() - t0
        log(f"phase {key}: {outcome} in {dt:.1f} s {why}")
        self.results.append((key, title, outcome, dt, why))

    def phase_static(self):
        self.set_network_data(bond_vlan_data())
        # the agent takes cafile from ironic-tls.conf, which network-setup
        # copied from the media; its own bundle does not know this CA
        vm, hb = self.clean_boot("v-static", [], V101[0], tls_pending=True)
        if hb is None:
            raise checks.PhaseFailed(
                "the agent refused Ironic's certificate: cafile from "
                "/etc/ironic-python-agent.d/ironic-tls.conf not in force")
        self.times["static"] = hb
        g = guest_network_seconds(vm.log_text())
        if g is not None:
            self.times["static, guest /init start to network up"] = g
        log(f"  boot to first heartbeat (static, bond + VLAN): {hb:.1f} s; "
            f"/init start to network up: {secs(g)} (guest clock)")
        self.console(vm, [
            "network-setup: copied from /dev/sr0 (config-2): "
            "/etc/ironic-python-agent/ironic.crt "
            "/etc/ironic-python-agent.d/ironic-tls.conf",
            "configured bond bond0 (active-backup) of eth0, eth1",
            "configured vlan bond0.101 (id 101 on bond0)",
            "configured bond0.101: 192.0.2.10/24, route 0.0.0.0/0 via 192.0.2.1",
            "configured bond0.101: 2001:db8:101::10/64",
            "network_data.json from /dev/sr0 applied: eth0 eth1 configured, DHCP on nothing",
        ], absent=["DHCP bound", "network_data.json: "])
        url = self.agent_url(self.node_a)
        if url != "https://192.0.2.10:9999":
            raise checks.PhaseFailed(f"agent_url {url!r}, expected https://192.0.2.10:9999")
        for l in self.lines(vm, "network-setup:")[:12]:
            log("  " + l.split("network-setup: ", 1)[-1])
        self.finish_clean(vm)

    def phase_dhcp4(self):
        self.dhcp4()
        self.set_network_data(None)
        vm, hb = self.clean_boot("4-dhcp4", [], UNTAG[0])
        self.times["dhcp4"] = hb
        g = guest_network_seconds(vm.log_text())
        if g is not None:
            self.times["dhcp4, guest /init start to network up"] = g
        log(f"  boot to first heartbeat (DHCPv4): {hb:.1f} s; "
            f"/init start to network up: {secs(g)} (guest clock)")
        self.console(vm, ["network-setup: copied from /dev/sr0 (VMEDIA_BOOT_ISO)",
                          "DHCP bound eth"])
        self.finish_clean(vm)

    def phase_broken(self):
        self.dhcp4()
        self.set_network_data(None)
        # (1) an unknown link type and a MAC no NIC has, next to a good link
        nd = os.path.join(self.work, "partial.json")
        with open(nd, "w") as f:
            json.dump(partial_data(), f)
        vm, hb = self.clean_boot("e-partial", ["--network-data-json", nd], UNTAG[0])
        log(f"  heartbeat {hb:.1f} s after qemu started")
        self.console(vm, [
            'network_data.json: link "odd": type "token-ring" is unknown',
            'network_data.json: link "ghost": no NIC has MAC 52:54:00:99:99:99; '
            "ignored with its networks",
            "configured eth0: 198.51.100.50/24",
            "applied: eth0 configured, DHCP on eth1",
            "DHCP bound eth1",
        ], absent=["DHCP bound eth0"])
        for l in self.lines(vm, "network_data.json")[:8]:
            log("  " + l.split("network-setup: ", 1)[-1])
        self.finish_clean(vm)
        # (2) not JSON at all
        raw = os.path.join(self.work, "broken.json")
        with open(raw, "w") as f:
            f.write('{"links": [{"id": "port0", "type": "phy", ')
        vm, hb = self.clean_boot("e-badjson", ["--network-data-raw", raw], UNTAG[0])
        log(f"  heartbeat {hb:.1f} s after qemu started")
        self.console(vm, [
            "network-setup: ignoring openstack/latest/network_data.json from "
            "/dev/sr0: network_data.json is not valid JSON",
            "DHCP on every NIC", "DHCP bound eth",
        ])
        for l in self.lines(vm, "not valid JSON"):
            log("  " + l.split("network-setup: ", 1)[-1])
        self.finish_clean(vm)

    def phase_measure(self):
        """Boot to first heartbeat, static (phase v's ISO) against DHCPv4
        (phase 4's), alternating, --repeat pairs; the medians."""
        import statistics
        self.dhcp4()  # for the DHCPv4 boots; the static ones are on VLAN 101
        runs = {"static": [], "dhcp4": []}
        guest = {"static": [], "dhcp4": []}
        for i in range(self.args.repeat):
            for kind in ("static", "dhcp4"):
                if kind == "static":
                    self.set_network_data(bond_vlan_data())
                    host = V101[0]
                else:
                    self.set_network_data(None)
                    host = UNTAG[0]
                vm, hb = self.clean_boot(f"t{i}-{kind}", [], host)
                runs[kind].append(hb)
                g = guest_network_seconds(vm.log_text())
                if g is not None:
                    guest[kind].append(g)
                log(f"  {kind} #{i + 1}: first heartbeat {hb:.1f} s after qemu started; "
                    f"/init start to network up {secs(g)} (guest clock)")
                self.finish_clean(vm)
        for kind, v in runs.items():
            self.times[f"{kind} median of {len(v)}"] = statistics.median(v)
            log(f"  {kind}: {', '.join(f'{x:.1f}' for x in v)} s (median "
                f"{statistics.median(v):.1f})")
        for kind, v in guest.items():
            if v:
                self.times[f"{kind}, guest /init start to network up, median of {len(v)}"] = \
                    statistics.median(v)
                log(f"  {kind}, /init start to network up (guest clock): "
                    f"{', '.join(f'{x:.2f}' for x in v)} s (median {statistics.median(v):.2f})")

    def phase_ipv6(self):
        run("ip", "-4", "addr", "flush", "dev", "ia-untag")  # not the link-local: RAs need it
        run("ip", "-6", "addr", "add", f"{V6[0]}/{V6[1]}", "dev", "ia-untag", "nodad")
        self.dnsmasq("--enable-ra", "--ra-param=ia-untag,10,1800",
                     "--dhcp-range=fd00:6::100,fd00:6::1ff,64,1h",
                     "--dhcp-option=option6:dns-server,[fd00:6::1]")
        blob = checks.gpt_image()
        img = os.path.join(self.state, "httpboot", "v6.img")
        with open(img, "wb") as f:
            f.write(blob)
        disk = os.path.join(self.work, "disk-6.img")
        with open(disk, "wb") as f:
            f.truncate(checks.DISK_SIZE)
        # the CA for ipa-cafile in a cpio layer after the ramdisk (a
        # kernel+initramfs boot has no virtual media)
        initrd = self.layered_initrd()
        self.ironic.call("PATCH", f"/v1/nodes/{self.node_6}", [
            {"op": "add", "path": "/instance_info", "value": {
                "image_source": f"http://[{V6[0]}]:{self.http_port}/v6.img",
                "image_os_hash_algo": "sha256",
                "image_os_hash_value": hashlib.sha256(blob).hexdigest()}}])
        self.ironic.provision(self.node_6, "active")
        self.ironic.wait_state(self.node_6, "wait call-back", ("deploy failed",), 60)
        append = (f"ipa-api-url=https://[{V6[0]}]:{self.api_port} "
                  "ipa-cafile=/etc/issue18-ca.pem ipa-debug=1")
        vm = VM(self, "ipv6", self.relay.attach(1), MAC_6,
                kernel=os.path.join(self.args.ramdisk_vm, "ironic-agent.kernel"),
                initrd=initrd, append=append, disk=disk)
        self.vms.append(vm)
        hb = self.wait_heartbeat(self.node_6, vm)
        self.times["ipv6"] = hb
        log(f"  boot to first heartbeat (DHCPv6): {hb:.1f} s")
        url = self.agent_url(self.node_6)
        if not (url.startswith("https://[fd00:6::1") and url.endswith("]:9999")):
            raise checks.PhaseFailed(f"agent_url {url!r} is not https://[<DHCPv6 address>]:9999")
        log(f"  Ironic's agent_url: {url}")
        self.ironic.wait_state(self.node_6, "active", ("deploy failed",), 300, agent=vm)
        for _ in range(300):
            if vm.powered_off():
                break
            time.sleep(0.2)
        else:
            raise checks.PhaseFailed("the agent did not power the VM off")
        self.console(vm, ["router advertisement with the M flag",
                          "DHCPv6 bound fd00:6::"], absent=["DHCP bound eth0"])
        for l in self.lines(vm, "dhcp6:")[:4]:
            log("  " + l.split("ironic-agent ", 1)[-1])
        # the disk holds the image (the VM is gone: read the file)
        checks_disk = checks.check_gpt_image(disk, blob)
        log(f"  deployed over IPv6: {len(checks_disk)} bytes of partition data "
            "identical on the disk")

    def layered_initrd(self):
        layer = os.path.join(self.work, "layer6")
        os.makedirs(os.path.join(layer, "etc"), exist_ok=True)
        with open(self.ca, "rb") as a, open(os.path.join(layer, "etc", "issue18-ca.pem"), "wb") as b:
            b.write(a.read())
        cpio = subprocess.run("find . | LC_ALL=C sort | cpio -o -H newc --owner=0:0 --quiet",
                              shell=True, cwd=layer, capture_output=True, check=True).stdout
        out = os.path.join(self.work, "initramfs-v6")
        with open(os.path.join(self.args.ramdisk_vm, "ironic-agent.initramfs"), "rb") as src, \
                open(out, "wb") as dst:
            base = src.read()
            dst.write(base + bytes(-len(base) % 4) + cpio)
        return out

    def run(self):
        t0 = time.monotonic()
        try:
            self.pki()
            self.network()
            self.start_ironic()
            self.setup_nodes()
            self.phase("v", "DHCP-less: bond + VLAN + static v4/v6 from the ISO Ironic "
                       "built, CA from the media, a clean", self.phase_static)
            self.phase("4", "the same VM with DHCPv4 (boot to heartbeat compared)",
                       self.phase_dhcp4)
            self.phase("e", "broken network_data.json: DHCP where it can, the console "
                       "says what was ignored", self.phase_broken)
            self.phase("6", "IPv6-only: RA M flag + stateful DHCPv6, Ironic on IPv6, "
                       "a deploy", self.phase_ipv6)
            self.phase("t", "boot to first heartbeat, static against DHCPv4, "
                       "alternating", self.phase_measure)
        except checks.PhaseFailed as e:
            log(f"setup failed: {e}")
            self.results.append(("-", "setup", "FAIL", 0.0, str(e)))
        finally:
            self.stop_all()
        print(f"\n=== issue 18: networks without DHCPv4, Ironic 39 (TCG, {self.args.mem}) ===")
        for key, title, outcome, dt, why in self.results:
            print(f"  {key:<6} {outcome:<7} {dt:6.1f} s  {title}")
            if why:
                print(f"              {why[:300]}")
        for k, v in self.times.items():
            what = "" if "guest" in k else "boot to first heartbeat, "
            print(f"  {what}{k}: {v:.1f} s")
        print(f"  relay: {self.relay.frames if hasattr(self, 'relay') else 0} frames "
              f"from the VMs; total {time.monotonic() - t0:.1f} s; files in {self.work}")
        with open(os.path.join(self.work, "heartbeat-seconds.json"), "w") as f:
            json.dump(self.times, f)
        strict = os.environ.get("VM_STRICT") == "1"
        if any(r[2] == "FAIL" or (strict and r[2] == "PENDING") for r in self.results):
            return 1
        return 2 if any(r[2] == "PENDING" for r in self.results) else 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ramdisk-hw", required=True, help="ramdisk/build --modules hardware output")
    p.add_argument("--ramdisk-vm", required=True, help="ramdisk/build output (vm set)")
    p.add_argument("--work", required=True)
    p.add_argument("--ironic-sh", default=os.path.join(REPO, "tests", "e2e", "ironic.sh"))
    p.add_argument("--mem", default=os.environ.get("VM_MEM", "128M"))
    p.add_argument("--phases", default="v4e6",
                   help="v 4 e 6; t (not by default): --repeat timed pairs")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    os.makedirs(args.work, exist_ok=True)
    # taps, addresses and servers: only ever in a namespace made for this
    if not run("ip", "netns", "identify", str(os.getpid())).strip():
        sys.exit("network.py: run me in a network namespace of my own "
                 "(tests/vm/run.sh s does: ip netns exec NAME ...)")
    sys.exit(Test(args).run())


if __name__ == "__main__":
    main()
