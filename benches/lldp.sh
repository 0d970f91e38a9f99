#!/usr/bin/env bash
# benches/lldp.sh: how long LLDP collection makes inspection wait for 1 and
# 4 NICs, side by side with IPA's own get_lldp_info on the same wires, and
# what a 4-NIC machine's inspection data weighs (issue 17 item 5).
#
#   benches/lldp.sh [TIMEOUT]      # lldp_timeout in seconds [3]
#
# Each case gets a fresh network namespace with veth pairs (ethN, the
# machine's NICs; swN, the switch ports, where tests/lib/lldp.py sends real
# LLDP frames, repeating every TIMEOUT seconds as a switch's transmit timer
# does, its first frame after the delay the case gives). Nothing touches
# the host's own network; the namespaces are deleted at the end.
#
# Cases (a switch sends every lldp_timeout by default: 802.1AB's
# msgTxInterval and IPA's lldp_timeout are both 30 s):
#   1 NIC, silent                          (an unconnected port)
#   4 NICs, first frames at 0.3/0.6/0.9 T, the fourth silent
#   4 NICs, first frames at 0.3/0.6/0.9/0.95 T
# ironic-agent: a whole inspection (collectors default,lldp, ipa-collect-lldp)
# from the agent's start to its POST, received by a callback server in the
# namespace. IPA: netutils.get_lldp_info(names) alone, from
# ironic-python-agent 13.0.0 in the venv benches/ipa-compare.sh uses
# (installed here when missing).
#
# Data size: the 4-NIC POST (fixture root `server` plus the four NICs,
# collectors default,extra-hardware,numa-topology,lldp,logs) by key; and,
# for the part IPA would encode from the same frames, IPA's own encoding
# (netutils._parse_tlv + hexlify, as collect_lldp_data) of each frame next
# to ours.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=../scripts/lib.sh
. "$ROOT/scripts/lib.sh"
T=${1:-3}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/ironic-agent
VENV=$CACHE/ipa-venv
IPA_REQ=${IPA_REQ:-ironic-python-agent==13.0.0}
WORK=${BENCH_WORK:-$(mktemp -d /tmp/lldp-bench.XXXXXX)}
mkdir -p "$WORK"
SWITCH=$ROOT/tests/lib/lldp.py
log() { echo "[lldp-bench] $*" >&2; }
[ "$(id -u)" = 0 ] || { log "needs root (network namespaces)"; exit 1; }
apt_install iproute2 python3-venv
NSS=() PIDS=()
cleanup() {
  local p n
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for n in "${NSS[@]}"; do ip netns del "$n" 2>/dev/null || true; done
}
trap cleanup EXIT

log "building the static release binary"
ensure_musl
(cd "$ROOT" && cargo build -q --release --target x86_64-unknown-linux-musl)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/x86_64-unknown-linux-musl/release/ironic-agent
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import ironic_python_agent' 2>/dev/null; then
  log "installing $IPA_REQ into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q "$IPA_REQ"
fi

# netns NAME N: a namespace with N veth pairs ethI/swI, all up
netns() {
  local ns=$1 n=$2 i
  ip netns add "$ns"; NSS+=("$ns")
  ip -n "$ns" link set lo up
  for ((i = 0; i < n; i++)); do
    ip -n "$ns" link add "eth$i" type veth peer name "sw$i"
    ip -n "$ns" link set "sw$i" up; ip -n "$ns" link set "eth$i" up
  done
}
# switches NS DELAY...: one sender per delay ("-" = silent), on sw0, sw1...
switches() {
  local ns=$1 i=0 d; shift
  for d in "$@"; do
    if [ "$d" != - ]; then
      ip netns exec "$ns" python3 "$SWITCH" send --iface "sw$i" --count 0 \
        --interval "$T" --delay "$(awk -v d="$d" -v t="$T" 'BEGIN{print d*t}')" \
        --port-id "Ethernet1/$((i + 1))" --system-name tor-1 --vlan 100:provisioning \
        >/dev/null 2>&1 &
      PIDS+=($!)
    fi
    i=$((i + 1))
  done
}
stop_switches() { local p; for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; PIDS=(); }

# a root: the `server` fixture with its NICs replaced by eth0..eth(N-1)
make_root() {
  local dir=$1 n=$2 i d
  rm -rf "$dir"; cp -a "$ROOT/tests/fixtures/server" "$dir"
  rm -f "$dir"/sys/class/net/{eno1,eno2,bond0}
  for ((i = 0; i < n; i++)); do
    d=$dir/sys/devices/pci0000:17/0000:17:00.0/0000:18:00.$i/net/eth$i
    mkdir -p "$d" "$(dirname "$(dirname "$d")")"
    printf '3c:ec:ef:10:00:%02x\n' $((i + 1)) > "$d/address"
    echo 1 > "$d/carrier"; echo 10000 > "$d/speed"; echo up > "$d/operstate"
    ln -s ../../../0000:18:00.$i "$d/device"
    ln -s "../../devices/pci0000:17/0000:17:00.0/0000:18:00.$i/net/eth$i" "$dir/sys/class/net/eth$i"
  done
}

