#!/usr/bin/env bash
# `make test-jammy-deps`: the ROS-free core on Python 3.10 with Ubuntu 22.04-era SciPy and Pillow
# (requirements-jammy-deps.txt), so the fallbacks of graspnet_edge_ros/compat.py run for real.
# No PyTorch, ONNX Runtime or ROS here: the tests below are the ones that use SciPy rotations,
# Pillow drawing and the numba geometry without a model (tests that need an exported model skip).
#
#   scripts/jammy_deps.sh [PYTHON] [VENV] [pytest args...]    defaults: python3.10 .venv-jammy-deps
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${1:-python3.10}
venv=${2:-.venv-jammy-deps}
shift $(( $# < 2 ? $# : 2 ))
case $venv in /*) ;; *) venv=$repo/$venv ;; esac
requirements=$repo/requirements-jammy-deps.txt
stamp=$venv/.requirements.sha256
cd "$repo"

# A pyenv shim for a version that is installed but not selected fails to run: look it up instead.
if ! "$python" -c pass >/dev/null 2>&1; then
  found=
  if command -v pyenv >/dev/null; then
    for candidate in "$(pyenv root)"/versions/3.10*/bin/python3.10; do
      [ -x "$candidate" ] && found=$candidate
    done
  fi
  if [ -z "$found" ]; then
    echo "test-jammy-deps: $python does not run (set JAMMY_PYTHON=/path/to/python3.10)" >&2
    exit 2
  fi
  python=$found
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "==> jammy-deps: creating $venv with $python"
  "$python" -m venv "$venv"
fi
hash=$(sha256sum "$requirements" | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$hash" ]; then
  echo "==> jammy-deps: pip install -r ${requirements##*/}"
  "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$requirements"
  echo "$hash" >"$stamp"
fi
"$venv/bin/python" - <<'PY'
import sys, numpy, scipy, PIL
from graspnet_edge_ros import compat
print(f"==> jammy-deps: Python {sys.version.split()[0]}, numpy {numpy.__version__}, scipy {scipy.__version__}, "
      f"Pillow {PIL.__version__}; fallbacks: canonical quaternion {not compat.SCIPY_HAS_CANONICAL_QUAT}, "
      f"sized font {not compat.PILLOW_DEFAULT_FONT_HAS_SIZE}, text measuring {not compat.PILLOW_MEASURES_BITMAP_FONTS}")
PY
export GRASPNET_EDGE_SHARED=${GRASPNET_EDGE_SHARED:-$repo/../shared}
exec "$venv/bin/python" -m pytest -m "not ros" \
  test/test_compat.py test/test_python_versions.py test/test_poses.py test/test_visualization.py \
  test/test_camera.py test/test_postprocess.py test/test_executable_grasps.py test/test_planar_lifting.py \
  test/test_ros_sync.py test/test_launch_files.py "$@"
