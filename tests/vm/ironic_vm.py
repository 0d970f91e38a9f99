#!/usr/bin/env python3
"""The real Ironic 39 drives the ramdisk booted in a VM (tests/vm/run.sh d).

Ironic runs on loopback (tests/e2e/ironic.sh: fake-hardware with the real
`direct` deploy and `agent` inspect interfaces, require_tls left at its
default, true). With fake power, this script plays the BMC: it boots the VM
(ramdisk/run-vm, qemu TCG) where Ironic would power the node on, and stops
it where Ironic would power it off, except at the end of the deploy, where
the agent itself must power the VM off (standby.power_off -> reboot(2) ->
qemu exits). The agent finds everything on its kernel command line:

  ipa-api-url (and, for the inspection boot, ipa-inspection-callback-url)
      http://10.0.2.100:<api port>: qemu guestfwd to Ironic on 127.0.0.1
  ipa-advertise-host=127.0.0.1 ipa-advertise-port=<hostfwd port>
      (Ironic calls the agent back through qemu's hostfwd; the agent's
      auto-TLS certificate names 127.0.0.1)

Phases, each timed:
  i  inspection -> manageable, the VM's NIC (MAC) and disk (serial) in the
     stored inventory
  l  inspection as operators run it, Ironic's hooks default + parse-lldp +
     local-link-connection + extra-hardware, the VM booted with
     ipa-collect-lldp=1 and ipa-inspection-collectors=default,
     extra-hardware,numa-topology,logs while this script plays the switch
     (tests/lib/lldp.py: real LLDP frames, chassis ID MAC, port ID, system
     name, port description, VLANs, into the VM's NIC through a qemu hub
     and a UDP socket, ramdisk/run-vm --wire-udp): the node's port gets
     local_link_connection {switch_id, port_id, switch_info} from them, the
     stored inventory has the raw TLVs and plugin_data the parsed LLDP,
     the extra-hardware data (as `extra`) and the NUMA topology
  f  the same collectors from a config file in the ramdisk
     (/etc/ironic-python-agent.conf, [DEFAULT] inspection_collectors), not
     the kernel line
  c  automated cleaning (erase_devices_metadata) -> available; the disk's
     GPT areas zeroed, the data in between untouched; an https callback URL
     and Ironic's copy of the agent's certificate; boot to first heartbeat
  d  deploy of a whole-disk GPT image -> active; the agent powers the VM
     off (qemu exits on its own); the disk holds the image
  q  undeploy (automated cleaning off: phase c covers it), then deploy of
     a 256 MiB whole-disk image as qcow2 with compressed clusters (`qemu-img
     convert -c`), twice the VM's RAM, with a configdrive, in a VM with 2
     vCPUs (so compressed clusters inflate on the agent's helper threads)
     -> active; the disk, junk-filled before, equals `qemu-img convert -O
     raw` of the image between its GPTs, and a config-2 partition holding
     the node's metadata follows the image's partitions; a second,
     smaller disk (IPA's default pick) stays untouched because the node's
     root_device hint names the first by serial
  u  the GPT image again, twice, in a VM of the same RAM booted by OVMF
     (UEFI) from the ramdisk as one EFI image (ramdisk/efi-image-create:
     kernel + initramfs behind ironic-agent-boot, qemu -kernel), with the
     machine's NVRAM kept across boots -> active: install_bootloader
     writes a Boot#### entry through the kernel's efivarfs; OVMF's variable
     store (the pflash file) then has exactly one entry naming the image's
     \\EFI\\BOOT\\BOOTX64.EFI, first in BootOrder, after each deploy;
     then manual cleaning with clean_uefi_nvram (match_patterns bootx64)
     deletes it and drops it from BootOrder
  p  a partition image (root_gb 1, swap_mb 64, configdrive) -> active: a
     new GPT with IPA's layout, the ESP FAT32, the swap signature, config-2,
     the root partition holding the image (BIOS VM: grub-install refused
     as Ironic 39 asks, ignored with ipa-ignore-bootloader-failure)
  x  a wrong sha256 -> deploy failed, last_error carrying the agent's
     ImageChecksumError with both digests, the junk-filled first MiB zeroed
  R  software RAID (raid_interface=agent): the node's target_raid_config
     (RAID-1 "root" of 5 GiB, is_root_volume, and a RAID-0 "data" of the
     rest) on two fresh 8 GiB disks; manual cleaning [delete_configuration,
     create_configuration] -> manageable, Ironic's raid_config, local_gb
     and raid_level recorded, host mdadm --examine accepts every member;
     then a deploy under OVMF of a GPT image whose ESP holds a standalone
     GRUB -> active: the image on both mirrors, an ESP RAID-1 (v1.0) on
     both holders holding the image's ESP, two NVRAM entries "ironic1
     (RAID, part0/1)"; OVMF then boots each holder alone into that GRUB,
     which sees the md arrays (run by tests/vm/run.sh R; not a default phase)
  t  no agent token in any console log (the agents run with ipa-debug)

--arch arm64 (tests/vm/run.sh arm64): the same against the arm64 ramdisk
(ramdisk/build --arch arm64) in qemu-system-aarch64's `virt` machine
(ramdisk/run-vm --arch arm64), by default phases i c d u t: inspection
also checks what is arm64's own (cpu.architecture aarch64, which Ironic's
`architecture` inspection hook stores as the node's cpu_arch, the key of
[conductor]deploy_kernel_by_arch / deploy_ramdisk_by_arch, which this
Ironic is given; the core named from its MIDR; the device tree's model
where there is no DMI), the images carry EFI/BOOT/BOOTAA64.EFI, and phase
u runs under AAVMF (edk2 for arm64) in the same RAM as the rest, checking
the Boot#### entry names \\EFI\\BOOT\\BOOTAA64.EFI.

One URL for the image serves both sides: Ironic HEADs image_source from the
host, the agent GETs it in the VM. The image server is
http://localhost:<port>: on the host that is 127.0.0.1; in the VM an extra
initramfs layer (a cpio appended to the ramdisk, as the kernel allows)
maps localhost to 10.0.2.100, the guestfwd address. The ramdisk itself is
unchanged.

Outcomes: PASS, FAIL, PENDING (the agent failed only because a feature is
not on main yet, as in tests/e2e). Exit 1 on any FAIL.
"""

import argparse
import hashlib
import os
import signal
import socket
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "lib"))
# the Ironic client, outcome conventions, images and disk checks, shared
# with tests/e2e/e2e.py
import checks  # noqa: E402

SECTOR = checks.SECTOR
DISK_SIZE = checks.DISK_SIZE  # 8 GiB sparse: above IPA's 4 GiB root minimum
DISK_SERIAL = "IRONIC-VM-DISK0"
QCOW2_IMAGE_SIZE = 256 << 20  # twice the VM's RAM: nothing can be staged
SMALL_DISK_SIZE = 6 << 30  # over IPA's 4 GiB minimum, under DISK_SIZE
SMALL_SERIAL = "IRONIC-VM-SMALL"
MIB = 1 << 20
# what the test's switch says (phase l)
SWITCH = {"chassis": "52:54:00:5a:17:01", "port_id": "Ethernet1/42",
          "system_name": "tor-vm-1", "port_desc": "ironic-vm node port",
          "vlans": [(101, "provisioning"), (102, "tenant")], "pvid": 101}
