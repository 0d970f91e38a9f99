#!/usr/bin/env python3
"""Peak RSS of the agent per command, each with the largest legal input
(issue 21, deliverable 3).

    benches/rss-per-command.py                 # every row; needs root
    ONLY=configdrive,request benches/rss-per-command.py   # only these groups
    BIN=/path/to/ironic-agent benches/rss-per-command.py   # another build
    IMAGE_MIB=512 benches/rss-per-command.py   # smaller raw/qcow2 images

The real static binary (the one ramdisk/build takes) runs standalone on
127.0.0.1 (plain HTTP: the front treats HTTP and HTTPS alike), one process
per row, against a fixture root whose only disk, /dev/vda, is a loop
device over a sparse file this script creates and removes (5 GiB, so that
it is an install device; partitions scanned, so that inject_files can
mount them). Never this machine's disks. Images and configdrives are
served by an HTTP server in this script on 127.0.0.1, port 0.

Each command is sent as Ironic sends it (POST with wait=true), then the
command list is read as Ironic polls it (GET /v1/commands); the row's
figure is the process's VmHWM over both, from /proc/PID/status. Rows that
need an image on the disk first (install_bootloader, inject_files) write
it, then reset the high-water mark (`echo 5 > /proc/PID/clear_refs`) and
measure the command alone.

The largest legal inputs: the request cap (--max-request-body, 64 MiB)
bounds an inline configdrive's base64 text (about 64 MiB when sent once,
as standby.prepare_image takes it; 2 x 32 MiB in Ironic 39's write_image
step, which sends it both as `configdrive` and inside `image_info`); its
content is random (incompressible: the most text per byte of ISO; also at
20 and 60 MiB of text, the sizes the issue measured) or, to
stress the drive's size instead, 64 MiB of ISO that compresses to almost
nothing. A configdrive URL may serve up to 100 MiB: the base64 text of a
64 MiB random ISO (85 MiB). collect_system_logs reads every file it
bundles at its 2 MiB cap, filled with random text. inject_files gets two
files of 32 MiB of base64 each.

Prints a table (peak MiB, input, goal) and writes it to $WORK/table.md.
"""
import base64, gzip, hashlib, http.server, json, os, random, re, shutil, socket
import subprocess, sys, tempfile, threading, time, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MIB = 1 << 20
CAP = 64 * MIB  # --max-request-body's default
IMAGE_MIB = int(os.environ.get("IMAGE_MIB", "2048"))
ONLY = os.environ.get("ONLY", "")
TOKEN = "bench"


def log(*a):
    print("[rss]", *a, file=sys.stderr, flush=True)


