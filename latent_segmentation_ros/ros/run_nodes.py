"""Both nodes of the picking cell without `ros2 launch` (a ROS 2 installed from PyPI has none).

    latent-seg nodes [name:=value ...]
    python -m latent_segmentation_ros.ros.run_nodes [name:=value ...]
    latent-seg nodes --show-args

Takes the launch arguments of ``launch/picking.launch.py`` (names, defaults and descriptions
are read from that file, so the two cannot drift apart) and does what the launch file does:
starts the segmentation and the grasp node as processes with the parameter file ``config``
(default: the package's config/picking.yaml), overriding a parameter only where its argument
was given a non-empty value. Ctrl-C or SIGTERM is forwarded to both nodes (a terminal's
Ctrl-C reaches them directly as well; they ignore the repeat); it exits 0 when both ended
cleanly. When a node ends on its own (e.g. a checkpoint that does not load: exit 1), the other
is stopped and its exit code is returned.
"""
from __future__ import annotations

import ast
import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from latent_segmentation_ros.core.launch_decisions import unexpected_exit
from latent_segmentation_ros.core.resources import find_resource
from latent_segmentation_ros.core.signals import install_shutdown_handlers

LAUNCH_FILE = "launch/picking.launch.py"
CONFIG_FILE = "config/picking.yaml"
# executable (module) and node name, as in the launch file
NODES = (("segmentation_node", "latent_segmentation"), ("grasp_node", "suction_grasp_planner"))
POLL_S = 0.1
STOP_WAIT_S = 10.0  # after the forwarded signal, before SIGTERM; as long again before SIGKILL
CHILD_FLAG = "--node"
CHECK_FLAG = "--check-ros"
MODULE = "latent_segmentation_ros.ros.run_nodes"


class ArgumentError(ValueError):
    """A launch argument that is unknown or malformed; the message says which and why."""


@dataclass(frozen=True)
class LaunchArgument:
    name: str
    default: str
    description: str


