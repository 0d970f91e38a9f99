#!/usr/bin/env bash
# x86_64 and aarch64 side by side (issue 20, item 6), measured and
# reported, not asserted: the same sources built for both, the `vm`
# ramdisk of each booted under TCG on this x86_64 machine (qemu-system-
# x86_64 `pc`, qemu-system-aarch64 `virt` with a Neoverse N1), no firmware
# (direct kernel boot), 128 MiB:
#   * stripped static binary (scripts/build-static, both arches);
#   * initramfs (gzip) and kernel as ramdisk/build writes them;
#   * qemu start -> GET /v1/status answers (ramdisk/run-vm), N boots each,
#     interleaved so that load changes hit both alike;
#   * the agent's RSS (VmRSS / VmHWM from /proc/<pid>/status in the guest)
#     when it has just booted and answered nothing but /v1/status: read by
#     a script clean step (src/hardware/script.rs) that an extra initramfs
#     layer adds for the measurement only, run by clean.execute_clean_step
#     (so the worker thread that runs it is counted too);
#   * qemu start -> first heartbeat in the real Ironic 39 (tests/vm/
#     ironic_vm.py phase c: automated cleaning), N runs each;
#   * with --floor: the smallest RAM, in 4 MiB steps from 64 to 128 MiB,
#     in which the whole Ironic cycle (inspection, cleaning, deploy:
#     ironic_vm.py --phases icd) passes, per arch.
#
#   benches/arm64.sh [--boots N] [--floor]
#
# Prints a markdown table; raw output in $BENCH_WORK (default: a new /tmp
# dir).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=../scripts/lib.sh
. "$ROOT/scripts/lib.sh"
BOOTS=3 FLOOR=0
while [ $# -gt 0 ]; do
  case "$1" in
    --boots) BOOTS=$2; shift 2 ;;
    --floor) FLOOR=1; shift ;;
    *) echo "usage: $0 [--boots N] [--floor]" >&2; exit 2 ;;
  esac
done
WORK=${BENCH_WORK:-$(mktemp -d /tmp/arm64-bench.XXXXXX)}
mkdir -p "$WORK"
log() { echo "[arm64-bench $(date +%T)] $*" >&2; }
ARCHS=(amd64 arm64)
ensure_qemu; ensure_qemu arm64
apt_install curl cpio

# ---------------------------------------------------------------- builds
declare -A BIN SIZE
for a in "${ARCHS[@]}"; do
  r=x86_64; [ "$a" = arm64 ] && r=aarch64
  "$ROOT/scripts/build-static" --arch "$r" > "$WORK/build-static-$a.log" 2>&1
  BIN[$a]=${CARGO_TARGET_DIR:-$ROOT/target}/$r-unknown-linux-musl/release/ironic-agent
  SIZE[$a]=$(stat -c %s "${BIN[$a]}")
  "$ROOT/ramdisk/build" --arch "$a" --agent "${BIN[$a]}" -o "$WORK/vm-$a" 2>"$WORK/build-vm-$a.log"
done
field() { sed -n "s/^$2: //p" "$1/build-info"; }
mib() { awk -v b="$1" 'BEGIN{printf "%.2f", b/1048576}'; }

# the measurement layer: a script clean step that prints the agent's RSS
L=$WORK/layer
mkdir -p "$L/etc/ironic-agent/steps.d"
cat > "$L/etc/ironic-agent/steps.d/measure_rss" <<'EOF'
#!/bin/sh
grep -E '^Vm(RSS|HWM)' "/proc/$(cat /run/ironic-agent/pid)/status" | tr -s ' \t' ' ' | tr '\n' ';'
EOF
chmod 755 "$L/etc/ironic-agent/steps.d/measure_rss"
echo '{"step": "measure_rss", "interface": "deploy", "priority": 0}' \
  > "$L/etc/ironic-agent/steps.d/measure_rss.json"
(cd "$L" && find . | LC_ALL=C sort | cpio -o -H newc --owner=0:0 --quiet) > "$WORK/layer.cpio"
for a in "${ARCHS[@]}"; do
  # the kernel finds an uncompressed cpio after the gzip one at a 4-byte
  # aligned offset (init/initramfs.c)
  f=$WORK/vm-$a/ironic-agent.initramfs
  { cat "$f"; head -c $(( (4 - $(stat -c %s "$f") % 4) % 4 )) /dev/zero; cat "$WORK/layer.cpio"; } \
    > "$WORK/initrd-measure-$a"
done