# callback NS OUT: a one-shot inspection endpoint in NS; prints its port
callback() {
  local ns=$1 out=$2
  ip netns exec "$ns" python3 - "$out" > "$out.port" 2>/dev/null <<'PY' &
import http.server, json, sys, time
out = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        t = time.time()
        self.send_response(202); self.send_header("Content-Type", "application/json")
        self.end_headers(); self.wfile.write(b'{"uuid": "1be26c0b-03f2-4d2e-ae87-c02d7f33c123"}')
        with open(out, "wb") as f: f.write(body)
        with open(out + ".t", "w") as f: f.write(repr(t))
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.handle_request()
PY
  echo $! > "$out.server"
  local i; for i in $(seq 100); do [ -s "$out.port" ] && break; sleep 0.05; done
  cat "$out.port"
}

# ours NS N COLLECTORS OUT: seconds from the agent's start to its POST
ours() {
  local ns=$1 n=$2 collectors=$3 out=$4 port t0 t1 pid
  make_root "$WORK/root-$n" "$n"
  port=$(callback "$ns" "$out")
  t0=$(date +%s.%N)
  ip netns exec "$ns" "$BIN" --root "$WORK/root-$n" --cmdline /dev/null \
    --inspection-callback-url "http://127.0.0.1:$port/v1/continue_inspection" \
    --inspection-collectors "$collectors" --inspection-dhcp-wait-timeout 0 \
    --collect-lldp --lldp-timeout "$T" --listen-host 127.0.0.1 --listen-port 0 \
    --enable-auto-tls=false --agent-token benchtoken0123456789 > "$out.log" 2>&1 &
  pid=$!; PIDS+=($pid)
  local i; for i in $(seq $((T * 40 + 400))); do [ -s "$out.t" ] && break; sleep 0.05; done
  kill "$pid" "$(cat "$out.server")" 2>/dev/null || true
  [ -s "$out.t" ] || { log "no inspection POST; agent log:"; tail -5 "$out.log" >&2; echo NaN; return; }
  t1=$(cat "$out.t")
  awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}'
}

# ipa NS N: seconds IPA's get_lldp_info(eth0..) takes, and what it heard
ipa() {
  local ns=$1 n=$2
  ip netns exec "$ns" "$VENV/bin/python" - "$n" "$T" <<'PY'
import json, sys, time, logging
logging.disable(logging.CRITICAL)
from oslo_config import cfg
from ironic_python_agent import config, netutils
n, t = int(sys.argv[1]), float(sys.argv[2])
cfg.CONF.set_override("lldp_timeout", t)
t0 = time.monotonic()
r = netutils.get_lldp_info(["eth%d" % i for i in range(n)])
print("%.2f %s" % (time.monotonic() - t0, sum(1 for v in r.values() if v)))
PY
}

row() { printf '  %-52s %9s %9s\n' "$@"; }
run_case() { # NAME N DELAY...
  local name=$1 n=$2 a b heard; shift 2
  netns "lb-$$-a$n${#NSS[@]}" "$n"; local nsa=${NSS[-1]}
  switches "$nsa" "$@"
  a=$(ours "$nsa" "$n" default,lldp "$WORK/post-$n-${#NSS[@]}")
  stop_switches
  netns "lb-$$-b$n${#NSS[@]}" "$n"; local nsb=${NSS[-1]}
  switches "$nsb" "$@"
  read -r b heard < <(ipa "$nsb" "$n")
  stop_switches
  row "$name" "$a s" "$b s"
}

echo
echo "=== LLDP: seconds until inspection has it, lldp_timeout T = $T s ($(date -u +%F' '%H:%M) UTC)"
row "case" "agent" "IPA"
run_case "1 NIC, silent" 1 -
run_case "4 NICs, frames at 0.3/0.6/0.9 T, one silent" 4 0.3 0.6 0.9 -
run_case "4 NICs, frames at 0.3/0.6/0.9/0.95 T" 4 0.3 0.6 0.9 0.95
echo "  (agent: start to the inspection POST, collectors default,lldp;"
echo "   IPA 13: netutils.get_lldp_info alone)"

# ---- data size of a 4-NIC machine
netns "lb-$$-size" 4; ns=${NSS[-1]}
switches "$ns" 0.1 0.1 0.1 0.1
all="$WORK/post-size"
s=$(ours "$ns" 4 default,extra-hardware,numa-topology,lldp,logs "$all")
stop_switches
frame=$(python3 "$SWITCH" hex --port-id Ethernet1/1 --system-name tor-1 --vlan 100:provisioning)
echo
echo "=== inspection data of a 4-NIC machine (fixture root server + 4 NICs hearing LLDP; ${s} s)"
python3 - "$all" "$frame" "$VENV/bin/python" <<'PY'
import json, subprocess, sys
body = open(sys.argv[1], "rb").read()
d = json.loads(body)
print("  %-28s %9d bytes" % ("POST body, total", len(body)))
for k in sorted(d, key=lambda k: -len(json.dumps(d[k]))):
    print("  %-28s %9d" % (k, len(json.dumps(d[k]))))
ours = json.dumps(d["lldp_raw"]["eth0"])
ipa = subprocess.run([sys.argv[3], "-c", """
import binascii, json, sys
from ironic_python_agent import netutils
f = bytes.fromhex(sys.argv[1])
print(json.dumps([(t, binascii.hexlify(v).decode()) for t, v in netutils._parse_tlv(f[14:])]))
""", sys.argv[2]], capture_output=True, text=True, check=True).stdout.strip()
print("  one NIC's LLDP, this agent: %d bytes; IPA's encoding of the same frame: %d bytes"
      % (len(ours), len(ipa)))
print("  (the frame is padded to Ethernet's 60 bytes only if shorter; IPA also "
      "encodes every padding pair after End as [0, \"\"])")
PY
echo "  files in $WORK"