def launch_arguments(launch_file: Path | None = None) -> list[LaunchArgument]:
    """The launch file's arguments: ``config`` plus its ARGUMENTS table (read, not executed:
    the file imports launch_ros, which may be missing here)."""
    path = launch_file or find_resource(LAUNCH_FILE)
    tree = ast.parse(Path(path).read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "ARGUMENTS":
            table = ast.literal_eval(node.value)
            break
    else:
        raise ArgumentError(f"{path} has no ARGUMENTS table")
    config = LaunchArgument("config", "", "parameter file of both nodes (empty: the package's config/picking.yaml)")
    return [config] + [LaunchArgument(name, default, text) for name, default, text in table]


def parse_arguments(items: Sequence[str], known: Sequence[LaunchArgument]) -> dict[str, str]:
    """``name:=value`` items -> every argument's value (defaults filled in)."""
    values = {argument.name: argument.default for argument in known}
    for item in items:
        name, separator, value = item.partition(":=")
        if not separator or not name:
            raise ArgumentError(f"expected name:=value, got {item!r}")
        if name not in values:
            raise ArgumentError(f"unknown argument {name!r}; known: {', '.join(values)}")
        values[name] = value
    return values


def _yaml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a YAML double-quoted string


def node_arguments(values: dict[str, str]) -> dict[str, list[str]]:
    """Per executable, the ``--ros-args`` the launch file would give it for these values."""
    config = values["config"] or str(find_resource(CONFIG_FILE))
    if not Path(config).is_file():
        raise ArgumentError(f"config: no such parameter file {config}")
    sim_time = values["use_sim_time"].strip().lower()
    if sim_time not in ("true", "false"):
        raise ArgumentError(f"use_sim_time must be true or false, got {values['use_sim_time']!r}")
    common = ["-p", f"use_sim_time:={sim_time}"]
    if values["input_timeout"]:
        try:
            timeout = float(values["input_timeout"])
        except ValueError:
            raise ArgumentError(f"input_timeout must be a number of seconds, got {values['input_timeout']!r}") from None
        common += ["-p", f"input_timeout:={timeout!r}"]
    segmentation = list(common)
    for name in ("checkpoint", "device"):
        if values[name]:
            segmentation += ["-p", f"{name}:={_yaml_string(values[name])}"]
    left, right = values["left_image_topic"], values["right_image_topic"]
    if bool(left) != bool(right):
        raise ArgumentError("give both left_image_topic and right_image_topic, or neither")
    if left:
        segmentation += ["-p", f"camera_topics:=[{_yaml_string(left)}, {_yaml_string(right)}]"]
    namespace = values["namespace"].strip("/")
    arguments = {}
    for (executable, node_name), overrides in zip(NODES, (segmentation, common)):
        ros_args = ["--ros-args", "--params-file", config, "-r", f"__node:={node_name}"]
        if namespace:
            ros_args += ["-r", f"__ns:=/{namespace}"]
        arguments[executable] = ros_args + overrides + ["--log-level", values["log_level"]]
    return arguments


def start_nodes(values: dict[str, str]) -> list[tuple[str, subprocess.Popen]]:
    """Both nodes as child processes of this one (same process group, output to this terminal)."""
    processes = []
    for executable, ros_args in node_arguments(values).items():
        # -P: not the working directory first on sys.path (a source checkout there would hide
        # the built messages of the installed package)
        command = [sys.executable, "-P", "-m", MODULE, CHILD_FLAG, executable, *ros_args]
        processes.append((executable, subprocess.Popen(command)))
    return processes


def supervise(processes: list[tuple[str, subprocess.Popen]]) -> int:
    """Wait until a signal asks to stop (forward it; 0 when every node then exits 0) or a node
    ends by itself (stop the others; its exit code, 1 for a signal or a clean exit)."""
    shutdown = install_shutdown_handlers()
    ended_early: tuple[str, int] | None = None
    while not shutdown.requested and ended_early is None:
        for executable, process in processes:
            code = process.poll()
            if code is not None:
                ended_early = (executable, code)
                break
        else:
            shutdown.wait(POLL_S)
    forwarded = signal.SIGTERM if shutdown.signal_name == "SIGTERM" else signal.SIGINT
    codes = _stop(processes, forwarded)
    if ended_early is not None and not shutdown.requested:
        executable, code = ended_early
        print(f"[run_nodes] {unexpected_exit(executable, code, shutting_down=False)}",
              file=sys.stderr)
        return code if code > 0 else 1
    failed = {executable: code for executable, code in codes.items() if code != 0}
    if failed:
        print(f"[run_nodes] nodes did not end cleanly: {failed}", file=sys.stderr)
        return 1
    return 0


def _stop(processes: list[tuple[str, subprocess.Popen]], first: int) -> dict[str, int]:
    for _, process in processes:
        if process.poll() is None:
            process.send_signal(first)
    for escalation in (signal.SIGTERM, signal.SIGKILL):
        deadline = time.monotonic() + STOP_WAIT_S
        while time.monotonic() < deadline and any(p.poll() is None for _, p in processes):
            time.sleep(POLL_S)
        for executable, process in processes:
            if process.poll() is None:
                print(f"[run_nodes] {executable} still running; sending {escalation.name}", file=sys.stderr)
                process.send_signal(escalation)
    return {executable: process.wait() for executable, process in processes}


def ros_setup_problem() -> str | None:
    """One line saying what to build or source when rclpy or this package's generated messages
    do not import (a shell without the workspace sourced), else None."""
    try:
        import rclpy  # noqa: F401

        import latent_segmentation_ros.msg  # noqa: F401
    except ImportError as error:
        cause = (str(error).splitlines() or [type(error).__name__])[0]
        return (
            f"ROS 2 is not set up in this shell ({cause}): build the messages (`make ros2`, or colcon build "
            "in your workspace) and source the environment (`source tools/ros2_env.sh`, or your workspace's "
            "install/setup.bash)"
        )
    return None


def child_setup_problem() -> str | None:
    """:func:`ros_setup_problem` as the nodes will see it: in a Python started like them (-P:
    a source checkout in the working directory does not count)."""
    done = subprocess.run([sys.executable, "-P", "-m", MODULE, CHECK_FLAG], capture_output=True, text=True)
    if done.returncode == 0:
        return None
    return (done.stderr.strip().splitlines() or [f"the environment check failed with exit code {done.returncode}"])[-1]


def run_child(executable: str, ros_args: list[str]) -> int:
    """One node in this process: handlers first (a signal during the imports ends it cleanly)."""
    install_shutdown_handlers()
    if executable not in dict(NODES):
        raise ArgumentError(f"unknown node executable {executable!r}")
    problem = ros_setup_problem()
    if problem:
        print(f"[{executable}] {problem}", file=sys.stderr)
        return 2
    if executable == "segmentation_node":
        from latent_segmentation_ros.ros.segmentation_node import main
    else:
        from latent_segmentation_ros.ros.grasp_node import main
    return main([executable, *ros_args])


def show_arguments(known: Sequence[LaunchArgument]) -> str:
    return "\n".join(f"  {a.name}:={a.default!r}\n      {a.description}" for a in known)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    install_shutdown_handlers()  # before anything slow: Ctrl-C at any moment ends cleanly
    if argv[:1] == [CHECK_FLAG]:
        problem = ros_setup_problem()
        if problem:
            print(problem, file=sys.stderr)
        return 2 if problem else 0
    if argv[:1] == [CHILD_FLAG]:
        if len(argv) < 2:
            print(f"{CHILD_FLAG} needs a node executable name", file=sys.stderr)
            return 2
        return run_child(argv[1], argv[2:])
    try:
        known = launch_arguments()
        if "--show-args" in argv or "-s" in argv:
            print("Arguments (name:=default):\n" + show_arguments(known))
            return 0
        values = parse_arguments(argv, known)
        problem = child_setup_problem()
        if problem:
            print(f"[run_nodes] {problem}", file=sys.stderr)
            return 2
        processes = start_nodes(values)
    except (ArgumentError, FileNotFoundError) as error:
        print(f"[run_nodes] {error}", file=sys.stderr)
        return 2
    return supervise(processes)


if __name__ == "__main__":
    sys.exit(main())
