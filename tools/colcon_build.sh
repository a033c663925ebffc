#!/usr/bin/env bash
# Build this package with colcon against the ROS 2 installed from PyPI (tools/install_ros2_pypi.sh):
# the rosidl generators make the messages' C and Python code; the install goes to install/ of
# the checkout (build/colcon, log/ beside it, all outside git).
#
#   tools/colcon_build.sh [extra colcon build arguments]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=ros2_env.sh
source tools/ros2_env.sh
# The venv lies inside the checkout, so numpy's headers do too, and CMake refuses to export a
# target whose include directories lie in the source directory. colcon is pointed at the
# checkout through a link in the build folder, which makes the source directory that path.
mkdir -p build/colcon
ln -sfn ../.. build/colcon/src
# --symlink-install links each installed file to its source; a module moved or deleted since the
# last build would leave a dangling link there, which package listings (pkgutil) still report.
if [ -d install/lib ]; then find install/lib -xtype l -delete; fi
# --symlink-install: the installed Python modules are links to the sources, so the installed
# package and the source tree never differ (new files need a rebuild).
colcon --log-base log build --merge-install --symlink-install \
  --base-paths build/colcon/src --build-base build/colcon --install-base install \
  --event-handlers console_cohesion- summary- status- \
  --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF \
  "$@"
# Compile the CPU aggregation kernel into the install tree now (about 20 s the first time,
# cached beside the installed module), so that the node's first start does not pay for it.
source tools/ros2_env.sh
python -c 'from latent_maskrcnn.aggregation.confidence_masks import warm_up_compiled_kernel as w; w()'