def run(*cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def need_root():
    if os.geteuid() != 0:
        sys.exit("needs root (loop devices, mounts)")


def build():
    b = os.environ.get("BIN")
    if b:
        return b
    log("building the static release binary")
    run("bash", "-c", f'. "{ROOT}/scripts/lib.sh" && ensure_musl')
    run("cargo", "build", "-q", "--release", "--target", "x86_64-unknown-linux-musl", cwd=ROOT)
    tgt = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    return os.path.join(tgt, "x86_64-unknown-linux-musl/release/ironic-agent")


# --- inputs ------------------------------------------------------------------


def b64(data):
    return base64.b64encode(data).decode()


def gz(data):
    return gzip.compress(data, 6)


def iso(work, name, files):
    """genisoimage -J -r of a nova-like tree plus `files` {path: bytes}."""
    d = os.path.join(work, name + ".tree")
    shutil.rmtree(d, ignore_errors=True)
    base = {
        "openstack/latest/meta_data.json": json.dumps({"uuid": "bench", "name": "n"}).encode(),
        "openstack/latest/user_data": b"#!/bin/sh\necho hi\n",
        "openstack/latest/network_data.json": b"{}",
        "ec2/latest/meta-data.json": b"{}",
    }
    base.update(files)
    for p, data in base.items():
        f = os.path.join(d, p)
        os.makedirs(os.path.dirname(f), exist_ok=True)
        with open(f, "wb") as fh:
            fh.write(data)
    out = os.path.join(work, name + ".iso")
    run("genisoimage", "-quiet", "-o", out, "-ldots", "-allow-lowercase", "-allow-multidot",
        "-l", "-J", "-r", "-V", "config-2", d)
    shutil.rmtree(d)
    with open(out, "rb") as fh:
        return fh.read()


def random_drive(work, name, max_text):
    """The largest drive of random content whose base64 text of its gzip
    is at most `max_text` bytes."""
    size = max_text * 3 // 4 - 512 * 1024
    while True:
        rnd = random.Random(size)
        data = iso(work, name, {"openstack/content/0000": rnd.randbytes(size)})
        text = b64(gz(data))
        if len(text) <= max_text:
            return data, text
        size -= 256 * 1024


def small_text_big_drive(work):
    """A 64 MiB ISO (IPA's limit for a whole-disk image) that compresses
    to a few hundred KiB: the drive's size, not its text, is large."""
    size = 63 * MIB
    data = iso(work, "zeros", {"openstack/content/0000": bytes(size)})
    while len(data) > 64 * MIB:
        size -= MIB
        data = iso(work, "zeros", {"openstack/content/0000": bytes(size)})
    return data, b64(gz(data))


def whole_disk_image(work):
    """100 MiB GPT disk: an ESP with EFI/BOOT/BOOTX64.EFI, an ext4 root."""
    path = os.path.join(work, "tiny.img")
    if os.path.exists(path):
        return path
    with open(path, "wb") as f:
        f.truncate(100 * MIB)
    run("sgdisk", "-n", "1:2048:+32M", "-t", "1:EF00", "-n", "2:0:+60M", "-t", "2:8300", path,
        stdout=subprocess.DEVNULL)
    esp = os.path.join(work, "esp.fat")
    with open(esp, "wb") as f:
        f.truncate(32 * MIB)
    run("mkfs.vfat", "-F", "16", esp, stdout=subprocess.DEVNULL)
    loader = os.path.join(work, "bootx64.efi")
    with open(loader, "wb") as f:
        f.write(b"MZ" + bytes(4094))
    run("mmd", "-i", esp, "::EFI", "::EFI/BOOT")
    run("mcopy", "-i", esp, loader, "::EFI/BOOT/BOOTX64.EFI")
    rootfs = os.path.join(work, "root.ext4")
    with open(rootfs, "wb") as f:
        f.truncate(60 * MIB)
    run("mkfs.ext4", "-q", "-F", "-L", "root", rootfs)
    with open(path, "r+b") as out:
        for src, at in ((esp, 1 * MIB), (rootfs, 33 * MIB)):
            with open(src, "rb") as s:
                out.seek(at)
                out.write(s.read())
    for p in (esp, rootfs, loader):
        os.unlink(p)
    return path


def partition_image(work):
    path = os.path.join(work, "part.ext4")
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.truncate(32 * MIB)
        run("mkfs.ext4", "-q", "-F", "-L", "root", path)
    return path


def big_images(work):
    raw = os.path.join(work, f"disk-{IMAGE_MIB}.raw")
    if not os.path.exists(raw):
        log(f"making a {IMAGE_MIB} MiB random raw image")
        with open(raw, "wb") as f:
            for _ in range(IMAGE_MIB):
                f.write(os.urandom(MIB))
        run("sgdisk", "-n", "1:2048:0", raw, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    qcow = os.path.join(work, f"disk-{IMAGE_MIB}.qcow2")
    if not os.path.exists(qcow):
        run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, qcow)
    return raw, qcow


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(4 * MIB)
            if not b:
                return h.hexdigest()
            h.update(b)


# --- the HTTP server and the disk --------------------------------------------


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass


def serve(work):
    handler = lambda *a, **kw: Quiet(*a, directory=work, **kw)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}"


