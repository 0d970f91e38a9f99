#!/usr/bin/env bash
# Ramdisk budgets (issue 4, item 6), measured and reported, not asserted:
#   * sizes of both module sets (goal: vm <= 4 MiB, hardware <= 24 MiB
#     compressed; IPA's DIB ramdisk is ~418 MiB);
#   * boot to a listening agent under TCG, repeated (goal: first heartbeat
#     <= 5 s; with --ironic the real Ironic cycle measures the heartbeat);
#   * the smallest RAM that boots and passes, by bisection, per boot path;
#     "passes" = /v1/status, poll.get_hardware_info and the clean step
#     erase_devices_metadata all succeed (standalone agent, token from the
#     console); floor `ironic`: the whole Ironic cycle (inspect, clean,
#     deploy; tests/vm/ironic_vm.py) passes. With --ironic the cycle also
#     runs at 128 MiB, which times boot to the first heartbeat.
#
#   benches/ramdisk.sh [--boots N] [--ironic] [--floors vm,hw,uefi,uefi-efi,iso-bios,iso-uefi,ironic]
#
# Prints a table with ratios against IPA's published numbers; raw output in
# $BENCH_WORK (default: a new /tmp dir).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=../scripts/lib.sh
. "$ROOT/scripts/lib.sh"
BOOTS=5 IRONIC=0 FLOORS=vm,hw,uefi,uefi-efi,iso-bios,iso-uefi
while [ $# -gt 0 ]; do
  case "$1" in
    --boots) BOOTS=$2; shift 2 ;;
    --ironic) IRONIC=1; shift ;;
    --floors) FLOORS=$2; shift 2 ;;
    *) echo "usage: $0 [--boots N] [--ironic] [--floors LIST]" >&2; exit 2 ;;
  esac
done
WORK=${BENCH_WORK:-$(mktemp -d /tmp/ramdisk-bench.XXXXXX)}
mkdir -p "$WORK"
log() { echo "[ramdisk-bench $(date +%T)] $*" >&2; }
RUNVM=$ROOT/ramdisk/run-vm
# IPA anchors (../shared/landscape.md, ironic-python-agent-builder's DIB
# README, Ironic's reference architecture)
IPA_RAMDISK=438446711     # published CentOS 9 DIB initramfs, bytes
IPA_KERNEL=13400000
IPA_RAM_MIN=1536          # MiB, "at least 1.5GB" (DIB element README)
IPA_RAM_TYPICAL=3072      # MiB, "typically require 3 GiB or more"

ensure_qemu ovmf
apt_install curl
AGENT=${CARGO_TARGET_DIR:-$ROOT/target}/x86_64-unknown-linux-musl/release/ironic-agent

# ---------------------------------------------------------------- sizes
t0=$SECONDS
"$ROOT/ramdisk/build" -o "$WORK/vm" 2>"$WORK/build-vm.log"
"$ROOT/ramdisk/build" --agent "$AGENT" --modules hardware -o "$WORK/hw" 2>"$WORK/build-hw.log"
for c in zstd xz; do "$ROOT/ramdisk/build" --agent "$AGENT" --compress $c -o "$WORK/vm-$c" 2>/dev/null; done
"$ROOT/ramdisk/iso-image-create" -o "$WORK/vm.iso" -k "$WORK/vm/ironic-agent.kernel" \
  -i "$WORK/vm/ironic-agent.initramfs" -a "console=ttyS0 panic=-1" 2>/dev/null
# the UEFI path tests/vm boots: kernel + initramfs behind ironic-agent-boot
"$ROOT/ramdisk/efi-image-create" -o "$WORK/vm.efi" -k "$WORK/vm/ironic-agent.kernel" \
  -i "$WORK/vm/ironic-agent.initramfs" -a "console=ttyS0 panic=-1" 2>/dev/null
log "built in $((SECONDS - t0)) s"
field() { sed -n "s/^$2: //p" "$1/build-info"; }
mib() { awk -v b="$1" 'BEGIN{printf "%.2f", b/1048576}'; }

