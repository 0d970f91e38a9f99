#!/usr/bin/env bash
# ironic-agent vs ironic-python-agent 13 on this machine, side by side in one
# run, reported as ratios (issue 2, item 9). Both agents run standalone on
# 127.0.0.1 with a configured token and plain HTTP, read-only (the same
# calls IPA's baseline used: /v1/status and poll.get_hardware_info).
#
#   benches/ipa-compare.sh            # prints a table; raw JSON in $WORK
#
# Installs what it needs: wrk and lshw (apt), IPA into a cached venv, and
# udevadm extracted from Debian's udev package without installing it (IPA
# crashes at start without udevadm; the baseline did the same).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/ironic-agent
WORK=${BENCH_WORK:-$(mktemp -d /tmp/ipa-compare.XXXXXX)}
IPA_REQ=${IPA_REQ:-ironic-python-agent==13.0.0}
DURATION=${WRK_DURATION:-10s}
mkdir -p "$CACHE" "$WORK"
log() { echo "[ipa-compare] $*" >&2; }
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# --- dependencies -----------------------------------------------------------
# shellcheck source=../scripts/lib.sh
. "$ROOT/scripts/lib.sh"
apt_install wrk lshw python3-venv
ensure_musl
UDEV="$CACHE/udev-extract"
if [ ! -x "$UDEV/bin/udevadm" ]; then
  log "extracting udevadm from Debian's udev package (not installed)"
  (cd "$WORK" && apt-get download udev >/dev/null 2>&1)
  rm -rf "$UDEV" && dpkg-deb -x "$WORK"/udev_*.deb "$UDEV"
fi
VENV="$CACHE/ipa-venv"
if [ ! -x "$VENV/bin/ironic-python-agent" ]; then
  log "installing $IPA_REQ into $VENV (about 20 s)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q "$IPA_REQ"
fi
# PATH guard: IPA runs mdadm/multipath/iscsistart/modprobe at start; refuse
# anything state-changing (none exist on a stock machine, this makes sure).
GUARD="$WORK/guard"; mkdir -p "$GUARD"
for t in mdadm multipath multipathd iscsistart modprobe; do
  printf '#!/bin/sh\necho "guard: refused $0 $*" >&2\nexit 1\n' > "$GUARD/$t"; chmod +x "$GUARD/$t"
done
mkdir -p "$GUARD/udev"; ln -sf "$UDEV/bin/udevadm" "$GUARD/udevadm"

# --- build ------------------------------------------------------------------
log "building the static release binary"
(cd "$ROOT" && cargo build -q --release --target x86_64-unknown-linux-musl)
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/x86_64-unknown-linux-musl/release/ironic-agent"
SIZE=$(stat -c %s "$BIN")
# the same sources with std rebuilt without its backtrace printer
# (scripts/build-static --small: pinned nightly); its size is reported too
log "building the --small static binary"
"$ROOT/scripts/build-static" --small >/dev/null
SMALL_SIZE=$(stat -c %s "${CARGO_TARGET_DIR:-$ROOT/target}/small/x86_64-unknown-linux-musl/release/ironic-agent")

TOKEN=$(python3 -c 'import secrets;print(secrets.token_hex(20))')
run_rust() { # PORT
  echo "$BIN" --standalone --listen-host 127.0.0.1 --listen-port "$1" --agent-token "$TOKEN" \
    --enable-auto-tls=false --cmdline /dev/null
}
run_ipa() { # PORT
  cat > "$WORK/ipa-$1.conf" <<CONF
[DEFAULT]
listen_host = 127.0.0.1
listen_port = $1
agent_token = $TOKEN
debug = False
collect_lldp = False
enable_auto_tls = False
[mdns]
use_mdns = False
CONF
  echo env PATH="$GUARD:$VENV/bin:$PATH" "$VENV/bin/ironic-python-agent" --config-file "$WORK/ipa-$1.conf"
}

measure() { # NAME RUNNER
  local port; port=$(free_port)
  # shellcheck disable=SC2046
  python3 "$HERE/measure.py" --name "$1" --port "$port" --token "$TOKEN" --log "$WORK/$1.log" -- $($2 "$port")
}

throughput() { # NAME RUNNER -> requests/s of GET /v1/status, keep-alive
  local port pid rps; port=$(free_port)
  # shellcheck disable=SC2046
  $($2 "$port") >>"$WORK/$1-wrk-agent.log" 2>&1 &
  pid=$!
  for _ in $(seq 600); do curl -sf -o /dev/null "http://127.0.0.1:$port/v1/status" && break; sleep 0.05; done
  wrk -t2 -c4 -d"$DURATION" --latency "http://127.0.0.1:$port/v1/status" > "$WORK/$1-wrk.txt"
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
  awk '/Requests\/sec/{print $2}' "$WORK/$1-wrk.txt"
}

log "measuring start-up, RSS and get_hardware_info (work dir $WORK)"
measure ironic-agent run_rust | tee "$WORK/rust.json" >&2
measure ipa run_ipa | tee "$WORK/ipa.json" >&2
log "measuring /v1/status keep-alive throughput with wrk ($DURATION each)"
RUST_RPS=$(throughput ironic-agent run_rust)
IPA_RPS=$(throughput ipa run_ipa)

python3 - "$WORK/rust.json" "$WORK/ipa.json" "$RUST_RPS" "$IPA_RPS" "$SIZE" "$SMALL_SIZE" <<'PY'
import json, sys
r, i = (json.load(open(p)) for p in sys.argv[1:3])
rr, ir, size, small = float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
rows = [
    ("start to first 200 on /v1/status", f"{r['start_to_first_200_s']*1000:.1f} ms", f"{i['start_to_first_200_s']*1000:.0f} ms",
     i['start_to_first_200_s'] / r['start_to_first_200_s'], "<= 20 ms", r['start_to_first_200_s'] <= 0.020),
    ("idle RSS", f"{r['idle_rss_kib']/1024:.2f} MiB", f"{i['idle_rss_kib']/1024:.1f} MiB",
     i['idle_rss_kib'] / r['idle_rss_kib'], "<= 4 MiB", r['idle_rss_kib'] <= 4096),
    ("poll.get_hardware_info (median of 20)", f"{r['get_hardware_info_ms_median']:.2f} ms", f"{i['get_hardware_info_ms_median']:.0f} ms",
     i['get_hardware_info_ms_median'] / r['get_hardware_info_ms_median'], "<= 10 ms", r['get_hardware_info_ms_median'] <= 10),
    ("GET /v1/status keep-alive (wrk -t2 -c4)", f"{rr:.0f} req/s", f"{ir:.0f} req/s", rr / ir, ">= 5x IPA", rr >= 5 * ir),
    ("stripped static binary (stable)", f"{size/1048576:.2f} MiB", "(~74 MB installed)", None, "<= 3 MiB", size <= 3 * 1048576),
    ("stripped static binary (--small)", f"{small/1048576:.2f} MiB", "(~74 MB installed)", None, "<= 3 MiB", small <= 3 * 1048576),
]
print("| measure | ironic-agent | IPA 13 | ratio (better is >1) | goal | met |")
print("|---|---|---|---|---|---|")
for name, a, b, ratio, goal, ok in rows:
    print(f"| {name} | {a} | {b} | {'' if ratio is None else f'{ratio:.1f}x'} | {goal} | {'yes' if ok else 'NO'} |")
print(f"\n(RSS after the 20 calls: ironic-agent {r['rss_after_calls_kib']/1024:.2f} MiB, IPA {i['rss_after_calls_kib']/1024:.1f} MiB)")
PY
log "raw results in $WORK"
