"""Both nodes as processes over real DDS, each test with nodes and a ROS domain of its own:
Ctrl-C (SIGINT to the process group, twice, as a terminal and a launcher send it) ends them with
exit code 0 and no traceback within 5 s; a checkpoint that does not load ends the segmentation
node at once with exit code 1 and the path and the cause in its log."""
from __future__ import annotations

import signal
import time

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("latent_segmentation_ros.msg", reason="messages not built (colcon build)")

from latent_segmentation_ros.ros import rig_node  # noqa: E402
from latent_segmentation_ros.ros.rig_node import Rig, start_node, stop_all  # noqa: E402
from test_live_nodes import RATE_HZ, Stamps, assert_clean_exit, start_cell, wait_until_answering  # noqa: E402

pytestmark = pytest.mark.xdist_group("live_signals")


@pytest.fixture(scope="module")
def prefix():
    return rig_node.find_install_prefix()


@pytest.fixture(scope="module")
def pairs():
    return rig_node.synthetic_pairs(2, 240, 320, seed=5)


def test_sigint_twice_as_a_terminal_sends_it_ends_both_nodes_with_exit_0(prefix, pairs, ros_domain, tmp_path):
    processes = start_cell(prefix, ros_domain, tmp_path)
    try:
        with Rig(ros_domain) as rig:
            stamps = Stamps()
            wait_until_answering(rig, processes, pairs, stamps)
            for _ in range(3):  # mid-stream: frames in flight while the signal arrives
                rig.publish(rig.pair(pairs[1], stamps()))
                time.sleep(1.0 / RATE_HZ)
            started = time.monotonic()
            for process in processes:  # Ctrl-C reaches every process of the foreground group...
                process.send(signal.SIGINT)
            time.sleep(0.05)
            for process in processes:  # ...and a launcher forwards it once more
                process.send(signal.SIGINT)
            assert_clean_exit(processes, started)
    finally:
        stop_all(processes)


@pytest.mark.parametrize("kind", ["missing", "not_safetensors"])
def test_a_checkpoint_that_does_not_load_exits_1_with_path_and_cause(prefix, ros_domain, tmp_path, kind):
    checkpoint = tmp_path / "model.safetensors"
    if kind == "not_safetensors":
        checkpoint.write_bytes(b"this is not a safetensors file" * 10)
    process = start_node("segmentation_node", prefix=prefix, domain_id=ros_domain, log_dir=tmp_path, threads=1,
                         parameters={"device": "cpu", "checkpoint": str(checkpoint)})
    try:
        code = process.wait(60)
        output = process.output()
        assert code == 1, f"exit {code}\n{output[-3000:]}"
        # the path, then why, on one line; no traceback for a refused start
        lines = [line for line in output.splitlines() if str(checkpoint) in line]
        assert any(line.split(str(checkpoint), 1)[1].strip(" :'\"") for line in lines), output
        if kind == "missing":
            assert any("no such file" in line.lower() for line in lines), output
        assert "Traceback" not in output, output
    finally:
        process.stop()
