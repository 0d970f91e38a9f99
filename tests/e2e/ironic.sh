#!/usr/bin/env bash
# Run the real OpenStack Ironic (PyPI ironic==39.0.0) on loopback for the
# ironic-agent end-to-end tests.
#
#   tests/e2e/ironic.sh start     install if needed, start, print env lines
#   tests/e2e/ironic.sh stop      stop Ironic and the image server
#   tests/e2e/ironic.sh restart   stop, then start on the same ports
#   tests/e2e/ironic.sh status    exit 0 and print the API URL if it answers
#
# One "ironic" process (API + conductor, rpc_transport=none), sqlite, noauth,
# fake-hardware with the real "direct" deploy and "agent" inspect interfaces,
# [agent] require_tls left at its default (true), plus a python http.server
# on 127.0.0.1 as the image server. Ports are free ones the kernel picks
# (never fixed: the machine is shared), chosen once per state directory.
#
# Environment:
#   IRONIC_E2E_STATE  state dir (config, sqlite, logs, ports). start creates
#                     a fresh one under ${TMPDIR:-/tmp} when unset; the other
#                     actions need it.
#   IRONIC_E2E_CACHE  [${XDG_CACHE_HOME:-$HOME/.cache}/ironic-agent] holds the
#                     venv (ironic-venv/), shared by every run
#   IRONIC_VERSION    [ironic==39.0.0]
#   PYTHON            interpreter for the venv [python3; Ironic 39 needs 3.11+]
#   IRONIC_E2E_BIND   [127.0.0.1] address the image server binds (`::` inside
#                     a test's network namespace: tests/vm/network.py)
#   IRONIC_E2E_CACERT the CA of the API's certificate when a *.conf in
#                     $IRONIC_E2E_STATE/ironic.conf.d turns on [api]
#                     enable_ssl_api: the API is then https:// (readiness
#                     check and IRONIC_URL)
#
# start prints, for `eval`:
#   IRONIC_E2E_STATE=... IRONIC_URL=http://127.0.0.1:<port>
#   IRONIC_HTTP_URL=http://127.0.0.1:<port> IRONIC_VENV=...
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${IRONIC_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ironic-agent}"
VENV="$CACHE/ironic-venv"
IRONIC_VERSION="${IRONIC_VERSION:-ironic==39.0.0}"
PYTHON="${PYTHON:-python3}"

log() { echo "[ironic.sh] $*" >&2; }
die() { log "$*"; exit 1; }

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

free_port() {
  "$PYTHON" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

port_busy() {
  "$PYTHON" - "$1" <<'EOF'
import socket, sys
s = socket.socket()
s.settimeout(1)
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
EOF
}

# Install once into the shared cache. A marker records what was installed,
# so a half-finished install (killed pip) is redone, and flock keeps two
# concurrent runs from installing into the same venv.
install() {
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.install.lock"
  flock 9
  if [ -f "$VENV/.installed" ] && [ "$(cat "$VENV/.installed")" = "$IRONIC_VERSION" ] \
      && [ -x "$VENV/bin/ironic" ]; then
    flock -u 9
    return
  fi
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$PYTHON is $("$PYTHON" -V 2>&1); $IRONIC_VERSION needs Python >= 3.11 (set PYTHON)"
  log "installing $IRONIC_VERSION into $VENV (first run: about a minute, ~320 MB)"
  local t0=$SECONDS
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q "$IRONIC_VERSION"
  echo "$IRONIC_VERSION" > "$VENV/.installed"
  log "installed in $((SECONDS - t0)) s"
  flock -u 9
}

# Ironic builds configdrive ISOs with genisoimage, mkisofs or xorrisofs
# (ironic/common/images.py). Best effort: only needed for configdrives.
ensure_iso_tool() {
  if command -v genisoimage >/dev/null || command -v mkisofs >/dev/null \
      || command -v xorrisofs >/dev/null; then
    return
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing genisoimage (Ironic needs it to build configdrives)"
    apt-get install -y -q genisoimage >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q genisoimage >/dev/null 2>&1; } \
      || log "WARNING: could not install genisoimage; configdrive deploys will fail"
  else
    log "WARNING: no genisoimage/mkisofs/xorrisofs; configdrive deploys will fail"
  fi
}

need_state() {
  [ -n "${IRONIC_E2E_STATE:-}" ] || die "IRONIC_E2E_STATE is not set"
  STATE="$IRONIC_E2E_STATE"
  [ -f "$STATE/ports.env" ] || die "$STATE is not an ironic.sh state directory"
  # shellcheck disable=SC1091
  . "$STATE/ports.env"
}

