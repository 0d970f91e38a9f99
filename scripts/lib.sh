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

# ensure_musl [x86_64|aarch64]: the static build's toolchain (rust-std for
# musl; a C compiler for ring's C and assembly code). x86_64 (the default):
# musl-tools, whose x86_64-linux-musl-gcc cc-rs picks by itself. aarch64:
# Debian's cross gcc and the arm64 C headers (libc6-dev-arm64-cross: ring's
# few libc includes), which .cargo/config.toml names to cc-rs
# (CC_aarch64_unknown_linux_musl); the link needs no C toolchain
# (rust-lld, see .cargo/config.toml).
ensure_musl() {
  local arch=${1:-x86_64}
  case "$arch" in x86_64|aarch64) ;; *) echo "ensure_musl: unknown arch $arch" >&2; return 1 ;; esac
  rustup target list --installed 2>/dev/null | grep -qx "$arch-unknown-linux-musl" \
    || rustup target add "$arch-unknown-linux-musl" \
    || { echo "[setup] FAILED: rustup target add $arch-unknown-linux-musl" >&2; return 1; }
  if [ "$arch" = x86_64 ]; then
    command -v x86_64-linux-musl-gcc >/dev/null || apt_install musl-tools
  else
    apt_install gcc-aarch64-linux-gnu libc6-dev-arm64-cross
  fi
}

# ensure_apt_arch ARCH: let apt see Debian's packages of another
# architecture (dpkg --add-architecture + apt-get update), so that
# `apt-get download PKG:ARCH` fetches them; ramdisk/build only unpacks such
# packages (dpkg -x), it never installs one.
ensure_apt_arch() {
  [ "$1" = "$(dpkg --print-architecture)" ] && return 0
  dpkg --print-foreign-architectures | grep -qx "$1" && return 0
  echo "[setup] dpkg --add-architecture $1" >&2
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo dpkg --add-architecture "$1"
  $sudo apt-get -o DPkg::Lock::Timeout=600 update -qq
}

# deb_unpack PKG ARCH CACHE: sets DEBDIR to the unpacked contents (dpkg -x)
# of the candidate version of PKG:ARCH, downloaded with `apt-get download`
# into CACHE/debs and unpacked into CACHE/unpacked once; nothing is
# installed. For another architecture's files (busybox-static:arm64,
# GRUB's arm64-efi modules) on this machine.
deb_unpack() {
  local pkg=$1 arch=$2 cache=$3 ver deb
  ensure_apt_arch "$arch"
  ver=$(apt-cache show --no-all-versions "$pkg:$arch" 2>/dev/null | awk '/^Version:/{print $2; exit}')
  if [ -z "$ver" ]; then    # fresh machine: no package lists yet
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    ver=$(apt-cache show --no-all-versions "$pkg:$arch" | awk '/^Version:/{print $2; exit}')
  fi
  [ -n "$ver" ] || { echo "apt-cache knows no $pkg:$arch" >&2; return 1; }
  mkdir -p "$cache/debs" "$cache/unpacked"
  deb=$(ls "$cache/debs/${pkg}_"*"${ver#*:}_$arch.deb" 2>/dev/null | head -1 || true)
  if [ -z "$deb" ]; then
    echo "[setup] apt-get download $pkg:$arch ($ver)" >&2
    # apt warns that _apt cannot write to a root-owned cache: harmless
    (cd "$cache/debs" && apt-get download "$pkg:$arch=$ver" 2>&1 \
      | grep -v '^W: Download is performed unsandboxed' >&2 || true)
    deb=$(ls "$cache/debs/${pkg}_"*"${ver#*:}_$arch.deb" 2>/dev/null | head -1 || true)
    [ -n "$deb" ] || { echo "apt-get download $pkg:$arch failed" >&2; return 1; }
  fi
  DEBDIR=$cache/unpacked/$(basename "$deb" .deb)
  if [ ! -f "$DEBDIR/.unpacked" ]; then
    rm -rf "$DEBDIR.tmp"; dpkg -x "$deb" "$DEBDIR.tmp"; touch "$DEBDIR.tmp/.unpacked"
    rm -rf "$DEBDIR"; mv "$DEBDIR.tmp" "$DEBDIR"
  fi
}