class Disk:
    """A loop device over a sparse file, shown as /dev/vda of a fixture
    root (with /dev/vda1.. pointing at its partitions)."""

    def __init__(self, work, gib=5):
        self.backing = os.path.join(work, "backing")
        with open(self.backing, "wb") as f:
            f.truncate(gib << 30)
        self.loop = subprocess.check_output(
            ["losetup", "-f", "--show", "-P", self.backing], text=True).strip()
        self.root = os.path.join(work, "root")
        fx = self.root
        shutil.rmtree(fx, ignore_errors=True)
        for d in ("proc", "dev", "sys/block/vda/queue", "sys/firmware/efi/efivars", "run"):
            os.makedirs(os.path.join(fx, d))
        open(os.path.join(fx, "proc/mounts"), "w").close()
        with open(os.path.join(fx, "proc/swaps"), "w") as f:
            f.write("Filename Type Size Used Priority\n")
        open(os.path.join(fx, "proc/cmdline"), "w").close()
        k = os.path.basename(self.loop)
        for a in ("size", "ro", "removable", "dev"):
            shutil.copy(f"/sys/block/{k}/{a}", os.path.join(fx, "sys/block/vda", a))
        for a in ("logical_block_size", "physical_block_size", "rotational"):
            shutil.copy(f"/sys/block/{k}/queue/{a}", os.path.join(fx, "sys/block/vda/queue", a))
        os.symlink(self.loop, os.path.join(fx, "dev/vda"))
        for n in range(1, 5):
            os.symlink(f"{self.loop}p{n}", os.path.join(fx, f"dev/vda{n}"))

    def wipe(self):
        with open(self.loop, "r+b") as f:
            f.write(bytes(4 * MIB))
            f.seek(-4 * MIB, 2)
            f.write(bytes(4 * MIB))
        subprocess.run(["partx", "-d", self.loop], stderr=subprocess.DEVNULL)
        for name in os.listdir(os.path.join(self.root, "sys/firmware/efi/efivars")):
            os.unlink(os.path.join(self.root, "sys/firmware/efi/efivars", name))

    def close(self):
        subprocess.run(["losetup", "-d", self.loop])
        os.unlink(self.backing)


