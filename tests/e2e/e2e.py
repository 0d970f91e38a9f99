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
     with compressed clusters (`qemu-img convert -c`) -> `active`
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
import io
import json
import os
import random
import re
import signal
import sqlite3
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
import zlib

NOT_IMPLEMENTED = "not implemented in this build yet"
NO_NIC = "no network interface with a MAC address found"
POWERED_OFF = "PowerOff requested with a fixture root"
NO_NIC_PENDING = ("the agent found no NIC in its fixture root (inventory "
                  "collection is not on main yet)")
SECTOR = 512
MIB = 1 << 20
GPT_SECTORS = 33  # IPA's destroy_disk_metadata zeroes 33 sectors each end
DISK_SIZE = 8 << 30  # above IPA's 4 GiB minimum for a root device
MIDDLE = 1 << 30  # a marker here must survive erase_devices_metadata


def log(msg):
    print(f"[e2e {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class PhaseFailed(Exception):
    pass


class Pending(Exception):
    pass


# --------------------------------------------------------------------------
# Ironic API


class Ironic:
    def __init__(self, url, db=None):
        self.url = url.rstrip("/")
        self.db = db
        # every agent token Ironic handed out, read from its database while
        # we poll (its API and logs mask them)
        self.tokens = set()

    def harvest_tokens(self):
        if not self.db or not os.path.exists(self.db):
            return
        try:
            con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True,
                                  timeout=1)
            try:
                for (dii,) in con.execute(
                        "SELECT driver_internal_info FROM nodes"):
                    t = json.loads(dii or "{}").get("agent_secret_token")
                    if t and len(t) >= 32:
                        self.tokens.add(t)
            finally:
                con.close()
        except sqlite3.Error:
            pass  # locked by Ironic right now: next poll

    def call(self, method, path, body=None, ok=(200, 201, 202, 204)):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("X-OpenStack-Ironic-API-Version", "latest")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                status, text = r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read().decode()
        if status not in ok:
            raise PhaseFailed(f"{method} {path} -> HTTP {status}: {text[:500]}")
        return json.loads(text) if text.strip() else None

    def node(self, uuid):
        return self.call("GET", f"/v1/nodes/{uuid}")

    def provision(self, uuid, target, **extra):
        self.call("PUT", f"/v1/nodes/{uuid}/states/provision",
                  dict(target=target, **extra))

    def wait_state(self, uuid, good, bad=(), timeout=180, agent=None):
        """Poll until provision_state is `good`; fail on a `bad` state, on
        timeout, or when the agent process died."""
        t0 = time.monotonic()
        last = None
        while True:
            self.harvest_tokens()
            n = self.node(uuid)
            s = n["provision_state"]
            if s != last:
                log(f"  node: {s}")
                last = s
            if s == good:
                return n
            if s in bad:
                err = n.get("last_error") or ""
                if NOT_IMPLEMENTED in err:
                    raise Pending(f"node {s}: {err}")
                raise PhaseFailed(f"node {s}: {err}")
            if agent is not None and NO_NIC in agent.log_text():
                raise Pending(NO_NIC_PENDING)
            if agent is not None and not agent.alive() and \
                    not agent.powered_off():
                raise PhaseFailed(
                    f"the agent exited ({agent.proc.returncode}) while the "
                    f"node was {s}; see {agent.logfile}")
            if time.monotonic() - t0 > timeout:
                raise PhaseFailed(f"timeout after {timeout} s waiting for "
                                  f"{good} (state {s}, last_error "
                                  f"{n.get('last_error')!r})")
            time.sleep(0.3)

    def ensure_manageable(self, uuid):
        """Bring the node back to `manageable` whatever an earlier phase
        left it in, so one failed phase does not fail all the others."""
        t0 = time.monotonic()
        while True:
            n = self.node(uuid)
            s = n["provision_state"]
            if n["maintenance"]:
                self.call("DELETE", f"/v1/nodes/{uuid}/maintenance")
            if s == "manageable":
                return
            if time.monotonic() - t0 > 120:
                raise PhaseFailed(f"cannot bring the node from {s} back to "
                                  "manageable")
            if n["reservation"] or s.endswith("ing"):
                time.sleep(0.3)  # an operation is under way
            elif s in ("inspect wait", "clean wait", "wait call-back"):
                self.provision(uuid, "abort")
                time.sleep(0.3)
            elif s in ("active", "deploy failed"):
                self.provision(uuid, "deleted")  # cleans: needs an agent
                time.sleep(0.3)
            else:  # enroll, available, clean failed, inspect failed
                self.provision(uuid, "manage")
                self.wait_state(uuid, "manageable", timeout=60)
                return


