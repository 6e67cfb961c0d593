# Source me (bash/zsh): `. scripts/env.sh` after scripts/setup_env.sh has built the package.
# Puts the venv's ROS 2 (PyPI wheels) and this package's install space on the environment.
_graspnet_edge_repo=$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)
_graspnet_edge_venv=${GRASPNET_EDGE_VENV:-$_graspnet_edge_repo/.venv}

export VIRTUAL_ENV=$_graspnet_edge_venv
case ":$PATH:" in
  *":$_graspnet_edge_venv/bin:"*) ;;
  *) export PATH=$_graspnet_edge_venv/bin:$PATH ;;
esac
# The one variable ROS needs to find the wheels' packages; install/setup.sh only prepends to it.
case ":${AMENT_PREFIX_PATH:-}:" in
  *":$_graspnet_edge_venv:"*) ;;
  *) export AMENT_PREFIX_PATH=$_graspnet_edge_venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH} ;;
esac
# Keep DDS discovery on loopback and off the default domain unless the caller chose otherwise.
export ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-42}

if [ -f "$_graspnet_edge_repo/install/setup.sh" ]; then
  # colcon's setup.sh reads unset variables; it fails under `set -u`.
  case $- in *u*) _graspnet_edge_nounset=1; set +u ;; *) _graspnet_edge_nounset=0 ;; esac
  COLCON_CURRENT_PREFIX=$_graspnet_edge_repo/install . "$_graspnet_edge_repo/install/setup.sh"
  [ "$_graspnet_edge_nounset" = 1 ] && set -u
  unset _graspnet_edge_nounset
else
  echo "scripts/env.sh: $_graspnet_edge_repo/install/setup.sh not found; run scripts/setup_env.sh first" >&2
fi
unset _graspnet_edge_repo _graspnet_edge_venv
