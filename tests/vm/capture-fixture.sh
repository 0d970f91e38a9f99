#!/usr/bin/env bash
# tests/vm/capture-fixture.sh: run the inventory fixture capture script
# inside a VM that looks like a small server, and copy its output out, so
# the inventory tests' fixture trees come from a real kernel's sysfs.
#
#   tests/vm/capture-fixture.sh [--script FILE] [-o OUTDIR] [--mem 512M]
#
# The VM: q35, OVMF (UEFI: efivarfs, /sys/firmware/efi), the `hardware`
# ramdisk with dropbear, 2 NICs (virtio-net and e1000e), disks on NVMe,
# AHCI, virtio-blk and virtio-scsi with known serials, an emulated BMC
# (ipmi-bmc-sim on KCS; ipmi_si + ipmi_devintf give /dev/ipmi0), and SMBIOS
# system/chassis/baseboard strings.
#
# The script (default tests/fixtures/capture.sh, the inventory tests') is
# copied in over ssh and run as `sh /tmp/capture.sh /tmp/capture` by busybox
# sh; whatever it writes under /tmp/capture comes back (tar over ssh) into
# OUTDIR (default tests/fixtures/captured-vm-q35-uefi), replacing it.
# The VM's description is written next to it as OUTDIR.vm.txt.
#
#   tests/vm/capture-fixture.sh --arch arm64 [-o OUTDIR] [--mem 128M]
#
# An arm64 machine instead (default OUTDIR
# tests/fixtures/captured-vm-arm64-virt): the arm64 `vm` ramdisk in
# qemu-system-aarch64's `virt` machine, 2 Neoverse N1 vCPUs, no firmware
# (a device tree, no DMI, no UEFI: what many arm64 boards give the kernel),
# virtio-net, NVMe, virtio-blk and virtio-scsi disks. There is no dropbear
# for arm64: the capture script runs as a script clean step (an extra
# initramfs layer adds it to /etc/ironic-agent/steps.d, for the capture
# only) and returns the tree as a base64 tar.gz through the agent's API.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=../../scripts/lib.sh
. "$ROOT/scripts/lib.sh"
SCRIPT=$ROOT/tests/fixtures/capture.sh OUT="" MEM="" ARCH=amd64
while [ $# -gt 0 ]; do
  case "$1" in
    --script) SCRIPT=$2; shift 2 ;;
    -o) OUT=$2; shift 2 ;;
    --mem) MEM=$2; shift 2 ;;
    --arch) ARCH=$2; shift 2 ;;
    *) echo "usage: $0 [--arch amd64|arm64] [--script FILE] [-o OUTDIR] [--mem SIZE]" >&2; exit 2 ;;
  esac
done
case "$ARCH" in
  amd64) OUT=${OUT:-$ROOT/tests/fixtures/captured-vm-q35-uefi} MEM=${MEM:-512M} ;;
  arm64) OUT=${OUT:-$ROOT/tests/fixtures/captured-vm-arm64-virt} MEM=${MEM:-128M} ;;
  *) echo "--arch: amd64 or arm64" >&2; exit 2 ;;
esac
log() { echo "[capture $(date +%T)] $*" >&2; }
[ -r "$SCRIPT" ] || { log "error: no capture script at $SCRIPT (the inventory tests' tests/fixtures/capture.sh)"; exit 1; }
apt_install openssh-client
WORK=$(mktemp -d "${TMPDIR:-/tmp}/capture-vm.XXXXXX")
VM_PID=""
trap '[ -n "$VM_PID" ] && kill "$VM_PID" 2>/dev/null; true' EXIT

if [ "$ARCH" = arm64 ]; then
  apt_install cpio curl
  "$ROOT/ramdisk/build" --arch arm64 -o "$WORK/rd"
  L=$WORK/layer
  mkdir -p "$L/etc/ironic-agent/steps.d"
  install -m 755 "$SCRIPT" "$L/etc/ironic-agent/capture.sh"
  cat > "$L/etc/ironic-agent/steps.d/capture_fixture" <<'EOF'
#!/bin/sh
sh /etc/ironic-agent/capture.sh /tmp/capture >&2 || exit 1
tar -C /tmp/capture -czf - . | base64
EOF
  chmod 755 "$L/etc/ironic-agent/steps.d/capture_fixture"
  echo '{"step": "capture_fixture", "interface": "deploy", "priority": 0, "timeout": 300}' \
    > "$L/etc/ironic-agent/steps.d/capture_fixture.json"
  # an uncompressed cpio after the gzip one, at a 4-byte aligned offset
  f=$WORK/rd/ironic-agent.initramfs
  { cat "$f"; head -c $(( (4 - $(stat -c %s "$f") % 4) % 4 )) /dev/zero
    (cd "$L" && find . | LC_ALL=C sort | cpio -o -H newc --owner=0:0 --quiet); } > "$WORK/initrd"
  disks=()
  for b in nvme virtio scsi; do
    truncate -s 8G "$WORK/$b.img"
    disks+=(--disk "$WORK/$b.img,bus=$b,serial=CAPTURE-${b^^}-0")
  done
  "$ROOT/ramdisk/run-vm" --arch arm64 --kernel "$WORK/rd/ironic-agent.kernel" --initrd "$WORK/initrd" \
    --workdir "$WORK/vm" --mem "$MEM" --mac 52:54:00:fc:00:41 "${disks[@]}" \
    --qemu-arg -smp --qemu-arg 2 --timeout 300 > "$WORK/vm.env"
  # shellcheck disable=SC1091
  . "$WORK/vm.env"
  tok=$(grep -ao 'standalone agent token: [A-Za-z0-9_-]*' "$VM_CONSOLE" | awk '{print $4}' | tail -1)
  log "running $(basename "$SCRIPT") in the VM (script clean step)"
  curl -sk -m 300 -H 'Content-Type: application/json' \
    "https://127.0.0.1:$VM_PORT/v1/commands/?wait=true&agent_token=$tok" \
    -d '{"name":"clean.execute_clean_step","params":{"step":{"step":"capture_fixture","interface":"deploy","priority":0},"node":{},"ports":[]}}' \
    > "$WORK/result.json"
  rm -rf "$OUT.tmp"; mkdir -p "$OUT.tmp"
  python3 -c 'import base64, json, sys