# --------------------------------------------------------------------------
# Fixture root: a real-sysfs-shaped tree for the agent's --root


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


def fill_metadata(disk):
    """Put GPT-like metadata (signature + pattern) in both areas IPA's
    erase_devices_metadata zeroes, and a marker between them."""
    area = GPT_SECTORS * SECTOR
    pat = bytes([0xA5]) * area
    head = bytearray(pat)
    head[SECTOR:SECTOR + 8] = b"EFI PART"
    tail = bytearray(pat)
    tail[-SECTOR:-SECTOR + 8] = b"EFI PART"
    with open(disk, "r+b") as f:
        f.seek(0)
        f.write(head)
        f.seek(MIDDLE)
        f.write(b"E2E-MIDDLE-MARKER")
        f.seek(DISK_SIZE - area)
        f.write(tail)


def check_metadata_zeroed(disk):
    area = GPT_SECTORS * SECTOR
    with open(disk, "rb") as f:
        head = f.read(area)
        f.seek(DISK_SIZE - area)
        tail = f.read(area)
        f.seek(MIDDLE)
        middle = f.read(17)
    if head.count(0) != area:
        raise PhaseFailed(f"first {GPT_SECTORS} sectors of {disk} not zeroed")
    if tail.count(0) != area:
        raise PhaseFailed(f"last {GPT_SECTORS} sectors of {disk} not zeroed")
    if middle != b"E2E-MIDDLE-MARKER":
        raise PhaseFailed("the data between the metadata areas was touched "
                          "(erase_devices_metadata must not erase the disk)")


ESP_GUID = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
LINUX_GUID = "0fc63daf-8483-4772-8e79-3d69d8477de4"
ESP = (2048, 4095)  # 1 MiB EFI system partition
LOADER = b"MZ e2e stand-in for EFI/BOOT/BOOTX64.EFI " * 30


def loader_bytes(name):
    """The stand-in loader EFI/BOOT/<name> (same length for every name)."""
    return (b"MZ e2e stand-in for EFI/BOOT/%s " % name.encode()).ljust(41) * 30


