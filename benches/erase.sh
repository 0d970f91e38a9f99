#!/usr/bin/env bash
# Erase throughput on real block devices (issue 6, item 7), as ratios:
#
#  1. overwrite: the agent's erase_devices with one zero pass
#     (agent_erase_devices_iterations 0, zeroize true: the overwrite
#     fallback, forced by presenting the device as rotational without a
#     write-zeroes offload) of a 4 GiB loop device, against
#     `dd if=/dev/zero of=LOOP oflag=direct bs=4M` on the same device.
#     Goal: dd time / agent time >= 0.95. The agent's time is the whole
#     step over HTTP: device survey, secure-erase probing, the pass, fsync,
#     read-back verification. Also reported: one random pass.
#  2. parallel: four 1 GiB devices at disk_erasure_concurrency 4, against
#     one device alone (goal: about the same time) and against the four at
#     concurrency 1 (about four times). Each loop device gets the same
#     write-bandwidth limit from the blkio cgroup throttle, so that the
#     four behave like four disks instead of sharing this machine's one
#     backing disk.
#
# Loop devices use --direct-io=on so that O_DIRECT writes reach the backing
# file as they would reach a real disk (no page cache in between for either
# dd or the agent); the backing files live on tmpfs unless BACKING says
# otherwise. Needs root. Everything it creates is removed on exit.
#
#   benches/erase.sh                 # builds the static binary if needed
#   BIN=path/to/ironic-agent RUNS=3 SIZE_GIB=4 THROTTLE_MBPS=100 benches/erase.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
RUNS=${RUNS:-5}
SIZE_GIB=${SIZE_GIB:-4}
PAR_GIB=${PAR_GIB:-1}
THROTTLE_MBPS=${THROTTLE_MBPS:-100}
# Backing files on tmpfs by default: this machine's one disk is shared with
# other jobs and its throughput swings 3x from run to run; memory gives both
# dd and the agent the same steady device. BACKING=/tmp to use the disk.
BACKING=${BACKING:-/dev/shm}
WORK=$(mktemp -d "$BACKING/erase-bench.XXXXXX")
CG=/sys/fs/cgroup/blkio/ironic-agent-erase-bench.$$
TOKEN=erase-bench
AGENT_PID=
log() { echo "[erase-bench] $*" >&2; }

[ "$(id -u)" -eq 0 ] || { echo "benches/erase.sh needs root (loop devices, cgroups)" >&2; exit 1; }

