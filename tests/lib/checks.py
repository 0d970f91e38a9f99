"""Shared by tests/e2e/e2e.py and tests/vm/ironic_vm.py: the Ironic API
client, the outcome conventions (PhaseFailed, Pending), the disk images
the suites deploy and the checks of what a deploy or a cleaning left on
the target disk (a sparse file on the host, whether the agent ran on the
host or in a VM).

The agent never runs qemu-img; these checks do (`qemu-img convert -O raw`
is the oracle of what a deploy of a qcow2 image must leave on the disk).
Imported by path: each suite puts tests/lib on sys.path.
"""

import hashlib
import io
import json
import os
import re
import sqlite3
import struct
import subprocess
import time
import urllib.error
import urllib.request
import uuid
import zlib

NOT_IMPLEMENTED = "not implemented in this build yet"
NO_NIC = "no network interface with a MAC address found"
NO_NIC_PENDING = ("the agent found no NIC in its fixture root (inventory "
                  "collection is not on main yet)")
SECTOR = 512
MIB = 1 << 20
GPT_SECTORS = 33  # IPA's destroy_disk_metadata zeroes 33 sectors each end
DISK_SIZE = 8 << 30  # above IPA's 4 GiB minimum for a root device
MIDDLE = 1 << 30  # a marker here must survive erase_devices_metadata


# tests/e2e's log line; the Ironic client logs the node's states through
# it in both suites (ironic_vm.py's own lines say [vm-ironic])
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
# Cleaning: the metadata areas


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


# --------------------------------------------------------------------------
# Images, and what a deploy leaves on the disk


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


def gpt_image(size=8 << 20, loader="BOOTX64.EFI", esp_fs=None):
    """A UEFI whole-disk image with a real GPT (protective MBR, primary and
    backup headers and entry arrays with their CRCs): an EFI system
    partition holding EFI/BOOT/BOOTX64.EFI (`loader`: BOOTAA64.EFI for
    arm64), and a Linux partition filled with a pattern. The deploy then
    exercises the GPT relocation, the configdrive partition and the UEFI
    boot entry as a real image does. `esp_fs`: the ESP's filesystem (from
    LBA 2048), instead of the 1 MiB FAT12 with a stand-in loader."""
    n = size // SECTOR
    last = n - 1
    img = bytearray(size)
    esp = ESP if esp_fs is None else (2048, 2047 + len(esp_fs) // SECTOR)
    root = (esp[1] + 1, n - 35)
    img[root[0] * SECTOR:(root[1] + 1) * SECTOR] = sector_pattern(
        root[1] + 1 - root[0], b"e2e-%d", root[0])
    img[esp[0] * SECTOR:(esp[1] + 1) * SECTOR] = (
        fat12_esp(esp[1] - esp[0] + 1, esp[0], loader)
        if esp_fs is None else esp_fs)
    # protective MBR
    img[446:462] = struct.pack("<B3sB3sII", 0, b"\x00\x02\x00", 0xEE,
                               b"\xff\xff\xff", 1, min(n - 1, 0xFFFFFFFF))
    img[510:512] = b"\x55\xaa"

    def entry(type_guid, first, last_lba, name):
        return struct.pack("<16s16sQQQ72s", uuid.UUID(type_guid).bytes_le,
                           uuid.uuid4().bytes_le, first, last_lba, 0,
                           name.encode("utf-16-le"))

    entries = (entry(ESP_GUID, *esp, "EFI system partition")
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


GRUB_MARKER = "ironic-raid-boot: GRUB runs"


def grub_esp(size=8 << 20):
    """A FAT ESP holding EFI/BOOT/BOOTX64.EFI: a standalone GRUB (Debian's
    grub-efi-amd64-bin) whose built-in grub.cfg prints GRUB_MARKER on the
    serial console, lists the disks and md arrays it sees, and powers the
    machine off: what a RAID boot test waits for."""
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        cfg = os.path.join(d, "grub.cfg")
        with open(cfg, "w") as f:
            f.write("serial --unit=0 --speed=115200\n"
                    "terminal_output serial console\n"
                    f"echo \"{GRUB_MARKER}\"\n"
                    "insmod part_gpt\ninsmod mdraid1x\nls\n"
                    "echo \"ironic-raid-boot: done\"\nhalt\n")
        loader = os.path.join(d, "BOOTX64.EFI")
        mods = "part_gpt fat serial terminal echo ls halt mdraid1x"
        subprocess.run(["grub-mkstandalone", "-O", "x86_64-efi",
                        f"--modules={mods}",
                        f"--install-modules={mods} normal configfile",
                        "--locales=", "--themes=", "--fonts=", "-o", loader,
                        f"boot/grub/grub.cfg={cfg}"], check=True)
        fs = os.path.join(d, "esp.img")
        subprocess.run(["mkfs.vfat", "-C", "-n", "ESP", fs, str(size // 1024)],
                       check=True, capture_output=True)
        env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
        subprocess.run(["mmd", "-i", fs, "::EFI", "::EFI/BOOT"], check=True, env=env)
        subprocess.run(["mcopy", "-i", fs, loader, "::EFI/BOOT/BOOTX64.EFI"],
                       check=True, env=env)
        with open(fs, "rb") as f:
            return f.read()


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


def check_gpt_image(disk, image):
    """`disk` (a file of DISK_SIZE bytes) holds the GPT whole-disk `image`,
    written without a configdrive: byte-identical partition entries and
    partition data (everything the image carries). Writing a smaller
    whole-disk image, IPA moves the GPT's backup to the disk's end and
    grows the protective MBR's partition to the disk: so those, and the
    primary header's backup/last-usable fields and CRC, may differ.
    Returns the partition data."""
    n = len(image)
    with open(disk, "rb") as f:
        head = f.read(n)
        f.seek(DISK_SIZE - SECTOR)
        backup = f.read(SECTOR)
    same = [(0, 446, "boot code"), (510, 512, "MBR signature"),
            (SECTOR, SECTOR + 16, "GPT signature, revision, size"),
            (SECTOR + 56, SECTOR + 72, "GPT disk GUID"),
            (2 * SECTOR, 34 * SECTOR, "partition entries"),
            (2048 * SECTOR, n - 34 * SECTOR, "partition data")]
    for a, b, what in same:
        if head[a:b] != image[a:b]:
            raise PhaseFailed(f"the disk's {what} differ from the image")
    if head[446 + 4] != 0xEE:
        raise PhaseFailed("the protective MBR is gone")
    if backup[:8] != b"EFI PART":
        raise PhaseFailed("no backup GPT header at the disk's end")
    return head[2048 * SECTOR:n - 34 * SECTOR]


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


