"""The rclpy grasp node (runs where ROS 2 and the built messages exist, e.g. `colcon test`):
a published ConfidenceMaskArray yields a GraspCandidateArray with the same stamp; cup
parameters refused or applied."""
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("latent_segmentation_ros.msg", reason="messages not built (colcon build)")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from latent_segmentation_ros.core.messages import build_confidence_mask_array  # noqa: E402
from latent_segmentation_ros.core.results import CameraResult  # noqa: E402
from latent_segmentation_ros.msg import ConfidenceMaskArray, GraspCandidateArray  # noqa: E402
from latent_segmentation_ros.ros.base_node import rclpy_factory  # noqa: E402
from latent_segmentation_ros.ros.grasp_node import GraspNode  # noqa: E402


@pytest.fixture(scope="module")
def ros():
    rclpy.init()
    yield
    rclpy.shutdown()


@pytest.fixture
def node(ros):
    node = GraspNode()
    yield node
    node.destroy_node()


def mask_array():
    masks = np.zeros((1, 90, 120), bool)
    masks[0, 10:80, 10:100] = True
    result = CameraResult(
        camera="overhead_left",
        masks=masks,
        scores=np.array([0.9], np.float32),
        labels=np.array([1]),
        boxes=np.zeros((1, 4), np.float32),
        support_counts=np.array([8]),
        mode="confidence_mask",
        p=0.9,
        num_samples=8,
    )
    factory = rclpy_factory()
    return build_confidence_mask_array(result, factory.make_header(12, 34, "overhead_left_optical"), factory)


def test_cup_parameters_refused_or_applied(node):
    (result,) = node.set_parameters([Parameter("cup_spacing", value=8.0)])
    assert not result.successful and "cups overlap" in result.reason
    (result,) = node.set_parameters([Parameter("cup_rows", value=2)])
    assert result.successful and node.core.planner.layout.num_cups == 6


def test_a_mask_array_yields_grasps_with_the_same_stamp(node):
    helper = Node("test_masks")
    publisher = helper.create_publisher(ConfidenceMaskArray, "/overhead_left/confidence_masks", 10)
    received = []
    helper.create_subscription(GraspCandidateArray, "/grasp_candidates", received.append, 10)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    executor.add_node(helper)
    message = mask_array()
    try:
        deadline, last = time.monotonic() + 30, 0.0
        while not received and time.monotonic() < deadline:
            if time.monotonic() - last > 1.0:
                publisher.publish(message)
                last = time.monotonic()
            executor.spin_once(timeout_sec=0.05)
        assert received, f"no grasps; node stats: {node.stats.snapshot()}"
        grasps = received[0]
        assert (grasps.header.stamp.sec, grasps.header.stamp.nanosec) == (12, 34)
        assert grasps.camera == "overhead_left"
        assert len(grasps.candidates) == 1
        best = grasps.candidates[0]
        assert (best.mask_id, best.sealed_cups, best.total_cups) == (0, 9, 9)
        assert len(best.cup_u) == len(best.cup_v) == len(best.cup_sealed) == 9
    finally:
        executor.remove_node(helper)
        executor.remove_node(node)
        helper.destroy_node()