# ---------------------------------------------------------------- boots
truncate -s 1G "$WORK/disk.img"
# try NAME MEM ARGS...: boot, run the standalone checks, stop; 0 = passed
try() {
  local name=$1 mem=$2; shift 2
  local env=$WORK/try-$name-$mem.env
  rm -rf "$WORK/try-$name-$mem"
  "$RUNVM" --workdir "$WORK/try-$name-$mem" --mem "$mem" --timeout 60 \
    --disk "$WORK/disk.img,bus=virtio,serial=BENCH0" "$@" > "$env" 2>"$WORK/try-$name-$mem.log" || return 1
  # shellcheck disable=SC1090
  . "$env"
  local tok ok=0 base=https://127.0.0.1:$VM_PORT
  tok=$(grep -ao 'standalone agent token: [A-Za-z0-9_-]*' "$VM_CONSOLE" | awk '{print $4}' | tail -1)
  post() { curl -sk -m 60 -H 'Content-Type: application/json' "$base/v1/commands/?wait=true&agent_token=$tok" -d "$1"; }
  if curl -sk -m 5 "$base/v1/status" | grep -q version &&
     post '{"name":"poll.get_hardware_info","params":{}}' | grep -q '"SUCCEEDED"' &&
     post '{"name":"clean.execute_clean_step","params":{"step":{"step":"erase_devices_metadata","interface":"deploy","priority":99},"node":{},"ports":[]}}' | grep -q '"SUCCEEDED"'; then
    ok=1
  fi
  kill "$VM_PID" 2>/dev/null || true
  [ $ok = 1 ]
}

# boot timing: the vm set in 128 MiB, BOOTS times per initramfs compression
# (interleaved, so load changes hit all three alike)
READY=() UPTIME=() READY_zstd=() READY_xz=()
for i in $(seq "$BOOTS"); do
  for c in gzip zstd xz; do
    d=$WORK/vm; [ $c = gzip ] || d=$WORK/vm-$c
    if try "timing-$c-$i" 128M --dir "$d"; then
      case $c in
        gzip) READY+=("$VM_READY_SECONDS")
              UPTIME+=("$(grep -ao 'agent started (uptime [0-9.]*' "$VM_CONSOLE" | awk '{print $NF}')") ;;
        zstd) READY_zstd+=("$VM_READY_SECONDS") ;;
        xz) READY_xz+=("$VM_READY_SECONDS") ;;
      esac
    else
      log "timing boot $c $i failed: $WORK/try-timing-$c-$i-128M"
    fi
  done
done
stats() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END{if(NR==0){print "n/a"; exit} printf "median %.2f (min %.2f, max %.2f, n=%d)", a[int((NR+1)/2)], a[1], a[NR], NR}'; }

# ---------------------------------------------------------------- floors
# try_ironic NAME MEM: the Ironic cycle (inspect, clean, deploy) passes
try_ironic() {
  python3 "$ROOT/tests/vm/ironic_vm.py" --ramdisk "$WORK/vm" --work "$WORK/try-$1-$2" \
    --mem "$2" --phases icd > "$WORK/try-$1-$2.log" 2>&1
}
# floor NAME ARGS...: smallest MiB in [lo, hi] that passes, 2 MiB steps
declare -A FLOOR
floor() {
  local name=$1; shift
  local lo=40 hi=256 mid fn=try
  [ "$name" = ironic ] && { fn=try_ironic hi=128; }
  $fn "floor-$name" "${hi}M" "$@" || { FLOOR[$name]=">$hi"; log "$name: fails even at ${hi}M"; return 0; }
  while [ $((hi - lo)) -gt 2 ]; do
    mid=$(( (lo + hi) / 4 * 2 ))
    if $fn "floor-$name" "${mid}M" "$@"; then hi=$mid; else lo=$mid; fi
    log "$name: ${mid}M $([ $hi = "$mid" ] && echo passes || echo fails)"
  done
  FLOOR[$name]=$hi
}
IFS=, read -ra fl <<< "$FLOORS"
for f in "${fl[@]}"; do
  case "$f" in
    vm) floor vm --dir "$WORK/vm" ;;
    hw) floor hw --dir "$WORK/hw" ;;
    uefi) floor uefi --dir "$WORK/vm" --uefi ;;  # the kernel's own EFI stub
    uefi-efi) floor uefi-efi --kernel "$WORK/vm.efi" --uefi ;;
    iso-bios) floor iso-bios --iso "$WORK/vm.iso" ;;
    iso-uefi) floor iso-uefi --iso "$WORK/vm.iso" --uefi ;;
    ironic) floor ironic ;;
    *) log "unknown floor $f" ;;
  esac