r = json.load(open(sys.argv[1]))
assert r["command_status"] == "SUCCEEDED", r
sys.stdout.buffer.write(base64.b64decode(r["command_result"]["clean_result"]))' "$WORK/result.json" \
    | tar -C "$OUT.tmp" -xzf -
  rm -rf "$OUT"; mv "$OUT.tmp" "$OUT"
  {
    echo "Captured $(date -u +%F) by tests/vm/capture-fixture.sh --arch arm64 from $(basename "$SCRIPT")"
    echo "kernel: $(sed -n 's/^.*set=[^ ]* kernel=\([^ ]* [^ ]*\).*/\1/p' "$WORK/rd/build-info")"
    echo "qemu: $(qemu-system-aarch64 --version | head -1)"
    echo "command: $(sed "s|$WORK|/tmp/capture-vm|g" "$WORK/vm/qemu-cmd")"
  } > "$OUT.vm.txt"
  log "captured into $OUT ($(du -sh "$OUT" | cut -f1)); VM described in $OUT.vm.txt"
  kill "$VM_PID" 2>/dev/null || true; VM_PID=""
  rm -rf "$WORK"    # the sparse disks
  exit 0
fi

"$ROOT/ramdisk/build" --modules hardware --with-dropbear -o "$WORK/rd"
ssh-keygen -q -t ed25519 -N '' -f "$WORK/key"
disks=()
for b in nvme ahci virtio scsi; do
  truncate -s 8G "$WORK/$b.img"
  disks+=(--disk "$WORK/$b.img,bus=$b,serial=CAPTURE-${b^^}-0")
done
"$ROOT/ramdisk/run-vm" --dir "$WORK/rd" --workdir "$WORK/vm" --uefi --machine q35 --mem "$MEM" \
  --mac 52:54:00:fc:00:01 --ipmi --forward 22 "${disks[@]}" \
  --smbios "type=1,manufacturer=Ironic Agent Lab,product=Capture VM,version=1,serial=CAPTURE-0001,uuid=4c6f6f6b-2d69-4e2d-8f72-6f6d65000001,sku=CAP-1,family=Test" \
  --smbios "type=2,manufacturer=Ironic Agent Lab,product=Capture Board,serial=BOARD-0001" \
  --smbios "type=3,manufacturer=Ironic Agent Lab,serial=CHASSIS-0001,asset=ASSET-0001" \
  --qemu-arg -device --qemu-arg "e1000e,netdev=n1x,mac=52:54:00:fc:00:03,romfile=" \
  --qemu-arg -netdev --qemu-arg "user,id=n1x,restrict=on,net=10.0.9.0/24" \
  --append "sshkey=\"$(cat "$WORK/key.pub")\"" --timeout 300 > "$WORK/vm.env"
# shellcheck disable=SC1091
. "$WORK/vm.env"
ssh=(ssh -i "$WORK/key" -p "$VM_FWD_22" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR
     -o BatchMode=yes -o ConnectTimeout=20 root@127.0.0.1)
"${ssh[@]}" 'cat > /tmp/capture.sh' < "$SCRIPT"
log "running $(basename "$SCRIPT") in the VM"
"${ssh[@]}" 'sh /tmp/capture.sh /tmp/capture' >&2
rm -rf "$OUT.tmp"; mkdir -p "$OUT.tmp"
"${ssh[@]}" 'tar -C /tmp/capture -cf - .' | tar -C "$OUT.tmp" -xf -
rm -rf "$OUT"; mv "$OUT.tmp" "$OUT"
{
  echo "Captured $(date -u +%F) by tests/vm/capture-fixture.sh from $(basename "$SCRIPT")"
  echo "kernel: $(sed -n 's/^set=.* kernel=\([^ ]* [^ ]*\).*/\1/p' "$WORK/rd/build-info")"
  echo "qemu: $(qemu-system-x86_64 --version | head -1)"
  # the throw-away ssh key is noise in a committed file
  echo "command: $(sed "s|$(awk '{print $2}' "$WORK/key.pub")|EPHEMERAL-KEY|" "$WORK/vm/qemu-cmd")"
} > "$OUT.vm.txt"
log "captured into $OUT ($(du -sh "$OUT" | cut -f1)); VM described in $OUT.vm.txt"