cleanup() {
  set +e
  [ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null
  # new_loop runs in command substitutions: find our loops by backing file
  for f in "$WORK"/*.img; do
    [ -e "$f" ] || continue
    losetup -j "$f" | cut -d: -f1 | while read -r l; do losetup -d "$l"; done
  done
  [ -d "$CG" ] && rmdir "$CG" 2>/dev/null
  if [ -n "${KEEP:-}" ]; then log "kept $WORK"; rm -f "$WORK"/*.img; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

if [ -z "${BIN:-}" ]; then
  # shellcheck source=../scripts/lib.sh
  . "$ROOT/scripts/lib.sh"
  ensure_musl
  (cd "$ROOT" && cargo build --release --target x86_64-unknown-linux-musl -q)
  BIN="${CARGO_TARGET_DIR:-$ROOT/target}/x86_64-unknown-linux-musl/release/ironic-agent"
fi
log "agent: $BIN"

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", b-a}'; }
median() { sort -g | awk '{v[NR]=$1} END{print v[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }

new_loop() { # size_bytes -> /dev/loopN
  local f="$WORK/disk$1.$RANDOM.img"
  truncate -s "$1" "$f"
  # allocate the file so that the first run does not pay for it
  dd if=/dev/zero of="$f" bs=4M count=$(($1 / 4194304)) conv=notrunc,fsync status=none
  local l
  losetup -f --show --direct-io=on "$f"
}

# A fixture root presenting loop devices as disks sda, sdb, ... (rotational,
# no write-zeroes offload: the agent's overwrite path).
make_root() { # root loop...
  local root=$1; shift
  mkdir -p "$root/proc" "$root/dev" "$root/sys/block"
  : >"$root/proc/mounts"
  echo "Filename Type Size Used Priority" >"$root/proc/swaps"
  local i=0 l name k
  for l in "$@"; do
    name=sd$(printf "\\x$(printf %x $((97 + i)))")
    k=${l#/dev/}
    mkdir -p "$root/sys/block/$name/queue"
    for a in size ro removable dev; do cat "/sys/block/$k/$a" >"$root/sys/block/$name/$a"; done
    cat "/sys/block/$k/queue/logical_block_size" >"$root/sys/block/$name/queue/logical_block_size"
    echo 1 >"$root/sys/block/$name/queue/rotational"
    echo 0 >"$root/sys/block/$name/queue/write_zeroes_max_bytes"
    ln -sf "$l" "$root/dev/$name"
    i=$((i + 1))
  done
}

# Start the agent on a fixture root (inside cgroup $2 when given).
URL=
start_agent() { # root [cgroup]
  local logf="$WORK/agent.log"
  : >"$WORK/cmdline"
  if [ -n "${2:-}" ]; then
    sh -c 'echo $$ > "$0/cgroup.procs"; exec "$@"' "$2" "$BIN" --standalone \
      --listen-host 127.0.0.1 --listen-port 0 --agent-token "$TOKEN" \
      --enable-auto-tls=false --root "$1" --cmdline "$WORK/cmdline" 2>"$logf" &
  else
    "$BIN" --standalone --listen-host 127.0.0.1 --listen-port 0 --agent-token "$TOKEN" \
      --enable-auto-tls=false --root "$1" --cmdline "$WORK/cmdline" 2>"$logf" &
  fi
  AGENT_PID=$!
  for _ in $(seq 200); do
    URL=$(grep -o 'API listening on http://[0-9.:]*' "$logf" | head -1 | awk '{print $4}') || true
    [ -n "$URL" ] && return 0
    sleep 0.05
  done
  cat "$logf" >&2
  return 1
}

stop_agent() { kill "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null || true; AGENT_PID=; }

# Run erase_devices with driver_internal_info $1; prints the wall time.
erase_devices() {
  local t0 t1 out
  t0=$(now)
  out=$(curl -sS -X POST "$URL/v1/commands/?wait=true&agent_token=$TOKEN" \
    -H 'Content-Type: application/json' \
    -d "{\"name\": \"clean.execute_clean_step\", \"params\": {\"step\": {\"step\": \"erase_devices\", \"interface\": \"deploy\"}, \"node\": {\"driver_internal_info\": $1}, \"ports\": []}}")
  t1=$(now)
  if [ "$(echo "$out" | jq -r .command_status)" != SUCCEEDED ]; then
    echo "erase_devices failed: $out" >&2
    return 1
  fi
  echo "$out" >"$WORK/last-result.json"
  elapsed "$t0" "$t1"
}

dd_zero() { # loop [count of 4M blocks]
  local t0 t1
  t0=$(now)
  dd if=/dev/zero of="$1" oflag=direct bs=4M count="$2" status=none
  t1=$(now)
  elapsed "$t0" "$t1"
}

# --- 1. one device: agent overwrite vs dd --------------------------------------
size=$((SIZE_GIB * 1073741824))
log "1. overwrite of one ${SIZE_GIB} GiB loop device, $RUNS runs each, alternating"
L=$(new_loop "$size")
R1="$WORK/root1"
make_root "$R1" "$L"
start_agent "$R1"
dd_times=() agent_times=() rand_times=()
ZERO_ONLY='{"agent_erase_devices_iterations": 0, "agent_erase_devices_zeroize": true}'
for r in $(seq "$RUNS"); do
  # alternate which goes first: this machine's disk is shared and noisy
  if [ $((r % 2)) -eq 1 ]; then
    dd_times+=("$(dd_zero "$L" $((size / 4194304)))")
    agent_times+=("$(erase_devices "$ZERO_ONLY")")
  else
    agent_times+=("$(erase_devices "$ZERO_ONLY")")
    dd_times+=("$(dd_zero "$L" $((size / 4194304)))")
  fi
  log "   run $r: dd ${dd_times[-1]} s, agent ${agent_times[-1]} s"
done
method=$(jq -r '.command_result.clean_result["/dev/sda"] | "\(.method), verified \(.verified) (\(.verification))"' "$WORK/last-result.json")
# the pass alone, as the agent logs it ("zero pass 1/1 done in 2.1 s (1950 MiB/s)")
pass_only=$(grep -o 'zero pass 1/1 done in [0-9.]* s' "$WORK/agent.log" | awk '{print $6}' | median)
rand_times+=("$(erase_devices '{"agent_erase_devices_iterations": 1, "agent_erase_devices_zeroize": false}')")
stop_agent
cp "$WORK/agent.log" "$WORK/agent-1.log"
dd_med=$(printf '%s\n' "${dd_times[@]}" | median)
ag_med=$(printf '%s\n' "${agent_times[@]}" | median)
spread() { printf '%s\n' "$@" | sort -g | awk 'NR==1{a=$1} {b=$1} END{printf "%s..%s", a, b}'; }
mib=$((size / 1048576))

# --- 2. four devices in parallel vs one ----------------------------------------
log "2. parallel: ${PAR_GIB} GiB devices, each throttled to ${THROTTLE_MBPS} MB/s"
psize=$((PAR_GIB * 1073741824))
P=()
for _ in 1 2 3 4; do P+=("$(new_loop "$psize")"); done
mkdir "$CG"
for l in "${P[@]}"; do
  echo "$(cat "/sys/block/${l#/dev/}/dev") $((THROTTLE_MBPS * 1000000))" >"$CG/blkio.throttle.write_bps_device"
done
R2="$WORK/root2"
make_root "$R2" "${P[0]}"
start_agent "$R2" "$CG"
one=$(erase_devices '{"agent_erase_devices_iterations": 0}')
stop_agent
R3="$WORK/root3"
make_root "$R3" "${P[@]}"
start_agent "$R3" "$CG"
four=$(erase_devices '{"agent_erase_devices_iterations": 0, "disk_erasure_concurrency": 4}')
serial=$(erase_devices '{"agent_erase_devices_iterations": 0, "disk_erasure_concurrency": 1}')
stop_agent

cat <<EOF

erase benchmark ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, kernel $(uname -r))
1. overwrite of a ${SIZE_GIB} GiB loop device (direct-io), median of $RUNS
   dd if=/dev/zero oflag=direct bs=4M   ${dd_med} s  ($(awk -v m="$mib" -v t="$dd_med" 'BEGIN{printf "%.0f", m/t}') MiB/s; runs $(spread "${dd_times[@]}") s)
   agent erase_devices, one zero pass   ${ag_med} s  ($(awk -v m="$mib" -v t="$ag_med" 'BEGIN{printf "%.0f", m/t}') MiB/s; runs $(spread "${agent_times[@]}") s)
     [$method]
   ratio dd/agent                       $(ratio "$dd_med" "$ag_med")   (goal >= 0.95)
   the zero pass alone (agent log)      ${pass_only} s  ratio dd/pass $(ratio "$dd_med" "$pass_only")
   agent, one random pass               ${rand_times[0]} s  ($(awk -v m="$mib" -v t="${rand_times[0]}" 'BEGIN{printf "%.0f", m/t}') MiB/s)
2. ${PAR_GIB} GiB devices throttled to ${THROTTLE_MBPS} MB/s each, one zero pass
   one device                           ${one} s
   four devices, concurrency 4          ${four} s   ratio four/one $(ratio "$four" "$one")  (goal about 1)
   four devices, concurrency 1          ${serial} s   ratio $(ratio "$serial" "$one")
EOF
