# Shared shell helpers for the project's scripts (sourced, bash; safe
# under `set -euo pipefail`). Every installer returns non-zero, after a
# line naming what failed, when it could not install: callers under
# `set -e` stop there, others must check (scripts/test-all does).

# _apt_get_install [APT-OPTION...] PKG...: apt-get update, then install,
# waiting for the dpkg lock instead of failing when another job holds it.
_apt_get_install() {
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi
  $sudo apt-get -o DPkg::Lock::Timeout=600 update -qq \
    || echo "[setup] apt-get update failed; installing from the current lists" >&2
  if ! DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
      --no-install-recommends "$@" >/dev/null; then
    echo "[setup] FAILED: apt-get install $*" >&2
    return 1
  fi
}

# apt_install PKG...: install the Debian packages not installed yet; fails
# (naming them) unless every one is installed afterwards.
apt_install() {
  local missing=() still=() p
  for p in "$@"; do
    [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] \
      || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then return 0; fi
  echo "[setup] apt-get install ${missing[*]}" >&2
  _apt_get_install "${missing[@]}" || return 1
  for p in "${missing[@]}"; do
    [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] \
      || still+=("$p")
  done
  if [ ${#still[@]} -ne 0 ]; then
    echo "[setup] FAILED: still not installed after apt-get install: ${still[*]}" >&2
    return 1
  fi
}

# ensure_musl: the static build's toolchain (rust-std for musl; musl-tools
# for ring's C code, which cc-rs compiles with x86_64-linux-musl-gcc).
ensure_musl() {
  rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl \
    || rustup target add x86_64-unknown-linux-musl \
    || { echo "[setup] FAILED: rustup target add x86_64-unknown-linux-musl" >&2; return 1; }
  command -v x86_64-linux-musl-gcc >/dev/null || apt_install musl-tools
}

# ensure_nightly: the one pinned nightly the project uses where stable
# cannot (scripts/build-static --small's -Zbuild-std, scripts/fuzz's
# sanitizers), with rust-src and the musl target; sets NIGHTLY. The
# channel date is the day after the rustc commit date (1.97.0-nightly
# e50aa6fba 2026-05-19).
ensure_nightly() {
  NIGHTLY=${IRONIC_AGENT_NIGHTLY:-nightly-2026-05-20}
  if ! rustup component list --installed --toolchain "$NIGHTLY" 2>/dev/null | grep -q '^rust-src' \
     || ! rustup target list --installed --toolchain "$NIGHTLY" 2>/dev/null \
          | grep -qx x86_64-unknown-linux-musl; then
    rustup toolchain install --profile minimal "$NIGHTLY" \
      --component rust-src --target x86_64-unknown-linux-musl \
      || { echo "[setup] FAILED: rustup toolchain install $NIGHTLY" >&2; return 1; }
  fi
}

# ensure_qemu [ovmf] [isotools]: qemu-system-x86 for the VM tests (and OVMF,
# Debian's UEFI firmware, when asked).
# Pitfall (../shared/qemu NOTES §1): this machine image ships a backported
# qemu-utils (qemu-img 10) that Breaks bookworm's qemu-system-common 7.2, so
# `apt-get install qemu-system-x86` alone REMOVES qemu-img, which other
# tests use. Asking for the distribution's qemu-utils in the same
# transaction replaces it instead, and qemu-img never goes missing.
ensure_qemu() {
  local pkgs=() a
  for a in "$@"; do
    case "$a" in
      ovmf) [ -f /usr/share/OVMF/OVMF_CODE.fd ] || pkgs+=(ovmf) ;;
    esac
  done
  if ! command -v qemu-system-x86_64 >/dev/null; then
    local codename
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    pkgs+=(qemu-system-x86 "qemu-utils${codename:+/$codename}")
  fi
  if [ ${#pkgs[@]} -eq 0 ]; then return 0; fi
  echo "[setup] apt-get install ${pkgs[*]}" >&2
  local rc=0
  _apt_get_install --allow-downgrades "${pkgs[@]}" || rc=1
  # belt and braces: never leave the machine without qemu-img
  command -v qemu-img >/dev/null || apt_install qemu-utils || rc=1
  command -v qemu-system-x86_64 >/dev/null \
    || { echo "[setup] FAILED: no qemu-system-x86_64 after the install" >&2; rc=1; }
  return $rc
}
