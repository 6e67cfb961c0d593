#!/usr/bin/env bash
# `make test-arm64`: the torch-free robot runtime on aarch64 (qemu-user emulation) must give the
# same grasps as on this x86_64 machine for the example capture.
#
#   1. scripts/arm64/setup_root.sh: the cached arm64 Debian root with the runtime's aarch64 wheels
#   2. x86_64 (.venv): export the checkpoint to split ONNX segments (cached by input digest), then
#      runtime_check.py --write-reference: kernel checks + the example through GraspDetector
#   3. aarch64 (chroot): runtime_check.py --reference on the same split model and capture
#
# Outputs in build/arm64-check/: graspnet_split/, reference_x86_64.npz, result_aarch64[-x5].npz,
# x86_64.log, aarch64[-x5].log. Environment: SHARED, GRASPNET_MODEL, EXAMPLE_DATA (as `make demo`),
# ARM64_ROOT, ARM64_WHEELS (pinned = requirements.txt's versions, the default; x5 = what pip
# installs on the X5's Python 3.10, see setup_root.sh), PYTHON (x86 interpreter, default
# <repo>/.venv/bin/python).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
shared=${SHARED:-$repo/../shared}
checkpoint=${GRASPNET_MODEL:-$shared/models/graspnet_edge_grasp.pth}
example=${EXAMPLE_DATA:-$shared/data/graspnet_example}
root=${ARM64_ROOT:-$repo/build/arm64-root}
python=${PYTHON:-$repo/.venv/bin/python}
work=$repo/build/arm64-check
wheel_set=${ARM64_WHEELS:-pinned}
case $wheel_set in
  pinned) arm_python=/opt/venv/bin/python suffix="" ;;
  x5) arm_python=/opt/venv-x5/bin/python suffix=-x5 ;;
  *) echo "test-arm64: ARM64_WHEELS must be pinned or x5, got $wheel_set" >&2; exit 2 ;;
esac
export ARM64_WHEELS=$wheel_set
started=$(date +%s)

banner() { printf '==> test-arm64: %s\n' "$*"; }
for path in "$checkpoint" "$example/depth.png" "$example/meta.mat"; do
  [ -e "$path" ] || { echo "test-arm64: not found: $path (set SHARED, GRASPNET_MODEL or EXAMPLE_DATA)" >&2; exit 2; }
done
mkdir -p "$work"

# 1. the arm64 root
"$here/setup_root.sh" "$root"

# 2. x86_64: split model and reference
model=$work/graspnet_split
model_key=$(cat "$checkpoint" "$repo"/graspnet_edge_ros/export/*.py "$repo"/graspnet_edge_ros/model/*.py \
  | sha256sum | cut -d' ' -f1)
if [ -f "$model/manifest.json" ] && [ "$(cat "$model/.export-key" 2>/dev/null)" = "$model_key" ]; then
  banner "split model: $model up to date"
else
  banner "split model: graspnet-edge export --split (x86_64, torch) -> $model"
  rm -rf "$model"
  PYTHONPATH=$repo "$python" -m graspnet_edge_ros.cli \
    export --checkpoint "$checkpoint" --split --output "$model" >"$work/export.log" 2>&1 \
    || { tail -n 20 "$work/export.log"; echo "test-arm64: export failed (see $work/export.log)" >&2; exit 1; }
  echo "$model_key" >"$model/.export-key"
fi
banner "x86_64 reference: runtime_check.py --write-reference (log: $work/x86_64.log)"
x86_started=$(date +%s)
if ! "$python" "$here/runtime_check.py" --model "$model" --example "$example" \
    --write-reference "$work/reference_x86_64.npz" >"$work/x86_64.log" 2>&1; then
  cat "$work/x86_64.log"
  echo "test-arm64: the x86_64 reference run failed" >&2
  exit 1
fi
grep -E '^(runtime_check on|example:|[0-9]+ passed)' "$work/x86_64.log" | sed 's/^/    x86_64: /'
banner "x86_64 reference took $(( $(date +%s) - x86_started )) s"

# 3. aarch64 under emulation
banner "aarch64 ($wheel_set wheels): runtime_check.py --reference under qemu (several minutes; log: $work/aarch64$suffix.log)"
arm_started=$(date +%s)
set +e
"$here/run.sh" --root "$root" --bind "$example:/example" --bind-rw "$work:/check" -- \
  env PYTHONPATH=/src "$arm_python" /src/scripts/arm64/runtime_check.py --model /check/graspnet_split \
    --example /example --reference /check/reference_x86_64.npz --output "/check/result_aarch64$suffix.npz" \
  2>&1 | tee "$work/aarch64$suffix.log"
status=${PIPESTATUS[0]}
set -e
banner "aarch64 run took $(( $(date +%s) - arm_started )) s; total $(( $(date +%s) - started )) s"
if [ "$status" = 0 ]; then
  banner "PASS: same grasps on aarch64 ($wheel_set wheels) as on x86_64"
else
  banner "FAIL (exit $status): see $work/aarch64$suffix.log"
fi
exit "$status"
