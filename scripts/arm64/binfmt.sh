#!/usr/bin/env bash
# Make sure the kernel runs aarch64 ELF binaries through qemu-aarch64-static (binfmt_misc), so
# that `chroot <arm64 root>` works. Idempotent; needs root.
set -euo pipefail
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  # binfmt-support not managing it: register qemu-aarch64-static directly, with the F flag
  # (the interpreter is opened now, so it need not exist inside the chroot)
  printf '%s' ':qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:F' \
    >/proc/sys/fs/binfmt_misc/register
fi
grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 || {
  echo "binfmt_misc: qemu-aarch64 is registered but disabled" >&2; exit 1; }
