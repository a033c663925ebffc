"""`latent-seg nodes` / `python -m latent_segmentation_ros.ros.run_nodes`: the launch file's arguments
(read from it), the node command lines they give, and, where ROS 2 and the built messages exist,
both nodes started, stopped by Ctrl-C (twice, to the whole group) with exit code 0 and no
traceback, and a checkpoint that does not load ending the run with exit code 1."""
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from latent_segmentation_ros.ros.run_nodes import ArgumentError, launch_arguments, node_arguments, parse_arguments

ROOT = Path(__file__).resolve().parents[1]


def test_arguments_are_the_launch_files():
    known = {a.name: a.default for a in launch_arguments(ROOT / "launch" / "picking.launch.py")}
    assert {"config", "namespace", "checkpoint", "device", "left_image_topic", "right_image_topic", "input_timeout",
            "use_sim_time", "log_level"} <= set(known)
    assert known["use_sim_time"] == "false" and known["log_level"] == "info" and known["device"] == ""


def option_values(ros_args):
    return [ros_args[i + 1] for i, token in enumerate(ros_args) if token == "-p"]


def test_defaults_give_the_config_file_and_no_overrides():
    arguments = node_arguments(parse_arguments([], launch_arguments()))
    segmentation, grasp = arguments["segmentation_node"], arguments["grasp_node"]
    config = segmentation[segmentation.index("--params-file") + 1]
    assert Path(config).name == "picking.yaml" and Path(config).is_file()
    assert option_values(segmentation) == option_values(grasp) == ["use_sim_time:=false"]
    assert "__node:=latent_segmentation" in segmentation and "__node:=suction_grasp_planner" in grasp
    assert segmentation[-2:] == ["--log-level", "info"]


def test_given_arguments_override_like_the_launch_file():
    values = parse_arguments(
        ["device:=cpu", "namespace:=cell_1", "checkpoint:=/models/a b.safetensors", "left_image_topic:=/a/image",
         "right_image_topic:=/b/image", "input_timeout:=2", "use_sim_time:=True", "log_level:=debug"],
        launch_arguments(),
    )
    arguments = node_arguments(values)
    segmentation, grasp = arguments["segmentation_node"], arguments["grasp_node"]
    assert option_values(segmentation) == [
        "use_sim_time:=true", "input_timeout:=2.0", 'checkpoint:="/models/a b.safetensors"', 'device:="cpu"',
        'camera_topics:=["/a/image", "/b/image"]',
    ]
    assert option_values(grasp) == ["use_sim_time:=true", "input_timeout:=2.0"]  # a double, as declared
    assert "__ns:=/cell_1" in segmentation and "__ns:=/cell_1" in grasp
    assert grasp[-2:] == ["--log-level", "debug"]


@pytest.mark.parametrize(
    "items, message",
    [
        (["bogus:=1"], "unknown argument 'bogus'"),
        (["device=cpu"], "expected name:=value"),
        (["left_image_topic:=/a"], "give both left_image_topic and right_image_topic"),
        (["use_sim_time:=maybe"], "use_sim_time must be true or false"),
        (["input_timeout:=soon"], "input_timeout must be a number"),
        (["config:=/nonexistent/picking.yaml"], "no such parameter file"),
    ],
)
def test_bad_arguments_are_refused_with_the_reason(items, message):
    with pytest.raises(ArgumentError, match=message):
        node_arguments(parse_arguments(items, launch_arguments()))


def test_a_bad_argument_exits_2_before_starting_anything():
    result = subprocess.run([sys.executable, "-m", "latent_segmentation_ros.ros.run_nodes", "bogus:=1"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "unknown argument 'bogus'" in result.stderr


def test_without_ros_set_up_it_says_in_one_line_what_to_build_or_source(tmp_path):
    # A shell without `source tools/ros2_env.sh`: the package imports from the checkout (no
    # generated messages there), ROS 2's paths are absent.
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "AMENT_PREFIX_PATH", "LD_LIBRARY_PATH", "CMAKE_PREFIX_PATH")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "training")])  # this checkout's sources
    done = subprocess.run([sys.executable, "-m", "latent_segmentation_ros.cli", "nodes", "device:=cpu"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "ROS 2 is not set up in this shell" in lines[0]
    assert "make ros2" in lines[0] and "source tools/ros2_env.sh" in lines[0]
    assert not done.stdout


class Run:
    """`python -m latent_segmentation_ros.ros.run_nodes ...` in a session of its own, output collected."""

    def __init__(self, domain, *arguments):
        env = dict(os.environ, ROS_DOMAIN_ID=str(domain), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "latent_segmentation_ros.ros.run_nodes", *arguments], stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True, env=env, cwd=ROOT,
        )
        self.lines = []
        threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True).start()

    def output(self):
        return "".join(self.lines)

    def wait_for(self, text, count, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.output().count(text) < count and self.process.poll() is None:
            time.sleep(0.1)
        return self.output().count(text) >= count

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()




@pytest.fixture
def ros_built():
    pytest.importorskip("rclpy")
    pytest.importorskip("latent_segmentation_ros.msg", reason="messages not built (colcon build)")


def test_ctrl_c_twice_to_the_group_ends_both_nodes_with_exit_0(ros_built, ros_domain):
    run = Run(ros_domain, "device:=cpu")
    try:
        assert run.wait_for("]: ready ", 2, timeout=120), run.output()[-3000:]
        started = time.monotonic()
        os.killpg(run.process.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches every process...
        time.sleep(0.05)
        os.killpg(run.process.pid, signal.SIGINT)  # ...and again
        code = run.process.wait(15)
        elapsed = time.monotonic() - started
        output = run.output()
        assert code == 0, output[-3000:]
        assert elapsed < 5.0, f"{elapsed:.1f} s\n{output[-3000:]}"
        assert "Traceback" not in output, output
        assert "[latent_segmentation]: shutting down on SIGINT" in output
        assert "[suction_grasp_planner]: shutting down on SIGINT" in output
    finally:
        run.stop()


def test_a_checkpoint_that_does_not_load_ends_the_run_with_exit_1(ros_built, ros_domain, tmp_path):
    missing = tmp_path / "missing.safetensors"
    run = Run(ros_domain, "device:=cpu", f"checkpoint:={missing}")
    try:
        code = run.process.wait(120)
        output = run.output()
        assert code == 1, output[-3000:]
        assert f"cannot load checkpoint {missing}: no such file" in output
        assert "segmentation_node exited with code 1 while the launch was running; stopping the launch" in output
        assert "Traceback" not in output, output
    finally:
        run.stop()
