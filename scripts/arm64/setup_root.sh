#!/usr/bin/env bash
# Create (once) and cache an arm64 Debian 12 root for `make test-arm64`, run under qemu-user
# emulation: debootstrap --arch=arm64 --variant=minbase with python3 + venv + pip, then a venv in
# <root>/opt/venv with the aarch64 PyPI wheels of the robot runtime (no torch), at the versions
# pinned in requirements.txt (or /opt/venv-x5 with ARM64_WHEELS=x5). Idempotent: each step is
# skipped when its stamp is up to date.
#
# Usage: scripts/arm64/setup_root.sh [ROOT]   (default: <repo>/build/arm64-root, or $ARM64_ROOT)
#        scripts/arm64/setup_root.sh --print-wheels   (the wheel set's requirements, nothing else)
# ARM64_WHEELS=pinned (default) or x5: which wheel set (see below).
# Needs root (debootstrap, chroot). Installs qemu-user-static, debootstrap and binfmt-support
# with apt-get when missing. Environment: ARM64_SUITE (default bookworm), ARM64_MIRROR.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# The aarch64 wheels of the runtime (no torch). ARM64_WHEELS selects the set:
#    pinned (default): requirements.txt's versions, the same releases as the x86_64 .venv, so the
#      comparison is arm64 vs x86_64 and nothing else -> /opt/venv
#    x5: requirements-x5-py310.txt, the newest releases that still ship cp310 aarch64 wheels, i.e.
#      what pip installs on the X5's Python 3.10 (numpy, scipy and onnxruntime are older than the
#      pins) -> /opt/venv-x5 (still Python 3.11 here: same libraries, not the same interpreter)
wheel_set=${ARM64_WHEELS:-pinned}
case $wheel_set in
  pinned) venv=/opt/venv
          wheels=$(grep -E '^(numpy|scipy|numba|onnxruntime|pillow|pyyaml)==' "$repo/requirements.txt") ;;
  x5)     venv=/opt/venv-x5
          wheels=$(grep -vE '^\s*(#|$)' "$here/requirements-x5-py310.txt") ;;
  *) echo "ARM64_WHEELS must be pinned or x5, got $wheel_set" >&2; exit 2 ;;
esac
if [ "${1:-}" = --print-wheels ]; then
  printf '%s\n' "$wheels"
  exit 0
fi

root=${1:-${ARM64_ROOT:-$repo/build/arm64-root}}
suite=${ARM64_SUITE:-bookworm}
mirror=${ARM64_MIRROR:-http://deb.debian.org/debian}
log_dir=$repo/build/arm64-logs
mkdir -p "$log_dir" "$(dirname "$root")"

banner() { printf '==> arm64 root: %s\n' "$*"; }
step_failure_prefix="arm64 setup" step_log_tail_lines=20
. "$repo/scripts/run_step.sh"

if [ "$(id -u)" != 0 ]; then
  echo "scripts/arm64/setup_root.sh needs root (debootstrap, chroot)" >&2
  exit 2
fi

# One set-up at a time per root.
exec 8>"$log_dir/.lock"
flock 8

# 1. host tools
if ! command -v qemu-aarch64-static >/dev/null || ! command -v debootstrap >/dev/null \
    || ! command -v update-binfmts >/dev/null; then
  banner "host tools: apt-get install qemu-user-static debootstrap binfmt-support"
  run_step host-tools bash -c 'apt-get update -q && DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q qemu-user-static debootstrap binfmt-support'
else
  banner "host tools: qemu-aarch64-static and debootstrap present"
fi

# 2. binfmt_misc: chroot into an arm64 root needs the kernel to hand aarch64 ELF files to qemu.
"$here/binfmt.sh"
banner "binfmt: qemu-aarch64 enabled"

# 3. debootstrap (the stamp is written last, so an interrupted run starts over)
if [ -f "$root/.arm64-debootstrap-done" ]; then
  banner "debootstrap: $root exists ($suite), skipped"
else
  banner "debootstrap: $suite arm64 minbase into $root (5-15 min under emulation)"
  rm -rf "$root"
  run_step debootstrap debootstrap --arch=arm64 --variant=minbase \
    --include=python3,python3-venv,python3-pip,ca-certificates,libgomp1 \
    "$suite" "$root" "$mirror"
  echo "$suite" >"$root/.arm64-debootstrap-done"
fi

# 4. the venv (see the wheel sets above)
wheels_hash=$(printf '%s\n' "$wheels" | sha256sum | cut -d' ' -f1)
stamp=$root$venv/.wheels.sha256
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wheels_hash" ]; then
  banner "wheels ($wheel_set): $venv unchanged, skipped"
else
  banner "wheels ($wheel_set): pip install $(echo $wheels) into $venv (aarch64 wheels from PyPI)"
  printf '%s\n' "$wheels" >"$root/requirements-arm64-$wheel_set.txt"
  run_step "venv-$wheel_set" "$here/run.sh" --root "$root" --no-repo -- \
    bash -c "set -e; [ -x $venv/bin/python ] || python3 -m venv $venv
             $venv/bin/python -m pip install --disable-pip-version-check --only-binary=:all: \
               -r /requirements-arm64-$wheel_set.txt"
  echo "$wheels_hash" >"$stamp"
fi
banner "ready: $("$here/run.sh" --root "$root" --no-repo -- $venv/bin/python -c \
  'import platform, sys; print(platform.machine(), "Python", sys.version.split()[0])') ($venv)"
