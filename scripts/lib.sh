# Shared shell helpers for the project's scripts (sourced, bash).
# apt_install PKG...: install missing Debian packages, waiting for the dpkg
# lock instead of failing when another job holds it.
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "[setup] apt-get install ${missing[*]}" >&2
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null
}

# ensure_musl: the static build's toolchain (rust-std for musl; musl-tools
# for ring's C code, which cc-rs compiles with x86_64-linux-musl-gcc).
ensure_musl() {
  rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl \
    || rustup target add x86_64-unknown-linux-musl
  command -v x86_64-linux-musl-gcc >/dev/null || apt_install musl-tools
}
