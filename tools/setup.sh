#!/usr/bin/env bash
# tools/setup.sh - one-command set-up for this project (idempotent).
#
# On Debian 12/13 or Ubuntu 22.04/24.04 (x86_64 or arm64) it installs only what
# is missing, one `setup:` line per step:
#   1. Bun 1.4.5 via `npm i -g bun@1.4.5` (apt nodejs+npm first if npm is missing)
#   2. the Vulkan loader (libvulkan1)
#   3. project dependencies (`bun install --frozen-lockfile`)
#   4. a Vulkan driver, only if Dawn sees no adapter at all: Mesa lavapipe >= 23
#      (mesa-vulkan-drivers; from bookworm-backports on Debian 12)
#   5. Open MPI (openmpi-bin libopenmpi-dev): `mpirun -np N alignx train ...`
#      (data-parallel training) and the tests that launch ranks with mpirun
# A second run installs nothing and runs no `apt-get update`.
#
# `tools/setup.sh --bench` also sets up the benchmark's PyTorch peers (after the
# steps above): Debian's python3-torch, and libopenblas0-pthread, which makes
# Debian's alternatives point libblas.so.3 at OpenBLAS (threaded), so torch's
# products run on the fastest BLAS Debian ships instead of the reference BLAS
# (a 1024^3 f32 matmul: ~5 -> ~60-155 GFLOP/s on 2 cores). The plain set-up
# (what CI and the README's two commands run) installs neither.
# Runs as root, or uses sudo for the system steps.
#
# Test hook: ALIGNX_SETUP_DRY_RUN=1 prints the system-changing commands (apt,
# npm -g, writing the backports list, symlinks) instead of running them.
# `bun install` and the adapter probe still run for real.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUN_VERSION=1.4.5
DRY_RUN="${ALIGNX_SETUP_DRY_RUN:-0}"
PROBE="$ROOT/tools/probe-adapter.ts"
APT_UPDATED=0
BENCH=0
for arg in "$@"; do
  case "$arg" in
    --bench) BENCH=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup: error: unknown option '$arg' (known: --bench)" >&2; exit 2 ;;
  esac
done

say() { echo "setup: $*"; }
die() { echo "setup: error: $*" >&2; exit 1; }

unsupported() {
  cat >&2 <<EOF
setup: error: unsupported system ($1).
setup: supported: Linux x86_64/arm64 on Debian 12, Debian 13, Ubuntu 22.04, Ubuntu 24.04.
setup: install these by hand, then run 'bun install --frozen-lockfile':
setup:   - Bun $BUN_VERSION          (npm i -g bun@$BUN_VERSION)
setup:   - the Vulkan loader  (libvulkan1)
setup:   - a Vulkan driver    (your GPU vendor's driver, or Mesa lavapipe >= 23)
setup:   - Open MPI           (openmpi-bin libopenmpi-dev; for data-parallel training)
EOF
  exit 1
}

# Run a system-changing command as root (sudo when needed); print it in dry-run mode.
as_root() {
  if [ "$DRY_RUN" = 1 ]; then say "[dry-run] would run: $*"; return 0; fi
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo env DEBIAN_FRONTEND=noninteractive "$@"
  else die "not root and sudo is not installed; cannot run: $*"; fi
}
apt_update() { say "apt-get update"; as_root apt-get update -qq; APT_UPDATED=1; }
apt_install() {  # apt_install [-t SUITE] PKG...
  [ "$APT_UPDATED" = 1 ] || apt_update
  say "apt-get install $*"
  as_root apt-get install -y -qq --no-install-recommends "$@"
}
pkg_installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]; }

# --- 0. supported system? ---------------------------------------------------
[ "$(uname -s)" = Linux ] || unsupported "$(uname -s), not Linux"
case "$(uname -m)" in x86_64|amd64|aarch64|arm64) ;; *) unsupported "CPU $(uname -m)";; esac
[ -r /etc/os-release ] || unsupported "no /etc/os-release"
# shellcheck source=/dev/null
OS_ID="$(. /etc/os-release && echo "${ID:-}")"
# shellcheck source=/dev/null
OS_VER="$(. /etc/os-release && echo "${VERSION_ID:-}")"
case "$OS_ID $OS_VER" in
  "debian 12"|"debian 13"|"ubuntu 22.04"|"ubuntu 24.04") ;;
  *) unsupported "${OS_ID:-unknown} ${OS_VER:-?}" ;;
esac
if [ "$DRY_RUN" = 1 ]; then say "system: $OS_ID $OS_VER $(uname -m) (dry run)"
else say "system: $OS_ID $OS_VER $(uname -m)"; fi
[ "$DRY_RUN" = 1 ] || [ "$(id -u)" -eq 0 ] || command -v sudo >/dev/null \
  || die "run as root, or install sudo"

# --- 1. Bun -----------------------------------------------------------------
if command -v bun >/dev/null; then
  say "bun $(bun --version) found at $(command -v bun), keeping it"
