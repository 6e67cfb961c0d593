# Source me (bash/zsh) after scripts/setup_env.sh has built the package:
#   . scripts/env.sh            # ROS 2 Kilted (the default): .venv + install/
#   . scripts/env.sh jazzy      # ROS 2 Jazzy: .venv-jazzy + install-jazzy/
# (or set GRASPNET_EDGE_ROS_DISTRO). Puts the venv's ROS 2 (PyPI wheels) and this package's
# install space on the environment, and exports GRASPNET_EDGE_ROS_DISTRO for child processes.
_graspnet_edge_repo=$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)
# A first argument counts only when it names a distribution (sourcing without arguments inherits
# the caller's positional parameters).
case ${1:-} in
  kilted | jazzy) _graspnet_edge_distro=$1 ;;
  *) _graspnet_edge_distro=${GRASPNET_EDGE_ROS_DISTRO:-kilted} ;;
esac
case $_graspnet_edge_distro in
  kilted) _graspnet_edge_suffix= ;;
  *) _graspnet_edge_suffix=-$_graspnet_edge_distro ;;
esac
export GRASPNET_EDGE_ROS_DISTRO=$_graspnet_edge_distro
_graspnet_edge_venv=${GRASPNET_EDGE_VENV:-$_graspnet_edge_repo/.venv$_graspnet_edge_suffix}
_graspnet_edge_install=$_graspnet_edge_repo/install$_graspnet_edge_suffix

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

if [ -f "$_graspnet_edge_install/setup.sh" ]; then
  # colcon's setup.sh reads unset variables; it fails under `set -u`.
  case $- in *u*) _graspnet_edge_nounset=1; set +u ;; *) _graspnet_edge_nounset=0 ;; esac
  COLCON_CURRENT_PREFIX=$_graspnet_edge_install . "$_graspnet_edge_install/setup.sh"
  [ "$_graspnet_edge_nounset" = 1 ] && set -u
  unset _graspnet_edge_nounset
else
  echo "scripts/env.sh: $_graspnet_edge_install/setup.sh not found; run scripts/setup_env.sh $_graspnet_edge_distro first" >&2
fi
unset _graspnet_edge_repo _graspnet_edge_venv _graspnet_edge_install _graspnet_edge_distro _graspnet_edge_suffix
