#!/usr/bin/env python3
"""Software RAID checks from the host, on the disk files a VM used after it
stopped (tests/vm/run.sh phase m, tests/vm/ironic_vm.py phase R), with
Debian's mdadm as the judge:

  raid.py examine DISK NUMBER:LEVEL:NAME[:VERSION] ...
      every listed partition of DISK carries an md superblock that
      `mdadm --examine` accepts ("Checksum : ... correct") with that RAID
      level, array name and metadata version (default 1.2)
  raid.py clean DISK...
      no md superblock on any disk or partition, and no partition table
  raid.py layer OUT.cpio
      an initramfs layer with the host's mdadm (and the libraries it
      loads) and a script step `host_mdadm` (kind deploy) that makes a
      RAID-1 "hostmade" with it on the VM's disks with serials M-C and M-D,
      then stops it: an array this agent did not make

Partitions are reached through read-only loop devices over the file with
an offset (no partition scanning needed). The host needs mdadm and a
kernel with loop devices; nothing here writes the disk files.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

SECTOR = 512


class Failed(Exception):
    pass


def partitions(disk):
    """[(number, first_lba, sectors)] of the disk file's partition table
    (sfdisk reads GPT and msdos); [] without one."""
    r = subprocess.run(["sfdisk", "-J", disk], capture_output=True, text=True)
    if r.returncode != 0:
        return []
    out = []
    for p in json.loads(r.stdout)["partitiontable"].get("partitions", []):
        num = int("".join(c for c in p["node"][len(disk):] if c.isdigit()))
        out.append((num, p["start"], p["size"]))
    return out


def examine(disk, start=0, sectors=None):
    """(returncode, {field: value}, text) of `mdadm --examine` on a window of
    the disk file."""
    size = sectors * SECTOR if sectors else os.path.getsize(disk) - start * SECTOR
    loop = subprocess.run(["losetup", "-f", "--show", "-r", "-o", str(start * SECTOR),
                           "--sizelimit", str(size), disk],
                          capture_output=True, text=True, check=True).stdout.strip()
    try:
        r = subprocess.run(["mdadm", "--examine", loop], capture_output=True, text=True)
    finally:
        subprocess.run(["losetup", "-d", loop], check=False)
    fields = {}
    for line in r.stdout.splitlines():
        if " : " in line:
            k, v = line.split(" : ", 1)
            fields[k.strip()] = v.strip()
    return r.returncode, fields, r.stdout + r.stderr


def check_member(disk, number, level, name, version="1.2"):
    parts = {n: (s, c) for n, s, c in partitions(disk)}
    if number not in parts:
        raise Failed(f"{disk}: no partition {number} (table: {sorted(parts)})")
    rc, f, text = examine(disk, *parts[number])
    if rc != 0:
        raise Failed(f"{disk} partition {number}: mdadm --examine failed: {text.strip()}")
    bad = []
    if not f.get("Checksum", "").endswith("correct"):
        bad.append(f"checksum {f.get('Checksum')}")
    if f.get("Raid Level") != level:
        bad.append(f"level {f.get('Raid Level')} (expected {level})")
    got = f.get("Name", "").split(" ")[0]
    if got.split(":")[-1] != name:
        bad.append(f"name {got} (expected {name})")
    if f.get("Version") != version:
        bad.append(f"version {f.get('Version')} (expected {version})")
    if bad:
        raise Failed(f"{disk} partition {number}: " + ", ".join(bad))
    return (f"{os.path.basename(disk)}p{number}: {f['Version']} {f['Raid Level']} "
            f"{got} role {f.get('Device Role')} checksum correct")


def check_clean(disk):
    parts = partitions(disk)
    if parts:
        raise Failed(f"{disk} still has partitions {parts}")
    rc, _, text = examine(disk)
    if rc == 0 or "No md superblock detected" not in text:
        raise Failed(f"{disk} still carries an md superblock: {text.strip()[:300]}")
    return f"{os.path.basename(disk)}: no partition table, no md superblock"


STEP = """#!/bin/sh
# a script step (src/hardware/script.rs): Debian's mdadm makes an array
# on the disks with serials M-C and M-D, then stops it
D() { for b in /sys/block/vd*; do [ "$(cat "$b/serial")" = "$1" ] && echo "/dev/${b##*/}"; done; }
mkdir -p /run/mdadm /etc/mdadm
export PATH=/usr/local/sbin:$PATH
mdadm --create /dev/md/hostmade --run --metadata=1.2 --level=1 --raid-devices=2 \\
  --name=hostmade --homehost=mdadm-host "$(D M-C)" "$(D M-D)" >&2 || exit 1
mdadm --detail /dev/md/hostmade >&2
mdadm --stop /dev/md/hostmade >&2 || exit 1
echo '"created and stopped by mdadm"'
"""


def layer(out):
    """The initramfs layer (uncompressed newc cpio) of `raid.py layer`."""
    mdadm = shutil.which("mdadm") or "/sbin/mdadm"
    libs = []
    for line in subprocess.run(["ldd", mdadm], capture_output=True, text=True,
                               check=True).stdout.splitlines():
        p = [w for w in line.split() if w.startswith("/")]
        if p:
            libs.append(p[0])
    with tempfile.TemporaryDirectory() as d:
        def put(src, dst, mode=0o755):
            t = os.path.join(d, dst.lstrip("/"))
            os.makedirs(os.path.dirname(t), exist_ok=True)
            shutil.copyfile(src, t)
            os.chmod(t, mode)
        put(mdadm, "/usr/local/sbin/mdadm")
        for lib in libs:
            put(os.path.realpath(lib), lib)
        steps = os.path.join(d, "etc/ironic-agent/steps.d")
        os.makedirs(steps)
        with open(os.path.join(steps, "host_mdadm"), "w") as f:
            f.write(STEP)
        os.chmod(os.path.join(steps, "host_mdadm"), 0o755)
        with open(os.path.join(steps, "host_mdadm.json"), "w") as f:
            json.dump({"step": "host_mdadm", "interface": "deploy", "kind": "deploy",
                       "timeout": 120}, f)
        cpio = subprocess.run("find . | LC_ALL=C sort | cpio -o -H newc --owner=0:0 --quiet",
                              shell=True, cwd=d, capture_output=True, check=True).stdout
    with open(out, "wb") as f:
        f.write(cpio)
    return f"{out}: mdadm and {len(libs)} libraries, step host_mdadm ({len(cpio)} bytes)"


def main(argv):
    try:
        if argv[0] == "examine":
            disk = argv[1]
            for spec in argv[2:]:
                n, level, name, *v = spec.split(":")
                print(check_member(disk, int(n), level, name, *(v or ["1.2"])))
        elif argv[0] == "clean":
            for disk in argv[1:]:
                print(check_clean(disk))
        elif argv[0] == "layer":
            print(layer(argv[1]))
        else:
            print(__doc__)
            return 2
    except Failed as e:
        print(f"FAIL: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
