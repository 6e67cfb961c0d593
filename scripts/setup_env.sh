#!/usr/bin/env bash
# Set up everything from nothing, idempotently, for one ROS 2 distribution: the venv, the pinned
# requirements (only when the requirements file changed), the include-path fix of the ROS 2 PyPI
# wheels, and a colcon build of this package. Each step prints one banner line; a failing step
# names itself and shows the tail of its log instead of a full traceback.
#
#   scripts/setup_env.sh [DISTRO]     DISTRO: kilted (default) or jazzy
#
# Each distribution has its own venv, requirements file and colcon bases, so both can live side
# by side in one checkout:
#   kilted: .venv        requirements.txt        build/        install/        log/
#   jazzy:  .venv-jazzy  requirements-jazzy.txt  build-jazzy/  install-jazzy/  log-jazzy/
#
# Environment: GRASPNET_EDGE_ROS_DISTRO (the distribution when no argument is given), PYTHON
# (interpreter for a new venv, default python3), GRASPNET_EDGE_VENV (overrides the venv path).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
distro=${1:-${GRASPNET_EDGE_ROS_DISTRO:-kilted}}
# The default distribution keeps the unsuffixed names; the others get -<distro>.
case $distro in
  kilted) suffix= ;;
  *[!a-z]* | '') echo "setup_env.sh: bad distribution name '$distro'" >&2; exit 2 ;;
  *) suffix=-$distro ;;
esac
requirements=$repo/requirements$suffix.txt
if [ ! -f "$requirements" ]; then
  echo "setup_env.sh: no $requirements: supported distributions are kilted and jazzy" >&2
  exit 2
fi
venv=${GRASPNET_EDGE_VENV:-$repo/.venv$suffix}
build_base=$repo/build$suffix
install_base=$repo/install$suffix
log_base=$repo/log$suffix
python_for_venv=${PYTHON:-python3}
log_dir=$build_base/setup-logs
requirements_stamp=$venv/.requirements.sha256

mkdir -p "$log_dir"
# Two set-ups at once (parallel `make` targets, several shells) would share one venv and build dir.
if command -v flock >/dev/null; then
  exec 9>"$log_dir/.lock"
  flock 9
fi

banner() { printf '==> setup (%s): %s\n' "$distro" "$*"; }

# run_step <name> <command...>: output goes to <log_dir>/<name>.log.
step_failure_prefix=setup step_log_tail_lines=15
. "$repo/scripts/run_step.sh"

# 1. venv
if [ -x "$venv/bin/python" ]; then
  banner "venv: $venv exists"
else
  banner "venv: creating $venv with $python_for_venv"
  run_step venv "$python_for_venv" -m venv "$venv"
fi

# 2. requirements, only when the requirements file changed since the last successful install
requirements_hash=$(sha256sum "$requirements" | cut -d' ' -f1)
fresh_install=0
if [ -f "$requirements_stamp" ] && [ "$(cat "$requirements_stamp")" = "$requirements_hash" ]; then
  banner "requirements: unchanged since last install, skipped"
else
  banner "requirements: pip install -r ${requirements##*/} (a cold install takes 2-3 min)"
  run_step requirements "$venv/bin/python" -m pip install --disable-pip-version-check \
    -r "$requirements"
  echo "$requirements_hash" >"$requirements_stamp"
  fresh_install=1
fi

# 3. The wheels' CMake exports name /opt/python/cp3XX-cp3XX/... include dirs that do not exist
# here; rewrite them to this venv's Python and NumPy include dirs (idempotent: no match next time).
fix_wheel_include_dirs() {
  local python_include numpy_include
  # errexit is off inside run_step's `if`, hence the explicit returns
  python_include=$("$venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['include'])") \
    || return 1
  numpy_include=$("$venv/bin/python" -c "import numpy; print(numpy.get_include())") || return 1
  { grep -rlE --include='*.cmake' '/opt/python/cp[0-9]+-cp[0-9]+' "$venv/share" || true; } \
    | xargs -r sed -i -E \
      -e "s#/opt/python/cp[0-9]+-cp[0-9]+/include/python3\.[0-9]+#$python_include#g" \
      -e "s#/opt/python/cp[0-9]+-cp[0-9]+/lib/python3\.[0-9]+/site-packages/numpy/_core/include#$numpy_include#g"
}
banner "include-path fix: rewriting /opt/python include dirs in the wheels' CMake files"
run_step include-path-fix fix_wheel_include_dirs

# 4. colcon build. The generated C extensions are compiled against the venv's numpy, so a fresh
# install starts from a clean build directory.
if [ "$fresh_install" = 1 ]; then
  rm -rf "$build_base/graspnet_edge_ros" "$install_base"
fi
# tf2_msgs is not on PyPI: where the venv (or a sourced ROS) cannot import it, the test stand-in
# test/ros_interfaces/tf2_msgs (only TFMessage, the real definition, hence the same type hash) is
# built beside the package, so the TF fallback and its tests have /tf messages. COLCON_IGNORE in
# test/ros_interfaces keeps it out of every other crawl (workspaces, rosdep).
base_paths=(.)
if ! "$venv/bin/python" -c "import tf2_msgs.msg" >/dev/null 2>&1 \
    || [ -d "$install_base/tf2_msgs" ]; then
  base_paths+=(test/ros_interfaces/tf2_msgs)
fi
colcon_build() {
  cd "$repo" || return 1
  env AMENT_PREFIX_PATH="$venv" PATH="$venv/bin:$PATH" \
    "$venv/bin/colcon" --log-base "$log_base" build --base-paths "${base_paths[@]}" \
    --build-base "$build_base" --install-base "$install_base" \
    --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$venv/bin/python"
}
banner "colcon build: graspnet_edge_ros (messages, launchers)${base_paths[1]:+ and the tf2_msgs stand-in} into ${install_base##*/}/"
run_step colcon-build colcon_build

# 5. Compile the numba kernels once, into the cache beside the installed modules the node imports,
# so that no node or CLI process compiles at run time (seconds here, minutes on an A55 board).
# Fast when the cache is current; a rebuilt module is recompiled.
warmup_kernels() {
  (
    set +u
    unset PYTHONPATH  # the install space, not a source tree on the caller's path
    . "$repo/scripts/env.sh" "$distro" >/dev/null
    "$install_base/graspnet_edge_ros/bin/graspnet-edge" warmup
  )
}
banner "numba kernels: graspnet-edge warmup (compiled into ${install_base##*/}/'s cache once, then loaded)"
run_step warmup warmup_kernels
if [ "$distro" = kilted ]; then
  banner "done; source scripts/env.sh to use the install space"
else
  banner "done; source scripts/env.sh $distro to use the install space"
fi
