#!/usr/bin/env bash
# One-time (and idempotent) set-up of everything the project needs on Debian 12 x86_64:
#   1. system packages: build tools, and the Vulkan software driver (Mesa's lavapipe from
#      bookworm-backports) that ManiSkill/SAPIEN needs on a machine without a GPU;
#   2. .venv with the pinned Python packages (ROS 2 wheels, torch, ManiSkill, ...);
#   3. the reward_msgs interface package, built with CMake and installed into the venv;
#   4. this package, installed editable into the venv.
# Each step is skipped when what it produces is already there and up to date.
# Environment: VENV (default .venv), PYTHON (default python3.11 or python3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV:-$ROOT/.venv}"
STAMPS="$VENV/.setup"
CURRENT_STEP="start"

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
die() { printf '\033[31m[setup] error:\033[0m %s\n' "$*" >&2; exit 1; }
trap 'rc=$?; [ $rc -ne 0 ] && printf "\033[31m[setup] failed during: %s (exit %d)\033[0m\n" "$CURRENT_STEP" "$rc" >&2' EXIT

# hash of the given files (used to know whether a step is up to date)
digest() { cat "$@" | sha256sum | cut -c1-16; }
stamp_ok() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
stamp_set() { mkdir -p "$STAMPS"; echo "$2" > "$STAMPS/$1"; }

# ---------------------------------------------------------------------------------------
# 1. System packages
# ---------------------------------------------------------------------------------------
CURRENT_STEP="system packages"
APT_PACKAGES=(build-essential cmake git pkg-config)
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# Debian 12's own Mesa (22.x) lavapipe is refused by SAPIEN; bookworm-backports has Mesa 25.
vulkan_ok() {
  have_pkg libvulkan1 && have_pkg mesa-vulkan-drivers || return 1
  local v; v="$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers)"
  dpkg --compare-versions "$v" ge 24 || return 1
}

# The backports entry reuses the mirror this machine's apt already uses (read, never typed).
debian_mirror() {
  local f=/etc/apt/sources.list.d/debian.sources
  if [ -f "$f" ]; then
    awk 'BEGIN{RS=""} /Suites:[^\n]*bookworm([ \n]|$)/ && !/security/ {
           for (i = 1; i <= NF; i++) if ($i == "URIs:") { print $(i+1); exit } }' "$f"
  fi
  if [ -f /etc/apt/sources.list ]; then
    awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' /etc/apt/sources.list
  fi
}

