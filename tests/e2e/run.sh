#!/usr/bin/env bash
# The ironic-agent end-to-end test against the real OpenStack Ironic 39,
# from nothing: builds the agent, installs Ironic into a cached venv if
# needed (tests/e2e/ironic.sh), starts it on free loopback ports with a
# fresh state directory, runs tests/e2e/e2e.py, stops Ironic.
#
#   tests/e2e/run.sh [--phases abcfdqpwt] [--fixture DIR]
#
# Environment: CARGO_TARGET_DIR (as cargo), E2E_WORK (keep everything
# there instead of a fresh temp dir), E2E_STRICT=1 (PENDING phases fail),
# E2E_KEEP_IRONIC=1 (leave Ironic running for a look afterwards).
# Exit status: e2e.py's (non-zero on any failure); logs are kept and their
# location printed.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PYTHON="${PYTHON:-python3}"

log() { echo "[run.sh $(date +%T)] $*" >&2; }

t0=$SECONDS
log "building the agent"
(cd "$REPO" && cargo build --quiet --bin ironic-agent)
TARGET="${CARGO_TARGET_DIR:-$REPO/target}"
AGENT="$TARGET/debug/ironic-agent"
[ -x "$AGENT" ] || { log "no agent binary at $AGENT"; exit 1; }
log "built in $((SECONDS - t0)) s"

WORK="${E2E_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/agent-e2e.XXXXXX")}"
mkdir -p "$WORK"
export IRONIC_E2E_STATE="$WORK/ironic"

cleanup() {
  local rc=$?
  if [ "${E2E_KEEP_IRONIC:-0}" != 1 ]; then
    "$HERE/ironic.sh" stop >/dev/null 2>&1 || true
    # a passing run removes what it made (~73 MB: Ironic's state, images,
    # the agents' logs); a failing one keeps it to be read
    if [ "$rc" = 0 ] && [ -z "${E2E_WORK:-}" ]; then rm -rf "$WORK"; fi
  else
    log "Ironic left running: IRONIC_E2E_STATE=$IRONIC_E2E_STATE $HERE/ironic.sh stop"
  fi
}
trap cleanup EXIT

t1=$SECONDS
eval "$("$HERE/ironic.sh" start)"
export IRONIC_E2E_STATE IRONIC_URL IRONIC_HTTP_URL
log "Ironic ready in $((SECONDS - t1)) s at $IRONIC_URL"

rc=0
"$PYTHON" "$HERE/e2e.py" --agent "$AGENT" --ironic-sh "$HERE/ironic.sh" \
  --work "$WORK" "$@" || rc=$?
if [ "$rc" = 0 ] && [ -z "${E2E_WORK:-}" ] && [ "${E2E_KEEP_IRONIC:-0}" != 1 ]; then
  log "total $((SECONDS - t0)) s, exit 0 (logs removed; E2E_WORK=DIR keeps them)"
else
  log "total $((SECONDS - t0)) s, exit $rc; logs: $WORK"
fi
exit "$rc"
