#!/usr/bin/env python3
"""End-to-end test: the real ironic-agent binary against the real Ironic 39.

Run through tests/e2e/run.sh, which builds the agent and starts Ironic with
tests/e2e/ironic.sh. This script enrolls a fake-hardware node (real `direct`
deploy and `agent` inspect interfaces) whose only port is the MAC of the
agent's fixture root, runs the agent on this host against that root (its
"disk" is a sparse file), and drives Ironic through the phases below,
printing each one's wall time:

  a  inspection: `inspect` -> the agent POSTs to /v1/continue_inspection ->
     `manageable`, the agent's inventory stored in Ironic
  b  automated cleaning with erase_devices_metadata -> `available`, the
     disk's GPT areas zeroed and the data in between untouched
  c  a second cleaning by the same agent process after Ironic wiped its
     token (heartbeat 400 -> the agent looks the node up again)
  f  fault: Ironic stopped while the agent heartbeats in `clean wait`,
     started again -> the cleaning completes
  d  fast track ([deploy] fast_track = true, Ironic restarted): one agent
     process serves cleaning and then the deploy steps, with no new boot;
     a raw UEFI GPT whole-disk image (sha256) with a configdrive -> `active`
  q  undeploy (cleaning with a new agent), then the same image as qcow2
     with compressed clusters (`qemu-img convert -c`), verified with
     SHA-512 (Glance's default os_hash_algo) -> `active`
  p  undeploy, then a partition image (instance_info image_type
     partition, root_gb 1, swap_mb 64, configdrive) -> `active`: a new GPT
     with ESP, swap, config-2 and root partitions, the image in the root
  w  undeploy, then a wrong sha256 -> `deploy failed`, last_error holding
     the agent's ImageChecksumError text, the target's first MiB zero
  t  no agent token Ironic handed out appears in any agent log

After each deploy the target is compared from the host with `qemu-img
convert -O raw` of the image (whole disk: between the image's GPTs; a
partition image: the root partition).

With fake power, Ironic's power actions do nothing: the harness stops an
agent where Ironic would have powered the node off (after inspection), and
starts one where Ironic would have booted the ramdisk.

Ironic 39 findings:
- A UEFI partition image cannot reach `active` with Ironic's defaults,
  with IPA or with this agent: the ESP the agent formats is empty, so
  install_bootloader falls back to grub-install, which `[agent]
  enable_bios_bootloader_install = false` (the default, CVE-2026-43003)
  forbids -> InvalidImage. Ironic does not pass ignore_bootloader_failure
  to install_bootloader; phase p starts the agent with
  --ignore-bootloader-failure (ipa-ignore-bootloader-failure), the
  operator's way out, and the node gets no UEFI boot entry.
- Undeploy (`deleted`) wipes instance_info; the harness sets it whole
  before every deploy.
- Without fast track, Ironic starts the deploy steps only for an agent it
  takes for freshly booted (agent_base._freshly_booted: no command in
  GET /v1/commands but get_deploy_steps). With fake power the agent that
  cleaned is still running when the deploy starts; it re-looks up once
  its token is wiped and, since 44ba24e, drops its old results so Ironic
  sees a fresh boot (before, the node stayed in `wait call-back`).

Outcome per phase: PASS, FAIL, or PENDING when the agent failed exactly
because a step is "not implemented in this build yet" (work on other
branches). Exit status: 1 if any phase FAILed (or, with E2E_STRICT=1, was
PENDING), else 0. Logs stay in the work directory.
"""

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
# the Ironic client, outcome conventions, images and disk checks, shared
# with tests/vm/ironic_vm.py
from checks import (  # noqa: E402
    DISK_SIZE, NO_NIC, NO_NIC_PENDING, SECTOR, Ironic, Pending, PhaseFailed,
    check_deployed, check_metadata_zeroed, check_partition_deployed,
    compress_qcow2, fill_metadata, forget_boot_entries, gpt_image, log,
    partition_image, raw_of)

POWERED_OFF = "PowerOff requested with a fixture root"


# --------------------------------------------------------------------------
# Fixture root: a real-sysfs-shaped tree for the agent's --root


