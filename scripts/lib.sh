# Shared shell helpers for the project's scripts (sourced, bash).

# apt_failed WHAT: say why setup cannot go on, and fail.
apt_failed() {
  echo "[setup] error: $* failed (apt-get's messages are above); stopping." >&2
  echo "[setup] A half-configured package system is repaired with 'dpkg --configure -a' and" >&2
  echo "[setup] 'apt-get -f install'; then run this again." >&2
  return 1
}

# apt_install PKG...: install missing Debian packages, waiting for the dpkg
# lock instead of failing when another job holds it. Returns non-zero, with
# a message, when apt-get fails: callers stop there instead of failing
# later with a missing tool.
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "[setup] apt-get install ${missing[*]}" >&2
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get -o DPkg::Lock::Timeout=600 update -qq || apt_failed "apt-get update" || return 1
  DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null \
    || apt_failed "apt-get install ${missing[*]}" || return 1
}

# ensure_musl: the static build's toolchain (rust-std for musl; musl-tools
# for ring's C code, which cc-rs compiles with x86_64-linux-musl-gcc).
ensure_musl() {
  if ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
    rustup target add x86_64-unknown-linux-musl \
      || { echo "[setup] error: rustup target add x86_64-unknown-linux-musl failed" >&2; return 1; }
  fi
  command -v x86_64-linux-musl-gcc >/dev/null || apt_install musl-tools
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
  [ ${#pkgs[@]} -eq 0 ] && return 0
  echo "[setup] apt-get install ${pkgs[*]}" >&2
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get -o DPkg::Lock::Timeout=600 update -qq || apt_failed "apt-get update" || return 1
  DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends --allow-downgrades "${pkgs[@]}" >/dev/null \
    || apt_failed "apt-get install ${pkgs[*]}" || return 1
  # belt and braces: never leave the machine without qemu-img
  command -v qemu-img >/dev/null || apt_install qemu-utils
}