COLLECTORS = "default,extra-hardware,numa-topology,logs"


def log(msg):
    print(f"[vm-ironic {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def uefi_variables(store):
    """The live variables of an OVMF variable store file (edk2's
    authenticated variable format after the firmware volume header):
    {name: data}. Later copies replace earlier ones; deleted ones (State
    other than VAR_ADDED, 0x3F) are skipped."""
    off = struct.unpack_from("<H", store, 0x30)[0] + 28  # FV + store headers
    out = {}
    while off + 60 <= len(store):
        start, state, _, _, _, _, _, nsize, dsize, _ = struct.unpack_from(
            "<HBBIQ16sIII16s", store, off)
        if start != 0x55AA:
            break
        name = store[off + 60:off + 60 + nsize].decode("utf-16-le").rstrip("\0")
        if state == 0x3F:
            out[name] = store[off + 60 + nsize:off + 60 + nsize + dsize]
        off = (off + 60 + nsize + dsize + 3) & ~3
    return out


class VM:
    """One boot of the ramdisk. Quacks like e2e.py's Agent for wait_state."""

    def __init__(self, t, name, inspect=False, smp=1, append=(), nvram=None,
                 mem=None, disks=(), wire=None, initrd=None):
        arch = ["--arch", t.arch] if t.arch != "amd64" else []
        # amd64 under OVMF: the kernel and initramfs as one EFI image (the
        # kernel's own EFI stub needs ~154 MiB there, see efi-image-create)
        boot = (["--kernel", t.efi_image] if nvram and t.efi_image
                else ["--kernel", t.kernel, "--initrd", initrd or t.initrd])
        self.name = name
        self.logfile = os.path.join(t.work, name, "console.log")
        self.t0 = time.monotonic()
        for attempt in range(3):  # the pre-chosen hostfwd port may be taken
            self.port = free_port()
            # as Ironic's boot interfaces do, the inspection callback only
            # when the boot is for inspection
            append = " ".join([
                f"ipa-api-url=http://10.0.2.100:{t.api_port}",
                "ipa-advertise-host=127.0.0.1",
                f"ipa-advertise-port={self.port}", "ipa-debug=1", *append]
                + ([f"ipa-inspection-callback-url=http://10.0.2.100:"
                    f"{t.api_port}/v1/continue_inspection"] if inspect else []))
            cmd = [os.path.join(REPO, "ramdisk", "run-vm"), *arch,
                   *boot,
                   "--mem", mem or t.mem, "--mac", t.mac,
                   "--disk", f"{t.disk},bus=virtio,serial={DISK_SERIAL}{t.disk_opts}",
                   "--hostfwd-port", str(self.port),
                   "--guestfwd", str(t.api_port), "--guestfwd", str(t.http_port),
                   "--append", append, "--workdir", os.path.join(t.work, name),
                   # the API listens only after lookup (as IPA): the
                   # console marker is the readiness here
                   "--no-http", "--timeout", "120"]
            if smp > 1:  # run-vm boots one vCPU; a later -smp wins
                cmd += ["--qemu-arg", "-smp", "--qemu-arg", str(smp)]
            if nvram:  # OVMF, with the machine's variable store
                cmd += ["--uefi-vars", nvram]
            for d in disks:  # after the node's disk: /dev/vdb, ...
                cmd += ["--disk", d]
            if wire:  # the NIC's wire, reachable by UDP (phase l's switch)
                cmd += ["--wire-udp", str(wire)]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode == 0:
                env = dict(line.split("=", 1) for line in r.stdout.split()
                           if "=" in line)
                self.pid = int(env["VM_PID"])
                log(f"  VM {name} up: init ready in "
                    f"{env['VM_READY_SECONDS']} s, agent port {self.port}")
                return
            sys.stderr.write(r.stderr)
            if "host forwarding" not in r.stderr:
                break
        raise checks.PhaseFailed(f"the VM {name} did not boot; see {self.logfile}")

    # e2e.py's Agent's interface ----------------------------------------------
    class _Proc:
        returncode = None

    proc = _Proc()

    def alive(self):
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        # a zombie is not alive; qemu is not our child, but check anyway
        try:
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

    def stop(self):
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
            for _ in range(100):
                if not self.alive():
                    break
                time.sleep(0.1)

    def since(self):
        return time.monotonic() - self.t0


class Test:
    def __init__(self, args):
        self.args = args
        self.work = args.work
        self.kernel = os.path.join(args.ramdisk, "ironic-agent.kernel")
        self.initrd = os.path.join(self.work, "initramfs-localhost")
        self.mem = args.mem
        self.mac = "52:54:00:%02x:%02x:%02x" % tuple(os.urandom(3))
        self.arch = args.arch
        # the loader a UEFI image of this architecture carries (the pattern
        # clean_uefi_nvram is given for it), and on amd64 the ramdisk as one
        # EFI image for the UEFI boots (AAVMF boots the arm64 kernel and
        # initramfs as they are); UEFI runs in the suite's RAM on both
        self.uefi_mem = args.mem
        if self.arch == "arm64":
            self.loader_name, self.efi_image = "BOOTAA64.EFI", None
        else:
            self.loader_name = "BOOTX64.EFI"
            self.efi_image = os.path.join(self.work, "ironic-agent.efi")
        self.LOADER = "\\EFI\\BOOT\\" + self.loader_name
        self.disk = os.path.join(self.work, "vm-disk.img")
        self.disk_opts = ""
        self.vms = []
        self.results = []
        self.blocked = None
        self.uuid = None

    # -- setup ---------------------------------------------------------------
    def start_ironic(self):
        self.state = os.path.join(self.work, "ironic")
        os.makedirs(self.state, exist_ok=True)
        if set("lf") & set(self.args.phases):
            # phases l and f: the LLDP and extra-hardware hooks, which
            # only act on inspection data that carries what they read
            confd = os.path.join(self.state, "ironic.conf.d")
            os.makedirs(confd, exist_ok=True)
            with open(os.path.join(confd, "inspection-hooks.conf"), "w") as f:
                f.write("[inspector]\nhooks = $default_hooks,parse-lldp,"
                        "local-link-connection,extra-hardware\n")
        os.environ["IRONIC_E2E_STATE"] = self.state
        if self.arch == "arm64":
            # what an operator sets so that Ironic boots aarch64 nodes
            # (node properties cpu_arch, from inspection) with this ramdisk
            os.makedirs(os.path.join(self.state, "ironic.conf.d"), exist_ok=True)
            with open(os.path.join(self.state, "ironic.conf.d",
                                   "arm64.conf"), "w") as f:
                f.write("[conductor]\n"
                        f"deploy_kernel_by_arch = aarch64:file://{self.kernel}\n"
                        f"deploy_ramdisk_by_arch = aarch64:file://{self.initrd}\n")
        r = subprocess.run([self.args.ironic_sh, "start"], capture_output=True,
                           text=True)
        sys.stderr.write(r.stderr)
        if r.returncode != 0:
            raise checks.PhaseFailed("tests/e2e/ironic.sh start failed")
        env = dict(line.split("=", 1) for line in r.stdout.split() if "=" in line)
        self.ironic = checks.Ironic(env["IRONIC_URL"],
                                 os.path.join(self.state, "ironic.sqlite"))
        self.api_port = int(env["IRONIC_URL"].rsplit(":", 1)[1])
        self.http_port = int(env["IRONIC_HTTP_URL"].rsplit(":", 1)[1])
        log(f"Ironic at {env['IRONIC_URL']}, images at {env['IRONIC_HTTP_URL']}")

    def stop_ironic(self):
        subprocess.run([self.args.ironic_sh, "stop"], capture_output=True)

    def make_initrd(self):
        """The ramdisk + an uncompressed cpio layer with /etc/hosts mapping
        localhost to the guestfwd address (see the module docstring)."""
        layer = os.path.join(self.work, "layer")
        os.makedirs(os.path.join(layer, "etc"), exist_ok=True)
        with open(os.path.join(layer, "etc", "hosts"), "w") as f:
            f.write("10.0.2.100\tlocalhost\n")
        self.layered_initrd(layer, os.path.basename(self.initrd))
        if self.efi_image:
            subprocess.run([os.path.join(REPO, "ramdisk", "efi-image-create"),
                            "-o", self.efi_image, "-k", self.kernel,
                            "-i", self.initrd], check=True)
        with open(self.disk, "wb") as f:
            f.truncate(DISK_SIZE)

    def layered_initrd(self, layer, name):
        """The ramdisk with the files under `layer` added as one more,
        uncompressed, cpio archive; its path."""
        out = os.path.join(self.work, name)
        cpio = subprocess.run(
            "find . | LC_ALL=C sort | cpio -o -H newc --owner=0:0 --quiet",
            shell=True, cwd=layer, capture_output=True, check=True).stdout
        with open(os.path.join(self.args.ramdisk, "ironic-agent.initramfs"),
                  "rb") as src, open(out, "wb") as dst:
            base = src.read()
            # the kernel looks for an uncompressed cpio only at 4-byte
            # aligned offsets and skips zeros (init/initramfs.c)
            dst.write(base + bytes(-len(base) % 4))
            dst.write(cpio)
        return out

    def enroll(self):
        n = self.ironic.call("POST", "/v1/nodes", {
            "name": "vm-" + self.mac.replace(":", ""),
            "driver": "fake-hardware",
            "deploy_interface": "direct", "inspect_interface": "agent",
            "boot_interface": "fake", "power_interface": "fake",
            "management_interface": "fake", "network_interface": "noop",
            "raid_interface": "agent", "bios_interface": "no-bios",
            "vendor_interface": "no-vendor",
            "firmware_interface": "no-firmware",
            "console_interface": "no-console", "rescue_interface": "no-rescue",
            # as tests/e2e: fake management only knows PXE; vendor lenovo +
            # UEFI makes the direct deploy skip set_boot_device(disk)
            "properties": {"vendor": "lenovo", "capabilities": "boot_mode:uefi"},
        })
        self.uuid = n["uuid"]
        self.ironic.call("POST", "/v1/ports",
                         {"node_uuid": self.uuid, "address": self.mac})
        self.ironic.provision(self.uuid, "manage")
        self.ironic.wait_state(self.uuid, "manageable", ("enroll",), 60)
        log(f"enrolled node {self.uuid}, port {self.mac}")

    def boot(self, name, inspect=False, **opts):
        vm = VM(self, name, inspect, **opts)
        self.vms.append(vm)
        return vm

    # -- phases --------------------------------------------------------------
    def phase(self, key, title, fn):
        if key not in self.args.phases:
            return
        log(f"phase {key}: {title}")
        if self.blocked:
            self.results.append((key, title, "PENDING", 0.0, f"not run: {self.blocked}"))
            return
        t0 = time.monotonic()
        try:
            fn()
            outcome, why = "PASS", ""
        except checks.Pending as e:
            outcome, why = "PENDING", str(e)
            if checks.NO_NIC_PENDING in why:
                self.blocked = why
        except checks.PhaseFailed as e:
            outcome, why = "FAIL", str(e)
        except Exception as e:  # a harness bug still reports
            outcome, why = "FAIL", f"{type(e).__name__}: {e}"
        for vm in self.vms:
            if outcome != "PASS" and os.path.exists(vm.logfile):
                tail = vm.log_text().splitlines()[-15:]
                log(f"  console of {vm.name} (tail):\n    " + "\n    ".join(tail))
            vm.stop()
        self.vms = []
        dt = time.monotonic() - t0
        log(f"phase {key}: {outcome} in {dt:.1f} s {why}")
        self.results.append((key, title, outcome, dt, why))

    def phase_inspect(self):
        self.ironic.provision(self.uuid, "inspect")
        self.ironic.wait_state(self.uuid, "inspect wait", ("inspect failed",), 60)
        vm = self.boot("inspect", inspect=True)
        self.ironic.wait_state(self.uuid, "manageable", ("inspect failed",),
                               240, agent=vm)
        log(f"  inspected {vm.since():.1f} s after the VM started")
        inv = self.ironic.call("GET", f"/v1/nodes/{self.uuid}/inventory")
        inventory = inv.get("inventory", {})
        macs = [i.get("mac_address") for i in inventory.get("interfaces", [])]
        serials = [d.get("serial") for d in inventory.get("disks", [])]
        if self.mac not in macs:
            raise checks.PhaseFailed(f"stored inventory lacks {self.mac}: {macs}")
        if DISK_SERIAL not in serials:
            raise checks.PhaseFailed(f"stored inventory lacks disk {DISK_SERIAL}: {serials}")
        log(f"  inventory: interfaces {macs}, disks {serials}, "
            f"memory {inventory.get('memory')}")
        if self.arch == "arm64":
            self.check_arm64_inventory(inventory)

    def check_arm64_inventory(self, inventory):
        """What is arm64's own in the stored inventory, and the node's
        cpu_arch Ironic derived from it."""
        cpu = inventory.get("cpu", {})
        vendor = inventory.get("system_vendor", {})
        boot = inventory.get("boot", {})
        bad = []
        if cpu.get("architecture") != "aarch64":
            bad.append(f"cpu.architecture {cpu.get('architecture')!r}")
        # run-vm's Neoverse N1, named from its MIDR as lscpu does
        if cpu.get("model_name") != "Neoverse-N1":
            bad.append(f"cpu.model_name {cpu.get('model_name')!r}")
        if "asimd" not in cpu.get("flags", []):
            bad.append(f"cpu.flags {cpu.get('flags')}")
        # qemu's `virt` booted without firmware: no DMI, the device tree's
        # model; no /sys/firmware/efi, so "bios" as IPA reports it
        if vendor.get("product_name") != "linux,dummy-virt":
            bad.append(f"system_vendor {vendor}")
        if boot.get("current_boot_mode") != "bios":
            bad.append(f"boot {boot}")
        arch = self.ironic.node(self.uuid)["properties"].get("cpu_arch")
        if arch != "aarch64":
            bad.append(f"the node's cpu_arch is {arch!r}")
        if bad:
            raise e2e.PhaseFailed("arm64 inventory: " + "; ".join(bad))
        log(f"  arm64: cpu {cpu.get('model_name')} x{cpu.get('count')} "
            f"{cpu.get('architecture')}, system {vendor.get('product_name')!r}, "
            f"boot {boot.get('current_boot_mode')}; node cpu_arch {arch}")

    def free_udp_pair(self):
        """A UDP port whose next one is free too (run-vm --wire-udp)."""
        for _ in range(50):
            a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            finally:
                a.close()
                b.close()
            return port
        raise checks.PhaseFailed("no free pair of UDP ports")

    def switch(self, port):
        """tests/lib/lldp.py sending the SWITCH's LLDP every second into
        the NIC's wire; a Popen to kill."""
        sw = SWITCH
        cmd = [sys.executable, os.path.join(REPO, "tests", "lib", "lldp.py"),
               "send", "--udp", f"127.0.0.1:{port}", "--count", "0",
               "--interval", "1", "--chassis", sw["chassis"],
               "--src", sw["chassis"][:-2] + "42", "--port-id", sw["port_id"],
               "--system-name", sw["system_name"], "--port-desc",
               sw["port_desc"], "--pvid", str(sw["pvid"])]
        for vid, name in sw["vlans"]:
            cmd += ["--vlan", f"{vid}:{name}"]
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL)

    def inspect_with_switch(self, name, append=(), initrd=None):
        """One inspection of the node with the test's switch on the VM's
        wire; returns (stored inventory + plugin data, the node's port,
        seconds from the VM's start to manageable)."""
        port = self.ironic.call("GET", f"/v1/ports?node={self.uuid}&fields="
                                "uuid,address")["ports"][0]
        # a clean port: local-link-connection never overwrites a key
        self.ironic.call("PATCH", f"/v1/ports/{port['uuid']}", [
            {"op": "replace", "path": "/local_link_connection", "value": {}}])
        self.ironic.ensure_manageable(self.uuid)
        self.ironic.provision(self.uuid, "inspect")
        self.ironic.wait_state(self.uuid, "inspect wait", ("inspect failed",), 60)
        wire = self.free_udp_pair()
        sw = self.switch(wire)
        try:
            vm = self.boot(name, inspect=True, append=append, wire=wire,
                           initrd=initrd)
            self.ironic.wait_state(self.uuid, "manageable", ("inspect failed",),
                                   300, agent=vm)
            took = vm.since()
        finally:
            sw.kill()
            sw.wait()
        log(f"  inspected {took:.1f} s after the VM started")
        data = self.ironic.call("GET", f"/v1/nodes/{self.uuid}/inventory")
        port = self.ironic.call("GET", f"/v1/ports/{port['uuid']}")
        return data, port, took

    def check_extra(self, plugin):
        """extra-hardware's rows, turned by Ironic's hook into
        plugin_data.extra (ints where they parse), and the NUMA topology."""
        extra = plugin.get("extra")
        if not isinstance(extra, dict):
            raise checks.PhaseFailed(f"no extra-hardware data in plugin_data "
                                     f"(keys {sorted(plugin)})")
        if "data" in plugin:
            raise checks.PhaseFailed("Ironic kept the raw extra-hardware data: "
                                     "its hook did not accept the rows")
        cpus = extra.get("cpu", {}).get("logical", {}).get("number")
        mem = extra.get("memory", {}).get("total", {}).get("size")
        disk = extra.get("disk", {}).get("vda", {}).get("size")
        kernel = extra.get("system", {}).get("kernel", {}).get("version")
        if not (isinstance(cpus, int) and cpus >= 1 and isinstance(mem, int)
                and mem > 0 and disk == DISK_SIZE // 10**9 and kernel):
            raise checks.PhaseFailed(
                f"extra: cpu.logical.number {cpus!r}, memory.total.size "
                f"{mem!r}, disk.vda.size {disk!r} (want {DISK_SIZE // 10**9}), "
                f"system.kernel.version {kernel!r}; categories {sorted(extra)}")
        if not plugin.get("numa_topology", {}).get("ram"):
            raise checks.PhaseFailed("no numa_topology in plugin_data")
        return extra

    def phase_lldp(self):
        data, port, took = self.inspect_with_switch("inspect-lldp", append=[
            "ipa-collect-lldp=1", f"ipa-inspection-collectors={COLLECTORS}"])
        sw = SWITCH
        want = {"switch_id": sw["chassis"], "port_id": sw["port_id"],
                "switch_info": sw["system_name"]}
        llc = port.get("local_link_connection") or {}
        if llc != want:
            raise checks.PhaseFailed(f"port {port['address']}: "
                                     f"local_link_connection {llc}, want {want}")
        log(f"  port {port['address']}: local_link_connection {llc}")
        inv, plugin = data.get("inventory", {}), data.get("plugin_data", {})
        nic = next((i for i in inv.get("interfaces", [])
                    if i.get("mac_address") == self.mac), None)
        if not nic or not nic.get("lldp"):
            raise checks.PhaseFailed(f"the inventory's NIC has no LLDP: {nic}")
        types = [t for t, _ in nic["lldp"]]
        log(f"  inventory {nic['name']}.lldp: TLV types {types}")
        parsed = plugin.get("parsed_lldp", {}).get(nic["name"], {})
        expect = {
            "switch_chassis_id": sw["chassis"],
            "switch_port_id": sw["port_id"],
            "switch_system_name": sw["system_name"],
            "switch_port_description": sw["port_desc"],
            "switch_port_untagged_vlan_id": sw["pvid"],
            "switch_port_vlans": [{"id": v, "name": n} for v, n in sw["vlans"]],
        }
        bad = {k: (parsed.get(k), v) for k, v in expect.items()
               if parsed.get(k) != v}
        if bad:
            raise checks.PhaseFailed(f"parsed_lldp of {nic['name']}: "
                                     f"(got, want) {bad}; all: {parsed}")
        log(f"  plugin_data.parsed_lldp.{nic['name']}: "
            f"{ {k: parsed[k] for k in sorted(parsed)} }")
        extra = self.check_extra(plugin)
        log(f"  plugin_data.extra: {sorted(extra)}, "
            f"cpu.logical.number {extra['cpu']['logical']['number']}, "
            f"disk.vda.size {extra['disk']['vda']['size']} GB")
        if plugin.get("error"):
            raise checks.PhaseFailed(f"the ramdisk reported {plugin['error']!r}")
        self.lldp_seconds = took

    def phase_config_file(self):
        layer = os.path.join(self.work, "layer-conf")
        os.makedirs(os.path.join(layer, "etc"), exist_ok=True)
        with open(os.path.join(layer, "etc", "hosts"), "w") as f:
            f.write("10.0.2.100\tlocalhost\n")
        with open(os.path.join(layer, "etc", "ironic-python-agent.conf"), "w") as f:
            f.write(f"[DEFAULT]\ninspection_collectors = {COLLECTORS}\n")
        initrd = self.layered_initrd(layer, "initramfs-conf")
        data, _, _ = self.inspect_with_switch("inspect-conf", initrd=initrd)
        want = "inspection is enabled with collectors " + str(
            COLLECTORS.split(",")).replace("'", '"')
        console = os.path.join(self.work, "inspect-conf", "console.log")
        with open(console, errors="replace") as f:
            if want not in f.read():
                raise checks.PhaseFailed(f"the agent did not log {want!r}: "
                                         "the config file's collectors were not used")
        plugin = data.get("plugin_data", {})
        self.check_extra(plugin)
        log("  the config file's collectors ran: extra and numa_topology stored")

    def wait_heartbeat(self, vm, timeout=240):
        """Seconds from the VM's start to Ironic's first agent_last_heartbeat."""
        t0 = time.monotonic()
        while True:
            self.ironic.harvest_tokens()
            dii = self.ironic.node(self.uuid)["driver_internal_info"]
            if dii.get("agent_last_heartbeat") and dii.get("agent_url"):
                return vm.since()
            if checks.NO_NIC in vm.log_text():
                raise checks.Pending(checks.NO_NIC_PENDING)
            if not vm.alive():
                raise checks.PhaseFailed("the VM stopped before its first heartbeat")
            if time.monotonic() - t0 > timeout:
                raise checks.PhaseFailed("no heartbeat within %d s" % timeout)
            time.sleep(0.2)

    def phase_clean(self):
        checks.fill_metadata(self.disk)
        self.ironic.ensure_manageable(self.uuid)
        self.ironic.provision(self.uuid, "provide")
        self.ironic.wait_state(self.uuid, "clean wait", ("clean failed",), 60)
        vm = self.boot("clean")
        hb = self.wait_heartbeat(vm)
        log(f"  boot to first heartbeat: {hb:.1f} s")
        self.heartbeat_seconds = hb
        self.check_tls(vm)
        self.ironic.wait_state(self.uuid, "available", ("clean failed",), 300,
                               agent=vm)
        log(f"  cleaned {vm.since():.1f} s after the VM started")
        vm.stop()
        checks.check_metadata_zeroed(self.disk)

    def check_tls(self, vm):
        dii = self.ironic.node(self.uuid)["driver_internal_info"]
        url = dii.get("agent_url", "")
        if url != f"https://127.0.0.1:{vm.port}":
            raise checks.PhaseFailed(f"agent_url is {url!r}, expected "
                                  f"https://127.0.0.1:{vm.port}")
        crt = os.path.join(self.state, "certificates", f"{self.uuid}.crt")
        if not os.path.exists(crt):
            raise checks.PhaseFailed("Ironic stored no agent_verify_ca certificate")

    def phase_deploy(self):
        img = os.path.join(self.state, "httpboot", "vm-disk.img")
        blob = checks.gpt_image(loader=self.loader_name)
        with open(img, "wb") as f:
            f.write(blob)
        if self.ironic.node(self.uuid)["provision_state"] != "available":
            # phase c did not run or failed: clean first (another boot)
            self.ironic.ensure_manageable(self.uuid)
            self.ironic.provision(self.uuid, "provide")
            self.ironic.wait_state(self.uuid, "clean wait", ("clean failed",), 60)
            vm = self.boot("deploy-clean")
            self.ironic.wait_state(self.uuid, "available", ("clean failed",),
                                   300, agent=vm)
            vm.stop()
        self.ironic.call("PATCH", f"/v1/nodes/{self.uuid}", [
            {"op": "add", "path": "/instance_info/image_source",
             "value": f"http://localhost:{self.http_port}/vm-disk.img"},
            {"op": "add", "path": "/instance_info/image_os_hash_algo",
             "value": "sha256"},
            {"op": "add", "path": "/instance_info/image_os_hash_value",
             "value": hashlib.sha256(blob).hexdigest()},
        ])
        self.ironic.provision(self.uuid, "active")
        self.ironic.wait_state(self.uuid, "wait call-back", ("deploy failed",), 60)
        vm = self.boot("deploy")
        self.ironic.wait_state(self.uuid, "active", ("deploy failed",), 300, agent=vm)
        log(f"  deployed {vm.since():.1f} s after the VM started")
        self.wait_powered_off(vm)
        self.check_image(blob)

    def wait_powered_off(self, vm):
        """At `active` Ironic has called standby.power_off: the agent powers
        the VM off itself, so qemu exits on its own."""
        t0 = time.monotonic()
        while vm.alive() and time.monotonic() - t0 < 60:
            time.sleep(0.2)
        if vm.alive():
            raise checks.PhaseFailed("standby.power_off did not power the VM off "
                                  "(qemu still running 60 s after active)")
        if "reboot: Power down" not in vm.log_text():
            raise checks.PhaseFailed("qemu exited without the kernel's power-down")
        log(f"  the VM powered itself off ({time.monotonic() - t0:.1f} s after active)")

    def make_available(self):
        """Back to `available` without a cleaning boot (phase c covers
        cleaning): the node's automated_clean off, then an undeploy from
        where the last deploy left it."""
        self.ironic.call("PATCH", f"/v1/nodes/{self.uuid}", [
            {"op": "replace", "path": "/automated_clean", "value": False}])
        state = self.ironic.node(self.uuid)["provision_state"]
        if state in ("active", "deploy failed"):
            self.ironic.provision(self.uuid, "deleted")
        elif state != "available":
            self.ironic.ensure_manageable(self.uuid)
            self.ironic.provision(self.uuid, "provide")
        self.ironic.wait_state(self.uuid, "available",
                               ("clean failed", "error"), 120)

    def serve(self, name, data):
        """Put `data` on the image server; its sha256."""
        with open(os.path.join(self.state, "httpboot", name), "wb") as f:
            f.write(data)
        return hashlib.sha256(data).hexdigest()

    def deploy_vm(self, name, sha256, instance_info=(), configdrive=None,
                  good="active", bad=("deploy failed",), **boot):
        """Deploy the served image `name` (instance_info set whole, so
        nothing of an earlier phase leaks in) with a VM booted where
        Ironic would power the node on; returns the VM."""
        self.ironic.call("PATCH", f"/v1/nodes/{self.uuid}", [
            {"op": "add", "path": "/instance_info", "value": {
                "image_source": f"http://localhost:{self.http_port}/{name}",
                "image_os_hash_algo": "sha256",
                "image_os_hash_value": sha256, **dict(instance_info)}}])
        extra = {"configdrive": configdrive} if configdrive else {}
        self.ironic.provision(self.uuid, "active", **extra)
        self.ironic.wait_state(self.uuid, "wait call-back", bad, 60)
        vm = self.boot("deploy-" + name.split(".")[0], **boot)
        self.ironic.wait_state(self.uuid, good, bad, 300, agent=vm)
        log(f"  {good} {vm.since():.1f} s after the VM started")
        for line in vm.log_text().splitlines():
            if "streamed onto device" in line:
                log("  agent: " + line.split("INFO", 1)[-1].strip())
        return vm

    def configdrive(self, host):
        return {"meta_data": {"uuid": self.uuid, "hostname": host},
                "user_data": f"#cloud-config\nhostname: {host}\n"}

    def junk(self, size):
        """What a deploy must replace: the disk's first `size` bytes."""
        with open(self.disk, "r+b") as f:
            for _ in range(size // MIB):
                f.write(b"\xa5" * MIB)

    def phase_qcow2(self):
        raw_path = os.path.join(self.state, "httpboot", "vm-disk-q.raw")
        name = "vm-disk-q.qcow2"
        img = os.path.join(self.state, "httpboot", name)
        with open(raw_path, "wb") as f:
            f.write(checks.gpt_image(QCOW2_IMAGE_SIZE))
        checks.compress_qcow2(raw_path, img)
        os.unlink(raw_path)
        raw = checks.raw_of(img)
        with open(img, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        log(f"  image: {os.path.getsize(img) // 1024} KiB of qcow2, "
            f"{len(raw) >> 20} MiB virtual")
        self.make_available()
        self.junk(len(raw))  # zero clusters included
        # A second, smaller disk, which IPA's default (the smallest disk of
        # at least 4 GiB) would pick: the node's root device hint names
        # the first one by serial.
        small = os.path.join(self.work, "vm-disk-small.img")
        with open(small, "wb") as f:
            f.truncate(SMALL_DISK_SIZE)
        self.ironic.call("PATCH", f"/v1/nodes/{self.uuid}", [
            {"op": "add", "path": "/properties/root_device",
             "value": {"serial": DISK_SERIAL}}])
        vm = self.deploy_vm(name, digest, configdrive=self.configdrive("vm-q"),
                            smp=2, disks=[f"{small},bus=virtio,serial={SMALL_SERIAL}"])
        self.wait_powered_off(vm)
        if "inflate on 2 helper threads" not in vm.log_text():
            raise checks.PhaseFailed("the agent did not inflate on 2 helper "
                                  "threads (see its console log)")
        self.check_qcow2(raw)
        if os.stat(small).st_blocks:
            raise checks.PhaseFailed(f"the agent wrote to {SMALL_SERIAL}, which "
                                  "the root device hint excludes")
        log(f"  the root device hint (serial {DISK_SERIAL}) kept the smaller "
            f"{SMALL_SERIAL} untouched")

    def boot_entries(self):
        """BootOrder and the Boot#### numbers naming the image's loader, from
        the machine's OVMF variable store (the pflash file), where the
        guest kernel's SetVariable calls land."""
        with open(self.nvram, "rb") as f:
            nv = uefi_variables(f.read())
        raw = nv.get("BootOrder", b"")
        order = list(struct.unpack(f"<{len(raw) // 2}H", raw))
        loader = self.LOADER.lower().encode("utf-16-le")
        ours = sorted(int(k[4:], 16) for k, d in nv.items()
                      if len(k) == 8 and k.startswith("Boot") and k[4:].isalnum()
                      and loader in d.lower())
        return order, ours

    def phase_uefi(self):
        self.nvram = os.path.join(self.work, "nvram-OVMF_VARS.fd")
        if os.path.exists(self.nvram):
            os.unlink(self.nvram)
        blob = checks.gpt_image(loader=self.loader_name)
        digest = self.serve("vm-uefi.img", blob)
        first = None
        for n in (1, 2):
            # the second deploy meets the first one's entry in NVRAM
            self.make_available()
            vm = self.deploy_vm("vm-uefi.img", digest, nvram=self.nvram,
                                mem=self.uefi_mem)
            self.wait_powered_off(vm)
            text = vm.log_text()
            if "Boot mode mismatch" in text or "efivarfs is not available" in text:
                raise checks.PhaseFailed("the agent did not see UEFI and efivarfs")
            added = [line.split("INFO", 1)[-1].strip()
                     for line in text.splitlines() if "Adding loader" in line]
            if not added:
                raise checks.PhaseFailed("install_bootloader added no UEFI boot "
                                      "entry (see the console log)")
            log("  agent: " + added[-1])
            order, ours = self.boot_entries()
            if len(ours) != 1 or order[:1] != ours:
                raise checks.PhaseFailed(
                    f"deploy {n}: BootOrder {order}, entries naming "
                    f"{self.LOADER}: {ours} (expected one, first)")
            log(f"  deploy {n}: OVMF's BootOrder {order}, Boot{ours[0]:04X} "
                f"names {self.LOADER}")
            self.check_image(blob)
            first = first or ours
        # manual cleaning: clean_uefi_nvram deletes the entry again
        self.ironic.ensure_manageable(self.uuid)
        self.ironic.provision(self.uuid, "clean", clean_steps=[{
            "interface": "deploy", "step": "clean_uefi_nvram",
            "args": {"match_patterns": [self.loader_name[:-4].lower()]}}])
        self.ironic.wait_state(self.uuid, "clean wait", ("clean failed",), 60)
        vm = self.boot("clean-nvram", nvram=self.nvram, mem=self.uefi_mem)
        self.ironic.wait_state(self.uuid, "manageable", ("clean failed",), 300,
                               agent=vm)
        vm.stop()
        order, ours = self.boot_entries()
        if ours or set(order) & set(first):
            raise checks.PhaseFailed(f"after clean_uefi_nvram: BootOrder {order}, "
                                  f"entries naming {self.LOADER}: {ours}")
        log(f"  clean_uefi_nvram: no entry names {self.LOADER}, BootOrder "
            f"{order}")

    def phase_partition(self):
        # The VM boots BIOS (SeaBIOS) while the node asks for UEFI: as IPA,
        # the agent warns of the mismatch and takes the BIOS path, whose
        # grub-install Ironic 39 refuses ([agent]
        # enable_bios_bootloader_install = false); the deploy finishes
        # because the ramdisk ignores bootloader failures, as in tests/e2e
        image = checks.partition_image()
        digest = self.serve("vm-root.img", image)
        self.make_available()
        self.junk(64 * MIB)
        vm = self.deploy_vm("vm-root.img", digest,
                            {"image_type": "partition", "root_gb": "1",
                             "swap_mb": "64"},
                            configdrive=self.configdrive("vm-p"),
                            append=["ipa-ignore-bootloader-failure=1"])
        self.wait_powered_off(vm)
        if "legacy BIOS bootloaders disabled" not in vm.log_text():
            raise checks.PhaseFailed("install_bootloader did not refuse "
                                  "grub-install as Ironic 39 asks")
        checks.check_partition_deployed(self.disk, image, 64, 1024)
        log("  new GPT: ESP (FAT32 efi-part), swap, config-2, root holding "
            "the image")

    def phase_bad_checksum(self):
        digest = self.serve("vm-bad.img", checks.gpt_image(loader=self.loader_name))
        wrong = hashlib.sha256(b"not the image").hexdigest()
        self.make_available()
        self.junk(MIB)  # what a failed write must wipe
        # one retry, 1 s apart (IPA's defaults: 9 every 10 s)
        vm = self.deploy_vm(
            "vm-bad.img", wrong, good="deploy failed", bad=("active",),
            append=["ipa-image-download-connection-retries=1",
                    "ipa-image-download-connection-retry-interval=1"])
        err = self.ironic.node(self.uuid).get("last_error") or ""
        if "Image failed to verify against checksum" not in err or \
                wrong not in err or digest not in err:
            raise checks.PhaseFailed(f"last_error lacks the agent's "
                                  f"ImageChecksumError: {err!r}")
        vm.stop()
        with open(self.disk, "rb") as f:
            if f.read(MIB) != bytes(MIB):
                raise checks.PhaseFailed("the disk's first MiB is not all zero "
                                      "after the failed deploy")
        log(f"  last_error: {err[:160]}...; the disk's first MiB zeroed")

    RAID_CONFIG = {"logical_disks": [
        {"size_gb": 5, "raid_level": "1", "controller": "software",
         "volume_name": "root", "is_root_volume": True},
        {"size_gb": "MAX", "raid_level": "0", "controller": "software",
         "volume_name": "data"}]}

    def phase_raid(self):
        sys.path.insert(0, os.path.join(REPO, "tests", "lib"))
        import raid  # tests/lib/raid.py: mdadm --examine as the judge
        holders = [os.path.join(self.work, f"raid-h{i}.img") for i in (0, 1)]
        for h in holders:
            if os.path.exists(h):
                os.unlink(h)
            with open(h, "wb") as f:
                f.truncate(DISK_SIZE)
        saved = self.disk
        self.disk, self.disk_opts = holders[0], ",sparse"
        extra = [f"{holders[1]},bus=virtio,serial=IRONIC-VM-DISK1,sparse"]
        try:
            self._raid(raid, holders, extra)
        finally:
            self.disk, self.disk_opts = saved, ""

    def _raid(self, raid, holders, extra):
        uuid = self.uuid
        # no root device hint: the RAID root must win (phase q sets one)
        if "root_device" in self.ironic.node(uuid)["properties"]:
            self.ironic.call("PATCH", f"/v1/nodes/{uuid}", [
                {"op": "remove", "path": "/properties/root_device"}])
        self.ironic.call("PUT", f"/v1/nodes/{uuid}/states/raid", self.RAID_CONFIG)
        self.ironic.ensure_manageable(uuid)
        self.ironic.provision(uuid, "clean", clean_steps=[
            {"interface": "raid", "step": "delete_configuration"},
            {"interface": "raid", "step": "create_configuration"}])
        self.ironic.wait_state(uuid, "clean wait", ("clean failed",), 60)
        vm = self.boot("raid-clean", disks=extra)
        self.ironic.wait_state(uuid, "manageable", ("clean failed",), 300, agent=vm)
        log(f"  cleaned {vm.since():.1f} s after the VM started")
        vm.stop()
        node = self.ironic.node(uuid)
        rc = {k: v for k, v in (node.get("raid_config") or {}).items()
              if k != "last_updated"}
        caps = node["properties"].get("capabilities", "")
        if rc != self.RAID_CONFIG or node["properties"].get("local_gb") != 5 \
                or "raid_level:1" not in caps:
            raise checks.PhaseFailed(
                f"Ironic recorded raid_config {node.get('raid_config')}, local_gb "
                f"{node['properties'].get('local_gb')}, capabilities {caps}")
        log(f"  Ironic: raid_config as asked, local_gb 5, capabilities {caps}")
        try:
            for h in holders:
                for n, level, name in ((1, "raid1", "root"), (2, "raid0", "data")):
                    log("  " + raid.check_member(h, n, level, name))
        except raid.Failed as e:
            raise checks.PhaseFailed(str(e))
        # deploy under UEFI: the root array, an ESP mirror, two entries
        self.nvram = os.path.join(self.work, "nvram-raid-OVMF_VARS.fd")
        if os.path.exists(self.nvram):
            os.unlink(self.nvram)
        esp_fs = checks.grub_esp()
        image = checks.gpt_image(32 << 20, esp_fs=esp_fs)
        digest = self.serve("vm-raid.img", image)
        self.make_available()
        vm = self.deploy_vm("vm-raid.img", digest, nvram=self.nvram,
                            disks=extra)
        self.wait_powered_off(vm)
        text = vm.log_text()
        for line in text.splitlines():
            if "now lives on" in line or "Adding loader" in line or "written to device" in line:
                log("  agent: " + line.split("INFO", 1)[-1].strip())
        if "written to device /dev/md" not in text:
            raise checks.PhaseFailed("the image did not go to a software RAID device")
        # a resync held back while the image was written is resumed after
        held = [ln.split("resync of ", 1)[1].split()[0] for ln in text.splitlines()
                if "holding back the resync of /dev/" in ln]
        resumed = text.count("resuming the resync (/sys/block/")
        if len(held) != resumed:
            raise checks.PhaseFailed(f"md resync held back on {held}, resumed {resumed} times")
        log(f"  md resync held back during the write on {held or 'no array (none resyncing)'}"
            f", resumed after: {resumed}")
        try:
            for i, h in enumerate(holders):
                log("  " + raid.check_member(h, 3, "raid1", "esp", "1.0"))
        except raid.Failed as e:
            raise checks.PhaseFailed(str(e))
        self.check_raid_disks(raid, holders, image, esp_fs)
        self.check_raid_entries()
        for i, h in enumerate(holders):
            t = self.boot_holder(h, f"holder{i}")
            log(f"  OVMF with holder {i} alone: GRUB from its ESP in {t:.1f} s, "
                f"the md arrays seen by GRUB")

    def check_raid_disks(self, raid, holders, image, esp_fs):
        """Both mirrors hold the image (its partition entries and its root
        partition's data); both holders' ESPs hold the image's ESP."""
        n = len(image)
        for i, h in enumerate(holders):
            parts = {p[0]: p for p in raid.partitions(h)}
            _, f, _ = raid.examine(h, parts[1][1], parts[1][2])
            offset = int(f["Data Offset"].split()[0])
            with open(h, "rb") as d:
                d.seek((parts[1][1] + offset) * SECTOR)
                member = d.read(n)
                d.seek(parts[3][1] * SECTOR)
                esp = d.read(len(esp_fs))
            root = (18432 * SECTOR, n - 34 * SECTOR)  # gpt_image's root partition
            if member[2 * SECTOR:34 * SECTOR] != image[2 * SECTOR:34 * SECTOR]:
                raise checks.PhaseFailed(f"holder {i}: the mirror's GPT entries "
                                      "differ from the image's")
            if member[root[0]:root[1]] != image[root[0]:root[1]]:
                raise checks.PhaseFailed(f"holder {i}: the mirror's root "
                                      "partition differs from the image's")
            if esp != esp_fs:
                raise checks.PhaseFailed(f"holder {i}: its ESP partition does "
                                      "not hold the image's ESP")
        log(f"  both mirrors hold the image (GPT entries, {root[1] - root[0]} "
            f"bytes of root partition); both holders' ESPs hold the image's "
            f"{len(esp_fs) >> 20} MiB ESP, identical")

    def check_raid_entries(self):
        with open(self.nvram, "rb") as f:
            nv = uefi_variables(f.read())
        raw = nv.get("BootOrder", b"")
        order = list(struct.unpack(f"<{len(raw) // 2}H", raw))
        loader = self.LOADER.lower().encode("utf-16-le")
        found = {}
        for k, d in nv.items():
            if len(k) == 8 and k.startswith("Boot") and loader in d.lower():
                for part in (0, 1):
                    label = f"ironic1 (RAID, part{part})".encode("utf-16-le")
                    if label in d:
                        found[part] = int(k[4:], 16)
        if sorted(found) != [0, 1] or sorted(order[:2]) != sorted(found.values()):
            raise checks.PhaseFailed(f"NVRAM: entries {found}, BootOrder {order}")
        log(f"  NVRAM: Boot{found[0]:04X} 'ironic1 (RAID, part0)' and "
            f"Boot{found[1]:04X} 'ironic1 (RAID, part1)', BootOrder {order}")

    def boot_holder(self, disk, name, timeout=180):
        """OVMF with the machine's NVRAM (a copy) and only `disk`
        (snapshot: nothing written): seconds until GRUB_MARKER and an md
        device in GRUB's `ls`."""
        vars_copy = os.path.join(self.work, f"nvram-{name}.fd")
        with open(self.nvram, "rb") as s, open(vars_copy, "wb") as d:
            d.write(s.read())
        console = os.path.join(self.work, f"boot-{name}.log")
        t0 = time.monotonic()
        p = subprocess.Popen([
            "qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-m", self.mem,
            "-display", "none", "-no-reboot", "-serial", f"file:{console}",
            "-net", "none",
            "-drive", "if=pflash,format=raw,unit=0,readonly=on,"
                      "file=/usr/share/OVMF/OVMF_CODE.fd",
            "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}",
            "-drive", f"file={disk},format=raw,if=none,id=d0,snapshot=on",
            "-device", "virtio-blk-pci,drive=d0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while time.monotonic() - t0 < timeout:
                try:
                    text = open(console, errors="replace").read()
                except OSError:
                    text = ""
                if checks.GRUB_MARKER in text and "ironic-raid-boot: done" in text:
                    if "(md/root" not in text:
                        raise checks.PhaseFailed(f"{name}: GRUB sees no md/root: "
                                              f"{text[-400:]!r}")
                    return time.monotonic() - t0
                if p.poll() is not None:
                    break
                time.sleep(0.5)
            raise checks.PhaseFailed(f"{name}: OVMF did not reach GRUB: "
                                  f"{text[-600:]!r}")
        finally:
            p.kill()
            p.wait()

    def check_qcow2(self, raw):
        """The disk holds `raw` (`qemu-img convert -O raw` of the qcow2)
        as tests/e2e checks a whole-disk deploy, and its config-2 partition
        holds the node's meta_data."""
        first = checks.check_disk(self.disk, raw)
        with open(self.disk, "rb") as f:
            f.seek(first * SECTOR)
            if self.uuid.encode() not in f.read(2 * MIB):
                raise checks.PhaseFailed("the config-2 partition lacks the "
                                      "node's meta_data")
        log(f"  the disk holds the image ({len(raw) >> 20} MiB identical to "
            f"qemu-img's raw between the GPTs), config-2 at LBA {first} with "
            f"the node's meta_data")

    def check_image(self, image):
        """The disk holds the image (checks.check_gpt_image)."""
        data = checks.check_gpt_image(self.disk, image)
        log(f"  the disk holds the image: partition entries and "
            f"{len(data)} bytes of partition data identical (sha256 "
            f"{hashlib.sha256(data).hexdigest()[:16]}), backup GPT at the end")

    def phase_tokens(self):
        tokens = self.ironic.tokens
        logs = [os.path.join(self.work, d, "console.log")
                for d in os.listdir(self.work)
                if os.path.exists(os.path.join(self.work, d, "console.log"))]
        leaks = []
        for p in logs:
            text = open(p, errors="replace").read()
            leaks += [(p, t[:6]) for t in tokens if t in text]
        if leaks:
            raise checks.PhaseFailed(f"agent token in console logs: {leaks}")
        if not tokens:
            if self.blocked:
                raise checks.Pending(self.blocked)
            raise checks.PhaseFailed("no tokens seen in Ironic's database")
        log(f"  {len(tokens)} tokens, none in {len(logs)} console logs")

    def run(self):
        t0 = time.monotonic()
        try:
            self.make_initrd()
            self.start_ironic()
            self.enroll()
            self.phase("i", "inspection -> manageable", self.phase_inspect)
            self.phase("l", "inspection with LLDP from the test's switch and "
                       "extra-hardware: local_link_connection, parsed LLDP, "
                       "extra data", self.phase_lldp)
            self.phase("f", "inspection collectors from a config file in "
                       "the ramdisk", self.phase_config_file)
            self.phase("c", "automated cleaning -> available", self.phase_clean)
            self.phase("d", "deploy -> active, the agent powers the VM off",
                       self.phase_deploy)
            self.phase("q", "deploy of a compressed qcow2 (2x RAM) with a "
                       "configdrive, 2 vCPUs -> active", self.phase_qcow2)
            self.phase("u", "two deploys under UEFI (OVMF): one boot entry "
                       "through efivarfs; clean_uefi_nvram deletes it",
                       self.phase_uefi)
            self.phase("p", "deploy of a partition image (swap, configdrive) "
                       "-> active", self.phase_partition)
            self.phase("x", "a wrong checksum -> deploy failed with the "
                       "agent's error, the disk's head zeroed",
                       self.phase_bad_checksum)
            self.phase("R", "software RAID: manual cleaning builds it, a UEFI "
                       "deploy onto the mirror, each holder boots alone",
                       self.phase_raid)
            self.phase("t", "no agent token in the console logs", self.phase_tokens)
        except checks.PhaseFailed as e:
            log(f"setup failed: {e}")
            self.results.append(("-", "setup", "FAIL", 0.0, str(e)))
        finally:
            for vm in self.vms:
                vm.stop()
            self.stop_ironic()
        print(f"\n=== Ironic 39 + the {self.arch} ramdisk in a {self.mem} VM "
              "(TCG) ===")
        for key, title, outcome, dt, why in self.results:
            print(f"  {key}  {outcome:<7} {dt:6.1f} s  {title}")
            if why:
                print(f"             {why[:300]}")
        hb = getattr(self, "heartbeat_seconds", None)
        if hb is not None:
            print(f"  boot to first heartbeat: {hb:.1f} s")
        ls = getattr(self, "lldp_seconds", None)
        if ls is not None:
            print(f"  VM start to inspected with LLDP + extra-hardware: {ls:.1f} s")
        print(f"  total {time.monotonic() - t0:.1f} s; files in {self.work}")
        if hb is not None:
            with open(os.path.join(self.work, "heartbeat-seconds"), "w") as f:
                f.write(f"{hb:.2f}\n")
        strict = os.environ.get("VM_STRICT") == "1"
        bad = [r for r in self.results
               if r[2] == "FAIL" or (strict and r[2] == "PENDING")]
        if bad:
            return 1
        return 2 if any(r[2] == "PENDING" for r in self.results) else 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ramdisk", required=True, help="ramdisk/build's output dir")
    p.add_argument("--work", required=True)
    p.add_argument("--ironic-sh", default=os.path.join(REPO, "tests", "e2e", "ironic.sh"))
    p.add_argument("--mem", default=os.environ.get("VM_MEM", "128M"))
    p.add_argument("--arch", default="amd64", choices=("amd64", "arm64"))
    p.add_argument("--phases", default=None,
                   help="default: ilfcdqupxt (amd64), icdut (arm64)")
    args = p.parse_args()
    if args.phases is None:
        args.phases = "icdut" if args.arch == "arm64" else "ilfcdqupxt"
    os.makedirs(args.work, exist_ok=True)
    sys.exit(Test(args).run())


if __name__ == "__main__":
    main()