def fat12_esp(sectors, hidden, loader="BOOTX64.EFI"):
    """A FAT12 filesystem holding EFI/BOOT/<loader> (BOOTX64.EFI, or
    BOOTAA64.EFI for an arm64 image), written by hand (no mkfs.vfat/mtools
    needed): boot sector, two FATs, a 512-entry root directory, then the
    EFI and BOOT directories and the loader."""
    LOADER = loader_bytes(loader)
    base, ext = loader.split(".")
    name83 = base.ljust(8).encode() + ext.encode()
    fatsz, root_sectors = 6, 32
    fs = bytearray(sectors * SECTOR)
    fs[0:62] = (b"\xeb\x3c\x90" + b"MSWIN4.1" + struct.pack(
        "<HBHBHHBHHHII", SECTOR, 1, 1, 2, 512, sectors, 0xF8, fatsz, 32, 2,
        hidden, 0) + b"\x80\x00\x29" + struct.pack("<I", 0xE2E0E2E0)
        + b"NO NAME    " + b"FAT12   ")
    fs[510:512] = b"\x55\xaa"
    fat = bytearray(fatsz * SECTOR)

    def set12(n, v):
        o = n + n // 2
        if n % 2 == 0:
            fat[o] = v & 0xFF
            fat[o + 1] = (fat[o + 1] & 0xF0) | (v >> 8)
        else:
            fat[o] = (fat[o] & 0x0F) | ((v & 0x0F) << 4)
            fat[o + 1] = v >> 4

    def dirent(name, attr, cluster, size=0):
        return struct.pack("<11sBBBHHHHHHHI", name, attr, 0, 0, 0, 0x5A21, 0,
                           0, 0, 0x5A21, cluster, size)

    nclusters = -(-len(LOADER) // SECTOR)
    set12(0, 0xFF8)
    set12(1, 0xFFF)
    set12(2, 0xFFF)  # EFI
    set12(3, 0xFFF)  # EFI/BOOT
    for c in range(4, 4 + nclusters):
        set12(c, c + 1 if c < 3 + nclusters else 0xFFF)
    for k in range(2):
        fs[(1 + k * fatsz) * SECTOR:(1 + (k + 1) * fatsz) * SECTOR] = fat
    root = (1 + 2 * fatsz) * SECTOR
    data = root + root_sectors * SECTOR

    def cluster(c):
        return data + (c - 2) * SECTOR

    fs[root:root + 32] = dirent(b"EFI        ", 0x10, 2)
    fs[cluster(2):cluster(2) + 96] = (dirent(b".          ", 0x10, 2)
                                      + dirent(b"..         ", 0x10, 0)
                                      + dirent(b"BOOT       ", 0x10, 3))
    fs[cluster(3):cluster(3) + 96] = (dirent(b".          ", 0x10, 3)
                                      + dirent(b"..         ", 0x10, 2)
                                      + dirent(name83, 0x20, 4,
                                               len(LOADER)))
    fs[cluster(4):cluster(4) + len(LOADER)] = LOADER
    return bytes(fs)


def sector_pattern(sectors, tag, first=0):
    """Data no two sectors of which are alike: each sector starts with
    sha256(tag % lba) and is zero after it (so images compress)."""
    out = bytearray(sectors * SECTOR)
    for i in range(sectors):
        out[i * SECTOR:i * SECTOR + 32] = hashlib.sha256(
            tag % (first + i)).digest()
    return out


def partition_image(size=16 << 20):
    """A partition image: the contents of a root filesystem, here a
    pattern (the agent writes the image into the root partition as it is;
    nothing reads the filesystem)."""
    return bytes(sector_pattern(size // SECTOR, b"e2e-root-%d"))


def gpt_image(size=8 << 20, loader="BOOTX64.EFI"):
    """A UEFI whole-disk image with a real GPT (protective MBR, primary and
    backup headers and entry arrays with their CRCs): an EFI system
    partition holding EFI/BOOT/BOOTX64.EFI (`loader`: BOOTAA64.EFI for
    arm64), and a Linux partition filled with a pattern. The deploy then
    exercises the GPT relocation, the configdrive partition and the UEFI
    boot entry as a real image does."""
    n = size // SECTOR
    last = n - 1
    img = bytearray(size)
    root = (ESP[1] + 1, n - 35)
    img[root[0] * SECTOR:(root[1] + 1) * SECTOR] = sector_pattern(
        root[1] + 1 - root[0], b"e2e-%d", root[0])
    img[ESP[0] * SECTOR:(ESP[1] + 1) * SECTOR] = fat12_esp(
        ESP[1] - ESP[0] + 1, ESP[0], loader)
    # protective MBR
    img[446:462] = struct.pack("<B3sB3sII", 0, b"\x00\x02\x00", 0xEE,
                               b"\xff\xff\xff", 1, min(n - 1, 0xFFFFFFFF))
    img[510:512] = b"\x55\xaa"

    def entry(type_guid, first, last_lba, name):
        return struct.pack("<16s16sQQQ72s", uuid.UUID(type_guid).bytes_le,
                           uuid.uuid4().bytes_le, first, last_lba, 0,
                           name.encode("utf-16-le"))

    entries = (entry(ESP_GUID, *ESP, "EFI system partition")
               + entry(LINUX_GUID, *root, "e2e-root") + bytes(128 * 126))
    ecrc = zlib.crc32(entries)
    disk_guid = uuid.uuid4().bytes_le

    def header(cur, alt, entries_lba):
        h = struct.pack("<8sIIIIQQQQ16sQIII", b"EFI PART", 0x10000, 92, 0, 0,
                        cur, alt, 34, last - 33, disk_guid, entries_lba, 128,
                        128, ecrc)
        crc = zlib.crc32(h)
        return h[:16] + struct.pack("<I", crc) + h[20:]

    img[SECTOR:SECTOR + 92] = header(1, last, 2)
    img[2 * SECTOR:2 * SECTOR + len(entries)] = entries
    img[(last - 32) * SECTOR:(last - 32) * SECTOR + len(entries)] = entries
    img[last * SECTOR:last * SECTOR + 92] = header(last, 1, last - 32)
    return bytes(img)


def gpt_partitions(f):
    """(type GUID, first_lba, last_lba) of every used entry of the GPT on
    `f`, in entry order."""
    f.seek(SECTOR)
    h = f.read(92)
    if h[:8] != b"EFI PART":
        raise PhaseFailed("no primary GPT on the disk after the deploy")
    entries_lba, count, esize = struct.unpack("<QII", h[72:88])
    f.seek(entries_lba * SECTOR)
    raw = f.read(count * esize)
    out = []
    for i in range(count):
        e = raw[i * esize:(i + 1) * esize]
        if e[:16] != bytes(16):
            out.append((str(uuid.UUID(bytes_le=e[:16])),
                        *struct.unpack("<QQ", e[32:48])))
    return out


def find_configdrive(f, parts):
    """The first LBA of the partition among `parts` holding a config-2
    ISO 9660 filesystem."""
    for _, first, _ in parts:
        f.seek(first * SECTOR + 32768)
        pvd = f.read(72)
        if pvd[1:6] == b"CD001" and pvd[40:48] == b"config-2":
            return first
    raise PhaseFailed(f"no config-2 partition among {parts}")


def check_deployed(root, image, configdrive=True):
    """A whole-disk image deployed on the fixture root's disk (see
    check_disk), and a UEFI boot entry names the image's loader."""
    check_disk(os.path.join(root, "dev/vda"), image, configdrive)
    check_boot_entry(root)


def check_disk(disk, image, configdrive=True):
    """A whole-disk image deployed on `disk` (a file of DISK_SIZE bytes):
    it holds `image` (its raw bytes, what `qemu-img convert -O raw` gives)
    between the image's primary and backup GPT, the image's partitions are
    the disk's first ones, the backup GPT moved to the disk's end, and with
    `configdrive` a config-2 ISO 9660 partition was added (its first LBA is
    returned)."""
    with open(disk, "rb") as f:
        start, end = 34 * SECTOR, len(image) - 34 * SECTOR
        f.seek(start)
        if f.read(end - start) != image[start:end]:
            raise PhaseFailed("the disk's bytes differ from the image's")
        f.seek(DISK_SIZE - SECTOR)
        if f.read(8) != b"EFI PART":
            raise PhaseFailed("the backup GPT header is not at the disk's end")
        parts = gpt_partitions(f)
        want = gpt_partitions(io.BytesIO(image))
        if parts[:len(want)] != want:
            raise PhaseFailed(f"the disk's partitions {parts} do not start "
                              f"with the image's {want}")
        if configdrive:
            return find_configdrive(f, parts)
    return None


def check_boot_entry(root):
    """A UEFI boot entry (efivarfs Boot####) names the image's loader."""
    efivars = os.path.join(root, "sys/firmware/efi/efivars")
    loader = "\\EFI\\BOOT\\BOOTX64.EFI".encode("utf-16-le").lower()
    for name in sorted(os.listdir(efivars)):
        if re.match(r"Boot[0-9A-F]{4}-8be4df61-", name):
            with open(os.path.join(efivars, name), "rb") as v:
                if loader in v.read().lower():
                    return
    raise PhaseFailed(f"no UEFI boot entry for the loader in {efivars}: "
                      f"{os.listdir(efivars)}")


def forget_boot_entries(root):
    """Drop the Boot#### entries an earlier deploy left in the fixture's
    efivarfs, so check_boot_entry sees only this deploy's."""
    efivars = os.path.join(root, "sys/firmware/efi/efivars")
    for name in os.listdir(efivars):
        if name.startswith("Boot"):
            os.unlink(os.path.join(efivars, name))


SWAP_GUID = "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f"


def check_partition_deployed(disk, image, swap_mb, root_mb):
    """A partition image deployed on `disk` with a configdrive: a new
    GPT with IPA's layout (partition_utils.work_on_disk: ESP of 550 MiB,
    swap, configdrive of the drive's size in whole MiB as get_configdrive
    gives it, root last, packed from 1 MiB on), the ESP formatted FAT32
    `efi-part`, the swap signature, the config-2 ISO, and the root
    partition starting with `image`'s raw bytes."""
    with open(disk, "rb") as f:
        # the drive Ironic built: its size from the ISO's primary volume
        # descriptor (volume space size, in 2 KiB blocks), where the
        # configdrive partition must start
        cd_at = (1 + 550 + swap_mb) * MIB
        f.seek(cd_at + 16 * 2048)
        pvd = f.read(2048)
        if pvd[1:6] != b"CD001":
            raise PhaseFailed(f"no ISO 9660 drive at {cd_at}")
        cd_mb = -(-struct.unpack("<I", pvd[80:84])[0] * 2048 // MIB)
        want, mib = [], 1
        for guid, size in ((ESP_GUID, 550), (SWAP_GUID, swap_mb),
                           (LINUX_GUID, cd_mb), (LINUX_GUID, root_mb)):
            want.append((guid, mib * 2048, (mib + size) * 2048 - 1))
            mib += size
        parts = gpt_partitions(f)
        if parts != want:
            raise PhaseFailed(f"partitions {parts}, expected {want}")
        esp, swap, cd, rootp = (p[1] * SECTOR for p in parts)
        f.seek(esp)
        bs = f.read(SECTOR)
        if bs[82:90] != b"FAT32   " or bs[71:79].lower() != b"efi-part":
            raise PhaseFailed(f"no FAT32 efi-part on the ESP: {bs[71:90]!r}")
        f.seek(swap + os.sysconf("SC_PAGE_SIZE") - 10)
        if f.read(10) != b"SWAPSPACE2":
            raise PhaseFailed("no swap signature on the swap partition")
        find_configdrive(f, parts[2:3])
        f.seek(rootp)
        if f.read(len(image)) != image:
            raise PhaseFailed("the root partition's bytes differ from the "
                              "image's")


def qemu_img(*args):
    r = subprocess.run(["qemu-img", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise PhaseFailed(f"qemu-img {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def compress_qcow2(raw, img):
    """`qemu-img convert -c` of the raw image file `raw` into `img`,
    checked to hold compressed clusters."""
    qemu_img("convert", "-c", "-O", "qcow2", raw, img)
    # `qemu-img map` gives no host offset for compressed clusters
    m = json.loads(qemu_img("map", "--output=json", img))
    if not any(e["data"] and "offset" not in e for e in m):
        raise PhaseFailed(f"qemu-img wrote no compressed cluster: {m}")


def raw_of(path):
    """`qemu-img convert -O raw` of an image file: the bytes a deploy must
    leave on its target."""
    out = path + ".raw"
    qemu_img("convert", "-O", "raw", path, out)
    try:
        with open(out, "rb") as f:
            return f.read()
    finally:
        os.unlink(out)


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
    ("q", "deploy a qcow2 image with compressed clusters", "phase_qcow2"),
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
               good="active", bad=("deploy failed",), **provision):
        """Deploy the served image `name` with `agent` up: instance_info is
        set whole (nothing of an earlier phase's may leak in), with the
        image's sha256 unless `sha256` is given. Reaching `active` also
        needs the agent powered off by Ironic (standby.power_off)."""
        with open(os.path.join(self.state, "httpboot", name), "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        ii = {"image_source": f"{self.http_url}/{name}",
              "image_os_hash_algo": "sha256",
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
        self.deploy(a, os.path.basename(img))
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
