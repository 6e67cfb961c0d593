#!/usr/bin/env bash
# The ROS 2 demo: play a bag of the example scene into graspnet_edge_node and show what it publishes.
# Run through `make demo`, which sets up the environment first and passes the paths below.
#
#   1. exports the trained checkpoint once to artifacts/graspnet_split (split ONNX; reused while
#      newer than the checkpoint and the exporter's segment code),
#   2. builds artifacts/example_bag (MCAP, 3 frames of the example capture at 1 Hz; reused),
#   3. `graspnet-edge replay`: starts the node, plays the bag, records ~/grasps, ~/markers and
#      /diagnostics to artifacts/demo/replay.mcap, prints per-stage latencies and the top grasps,
#   4. draws the node's last result on its frame: artifacts/demo/overlay.png.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
shared=${SHARED:-$repo/../shared}
model=${GRASPNET_MODEL:-$shared/models/graspnet_edge_grasp.pth}
data=${EXAMPLE_DATA:-$shared/data/graspnet_example}
artifacts=${ARTIFACTS:-$repo/artifacts}
rate=${DEMO_RATE:-0.5}   # playback speed: 0.5 = one frame every 2 s, so no frame is dropped here
out=$artifacts/demo

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
cd "$repo"
mkdir -p "$artifacts" "$out"
start=$(date +%s)

split=$artifacts/graspnet_split
# Reused while newer than the checkpoint and the code that builds the segments and the manifest.
exporter_code=("$repo"/graspnet_edge_ros/model/*.py "$repo"/graspnet_edge_ros/export/*.py
               "$repo"/graspnet_edge_ros/contract.py)
if [ -f "$split/manifest.json" ] && [ "$split/manifest.json" -nt "$model" ] \
    && [ -z "$(find "${exporter_code[@]}" -newer "$split/manifest.json" -print -quit)" ]; then
  echo "demo: reusing $split"
else
  rm -rf "$split"
  python -m graspnet_edge_ros.cli export --checkpoint "$model" --split --output "$split"
fi

bag=$artifacts/example_bag
if [ ! -f "$bag/metadata.yaml" ]; then
  rm -rf "$bag"
  EXAMPLE_DATA_DIR=$data BAG=$bag python - <<'EOF'
import os
from graspnet_edge_ros.ros.bags import RgbdCapture, write_capture_bag

capture = RgbdCapture.from_directory(os.environ["EXAMPLE_DATA_DIR"])
info = write_capture_bag(os.environ["BAG"], capture, num_frames=3, rate_hz=1.0, storage="mcap")
print(f"demo: wrote {info.path} ({len(info.frames)} frames at 1 Hz; {capture.notice})")
EOF
else
  echo "demo: reusing $bag"
fi

rm -rf "$out/replay.mcap" "$out"/overlay_*.png
python -m graspnet_edge_ros.cli replay "$bag" --model "$split" --rate "$rate" \
  --record "$out/replay.mcap" --param sampling_seed=0 --param "workspace_mask_path=$data/workspace_mask.png" \
  --overlay-dir "$out" --node-log "$out/node.log" --summary-json "$out/summary.json"

overlay=$(ls "$out"/overlay_*.png 2>/dev/null | tail -n 1 || true)
if [ -n "$overlay" ]; then
  mv "$overlay" "$out/overlay.png"
  echo "demo: overlay of the node's last result -> $out/overlay.png"
fi
echo "demo: recording $out/replay.mcap, summary $out/summary.json, node log $out/node.log" \
  "($(( $(date +%s) - start )) s)"