def cpu_flags():
    """This machine's CPU flags (/proc/cpuinfo), where the agent runs."""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def symlink(target, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.symlink(target, path)


def make_root(root, mac, src_fixture=None):
    """Build the fixture root and return the MAC of its NIC.

    With `src_fixture` (tests/fixtures/vm-virtio, captured from a live VM by
    tests/fixtures/capture.sh) the tree is copied and made to look like a
    ramdisk boot of that machine: its disk vda unmounted (the captured VM
    ran from it) and 8 GiB, the disk itself a sparse file. Without one, a
    minimal tree shaped like a QEMU guest's sysfs is written: one virtio
    NIC (eth0, `mac`) and one virtio disk (vda)."""
    if src_fixture:
        subprocess.run(["cp", "-a", src_fixture + "/.", root], check=True)
        with open(f"{root}/sys/class/net/eth0/address") as f:
            mac = f.read().strip()
        write(f"{root}/sys/block/vda/size", f"{DISK_SIZE // SECTOR}\n")
        # the ramdisk runs from RAM: nothing of vda is mounted or swapped
        write(f"{root}/proc/mounts",
              "rootfs / rootfs rw 0 0\nproc /proc proc rw,relatime 0 0\n"
              "sysfs /sys sysfs rw,relatime 0 0\n"
              "devtmpfs /dev devtmpfs rw,relatime,mode=755 0 0\n")
        write(f"{root}/proc/self/mountinfo",
              "1 1 0:2 / / rw - rootfs rootfs rw\n"
              "22 1 0:21 / /proc rw,relatime - proc proc rw\n"
              "23 1 0:22 / /sys rw,relatime - sysfs sysfs rw\n"
              "24 1 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,mode=755\n")
        write(f"{root}/proc/swaps",
              "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n")
        # booted in UEFI mode, as the node's boot_mode capability says
        os.makedirs(f"{root}/sys/firmware/efi/efivars", exist_ok=True)
    else:
        make_minimal_root(root, mac)
    os.makedirs(f"{root}/dev", exist_ok=True)
    with open(f"{root}/dev/vda", "wb") as f:
        f.truncate(DISK_SIZE)  # sparse
    bootif = "01-" + mac.replace(":", "-")
    write(f"{root}/proc/cmdline",
          f"BOOT_IMAGE=/vmlinuz console=ttyS0 BOOTIF={bootif} ipa-debug=1\n")
    for d in ("run", "etc"):
        os.makedirs(f"{root}/{d}", exist_ok=True)
    return mac


def make_minimal_root(root, mac):
    """A QEMU guest's sysfs in miniature: virtio NIC eth0, virtio disk vda."""
    pci_nic = "sys/devices/pci0000:00/0000:00:03.0"
    pci_disk = "sys/devices/pci0000:00/0000:00:04.0"
    nic = f"{pci_nic}/virtio0/net/eth0"
    for k, v in {"address": mac, "carrier": "1", "operstate": "up",
                 "type": "1", "speed": "-1", "mtu": "1500",
                 "addr_assign_type": "0", "ifindex": "2"}.items():
        write(f"{root}/{nic}/{k}", v + "\n")
    symlink("../../../virtio0", f"{root}/{nic}/device")
    for k, v in {"vendor": "0x1af4", "device": "0x1000", "class": "0x020000",
                 "revision": "0x00", "numa_node": "-1"}.items():
        write(f"{root}/{pci_nic}/{k}", v + "\n")
    write(f"{root}/{pci_nic}/virtio0/vendor", "0x1af4\n")
    write(f"{root}/{pci_nic}/virtio0/device", "0x0001\n")
    symlink(f"../../{nic[len('sys/'):]}", f"{root}/sys/class/net/eth0")
    # lo: no device link, never a lookup address
    write(f"{root}/sys/devices/virtual/net/lo/address", "00:00:00:00:00:00\n")
    write(f"{root}/sys/devices/virtual/net/lo/carrier", "1\n")
    symlink("../../devices/virtual/net/lo", f"{root}/sys/class/net/lo")

    blk = f"{pci_disk}/virtio1/block/vda"
    for k, v in {"size": str(DISK_SIZE // SECTOR), "ro": "0", "removable": "0",
                 "dev": "253:0", "queue/logical_block_size": str(SECTOR),
                 "queue/physical_block_size": str(SECTOR),
                 "queue/rotational": "1", "device/vendor": "0x1af4",
                 "device/serial": "e2e-disk-0"}.items():
        write(f"{root}/{blk}/{k}", v + "\n")
    for k, v in {"vendor": "0x1af4", "device": "0x1001", "class": "0x010000",
                 "revision": "0x00", "numa_node": "-1"}.items():
        write(f"{root}/{pci_disk}/{k}", v + "\n")
    symlink(f"../../{blk[len('sys/'):]}", f"{root}/sys/class/block/vda")
    symlink(f"../{blk[len('sys/'):]}", f"{root}/sys/block/vda")

    os.makedirs(f"{root}/sys/firmware/efi/efivars", exist_ok=True)
    for k, v in {"sys_vendor": "QEMU", "product_name": "Standard PC (Q35)",
                 "product_serial": "e2e-0001", "bios_vendor": "EDK II",
                 "bios_version": "0.0.0", "bios_date": "02/06/2015",
                 "product_uuid": "8d3a1b2c-0000-4000-8000-00000000e2e0"}.items():
        write(f"{root}/sys/class/dmi/id/{k}", v + "\n")
    write(f"{root}/proc/meminfo",
          "MemTotal:        2030404 kB\nMemFree:         1800000 kB\n")
    write(f"{root}/proc/cpuinfo",
          "processor\t: 0\nvendor_id\t: GenuineIntel\n"
          "model name\t: QEMU Virtual CPU version 2.5+\ncpu MHz\t\t: 2400.000\n"
          "flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic lm\n\n")
    write(f"{root}/proc/sys/kernel/hostname", "e2e-node\n")


# --------------------------------------------------------------------------
# The agent under test


class Agent:
    def __init__(self, binary, root, ironic_url, logfile, extra=()):
        self.logfile = logfile
        args = [binary, "--root", root, "--api-url", ironic_url,
                "--listen-host", "127.0.0.1", "--listen-port", "0",
                "--advertise-host", "127.0.0.1", "--debug",
                "--lookup-timeout", "300", "--lookup-interval", "1",
                "--inspection-dhcp-wait-timeout", "0", *extra]
        self.out = open(logfile, "a")
        self.out.write(f"=== {' '.join(args)}\n")
        self.out.flush()
        self.proc = subprocess.Popen(args, stdout=self.out,
                                     stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        log(f"  agent started, pid {self.proc.pid}, log {logfile}")

    def alive(self):
        return self.proc.poll() is None

    def powered_off(self):
        """Ironic's standby.power_off (end of a deploy): with a fixture root
        the agent exits 0 where a machine would power off."""
        return (self.proc.poll() == 0
                and POWERED_OFF in self.log_text())

    def stop(self):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()

    def wait_log(self, needle, timeout):
        t0 = time.monotonic()
        while needle not in self.log_text():
            if time.monotonic() - t0 > timeout:
                return False
            time.sleep(0.2)
        return True

    def log_text(self):
        with open(self.logfile, errors="replace") as f:
            return f.read()


# --------------------------------------------------------------------------


# (key, title, E2E method), in the order they run
PHASES = [
    ("a", "inspection -> manageable, inventory stored", "phase_inspect"),
    ("b", "automated cleaning (erase_devices_metadata)", "phase_clean"),
    ("c", "second cleaning after the token was wiped", "phase_reclean"),
    ("f", "Ironic stopped and started mid-cleaning", "phase_ironic_restart"),
    ("d", "fast track: clean then deploy, one boot", "phase_fast_track"),
    ("q", "deploy a qcow2 image with compressed clusters, SHA-512", "phase_qcow2"),
    ("p", "deploy a partition image (swap, configdrive)", "phase_partition"),
    ("w", "wrong checksum -> deploy failed, target wiped",
     "phase_bad_checksum"),
    ("t", "no agent token in any agent log line", "check_no_token_in_logs"),
]


class E2E:
    def __init__(self, args):
        self.args = args
        self.state = os.environ["IRONIC_E2E_STATE"]
        self.ironic = Ironic(os.environ["IRONIC_URL"],
                             os.path.join(self.state, "ironic.sqlite"))
        self.http_url = os.environ["IRONIC_HTTP_URL"]
        self.work = args.work
        self.root = os.path.join(self.work, "root")
        self.disk = os.path.join(self.root, "dev/vda")
        self.mac = "52:54:00:%02x:%02x:%02x" % tuple(
            random.randrange(256) for _ in range(3))
        self.agents = []
        self.uuid = None
        self.results = []
        self.blocked = None  # why the remaining phases cannot run

    def agent(self, name, extra=()):
        a = Agent(self.args.agent, self.root, self.ironic.url,
                  os.path.join(self.work, f"agent-{name}.log"), extra)
        self.agents.append(a)
        return a

    def ironic_sh(self, action):
        r = subprocess.run([self.args.ironic_sh, action], capture_output=True,
                           text=True)
        sys.stderr.write(r.stderr)
        if r.returncode != 0:
            raise PhaseFailed(f"ironic.sh {action} failed")

    def enroll(self):
        n = self.ironic.call("POST", "/v1/nodes", {
            "name": "e2e-" + self.mac.replace(":", ""),
            "driver": "fake-hardware",
            "deploy_interface": "direct",
            "inspect_interface": "agent",
            "boot_interface": "fake",
            "power_interface": "fake",
            "management_interface": "fake",
            "network_interface": "noop",
            "raid_interface": "agent",
            "bios_interface": "no-bios",
            "vendor_interface": "no-vendor",
            "firmware_interface": "no-firmware",
            "console_interface": "no-console",
            "rescue_interface": "no-rescue",
            # fake management supports only the PXE boot device; with
            # vendor=lenovo and UEFI, Ironic's direct deploy skips
            # set_boot_device(disk) (see ironic/drivers/modules/agent_base.py)
            "properties": {"vendor": "lenovo", "capabilities": "boot_mode:uefi"},
        })
        self.uuid = n["uuid"]
        self.ironic.call("POST", "/v1/ports",
                         {"node_uuid": self.uuid, "address": self.mac})
        self.ironic.provision(self.uuid, "manage")
        self.ironic.wait_state(self.uuid, "manageable", ("enroll",), 60)
        log(f"enrolled node {self.uuid} with port {self.mac}")

    def phase(self, key, title, fn):
        if key not in self.args.phases:
            return
        log(f"phase {key}: {title}")
        if self.blocked:
            log(f"phase {key}: PENDING, not run: {self.blocked}")
            self.results.append((key, title, "PENDING", 0.0,
                                 f"not run: {self.blocked}"))
            return
        t0 = time.monotonic()
        try:
            fn()
            outcome, why = "PASS", ""
        except Pending as e:
            outcome, why = "PENDING", str(e)
            if NO_NIC_PENDING in why:
                # without a NIC nothing can look up: the rest cannot run
                self.blocked = why
        except PhaseFailed as e:
            outcome, why = "FAIL", str(e)
        except Exception as e:  # a harness bug must still report
            outcome, why = "FAIL", f"{type(e).__name__}: {e}"
        dt = time.monotonic() - t0
        log(f"phase {key}: {outcome} in {dt:.1f} s {why}")
        self.results.append((key, title, outcome, dt, why))

    # -- phases ------------------------------------------------------------

    def phase_inspect(self):
        self.ironic.provision(self.uuid, "inspect")
        self.ironic.wait_state(self.uuid, "inspect wait", ("inspect failed",),
                               60)
        a = self.agent("inspect", ["--inspection-callback-url",
                                   self.ironic.url + "/v1/continue_inspection"])
        self.ironic.wait_state(self.uuid, "manageable", ("inspect failed",),
                               120, agent=a)
        inv = self.ironic.call("GET", f"/v1/nodes/{self.uuid}/inventory")
        macs = [i.get("mac_address") for i in
                inv.get("inventory", {}).get("interfaces", [])]
        if self.mac not in macs:
            raise PhaseFailed(f"stored inventory lacks {self.mac}: {macs}")
        if not a.wait_log(f"and UUID {self.uuid}", 15):
            raise PhaseFailed("the agent did not look up with the node UUID "
                              "Ironic's inspection answer gave it")
        # Ironic would power the node off now; the agent meanwhile retries
        # lookup (404 in manageable) and must still be alive
        if not a.alive():
            raise PhaseFailed(f"the agent exited after inspection; see {a.logfile}")
        a.stop()
        log(f"  inventory stored: {len(json.dumps(inv))} bytes, "
            f"interfaces {macs}")

    def clean(self, agent, timeout=180):
        """Automated cleaning with `agent` up -> `available`: an undeploy
        (`deleted`: tear down, then clean) from active or deploy failed,
        else manage + provide."""
        fill_metadata(self.disk)
        if self.ironic.node(self.uuid)["provision_state"] in (
                "active", "deploy failed"):
            self.ironic.provision(self.uuid, "deleted")
        else:
            self.ironic.ensure_manageable(self.uuid)
            self.ironic.provision(self.uuid, "provide")
        self.ironic.wait_state(self.uuid, "available", ("clean failed",),
                               timeout, agent=agent)
        check_metadata_zeroed(self.disk)

    def ramdisk(self, name, extra=()):
        """Boot a fresh agent where Ironic boots the ramdisk for cleaning
        (earlier agents stopped: one machine runs one ramdisk) and clean
        the node to `available` with it; with fast track (phase d) that
        agent then serves the deploy too."""
        for a in self.agents:
            a.stop()
        a = self.agent(name, extra)
        self.clean(a)
        return a

    def serve(self, name, data):
        """Put `data` on the loopback image server; returns its path."""
        path = os.path.join(self.state, "httpboot", name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def deploy(self, agent, name, instance_info=(), sha256=None,
               good="active", bad=("deploy failed",), algo="sha256",
               **provision):
        """Deploy the served image `name` with `agent` up: instance_info is
        set whole (nothing of an earlier phase's may leak in), with the
        image's digest (`algo`) unless `sha256` is given. Reaching `active`
        also needs the agent powered off by Ironic (standby.power_off)."""
        with open(os.path.join(self.state, "httpboot", name), "rb") as f:
            digest = hashlib.new(algo, f.read()).hexdigest()
        ii = {"image_source": f"{self.http_url}/{name}",
              "image_os_hash_algo": algo,
              "image_os_hash_value": sha256 or digest,
              "root_gb": "1", **dict(instance_info)}
        self.ironic.call("PATCH", f"/v1/nodes/{self.uuid}", [
            {"op": "add", "path": "/instance_info", "value": ii}])
        forget_boot_entries(self.root)
        t0 = time.monotonic()
        self.ironic.provision(self.uuid, "active", **provision)
        n = self.ironic.wait_state(self.uuid, good, bad, 180, agent=agent)
        log(f"  deploy of {name} -> {good}: {time.monotonic() - t0:.1f} s")
        if good == "active" and not agent.wait_log(POWERED_OFF, 10):
            raise PhaseFailed("Ironic did not power the agent off at the end "
                              "of the deploy (standby.power_off)")
        return n

    def check_tls(self):
        n = self.ironic.node(self.uuid)
        dii = n["driver_internal_info"]
        url = dii.get("agent_url", "")
        if url and not url.startswith("https://127.0.0.1:"):
            raise PhaseFailed(f"agent_url is {url!r}, expected https")
        if url and not os.path.exists(
                os.path.join(self.state, "certificates", f"{self.uuid}.crt")):
            raise PhaseFailed("Ironic stored no agent_verify_ca certificate")

    def phase_clean(self):
        self.cleaner = self.agent("clean")
        self.clean(self.cleaner)

    def phase_reclean(self):
        a = getattr(self, "cleaner", None) or self.agent("clean")
        self.cleaner = a
        pid = a.proc.pid
        try:
            self.clean(a)
        finally:
            text = a.log_text()
        if a.proc.pid != pid or not a.alive():
            raise PhaseFailed("the agent process did not carry on")
        if "looking the node up again" not in text:
            raise PhaseFailed("the agent never saw its token wiped")

    def phase_ironic_restart(self):
        a = getattr(self, "cleaner", None) or self.agent("clean")
        self.cleaner = a
        fill_metadata(self.disk)
        self.ironic.ensure_manageable(self.uuid)
        self.ironic.provision(self.uuid, "provide")
        self.ironic.wait_state(self.uuid, "clean wait", ("clean failed",),
                               60, agent=a)
        log("  stopping Ironic while the node is in clean wait")
        self.ironic_sh("stop")
        time.sleep(12)  # > one failed heartbeat plus its 5-10 s back-off
        if not a.alive():
            raise PhaseFailed("the agent died while Ironic was down")
        self.ironic_sh("start")
        self.ironic.wait_state(self.uuid, "available", ("clean failed",), 180,
                               agent=a)
        check_metadata_zeroed(self.disk)

    def phase_fast_track(self):
        for a in self.agents:
            a.stop()  # "power off": a fast-track agent boots once
        with open(os.path.join(self.state, "ironic.conf.d", "fast-track.conf"),
                  "w") as f:
            f.write("[deploy]\nfast_track = true\n")
        self.ironic_sh("restart")
        self.ironic.ensure_manageable(self.uuid)
        # the "boot": fake power on, then the agent starts. Ironic only
        # fast-tracks a node that is powered on and heartbeating; otherwise
        # it wipes the token and reboots it.
        self.ironic.call("PUT", f"/v1/nodes/{self.uuid}/states/power",
                         {"target": "power on"})
        t0 = time.monotonic()
        while True:
            n = self.ironic.node(self.uuid)
            if n["power_state"] == "power on" and not n["reservation"]:
                break
            if time.monotonic() - t0 > 30:
                raise PhaseFailed(f"fake power on did not finish: {n['power_state']}")
            time.sleep(0.2)
        a = self.agent("fast-track")
        # lookup is allowed in manageable with fast track: wait for the
        # agent to heartbeat before Ironic decides whether to boot it
        t0 = time.monotonic()
        while not self.ironic.node(self.uuid)["driver_internal_info"].get(
                "agent_last_heartbeat"):
            if NO_NIC in a.log_text():
                raise Pending(NO_NIC_PENDING)
            if not a.alive():
                raise PhaseFailed(f"the agent exited; see {a.logfile}")
            if time.monotonic() - t0 > 60:
                raise PhaseFailed("no heartbeat in manageable with fast track")
            time.sleep(0.3)
        t1 = time.monotonic()
        self.clean(a)
        log(f"  fast-track cleaning: {time.monotonic() - t1:.1f} s")
        self.check_tls()
        # deploy: an 8 MiB raw UEFI GPT disk image from the loopback image
        # server, with a configdrive (Ironic builds the ISO)
        blob = gpt_image()
        self.serve("disk.img", blob)
        try:
            self.deploy(a, "disk.img", configdrive=self.configdrive())
        except Pending:
            text = a.log_text()
            if "get_deploy_steps" not in text or "write_image" not in text:
                raise PhaseFailed("deploy failed before write_image was "
                                  "dispatched to the agent")
            self.check_one_boot(a)
            raise
        self.check_one_boot(a)
        check_deployed(self.root, blob)

    def configdrive(self):
        return {"meta_data": {"uuid": self.uuid, "hostname": "e2e-node"},
                "user_data": "#cloud-config\nhostname: e2e-node\n"}

    def phase_qcow2(self):
        a = self.ramdisk("qcow2")
        raw = self.serve("disk.raw", gpt_image())
        img = raw[:-len(".raw")] + ".qcow2"
        compress_qcow2(raw, img)
        # SHA-512 (x86-64 with AVX2 and BMI2: the agent's own assembly)
        self.deploy(a, os.path.basename(img), algo="sha512")
        if not a.wait_log("sha512 checksum verified", 5):
            raise PhaseFailed("the agent did not log its SHA-512 verification")
        if (not a.wait_log("sha512: the agent's AVX2+BMI2 assembly", 1)
                and {"avx2", "bmi1", "bmi2"} <= cpu_flags()):
            raise PhaseFailed("the agent hashed SHA-512 with ring on a CPU "
                              "that has AVX2, BMI1 and BMI2")
        check_deployed(self.root, raw_of(img), configdrive=False)

    def phase_partition(self):
        # Ironic 39 ([agent] enable_bios_bootloader_install = false) has
        # the agent refuse grub-install, and the ESP the agent just
        # formatted holds no loader: install_bootloader fails (as IPA's
        # does) unless the ramdisk ignores bootloader failures
        a = self.ramdisk("partition", ["--ignore-bootloader-failure"])
        img = self.serve("root.img", partition_image())
        self.deploy(a, "root.img", {"image_type": "partition",
                                    "swap_mb": "64"},
                    configdrive=self.configdrive())
        if "Empty EFI partition detected" not in a.log_text():
            raise PhaseFailed("install_bootloader did not find the new, "
                              "empty ESP")
        check_partition_deployed(os.path.join(self.root, "dev/vda"),
                                 raw_of(img), 64, 1024)

    def phase_bad_checksum(self):
        # one retry, 1 s apart (IPA's defaults: 9 every 10 s)
        a = self.ramdisk("checksum", [
            "--image-download-connection-retries", "1",
            "--image-download-connection-retry-interval", "1"])
        self.serve("bad.img", gpt_image())
        with open(self.disk, "r+b") as f:
            f.write(b"\xa5" * (1 << 20))  # what a failed write must wipe
        wrong = hashlib.sha256(b"not the image").hexdigest()
        n = self.deploy(a, "bad.img", sha256=wrong, good="deploy failed",
                        bad=("active",))
        err = n.get("last_error") or ""
        if "Image failed to verify against checksum" not in err or \
                wrong not in err:
            raise PhaseFailed(f"last_error lacks the agent's "
                              f"ImageChecksumError: {err!r}")
        if "Image download failed, 1 of 1" not in a.log_text():
            raise PhaseFailed("the agent did not retry the download")
        with open(self.disk, "rb") as f:
            if f.read(1 << 20).count(0) != 1 << 20:
                raise PhaseFailed("the target's first MiB is not zero after "
                                  "the failed write")
        log(f"  last_error: {err[:200]}")

    @staticmethod
    def check_one_boot(a):
        """Fast track: one process and one token from lookup to deploy."""
        text = a.log_text()
        if not a.alive() and not a.powered_off():
            raise PhaseFailed("the fast-track agent exited")
        if text.count("lookup succeeded") != 1 or \
                "looking the node up again" in text:
            raise PhaseFailed("Ironic did not fast-track the agent: it "
                              "wiped the token and the agent looked up again")

    # -- checks across phases ------------------------------------------------

    def check_no_token_in_logs(self):
        """No token Ironic handed out may appear in any agent log line (the
        agents run with --debug)."""
        tokens = self.ironic.tokens
        leaks = []
        for a in self.agents:
            text = a.log_text()
            leaks += [(a.logfile, t[:6]) for t in tokens if t in text]
        if leaks:
            raise PhaseFailed(f"agent token in agent logs: {leaks}")
        if not tokens:
            if self.blocked:
                raise Pending(self.blocked)
            raise PhaseFailed("no tokens seen in Ironic's database")
        log(f"  {len(tokens)} tokens, none in {len(self.agents)} agent logs")

    def run(self):
        os.makedirs(self.root)
        self.mac = make_root(self.root, self.mac, self.args.fixture)
        log(f"fixture root {self.root} from "
            f"{self.args.fixture or 'the built-in minimal tree'}, NIC {self.mac}")
        t0 = time.monotonic()
        try:
            self.enroll()
            for key, title, method in PHASES:
                self.phase(key, title, getattr(self, method))
        except PhaseFailed as e:
            log(f"setup failed: {e}")
            self.results.append(("-", "setup", "FAIL", 0.0, str(e)))
        finally:
            for a in self.agents:
                a.stop()
        total = time.monotonic() - t0
        print("\n=== e2e summary (Ironic 39, require_tls = true) ===")
        for key, title, outcome, dt, why in self.results:
            print(f"  {key}  {outcome:<7} {dt:6.1f} s  {title}")
            if why:
                print(f"             {why[:300]}")
        print(f"  total {total:.1f} s; logs in {self.work} "
              f"and {self.state}/ironic.log")
        strict = os.environ.get("E2E_STRICT") == "1"
        bad = [r for r in self.results
               if r[2] == "FAIL" or (strict and r[2] == "PENDING")]
        return 1 if bad else 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--agent", required=True, help="the ironic-agent binary")
    p.add_argument("--ironic-sh", required=True, help="tests/e2e/ironic.sh")
    p.add_argument("--work", required=True, help="work dir (fixture, logs)")
    default_fixture = os.path.join(os.path.dirname(os.path.abspath(
        __file__)), "..", "fixtures", "vm-virtio")
    p.add_argument("--fixture", default=default_fixture if os.path.isdir(
        default_fixture) else None,
        help="fixture root to copy [tests/fixtures/vm-virtio]; "
             "'' for the built-in minimal tree")
    p.add_argument("--phases",
                   default="".join(k for k, _, _ in PHASES))
    sys.exit(E2E(p.parse_args()).run())


if __name__ == "__main__":
    main()
