#!/usr/bin/env bash
# Run a command inside the arm64 root (chroot through qemu-user binfmt), in a private mount
# namespace so that nothing stays mounted afterwards. The repository is bound read-only at /src,
# each --bind HOST_DIR:GUEST_DIR read-only and each --bind-rw HOST:GUEST writable, and /proc, /dev
# and /etc/resolv.conf and the CA bundle come from the host; /sys/devices/system/cpu and
# /proc/cpuinfo describe Cortex-A55 cores, emulated as ARM64_QEMU_CPU (default cortex-a76). Environment inside: PATH starts with /opt/venv/bin
# (the root's venv), NUMBA_CACHE_DIR=/tmp/numba-cache (kept in the root between runs).
#
# Usage: scripts/arm64/run.sh [--root DIR] [--bind HOST:GUEST]... [--bind-rw HOST:GUEST]...
#                             [--no-repo] -- CMD ARGS...
# The command runs with cwd /src (or / with --no-repo). Needs root.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
root=${ARM64_ROOT:-$repo/build/arm64-root}
binds=""
bind_repo=1
while [ $# -gt 0 ]; do
  case $1 in
    --root) root=$2; shift 2 ;;
    --bind|--bind-rw)
      host=${2%%:*} guest=${2#*:}
      [ -d "$host" ] && [ "${guest#/}" != "$guest" ] || { echo "run.sh: $1 needs EXISTING_HOST_DIR:/GUEST_DIR, got $2" >&2; exit 2; }
      mode=ro; [ "$1" = --bind-rw ] && mode=rw
      binds="$binds$(cd "$host" && pwd):$guest:$mode
"
      shift 2 ;;
    --no-repo) bind_repo=0; shift ;;
    --) shift; break ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ $# -gt 0 ] || { echo "usage: run.sh [options] -- CMD ARGS..." >&2; exit 2; }
[ -x "$root/bin/sh" ] || { echo "run.sh: no arm64 root at $root (run scripts/arm64/setup_root.sh)" >&2; exit 2; }
root=$(cd "$root" && pwd)
"$here/binfmt.sh"

# Everything below runs in a new mount namespace: its mounts vanish with it.
exec unshare --mount --propagation private -- bash -euo pipefail -c '
root=$1 repo=$2 binds=$3 bind_repo=$4 qemu_cpu=$5; shift 5
mount --rbind /proc "$root/proc"
# The CPU the programs see. qemu-user passes the host x86 /proc/cpuinfo and /sys through, which
# crashes the cpuinfo library of onnxruntime (SIGSEGV at import with the host /sys; with no /sys
# 1.31 goes on without CPU features and 1.23 aborts). So /sys/devices/system/cpu and /proc/cpuinfo
# describe Cortex-A55 cores (the X5 CPU; also what LLVM, hence numba, tunes for), and qemu
# emulates the instruction set of ARM64_QEMU_CPU (default cortex-a76: ARMv8.2-A with dotprod and
# fp16 like the A55, which qemu 7.2 lacks, and no SVE, which the A55 lacks).
mount -t tmpfs tmpfs "$root/sys"
cpus=$(nproc)
mkdir -p "$root/sys/devices/system/cpu"
for list in possible present online; do echo "0-$((cpus - 1))" >"$root/sys/devices/system/cpu/$list"; done
: >"$root/sys/.cpuinfo"
for ((i = 0; i < cpus; i++)); do
  mkdir -p "$root/sys/devices/system/cpu/cpu$i/topology"
  echo 0 >"$root/sys/devices/system/cpu/cpu$i/topology/physical_package_id"
  printf "processor\t: %d\nBogoMIPS\t: 48.00\nFeatures\t: %s\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x2\nCPU part\t: 0xd05\nCPU revision\t: 0\n\n" \
    "$i" "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp" \
    >>"$root/sys/.cpuinfo"
done
mount --bind "$root/sys/.cpuinfo" "$root/proc/cpuinfo"
mount --rbind /dev "$root/dev"
cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
# Trust what the host trusts (the CA of a TLS-inspecting proxy, say): pip in the root reaches PyPI the
# same way the host does.
ca_env=""
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  mkdir -p "$root/etc/ssl/certs"
  cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/host-ca-certificates.crt"
  ca=/etc/ssl/certs/host-ca-certificates.crt
  ca_env="PIP_CERT=$ca SSL_CERT_FILE=$ca REQUESTS_CA_BUNDLE=$ca"
fi
proxy_env=$(env | grep -E "^(https?_proxy|HTTPS?_PROXY|no_proxy|NO_PROXY|PIP_DEFAULT_TIMEOUT)=" | tr "\n" " " || true)
workdir=/
if [ "$bind_repo" = 1 ]; then
  mkdir -p "$root/src"
  mount --bind "$repo" "$root/src"
  mount -o remount,bind,ro "$root/src"
  workdir=/src
fi
while IFS=: read -r host guest mode; do
  [ -n "$host" ] || continue
  mkdir -p "$root$guest"
  mount --bind "$host" "$root$guest"
  [ "$mode" = ro ] && mount -o remount,bind,ro "$root$guest"
done <<<"$binds"
exec chroot "$root" /usr/bin/env -i HOME=/root PATH=/opt/venv/bin:/usr/local/bin:/usr/bin:/bin \
  LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 NUMBA_CACHE_DIR=/tmp/numba-cache $ca_env $proxy_env \
  QEMU_CPU=$qemu_cpu \
  ${OMP_NUM_THREADS:+OMP_NUM_THREADS=$OMP_NUM_THREADS} \
  /bin/sh -c "cd $workdir && exec \"\$@\"" sh "$@"
' bash "$root" "$repo" "$binds" "$bind_repo" "${ARM64_QEMU_CPU:-cortex-a76}" "$@"