else
  command -v npm >/dev/null || apt_install nodejs npm
  say "installing bun@$BUN_VERSION with npm"
  if [ "$DRY_RUN" != 1 ] && [ -w "$(npm prefix -g)" ]; then npm i -g --no-fund --no-audit --loglevel=error "bun@$BUN_VERSION"
  else as_root npm i -g --no-fund --no-audit --loglevel=error "bun@$BUN_VERSION"; fi
  if [ "$DRY_RUN" = 1 ]; then say "[dry-run] bun is not installed; later steps need it, stopping"; exit 0; fi
  NPM_PREFIX="$(npm prefix -g)"
  # Newer npm may skip bun's postinstall (it only warns); bun.exe is then a stub.
  if ! "$NPM_PREFIX/bin/bun" --version >/dev/null 2>&1; then
    say "bun's postinstall did not run; running it (node install.js)"
    as_root sh -c "cd '$(npm root -g)/bun' && node install.js"
  fi
  hash -r
  if ! command -v bun >/dev/null; then
    say "npm's global bin dir $NPM_PREFIX/bin is not on PATH; linking bun into /usr/local/bin"
    as_root ln -sf "$NPM_PREFIX/bin/bun" /usr/local/bin/bun
    as_root ln -sf "$NPM_PREFIX/bin/bunx" /usr/local/bin/bunx
    hash -r
  fi
  bun --version >/dev/null 2>&1 || die "bun was installed but 'bun --version' fails; see npm's output above"
  say "bun $(bun --version) installed at $(command -v bun)"
fi
BUN_V="$(bun --version)"

# --- 2. Vulkan loader -------------------------------------------------------
LDCONFIG="$(command -v ldconfig || echo /sbin/ldconfig)"
if "$LDCONFIG" -p | grep -q 'libvulkan.so.1'; then
  say "Vulkan loader (libvulkan.so.1) present"
else
  apt_install libvulkan1
fi

# --- 3. project dependencies ------------------------------------------------
[ -f "$ROOT/package.json" ] || die "no package.json in $ROOT; cannot install project dependencies"
say "bun install --frozen-lockfile"
if ! out="$(cd "$ROOT" && bun install --frozen-lockfile 2>&1)"; then
  echo "$out" >&2
  die "'bun install --frozen-lockfile' failed in $ROOT (is bun.lock committed and current?)"
fi

# --- 4. Vulkan driver -------------------------------------------------------
# Prints gpu|cpu|none. Uses tools/probe-adapter.ts (asks Dawn); without it, falls
# back to "cpu" if mesa-vulkan-drivers >= 23 is installed, else "none".
probe() {
  if [ -f "$PROBE" ]; then
    local p
    p="$(cd "$ROOT" && bun "$PROBE")" || die "adapter probe failed: bun $PROBE"
    case "$p" in gpu|cpu|none) echo "$p" ;; *) die "adapter probe printed '$p', expected gpu|cpu|none" ;; esac
  else
    local v
    v="$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true)"
    if [ -n "$v" ] && dpkg --compare-versions "$v" ge 23; then echo cpu; else echo none; fi
  fi
}
[ -f "$PROBE" ] || say "note: $PROBE not found; judging by the mesa-vulkan-drivers version"
ADAPTER="$(probe)"
if [ "$ADAPTER" = none ]; then
  say "no WebGPU adapter found; installing Mesa lavapipe (mesa-vulkan-drivers >= 23)"
  if [ "$OS_ID $OS_VER" = "debian 12" ]; then
    if grep -qs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/*; then
      say "bookworm-backports source already configured"
    else
      say "adding bookworm-backports (/etc/apt/sources.list.d/bookworm-backports.list)"
      as_root sh -c 'echo "deb http://deb.debian.org/debian bookworm-backports main" > /etc/apt/sources.list.d/bookworm-backports.list'
      APT_UPDATED=0  # the new source needs a fresh apt-get update
    fi
    apt_install -t bookworm-backports mesa-vulkan-drivers
  else
    apt_install mesa-vulkan-drivers
  fi
  ADAPTER="$(probe)"
  if [ "$ADAPTER" = none ]; then
    [ "$DRY_RUN" = 1 ] || die "still no WebGPU adapter after installing mesa-vulkan-drivers; install a Vulkan driver (GPU vendor driver, or Mesa lavapipe >= 23) by hand"
    ADAPTER="none (dry run)"
  fi
else
  say "WebGPU adapter: $ADAPTER"
  v="$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true)"
  if [ "$ADAPTER" = cpu ] && [ -n "$v" ] && dpkg --compare-versions "$v" lt 23; then
    say "warning: mesa-vulkan-drivers $v is older than 23; lavapipe may not work with Dawn"
  fi
fi

# --- 5. Open MPI (data-parallel training: mpirun -np N alignx train ...) -----
missing=()
for p in openmpi-bin libopenmpi-dev; do pkg_installed "$p" || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing ${missing[*]} (Open MPI: mpirun and libmpi.so.40, for data-parallel training)"
  apt_install "${missing[@]}"
else
  say "Open MPI (openmpi-bin libopenmpi-dev) present"
fi

# --- 6. (--bench) the PyTorch peers: python3-torch on OpenBLAS --------------
if [ "$BENCH" = 1 ]; then
  missing=()
  for p in python3-torch libopenblas0-pthread; do
    if pkg_installed "$p"; then say "bench: $p present"; else missing+=("$p"); fi
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    say "bench: installing ${missing[*]} (the benchmark's PyTorch peers, on OpenBLAS)"
    apt_install "${missing[@]}"
  fi
  if [ "$DRY_RUN" != 1 ]; then
    blas="$("$LDCONFIG" -p | sed -n 's/.*libblas\.so\.3 .*=> //p' | head -n1)"
    [ -z "$blas" ] || blas="$(readlink -f "$blas")"
    case "$blas" in
      *openblas*) say "bench: libblas.so.3 -> $blas (OpenBLAS)" ;;
      "") say "bench: warning: could not read libblas.so.3's alternative; check with: /usr/bin/python3 bench/torch_peer.py" ;;
      *) say "bench: warning: libblas.so.3 -> $blas, not OpenBLAS; switch it with: update-alternatives --config libblas.so.3-*" ;;
    esac
  fi
fi

say "ready (bun $BUN_V, adapter: $ADAPTER$([ "$BENCH" = 1 ] && echo ", bench peers: python3-torch on OpenBLAS"))"