def logs_root(work):
    """Every file collect_system_logs bundles, each past its 2 MiB cap."""
    fx = os.path.join(work, "logs-root")
    if os.path.exists(fx):
        return fx
    rnd = random.Random(7)

    def text(n):
        return base64.b64encode(rnd.randbytes(n * 3 // 4)).replace(b"+", b"\n")

    for p in ("proc/mounts", "proc/mdstat", "proc/partitions", "proc/meminfo", "proc/net/dev",
              "proc/net/route", "proc/net/if_inet6", "run/ironic-agent/console.log"):
        os.makedirs(os.path.dirname(os.path.join(fx, p)), exist_ok=True)
        with open(os.path.join(fx, p), "wb") as f:
            f.write(text(3 * MIB))
    os.makedirs(os.path.join(fx, "dev"), exist_ok=True)
    with open(os.path.join(fx, "dev/kmsg"), "wb") as f:
        for i in range(40000):
            f.write(b"6,%d,%d,-;" % (i, i * 1000) + text(200).replace(b"\n", b" ") + b"\n")
    with open(os.path.join(fx, "proc/cmdline"), "w") as f:
        f.write("console=ttyS0\n")
    os.makedirs(os.path.join(fx, "sys/block"), exist_ok=True)
    os.makedirs(os.path.join(fx, "sys/class/net"), exist_ok=True)
    return fx


# --- the agent ---------------------------------------------------------------


class Agent:
    def __init__(self, binary, work, name, root, *flags):
        self.log = os.path.join(work, f"agent-{name}.log")
        self.p = subprocess.Popen(
            [binary, "--standalone", "--listen-host", "127.0.0.1", "--listen-port", "0",
             "--agent-token", TOKEN, "--enable-auto-tls=false", "--cmdline", "/dev/null",
             "--root", root, *flags],
            stdout=subprocess.DEVNULL, stderr=open(self.log, "wb"), stdin=subprocess.DEVNULL)
        for _ in range(400):
            m = re.search(r"API listening on http://127\.0\.0\.1:(\d+)", open(self.log).read())
            if m:
                self.port = int(m.group(1))
                break
            if self.p.poll() is not None:
                raise SystemExit(f"agent {name} exited; see {self.log}")
            time.sleep(0.025)
        else:
            raise SystemExit(f"agent {name} did not listen; see {self.log}")
        time.sleep(0.2)

    def request(self, method, path, body=None, timeout=3600):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        try:
            head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                    "Content-Type: application/json\r\n")
            if body is not None:
                head += f"Content-Length: {len(body)}\r\n"
            s.sendall(head.encode() + b"\r\n")
            if body is not None:
                view = memoryview(body)
                for i in range(0, len(body), MIB):
                    s.sendall(view[i:i + MIB])
            chunks = []
            while True:
                c = s.recv(1 << 16)
                if not c:
                    break
                chunks.append(c)
        finally:
            s.close()
        data = b"".join(chunks)
        head, _, rest = data.partition(b"\r\n\r\n")
        status = int(head.split()[1])
        return status, rest

    def command(self, name, params, raw=None):
        body = raw if raw is not None else json.dumps({"name": name, "params": params}).encode()
        st, rest = self.request("POST", f"/v1/commands/?wait=true&agent_token={TOKEN}", body)
        # as Ironic polls
        self.request("GET", f"/v1/commands/?agent_token={TOKEN}")
        try:
            doc = json.loads(rest)
        except ValueError:
            doc = {"raw": rest[:200].decode(errors="replace")}
        return st, doc

    def status(self, key):
        with open(f"/proc/{self.p.pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        return 0

    def hwm(self):
        return self.status("VmHWM")

    def reset_hwm(self):
        with open(f"/proc/{self.p.pid}/clear_refs", "w") as f:
            f.write("5")

    def stop(self):
        self.p.terminate()
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()


def ok(st, doc, want="SUCCEEDED"):
    return st == 200 and doc.get("command_status") == want


def main():
    need_root()
    binary = build()
    work = tempfile.mkdtemp(prefix="rss-per-command.", dir="/var/tmp")
    os.chmod(work, 0o755)
    log("work dir", work, "binary", binary)
    srv, url = serve(work)
    disk = Disk(work)
    rows = []
    try:
        measure(binary, work, url, disk, rows)
    finally:
        srv.shutdown()
        disk.close()
    report(work, rows)


def measure(binary, work, url, disk, rows):

    def want(name):
        return not ONLY or any(w in name for w in ONLY.split(","))

    def row(name, kib, input_desc, goal_mib=None, note=""):
        mib = kib / 1024
        verdict = "" if goal_mib is None else ("met" if mib <= goal_mib else "NOT met")
        rows.append((name, mib, input_desc, goal_mib, verdict, note))
        log(f"{name}: {mib:.1f} MiB peak {note}")

    tiny = whole_disk_image(work)
    tiny_sum = sha256(tiny)
    image_info = {"id": "tiny", "urls": [f"{url}/tiny.img"], "os_hash_algo": "sha256",
                  "os_hash_value": tiny_sum, "disk_format": "raw", "container_format": "bare"}
    node = {"uuid": "1be26c0b-03f2-4d2e-ae87-c02d7f33c123", "properties": {},
            "instance_info": {}, "driver_internal_info": {"is_whole_disk_image": True}}

    def agent(name, root=None, *flags):
        return Agent(binary, work, name, root or disk.root, *flags)

    def prepare(name, configdrive=None, flags=(), info=None, expect="SUCCEEDED"):
        disk.wipe()
        a = agent(name, None, *flags)
        try:
            params = {"image_info": info or image_info}
            if configdrive is not None:
                params["configdrive"] = configdrive
            st, doc = a.command("standby.prepare_image", params)
            if not ok(st, doc, expect):
                raise SystemExit(f"{name}: {st} {json.dumps(doc)[:500]}; see {a.log}")
            return a.hwm()
        finally:
            a.stop()

    # --- rows -----------------------------------------------------------------
    if want("idle"):
        a = agent("idle")
        time.sleep(1)
        row("idle", a.hwm(), "-")
        a.stop()

    if want("get_hardware_info"):
        fx = os.path.join(ROOT, "tests/fixtures/captured-vm-q35-uefi")
        a = agent("hwinfo", fx)
        st, doc = a.command("poll.get_hardware_info", {})
        assert ok(st, doc), doc
        row("poll.get_hardware_info", a.hwm(), "captured-vm-q35-uefi fixture")
        a.stop()

    if want("collect_system_logs"):
        a = agent("logs", logs_root(work))
        st, doc = a.command("log.collect_system_logs", {})
        assert ok(st, doc), str(doc)[:300]
        n = len(doc["command_result"]["system_logs"])
        row("log.collect_system_logs", a.hwm(), f"9 files at the 2 MiB cap, random text; "
            f"{n / MIB:.1f} MiB of base64 answer")
        a.stop()

    if want("erase_devices_metadata"):
        disk.wipe()
        with open(disk.loop, "r+b") as f:
            with open(tiny, "rb") as s:
                f.write(s.read())
        a = agent("erase-metadata")
        st, doc = a.command("clean.execute_clean_step", {
            "step": {"step": "erase_devices_metadata", "interface": "deploy", "priority": 99},
            "node": node, "ports": []})
        assert ok(st, doc), doc
        row("clean: erase_devices_metadata", a.hwm(), "5 GiB disk, GPT, ESP + ext4")
        a.stop()

    if want("image"):
        raw, qcow = big_images(work)
        for kind, path, fmt in (("raw", raw, "raw"), ("qcow2", qcow, "qcow2")):
            info = {"id": kind, "urls": [f"{url}/{os.path.basename(path)}"],
                    "os_hash_algo": "sha256", "os_hash_value": sha256(path), "disk_format": fmt}
            row(f"prepare_image, {IMAGE_MIB} MiB {kind} image", prepare(f"image-{kind}", None,
                (), info), f"{IMAGE_MIB} MiB random, {os.path.getsize(path) / MIB:.0f} MiB sent",
                16)

    inline = None
    if want("configdrive") or want("write_image"):
        log("making the configdrives")
        # prepare_image's body: the envelope and image_info, then the text
        envelope = len(json.dumps({"name": "standby.prepare_image",
                                    "params": {"image_info": image_info, "configdrive": ""}}))
        inline = random_drive(work, "random", CAP - envelope - 1024)

    if want("configdrive"):
        # the sizes issue 21 measured (20 MiB: 69 MB, 60 MiB: 189 MB before)
        for size in (20, 60):
            sdata, stext = random_drive(work, f"random{size}", size * MIB)
            row(f"prepare_image + inline configdrive, {size} MiB", prepare(f"cd-inline-{size}",
                stext), f"{len(stext) / MIB:.1f} MiB text, {len(sdata) / MIB:.1f} MiB random ISO",
                len(stext) / MIB + 16)
        data, text = inline
        goal = len(text) / MIB + 16
        desc = f"{len(text) / MIB:.1f} MiB text, {len(data) / MIB:.1f} MiB random ISO"
        row("prepare_image + inline configdrive", prepare("cd-inline", text), desc, goal)
        row("prepare_image + inline configdrive, FAT rebuild",
            prepare("cd-inline-fat", text, ("--config-drive-rebuild",)), desc, goal)
        zdata, ztext = small_text_big_drive(work)
        row("prepare_image + inline configdrive of 64 MiB zeros, FAT rebuild",
            prepare("cd-zeros-fat", ztext, ("--config-drive-rebuild",)),
            f"{len(ztext) / 1024:.0f} KiB text, {len(zdata) / MIB:.1f} MiB ISO",
            len(ztext) / MIB + 16)
        # a URL: the base64 text of a 64 MiB random ISO, 85 MiB
        udata, utext = random_drive(work, "url", 100 * MIB - MIB)
        while len(udata) > 64 * MIB:
            udata, utext = random_drive(work, "url", len(utext) - MIB)
        with open(os.path.join(work, "cd.b64"), "w") as f:
            f.write(utext)
        with open(os.path.join(work, "cd.iso"), "wb") as f:
            f.write(udata)
        udesc = f"{len(utext) / MIB:.1f} MiB base64 served, {len(udata) / MIB:.1f} MiB random ISO"
        row("prepare_image + configdrive URL", prepare("cd-url", f"{url}/cd.b64"), udesc, 16)
        row("prepare_image + configdrive URL, FAT rebuild",
            prepare("cd-url-fat", f"{url}/cd.b64", ("--config-drive-rebuild",)), udesc, 16)
        row("prepare_image + configdrive URL, raw ISO", prepare("cd-url-raw", f"{url}/cd.iso"),
            f"{len(udata) / MIB:.1f} MiB ISO served", 16)
        # a partition image: the drive sizes its partition (FAT rebuild)
        part = partition_image(work)
        pinfo = {"id": "part", "urls": [f"{url}/part.ext4"], "os_hash_algo": "sha256",
                 "os_hash_value": sha256(part), "disk_format": "raw", "image_type": "partition",
                 "root_mb": 64, "deploy_boot_mode": "bios"}
        row("prepare_image, partition image + inline configdrive, FAT rebuild",
            prepare("cd-partition-fat", text, ("--config-drive-rebuild",), pinfo), desc, goal)

    if want("write_image"):
        # Ironic 39's write_image step: the text twice (args.configdrive and
        # args.image_info.configdrive), so each copy is at most half the cap
        env = len(json.dumps({"name": "deploy.execute_deploy_step", "params": {
            "step": {"step": "write_image", "interface": "deploy", "args": {
                "image_info": dict(image_info, configdrive=""), "configdrive": ""}},
            "node": node, "ports": []}}))
        data, text = random_drive(work, "half", (CAP - env - 2048) // 2)
        disk.wipe()
        a = agent("write-image")
        step = {"step": "write_image", "interface": "deploy", "priority": 80, "args": {
            "image_info": dict(image_info, configdrive=text), "configdrive": text}}
        st, doc = a.command("deploy.execute_deploy_step",
                            {"step": step, "node": node, "ports": []})
        assert ok(st, doc), str(doc)[:500]
        row("deploy: write_image (Ironic 39), inline configdrive", a.hwm(),
            f"2 x {len(text) / MIB:.1f} MiB text in the body, {len(data) / MIB:.1f} MiB ISO",
            2 * len(text) / MIB + 16)
        a.stop()

    if want("install_bootloader") or want("inject_files"):
        disk.wipe()
        a = agent("after-write")
        st, doc = a.command("standby.prepare_image", {"image_info": image_info})
        assert ok(st, doc), doc
        st, uu = a.command("standby.get_partition_uuids", {})
        uuids = uu["command_result"]
        # this kernel may have no partition parsers: register them (BLKPG)
        subprocess.run(["partx", "-a", disk.loop], stderr=subprocess.DEVNULL)
        for _ in range(100):
            if os.path.exists(disk.loop + "p2"):
                break
            time.sleep(0.02)
        if want("install_bootloader"):
            a.reset_hwm()
            st, doc = a.command("image.install_bootloader", {
                "root_uuid": uuids.get("root uuid"),
                "efi_system_part_uuid": uuids.get("efi system partition uuid"),
                "target_boot_mode": "uefi"})
            assert ok(st, doc), doc
            row("image.install_bootloader", a.hwm(), "GPT, FAT16 ESP with EFI/BOOT/BOOTX64.EFI")
        if want("inject_files"):
            env = len(json.dumps({"name": "deploy.execute_deploy_step", "params": {
                "step": {"step": "inject_files", "interface": "deploy", "args": {"files": [
                    {"path": "/big0", "partition": "/dev/vda2", "content": ""},
                    {"path": "/big1", "partition": "/dev/vda2", "content": ""}]}},
                "node": node, "ports": []}}))
            each = (CAP - env - 1024) // 2 // 4 * 3
            rnd = random.Random(3)
            files = [{"path": f"/big{i}", "partition": "/dev/vda2",
                      "content": b64(rnd.randbytes(each))} for i in range(2)]
            a.reset_hwm()
            st, doc = a.command("deploy.execute_deploy_step", {
                "step": {"step": "inject_files", "interface": "deploy", "priority": 0,
                         "args": {"files": files}}, "node": node, "ports": []})
            assert ok(st, doc), str(doc)[:500]
            text = sum(len(f["content"]) for f in files)
            row("deploy: inject_files", a.hwm(), f"2 files, {text / MIB:.1f} MiB of base64",
                text / MIB + 16)
        a.stop()

    if want("request"):
        # the cap itself: one string as large as the cap allows, and the
        # same size of the smallest JSON values
        a = agent("cap-string")
        pad = CAP - len(json.dumps({"name": "standby.get_partition_uuids",
                                    "params": {"x": ""}}))
        body = json.dumps({"name": "standby.get_partition_uuids",
                           "params": {"x": "a" * pad}}).encode()
        st, doc = a.command(None, None, raw=body)
        row("64 MiB request, one string", a.hwm(), f"{len(body) / MIB:.1f} MiB body, "
            f"answer {st}", len(body) / MIB + 16)
        a.stop()
        a = agent("cap-values")
        head = b'{"name": "standby.get_partition_uuids", "params": {"x": ['
        n = (CAP - len(head) - 3) // 2
        body = head + b"0," * (n - 1) + b"0]}}"
        st, doc = a.command(None, None, raw=body)
        row("64 MiB request of small JSON values", a.hwm(),
            f"{n / 1e6:.1f} M numbers, answer {st}", len(body) / MIB + 16)
        a.stop()



def report(work, rows):
    out = ["| command | peak RSS | input | goal |", "|---|---|---|---|"]
    for name, mib, desc, goal, verdict, note in rows:
        g = "-" if goal is None else f"≤ {goal:.0f} MiB, {verdict}"
        out.append(f"| {name} | {mib:.1f} MiB | {desc} | {g} |")
    table = "\n".join(out)
    print(table)
    with open(os.path.join(work, "table.md"), "w") as f:
        f.write(table + "\n")
    for p in os.listdir(work):
        if p.endswith((".raw", ".qcow2", ".iso", ".b64", ".img", ".ext4")):
            os.unlink(os.path.join(work, p))
    log("logs and table in", work)


if __name__ == "__main__":
    main()