missing=()
for p in "${APT_PACKAGES[@]}"; do have_pkg "$p" || missing+=("$p"); done
if [ ${#missing[@]} -eq 0 ] && vulkan_ok; then
  say "system packages: present (${APT_PACKAGES[*]}, mesa-vulkan-drivers $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers))"
else
  [ "$(id -u)" -eq 0 ] || die "system packages missing (${missing[*]:-} mesa-vulkan-drivers>=24 libvulkan1); run 'make setup' as root, or install them with sudo"
  . /etc/os-release
  [ "${VERSION_CODENAME:-}" = bookworm ] || say "warning: this is ${PRETTY_NAME:-an unknown OS}, not Debian 12 (bookworm); the system step is written for bookworm"
  BACKPORTS=/etc/apt/sources.list.d/reward-model-ros-backports.sources
  if ! vulkan_ok && [ ! -f "$BACKPORTS" ] && ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    mirror="$(debian_mirror | head -n1)"
    [ -n "$mirror" ] || die "cannot read the Debian mirror from /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list; add a bookworm-backports entry by hand"
    say "adding bookworm-backports from this machine's mirror ($mirror) for Mesa's Vulkan driver"
    cat > "$BACKPORTS" <<SRC
# Added by reward_model_ros scripts/setup.sh: Mesa's lavapipe Vulkan driver for ManiSkill.
Types: deb
URIs: $mirror
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  fi
  say "apt-get update"
  apt-get update -q || die "apt-get update failed (see above): check the machine's apt sources and network"
  if [ ${#missing[@]} -gt 0 ]; then
    say "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
  if ! vulkan_ok; then
    say "apt-get install -t bookworm-backports mesa-vulkan-drivers libvulkan1"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      -t bookworm-backports mesa-vulkan-drivers libvulkan1
  fi
  vulkan_ok || die "mesa-vulkan-drivers >= 24 is still not installed; ManiSkill needs it (see README, Troubleshooting)"
fi

# ---------------------------------------------------------------------------------------
# 2. The venv
# ---------------------------------------------------------------------------------------
CURRENT_STEP="python venv"
if [ -z "${PYTHON:-}" ]; then
  PYTHON="$(command -v python3.11 || command -v python3 || true)"
fi
[ -n "$PYTHON" ] || die "no python3 found; install Python 3.11"
pyver="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
[ "$pyver" = "3.11" ] || die "$PYTHON is Python $pyver; the ROS 2 wheels are built for CPython 3.11 (set PYTHON=/path/to/python3.11)"

if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
req_hash="$(digest requirements.txt constraints.txt)"
if stamp_ok requirements "$req_hash"; then
  say "python packages: up to date"
else
  say "installing python packages (requirements.txt, pinned by constraints.txt; first time ~3 min, ~7 GB)"
  "${PIP[@]}" install -q -r requirements.txt -c constraints.txt \
    || die "pip install failed (see above)"
  stamp_set requirements "$req_hash"
  rm -f "$STAMPS/msgs"  # a reinstalled wheel set needs the CMake fix and a rebuild
fi

# ---------------------------------------------------------------------------------------
# 3. reward_msgs, built against the wheels and installed into the venv prefix
# ---------------------------------------------------------------------------------------
CURRENT_STEP="building reward_msgs"
msgs_hash="$(digest $(find src/reward_msgs -type f | sort) scripts/setup.sh)"
if stamp_ok msgs "$msgs_hash" && "$VENV/bin/python" -c "import reward_msgs.msg, reward_msgs.srv" 2>/dev/null; then
  say "reward_msgs: up to date"
else
  say "fixing the ROS wheels' exported CMake paths"
  "$VENV/bin/python" scripts/fix_wheel_cmake_paths.py "$VENV"
  say "building reward_msgs (cmake; ~20 s)"
  BUILD="$ROOT/build/venv/reward_msgs"
  rm -rf "$BUILD"; mkdir -p "$BUILD"
  (
    export VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH" AMENT_PREFIX_PATH="$VENV"
    cmake -S src/reward_msgs -B "$BUILD" -DCMAKE_PREFIX_PATH="$VENV" \
      -DCMAKE_INSTALL_PREFIX="$VENV" -DBUILD_TESTING=OFF \
      -DPython3_EXECUTABLE="$VENV/bin/python" -DCMAKE_BUILD_TYPE=Release > "$BUILD.log" 2>&1 \
      && cmake --build "$BUILD" -j"$(nproc)" >> "$BUILD.log" 2>&1 \
      && cmake --install "$BUILD" >> "$BUILD.log" 2>&1
  ) || { tail -n 40 "$BUILD.log" >&2; die "building reward_msgs failed; full log: $BUILD.log"; }
  "$VENV/bin/python" -c "import reward_msgs.msg, reward_msgs.srv" \
    || die "reward_msgs was built but does not import from the venv"
  stamp_set msgs "$msgs_hash"
fi

# ---------------------------------------------------------------------------------------
# 4. This package, editable
# ---------------------------------------------------------------------------------------
CURRENT_STEP="installing reward_model_ros"
pkg_hash="$(digest setup.py setup.cfg package.xml)"
if stamp_ok package "$pkg_hash" && [ -x "$VENV/bin/reward-model" ]; then
  say "reward_model_ros: installed (editable)"
else
  say "installing reward_model_ros (editable) with its console scripts"
  "${PIP[@]}" install -q --no-deps --no-build-isolation -e . || die "pip install -e . failed (see above)"
  stamp_set package "$pkg_hash"
fi

CURRENT_STEP="done"
say "ready: $VENV"
