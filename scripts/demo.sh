#!/usr/bin/env bash
# Detect grasps on the example scene with the reference weights; writes grasps.json and overlay.png.
# Run through `make demo`, which sets up the environment first and passes the paths below.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
shared=${SHARED:-$repo/../shared}
model=${GRASPNET_MODEL:-$shared/models/graspnet_edge_grasp.pth}
data=${EXAMPLE_DATA:-$shared/data/graspnet_example}
out=${DEMO_OUT:-$repo/demo_out}

missing=0
for required in "$model" "$data/color.png" "$data/depth.png" "$data/meta.mat" "$data/workspace_mask.png"; do
  if [ ! -e "$required" ]; then
    echo "demo: missing $required" >&2
    missing=1
  fi
done
if [ "$missing" = 1 ]; then
  echo "demo: put the reference material beside the repository as ../shared, or point" >&2
  echo "      GRASPNET_MODEL=<weights .pth> and EXAMPLE_DATA=<dir with color/depth/meta/mask> at it." >&2
  exit 2
fi

set +u; . "$repo/scripts/env.sh"; set -u
mkdir -p "$out"
python -m graspnet_edge_ros.cli detect --model "$model" \
  --color "$data/color.png" --depth "$data/depth.png" --camera-info "$data/meta.mat" \
  --workspace-mask "$data/workspace_mask.png" --seed 0 \
  --output "$out/grasps.json" --overlay "$out/overlay.png"