# ---------------------------------------------------------------- boots
declare -A READY RSS HWM
for i in $(seq "$BOOTS"); do
  for a in "${ARCHS[@]}"; do
    name=boot-$a-$i
    if ! "$ROOT/ramdisk/run-vm" --arch "$a" --kernel "$WORK/vm-$a/ironic-agent.kernel" \
        --initrd "$WORK/initrd-measure-$a" --mem 128M --timeout 120 --workdir "$WORK/$name" \
        > "$WORK/$name.env" 2>"$WORK/$name.log"; then
      log "$name failed: $WORK/$name"; continue
    fi
    # shellcheck disable=SC1090
    . "$WORK/$name.env"
    tok=$(grep -ao 'standalone agent token: [A-Za-z0-9_-]*' "$VM_CONSOLE" | awk '{print $4}' | tail -1)
    out=$(curl -sk -m 60 -H 'Content-Type: application/json' \
      "https://127.0.0.1:$VM_PORT/v1/commands/?wait=true&agent_token=$tok" \
      -d '{"name":"clean.execute_clean_step","params":{"step":{"step":"measure_rss","interface":"deploy","priority":0},"node":{},"ports":[]}}')
    kill "$VM_PID" 2>/dev/null || true
    rss=$(grep -o 'VmRSS: [0-9]* kB' <<< "$out" | awk '{print $2}')
    hwm=$(grep -o 'VmHWM: [0-9]* kB' <<< "$out" | awk '{print $2}')
    [ -n "$rss" ] || { log "$name: no RSS in $out"; continue; }
    READY[$a]+=" $VM_READY_SECONDS" RSS[$a]+=" $rss" HWM[$a]+=" $hwm"
    log "$name: ready $VM_READY_SECONDS s, VmRSS $rss kB, VmHWM $hwm kB"
  done
done
stats() { printf '%s\n' "$@" | sed '/^$/d' | sort -n | awk -v d="${DIV:-1}" '{a[NR]=$1/d} END{if(NR==0){print "n/a"; exit} printf "%.2f (%.2f-%.2f, n=%d)", a[int((NR+1)/2)], a[1], a[NR], NR}'; }

# ---------------------------------------------------------------- Ironic
declare -A HB
for i in $(seq "$BOOTS"); do
  for a in "${ARCHS[@]}"; do
    python3 "$ROOT/tests/vm/ironic_vm.py" --arch "$a" --ramdisk "$WORK/vm-$a" \
      --work "$WORK/ironic-$a-$i" --mem 128M --phases c > "$WORK/ironic-$a-$i.log" 2>&1 || true
    if [ -f "$WORK/ironic-$a-$i/heartbeat-seconds" ]; then
      HB[$a]+=" $(cat "$WORK/ironic-$a-$i/heartbeat-seconds")"
      log "ironic $a $i: first heartbeat $(cat "$WORK/ironic-$a-$i/heartbeat-seconds") s"
    else
      log "ironic $a $i: no heartbeat timing (see $WORK/ironic-$a-$i.log)"
    fi
  done
done

declare -A FLOORS
try_cycle() {  # try_cycle ARCH MiB: the Ironic cycle passes
  python3 "$ROOT/tests/vm/ironic_vm.py" --arch "$1" --ramdisk "$WORK/vm-$1" \
    --work "$WORK/floor-$1-$2" --mem "$2M" --phases icd > "$WORK/floor-$1-$2.log" 2>&1
}
if [ "$FLOOR" = 1 ]; then
  for a in "${ARCHS[@]}"; do
    lo=64 hi=128
    if ! try_cycle "$a" $hi; then FLOORS[$a]=">$hi"; continue; fi
    if try_cycle "$a" $lo; then FLOORS[$a]="<=$lo"; continue; fi
    while [ $((hi - lo)) -gt 4 ]; do
      mid=$(( (lo + hi) / 8 * 4 ))
      if try_cycle "$a" "$mid"; then hi=$mid; else lo=$mid; fi
      log "floor $a: ${mid}M $([ $hi = "$mid" ] && echo passes || echo fails)"
    done
    FLOORS[$a]=$hi
  done
fi

# ---------------------------------------------------------------- report
{
echo "=== x86_64 and aarch64 ($(date -u +%FT%TZ), $(git -C "$ROOT" rev-parse --short HEAD), load $(cut -d' ' -f1-3 /proc/loadavg))"
echo
echo "| | x86_64 | aarch64 |"
echo "|---|---|---|"
echo "| static binary (stripped) | ${SIZE[amd64]} B ($(mib "${SIZE[amd64]}") MiB) | ${SIZE[arm64]} B ($(mib "${SIZE[arm64]}") MiB) |"
echo "| vm initramfs (gzip) | $(field "$WORK/vm-amd64" 'initramfs bytes (gzip)') B | $(field "$WORK/vm-arm64" 'initramfs bytes (gzip)') B |"
echo "| kernel (Debian cloud) | $(field "$WORK/vm-amd64" 'kernel bytes') B | $(field "$WORK/vm-arm64" 'kernel bytes') B |"
echo "| qemu start -> /v1/status, 128 MiB, TCG | $(stats ${READY[amd64]:-}) s | $(stats ${READY[arm64]:-}) s |"
echo "| qemu start -> first heartbeat in Ironic | $(stats ${HB[amd64]:-}) s | $(stats ${HB[arm64]:-}) s |"
echo "| agent VmRSS after boot (MiB) | $(DIV=1024 stats ${RSS[amd64]:-}) | $(DIV=1024 stats ${RSS[arm64]:-}) |"
echo "| agent VmHWM after boot (MiB) | $(DIV=1024 stats ${HWM[amd64]:-}) | $(DIV=1024 stats ${HWM[arm64]:-}) |"
[ "$FLOOR" = 1 ] && echo "| RAM floor, Ironic inspect+clean+deploy | ${FLOORS[amd64]} MiB | ${FLOORS[arm64]} MiB |"
echo
echo "raw: $WORK"
} | tee "$WORK/report.md"