done

# ---------------------------------------------------------------- Ironic
HB=() CYCLE128=""
if [ "$IRONIC" = 1 ]; then
  for i in $(seq "$BOOTS"); do
    rc=0
    python3 "$ROOT/tests/vm/ironic_vm.py" --ramdisk "$WORK/vm" --work "$WORK/ironic-$i" --mem 128M \
      > "$WORK/ironic-$i.log" 2>&1 || rc=$?
    res=$([ $rc = 0 ] && echo PASS || { [ $rc = 2 ] && echo PENDING || echo FAIL; })
    CYCLE128="$CYCLE128 $res"
    [ -f "$WORK/ironic-$i/heartbeat-seconds" ] && HB+=("$(cat "$WORK/ironic-$i/heartbeat-seconds")")
  done
fi

# ---------------------------------------------------------------- report
vm=$(field "$WORK/vm" 'initramfs bytes (gzip)') hw=$(field "$WORK/hw" 'initramfs bytes (gzip)')
{
echo "=== ramdisk budgets ($(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg))"
echo
echo "| | ironic-agent | goal | IPA (DIB) | ratio |"
echo "|---|---|---|---|---|"
echo "| vm initramfs (gzip) | $vm B ($(mib "$vm") MiB) | <= 4 MiB | $IPA_RAMDISK B (418 MiB) | 1/$((IPA_RAMDISK / vm)) |"
echo "| vm initramfs (zstd / xz) | $(field "$WORK/vm-zstd" 'initramfs bytes (zstd)') / $(field "$WORK/vm-xz" 'initramfs bytes (xz)') B | | | |"
echo "| hardware initramfs (gzip) | $hw B ($(mib "$hw") MiB) | <= 24 MiB | 418 MiB | 1/$((IPA_RAMDISK / hw)) |"
echo "| kernel vm / hardware | $(field "$WORK/vm" 'kernel bytes') / $(field "$WORK/hw" 'kernel bytes') B | | $IPA_KERNEL B | |"
echo "| agent binary | $(field "$WORK/vm" 'agent bytes') B | | ~74 MB site-packages | |"
echo "| modules vm / hardware (.ko.xz) | $(field "$WORK/vm" 'module bytes') / $(field "$WORK/hw" 'module bytes') B | | | |"
echo "| ISO (vm) | $(stat -c %s "$WORK/vm.iso") B | | | |"
echo "| qemu start -> /v1/status 200, vm, 128 MiB, TCG | $(stats "${READY[@]}") s | <= 5 s | | |"
echo "| same, zstd / xz initramfs | $(stats "${READY_zstd[@]}") / $(stats "${READY_xz[@]}") s | | | |"
echo "| guest uptime at agent start (gzip) | $(stats "${UPTIME[@]}") s | | | |"
[ "$IRONIC" = 1 ] && echo "| qemu start -> first heartbeat in Ironic, 128 MiB | $(stats "${HB[@]}") s | <= 5 s | | |"
[ "$IRONIC" = 1 ] && echo "| Ironic inspect+clean+deploy in 128 MiB |$CYCLE128 | pass | 1.5-3 GiB | |"
for f in "${fl[@]}"; do
  v=${FLOOR[$f]:-n/a}
  r=""; [[ "$v" =~ ^[0-9]+$ ]] && r="1/$((IPA_RAM_MIN / v)) of 1.5 GiB, 1/$((IPA_RAM_TYPICAL / v)) of 3 GiB"
  echo "| RAM floor, $f | $v MiB | | $IPA_RAM_MIN-$IPA_RAM_TYPICAL MiB | $r |"
done
echo
echo "raw: $WORK"
} | tee "$WORK/report.md"
