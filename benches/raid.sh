#!/usr/bin/env bash
# Software RAID (issue 16, item 9), side by side in one run, in a VM (the
# md driver is the guest kernel's; this machine's kernel has none):
#
#  1. creation: create_configuration of a RAID-1 over two disks (partition
#     tables, superblocks, the array started; the resync then runs in the
#     background, as after mdadm), timed from the API call to its answer;
#  2. a raw image written by standby.prepare_image (download, SHA-256,
#     O_DIRECT writes) to that RAID-1 right after creation (md's resync
#     pending: the agent holds it back during the write, and the bench
#     reports how long it ran after), again once the resync is over, and, after
#     delete_configuration, to one of its two disks: the same bytes, the
#     same disks, interleaved RUNS times. Goal: the disk's time / the
#     array's time >= 0.9.
#
# The image is served from inside the VM (busybox httpd on loopback, the
# image in the VM's tmpfs, made and served by a script step from an
# initramfs layer): through qemu's user-mode network relay it would arrive
# at ~15 MiB/s and hide the disks. The agent's own "streamed onto device
# ... in N seconds" is the measure. 2 vCPUs (TCG), virtio disks on files
# in the host's page cache (cache=unsafe).
#
#   benches/raid.sh                 # builds the ramdisk (and agent) if needed
#   RUNS=3 IMAGE_MIB=512 RAMDISK=dir benches/raid.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=../scripts/lib.sh
. "$ROOT/scripts/lib.sh"
RUNS=${RUNS:-3}
IMAGE_MIB=${IMAGE_MIB:-512}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/raid-bench.XXXXXX")
VM_PID=
log() { echo "[raid-bench $(date +%T)] $*" >&2; }
cleanup() {
  [ -n "$VM_PID" ] && kill "$VM_PID" 2>/dev/null
  if [ -n "${KEEP:-}" ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

ensure_qemu
if [ -z "${RAMDISK:-}" ]; then
  RAMDISK=$WORK/out-vm
  "$ROOT/ramdisk/build" ${AGENT:+--agent "$AGENT"} -o "$RAMDISK" 2>/dev/null
fi

# The layer: script steps (src/hardware/script.rs). bench_httpd builds
# /tmp/www/img, a GPT (the agent checks the table after writing) around
# random data, serves it with busybox httpd on 127.0.0.1:8080 and answers
# its sha256; wait_resync waits for md's resync to end.
L=$WORK/layer
S=$L/etc/ironic-agent/steps.d
mkdir -p "$S" "$L/bench"
python3 - "$IMAGE_MIB" "$L/bench" "$ROOT/tests/lib" <<'PY'
import os, sys
sys.path.insert(0, sys.argv[3])
import checks
n = int(sys.argv[1]) << 20
img = checks.gpt_image(n)
head, tail = 2048 * 512, 34 * 512
open(os.path.join(sys.argv[2], "head"), "wb").write(img[:head])
open(os.path.join(sys.argv[2], "tail"), "wb").write(img[-tail:])
open(os.path.join(sys.argv[2], "middle"), "w").write(str((n - head - tail) // 512))
PY
cat > "$S/bench_httpd" <<'STEP'
#!/bin/sh
mkdir -p /tmp/www
{ cat /bench/head
  dd if=/dev/urandom bs=512 count="$(cat /bench/middle)" 2>/dev/null
  cat /bench/tail; } > /tmp/www/img || exit 1
setsid busybox httpd -p 127.0.0.1:8080 -h /tmp/www || exit 1
echo "\"$(sha256sum /tmp/www/img | cut -d' ' -f1)\""
STEP
cat > "$S/wait_resync" <<'STEP'
#!/bin/sh
t=0
while grep -Eq 'resync|recovery' /proc/mdstat; do sleep 1; t=$((t + 1)); done
echo "$t"
STEP
chmod 755 "$S/bench_httpd" "$S/wait_resync"
for s in bench_httpd wait_resync; do
  echo "{\"step\": \"$s\", \"interface\": \"deploy\", \"kind\": \"deploy\", \"timeout\": 1200}" > "$S/$s.json"
done
python3 - "$RAMDISK/ironic-agent.initramfs" "$L" "$WORK/initrd" <<'PY'
import subprocess, sys
base = open(sys.argv[1], "rb").read()
cpio = subprocess.run("find . | LC_ALL=C sort | cpio -o -H newc --owner=0:0 --quiet",
                      shell=True, cwd=sys.argv[2], capture_output=True, check=True).stdout
open(sys.argv[3], "wb").write(base + bytes(-len(base) % 4) + cpio)
PY

for i in a b; do truncate -s 2G "$WORK/$i.img"; done
"$ROOT/ramdisk/run-vm" --kernel "$RAMDISK/ironic-agent.kernel" --initrd "$WORK/initrd" \
  --mem $((IMAGE_MIB * 2 + 512))M --qemu-arg -smp --qemu-arg 2 --workdir "$WORK/vm" \
  --disk "$WORK/a.img,bus=virtio,serial=R-A" --disk "$WORK/b.img,bus=virtio,serial=R-B" \
  > "$WORK/vm.env"
# shellcheck disable=SC1091
. "$WORK/vm.env"
TOKEN=$(grep -ao 'standalone agent token: [A-Za-z0-9_-]*' "$VM_CONSOLE" | tail -1 | awk '{print $4}')
# cmd NAME PARAMS: run a command, its result as JSON; a wait=true answer
# the API front cuts (a step longer than its idle limit) is polled for
cmd() {
  local out
  out=$(curl -sk -m 1200 -H 'Content-Type: application/json' \
    "https://127.0.0.1:$VM_PORT/v1/commands/?wait=true&agent_token=$TOKEN" \
    -d "{\"name\": \"$1\", \"params\": ${2:-{\}}}")
  while [ -z "$out" ] || echo "$out" | grep -q '"RUNNING"'; do
    sleep 1
    out=$(curl -sk -m 30 "https://127.0.0.1:$VM_PORT/v1/commands/?agent_token=$TOKEN" \
      | python3 -c 'import json,sys; c=json.load(sys.stdin)["commands"]; print(json.dumps(c[-1]) if c else "")')
  done
  echo "$out"
}
ok() { grep -q '"SUCCEEDED"' || { log "$1 failed"; tail -20 "$VM_CONSOLE" >&2; exit 1; }; }
now() { date +%s.%N; }
# run_step NAME: a script step's result
run_step() {
  cmd deploy.execute_deploy_step "{\"step\": {\"step\": \"$1\", \"interface\": \"deploy\"}, \"node\": {}, \"ports\": []}" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["command_result"]["deploy_result"])'
}
# node DEVICE: the node, its root device hint naming DEVICE
node() {
  printf '{"uuid": "bench", "properties": {"root_device": {"name": "%s"}}, "target_raid_config": {"logical_disks": [{"size_gb": 1, "raid_level": "1", "controller": "software"}]}}' "$1"
}
raid() { cmd clean.execute_clean_step "{\"step\": {\"step\": \"$1\", \"interface\": \"raid\"}, \"node\": $(node /dev/md0), \"ports\": []}"; }
# write DEVICE ID: prepare_image to DEVICE (the cached node's root device
# hint); prints the agent's streaming seconds
write() {
  cmd clean.get_clean_steps "{\"node\": $(node "$1"), \"ports\": []}" > /dev/null
  cmd standby.prepare_image "{\"image_info\": {\"id\": \"$2\", \"urls\": [\"http://127.0.0.1:8080/img\"], \"os_hash_algo\": \"sha256\", \"os_hash_value\": \"$SUM\", \"disk_format\": \"raw\"}}" | ok "prepare_image to $1"
  grep -ao "Image $2 streamed onto device $1 in [0-9.]* seconds" "$VM_CONSOLE" | tail -1 | awk '{print $(NF-1)}'
}

SUM=$(run_step bench_httpd)
log "image: $IMAGE_MIB MiB (a GPT around random data) served in the VM, sha256 ${SUM:0:16}..."
declare -a CREATE MD SYNCED DISK RESYNC
for r in $(seq "$RUNS"); do
  # the last run's image left a table on /dev/vda: create_configuration
  # refuses disks with partitions (IPA's rule), so clear it first
  cmd clean.execute_clean_step "{\"step\": {\"step\": \"erase_devices_metadata\", \"interface\": \"deploy\"}, \"node\": $(node /dev/md0), \"ports\": []}" \
    | ok erase_devices_metadata
  t0=$(now)
  raid create_configuration | ok create_configuration
  CREATE+=("$(awk -v a="$t0" -v b="$(now)" 'BEGIN{printf "%.2f", b-a}')")
  MD+=("$(write /dev/md0 md-$r)")
  RESYNC+=("$(run_step wait_resync)")
  SYNCED+=("$(write /dev/md0 synced-$r)")
  raid delete_configuration | ok delete_configuration
  DISK+=("$(write /dev/vda disk-$r)")
  log "run $r: create ${CREATE[-1]} s; image to the RAID-1 ${MD[-1]} s while it resyncs" \
      "(${RESYNC[-1]} s more of resync), ${SYNCED[-1]} s in sync; to /dev/vda ${DISK[-1]} s"
done
# the agent holds md's resync back while it writes the image (it resumes
# after: "s more of resync" above); the console says so each time
HELD=$(grep -ac 'holding back the resync of /dev/md0' "$VM_CONSOLE" || true)
python3 - "$IMAGE_MIB" "${CREATE[*]}" "${MD[*]}" "${SYNCED[*]}" "${DISK[*]}" "${RESYNC[*]}" "$HELD" <<'PY'
import statistics as st, sys
mib = int(sys.argv[1])
create, md, synced, disk, rest = ([float(x) for x in a.split()] for a in sys.argv[2:7])
held = int(sys.argv[7])
m = st.median
print(f"\n=== software RAID ({len(md)} runs, {mib} MiB raw image, TCG, 2 vCPUs)")
print(f"  create_configuration (RAID-1, 2 disks): median {m(create):.2f} s "
      f"(runs {', '.join(f'{x:.2f}' for x in create)})")
print(f"  image to one of the two disks: median {m(disk):.2f} s ({mib / m(disk):.0f} MiB/s)")
for what, t in (("to the RAID-1 in sync", synced), ("to the RAID-1 while it resyncs", md)):
    print(f"  image {what}: median {m(t):.2f} s ({mib / m(t):.0f} MiB/s): "
          f"{m(disk) / m(t):.2f}x the disk (goal >= 0.9); per run "
          f"{', '.join(f'{d / x:.2f}' for x, d in zip(t, disk))}")
print(f"  md's resync held back during {held} of the {len(md)} writes to the new array; "
      f"after the write it ran a median {m(rest):.0f} s more (runs {', '.join(f'{x:.0f}' for x in rest)})")
PY
