# Source this file (bash) to use the ROS 2 Jazzy that tools/install_ros2_pypi.sh installed from
# PyPI into a venv, and this package's colcon workspace when it has been built:
#
#   source tools/ros2_env.sh            # VENV defaults to .venv of this checkout,
#                                       # ROS_WS_INSTALL to install/ of this checkout
#
# What the wheels need and an apt ROS 2's setup.bash would otherwise set.
_ros2_env_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$(cd "${VENV:-$_ros2_env_root/.venv}" && pwd)"
ROS_WS_INSTALL="${ROS_WS_INSTALL:-$_ros2_env_root/install}"
export VIRTUAL_ENV="$VENV"
case ":$PATH:" in *":$VENV/bin:"*) ;; *) export PATH="$VENV/bin:$PATH" ;; esac

_ros2_env_prepend() {  # NAME DIR: put DIR first in the path list NAME (once)
  local current="${!1:-}"
  case ":$current:" in *":$2:"*) ;; *) export "$1=$2${current:+:$current}" ;; esac
}
_ros2_env_prepend AMENT_PREFIX_PATH "$VENV"
_ros2_env_prepend CMAKE_PREFIX_PATH "$VENV"
# Shared libraries: the venv's lib/ and the wheels' bundled ros_*.libs folders.
for _ros2_env_libs in "$VENV"/lib/python3.11/site-packages/ros_*.libs; do
  [ -d "$_ros2_env_libs" ] && _ros2_env_prepend LD_LIBRARY_PATH "$_ros2_env_libs"
done
_ros2_env_prepend LD_LIBRARY_PATH "$VENV/lib"
# The loader path is set here, so the wheels' bootstrapper need not re-execute Python.
export _ROS_WHEELS_BOOTSTRAP_COMPLETE=1
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
export ROS_DISTRO=jazzy ROS_VERSION=2 ROS_PYTHON_VERSION=3

# This package's workspace (colcon build --merge-install), when built.
if [ -f "$ROS_WS_INSTALL/local_setup.bash" ]; then
  _ros2_env_nounset="$(set +o | grep nounset)"
  set +u
  # shellcheck disable=SC1091
  source "$ROS_WS_INSTALL/local_setup.bash"
  eval "$_ros2_env_nounset"
  unset _ros2_env_nounset
fi
unset _ros2_env_root _ros2_env_libs
unset -f _ros2_env_prepend