# ensure_arm64_user: qemu-aarch64-static, the runner .cargo/config.toml
# names for aarch64-unknown-linux-musl (cargo test/run of aarch64 binaries
# on this x86_64 machine). A standalone package: it does not touch
# qemu-system-common, so qemu-utils stays (see ensure_qemu).
ensure_arm64_user() {
  command -v qemu-aarch64-static >/dev/null || apt_install qemu-user-static
}

# ensure_nightly [TRIPLE]: the one pinned nightly the project uses where
# stable cannot (scripts/build-static --small's -Zbuild-std, scripts/fuzz's
# sanitizers), with rust-src and the musl target (x86_64 unless TRIPLE says
# otherwise); sets NIGHTLY. The channel date is the day after the rustc
# commit date (1.97.0-nightly e50aa6fba 2026-05-19).
ensure_nightly() {
  local triple=${1:-x86_64-unknown-linux-musl}
  NIGHTLY=${IRONIC_AGENT_NIGHTLY:-nightly-2026-05-20}
  if ! rustup component list --installed --toolchain "$NIGHTLY" 2>/dev/null | grep -q '^rust-src' \
     || ! rustup target list --installed --toolchain "$NIGHTLY" 2>/dev/null \
          | grep -qx "$triple"; then
    rustup toolchain install --profile minimal "$NIGHTLY" \
      --component rust-src --target "$triple" \
      || { echo "[setup] FAILED: rustup toolchain install $NIGHTLY" >&2; return 1; }
  fi
}

# ensure_qemu [ovmf]: qemu-system-x86 for the VM tests (and OVMF, Debian's
# UEFI firmware, when asked).
# Pitfall (../shared/qemu NOTES §1): this machine image ships a backported
# qemu-utils (qemu-img 10) that Breaks bookworm's qemu-system-common 7.2, so
# `apt-get install qemu-system-x86` alone REMOVES qemu-img, which other
# tests use. Asking for the distribution's qemu-utils in the same
# transaction replaces it instead, and qemu-img never goes missing.
# ensure_qemu arm64 [aavmf]: qemu-system-aarch64 (Debian's qemu-system-arm)
# instead, and AAVMF, edk2's firmware for the `virt` machine
# (qemu-efi-aarch64), when asked.
ensure_qemu() {
  local pkgs=() a sys=x86 bin=qemu-system-x86_64
  for a in "$@"; do
    case "$a" in
      ovmf) [ -f /usr/share/OVMF/OVMF_CODE.fd ] || pkgs+=(ovmf) ;;
      aavmf) [ -f /usr/share/AAVMF/AAVMF_CODE.fd ] || pkgs+=(qemu-efi-aarch64) ;;
      arm64) sys=arm bin=qemu-system-aarch64 ;;
    esac
  done
  if ! command -v "$bin" >/dev/null; then
    local codename
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    pkgs+=("qemu-system-$sys" "qemu-utils${codename:+/$codename}")
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

# efi_boot_loader: build ramdisk/efi-boot (the x86_64 UEFI loader that
# ramdisk/efi-image-create wraps the ramdisk in) when its sources are newer
# than the binary, and print the binary's path. Installs the rustup target
# x86_64-unknown-uefi when missing.
efi_boot_loader() {
  local root dir bin
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  dir=${CARGO_TARGET_DIR:-$root/target}/efi-boot
  bin=$dir/x86_64-unknown-uefi/release/ironic-agent-boot.efi
  rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-uefi \
    || rustup target add x86_64-unknown-uefi >&2 \
    || { echo "[setup] FAILED: rustup target add x86_64-unknown-uefi" >&2; return 1; }
  if [ ! -f "$bin" ] || [ -n "$(find "$root/ramdisk/efi-boot" -newer "$bin" -type f -not -path '*/target/*' | head -1)" ]; then
    (cd "$root/ramdisk/efi-boot" && CARGO_TARGET_DIR=$dir cargo build -q --release --target x86_64-unknown-uefi) >&2 \
      || { echo "[setup] FAILED: building ramdisk/efi-boot" >&2; return 1; }
  fi
  echo "$bin"
}