setup_state() {
  if [ -z "${IRONIC_E2E_STATE:-}" ]; then
    IRONIC_E2E_STATE="$(mktemp -d "${TMPDIR:-/tmp}/ironic-e2e.XXXXXX")"
  fi
  STATE="$IRONIC_E2E_STATE"
  mkdir -p "$STATE"/{tmp,locks,httpboot,certificates,deploy-logs,ironic.conf.d}
  if [ ! -f "$STATE/ports.env" ]; then
    local api http
    api="$(free_port)"
    http="$(free_port)"
    while [ "$http" = "$api" ]; do http="$(free_port)"; done
    printf 'API_PORT=%s\nHTTP_PORT=%s\n' "$api" "$http" > "$STATE/ports.env"
  fi
  # shellcheck disable=SC1091
  . "$STATE/ports.env"
  sed -e "s#@STATE@#$STATE#g" -e "s#@API_PORT@#$API_PORT#g" \
      -e "s#@HTTP_PORT@#$HTTP_PORT#g" "$HERE/ironic.conf.in" > "$STATE/ironic.conf"
  if [ ! -f "$STATE/ironic.sqlite" ]; then
    "$VENV/bin/ironic-dbsync" --config-file "$STATE/ironic.conf" create_schema \
      > "$STATE/dbsync.log" 2>&1 || die "ironic-dbsync failed; see $STATE/dbsync.log"
  fi
}

start() {
  install
  ensure_iso_tool
  setup_state
  local api="http://127.0.0.1:$API_PORT" curl_tls=()
  if [ -n "${IRONIC_E2E_CACERT:-}" ]; then
    api="https://127.0.0.1:$API_PORT" curl_tls=(--cacert "$IRONIC_E2E_CACERT")
  fi
  if ! alive "$STATE/httpd.pid"; then
    port_busy "$HTTP_PORT" && die "port $HTTP_PORT is taken by another process"
    setsid "$PYTHON" -m http.server "$HTTP_PORT" --bind "${IRONIC_E2E_BIND:-127.0.0.1}" \
      --directory "$STATE/httpboot" >> "$STATE/httpd.log" 2>&1 < /dev/null &
    echo $! > "$STATE/httpd.pid"
  fi
  if ! alive "$STATE/ironic.pid"; then
    port_busy "$API_PORT" && die "port $API_PORT is taken by another process"
    echo "=== start $(date -u +%FT%TZ)" >> "$STATE/ironic.log"
    setsid "$VENV/bin/ironic" --config-file "$STATE/ironic.conf" \
      --config-dir "$STATE/ironic.conf.d" >> "$STATE/ironic.log" 2>&1 < /dev/null &
    echo $! > "$STATE/ironic.pid"
  fi
  local t0=$SECONDS
  # the conductor registers fake-hardware shortly after the API answers
  until curl -sf "${curl_tls[@]}" "$api/v1/drivers" 2>/dev/null | grep -q fake-hardware; do
    alive "$STATE/ironic.pid" || die "ironic exited; see $STATE/ironic.log"
    [ $((SECONDS - t0)) -lt 120 ] || die "ironic did not come up in 120 s; see $STATE/ironic.log"
    sleep 0.3
  done
  log "ironic is up at $api after $((SECONDS - t0)) s (log: $STATE/ironic.log)"
  echo "IRONIC_E2E_STATE=$STATE"
  echo "IRONIC_URL=$api"
  echo "IRONIC_HTTP_URL=http://127.0.0.1:$HTTP_PORT"
  echo "IRONIC_VENV=$VENV"
}

stop_one() {
  local pidf="$STATE/$1.pid"
  if alive "$pidf"; then
    local pid
    pid="$(cat "$pidf")"
    # setsid made the server a process group leader: end its workers too
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
    for _ in $(seq 1 100); do
      alive "$pidf" || break
      sleep 0.2
    done
    if alive "$pidf"; then
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid"
    fi
  fi
  rm -f "$pidf"
}

stop() {
  need_state
  stop_one ironic
  stop_one httpd
  log "stopped"
}

status() {
  need_state
  local api="http://127.0.0.1:$API_PORT"
  if alive "$STATE/ironic.pid" && curl -sf -o /dev/null "$api/v1"; then
    echo "$api"
  else
    echo "not running"
    return 1
  fi
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  restart) need_state; stop; start ;;
  status) status ;;
  *) echo "usage: $0 [start|stop|restart|status]" >&2; exit 2 ;;
esac
