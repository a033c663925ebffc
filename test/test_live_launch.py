"""Both nodes through ``picking.launch.py`` over real DDS, where launch_ros is installed (an apt
or source ROS 2; not on PyPI, so skipped by ``make test``): with ros2cli, pairs come back as mask
arrays and Ctrl-C to the launch's process group ends everything with exit code 0, no traceback
and no "process has died"; a segmentation node that refuses to start ends the launch with exit
code 1 and stops the grasp node."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("latent_segmentation_ros.msg", reason="messages not built (colcon build)")
pytest.importorskip("launch_ros", reason="launch_ros is not installed (not on PyPI)")

from latent_segmentation_ros.ros import rig_node  # noqa: E402
from latent_segmentation_ros.ros.rig_node import Rig  # noqa: E402

pytestmark = pytest.mark.xdist_group("live_launch")


def test_picking_launch_ends_with_an_error_when_a_node_dies(ros_domain, tmp_path):
    prefix = rig_node.find_install_prefix()
    launch = rig_node.start_launch("picking.launch.py", [f"checkpoint:={tmp_path / 'missing.safetensors'}"],
                                   prefix=prefix, domain_id=ros_domain, log_dir=tmp_path / "run")
    try:
        code = launch.wait(timeout=120)
    finally:
        launch.stop()
    output = launch.output()
    assert code == 1, output[-3000:]
    assert "missing.safetensors" in output and "while the launch was running" in output, output[-3000:]
    assert "[grasp_node-2]: process has finished cleanly" in output, output[-3000:]


def test_picking_launch_serves_pairs_and_ends_cleanly_on_ctrl_c(ros_domain, tmp_path):
    if shutil.which("ros2") is None:
        pytest.skip("ros2cli is not installed (not on PyPI)")
    prefix = rig_node.find_install_prefix()
    pairs = rig_node.synthetic_pairs(1, 240, 320, seed=7)
    env = rig_node.node_environment(ros_domain, prefix, threads=1)
    log = tmp_path / "launch.log"
    with open(log, "wb") as out:
        launch = subprocess.Popen(
            ["ros2", "launch", "latent_segmentation_ros", "picking.launch.py", "device:=cpu"],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
    try:
        with Rig(ros_domain) as rig:
            stamp = [1_704_067_200 * 1_000_000_000]

            def publish():
                stamp[0] += 1_000_000_000
                rig.publish(rig.pair(pairs[0], stamp[0]))

            assert rig.wait_for(rig.answered_stamps, 120, every=publish, period=0.5), log.read_text()[-3000:]
        started = time.monotonic()
        os.killpg(launch.pid, signal.SIGINT)
        time.sleep(0.05)
        os.killpg(launch.pid, signal.SIGINT)
        code = launch.wait(timeout=15)
        output = log.read_text()
        assert code == 0, output[-3000:]
        assert time.monotonic() - started < 15
        assert "Traceback" not in output and "process has died" not in output, output[-3000:]
    finally:
        if launch.poll() is None:
            os.killpg(launch.pid, signal.SIGKILL)
            launch.wait()
