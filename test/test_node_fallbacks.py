"""The rclpy layer on a ROS 2 without message_filters / diagnostic_updater (the PyPI wheels):
camera_sync pairs plain subscriptions' images, and the node's own /diagnostics publisher sends
the status diagnostic_updater would (name, hardware id, level and message). Real rclpy over DDS
in a domain of the test's own."""
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("latent_segmentation_ros.msg", reason="messages not built (colcon build)")

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from latent_segmentation_ros.core.camera_sync import SyncPolicy  # noqa: E402
from latent_segmentation_ros.core.messages import build_confidence_mask_array  # noqa: E402
from latent_segmentation_ros.core.results import CameraResult  # noqa: E402
from latent_segmentation_ros.msg import ConfidenceMaskArray  # noqa: E402
from latent_segmentation_ros.ros import base_node  # noqa: E402
from latent_segmentation_ros.ros.base_node import PairingSubscriptions, rclpy_factory  # noqa: E402
from latent_segmentation_ros.ros.grasp_node import GraspNode  # noqa: E402


@pytest.fixture
def context(ros_domain):
    context = Context()
    rclpy.init(context=context, domain_id=ros_domain)
    yield context
    rclpy.try_shutdown(context=context)


def spin_until(executor, condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not condition():
        executor.spin_once(timeout_sec=0.05)
    return condition()


def image(sec, nanosec):
    message = Image(height=2, width=2, encoding="mono8", step=2, data=bytes(4))
    message.header.stamp.sec, message.header.stamp.nanosec = sec, nanosec
    return message


def test_camera_sync_pairs_images_from_plain_subscriptions(context):
    node = rclpy.create_node("pairing_under_test", context=context)
    source = rclpy.create_node("cameras", context=context)
    pairs, seen = [], []
    pairing = PairingSubscriptions(
        node, ["/left/image_raw", "/right/image_raw"], qos_profile_sensor_data, SyncPolicy(0.05, 10),
        lambda *images: pairs.append(tuple((i.header.stamp.sec, i.header.stamp.nanosec) for i in images)), seen.append,
    )
    left = source.create_publisher(Image, "/left/image_raw", qos_profile_sensor_data)
    right = source.create_publisher(Image, "/right/image_raw", qos_profile_sensor_data)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(source)
    assert spin_until(executor, lambda: left.get_subscription_count() and right.get_subscription_count())
    for second in (1, 2, 3):
        left.publish(image(second, 0))
        right.publish(image(second, 20_000_000))  # 20 ms later: within the 50 ms slop
        spin_until(executor, lambda: len(seen) >= 2 * second, timeout=5)
    right.publish(image(9, 0))  # nothing near it on the left: never paired
    assert spin_until(executor, lambda: len(pairs) == 3 and len(seen) == 7)
    assert pairs == [((s, 0), (s, 20_000_000)) for s in (1, 2, 3)]
    assert seen.count("/left/image_raw") == 3 and seen.count("/right/image_raw") == 4
    assert pairing._pairer.pending() == [0, 1]
    executor.shutdown()


def mask_array():
    masks = np.zeros((1, 90, 120), bool)
    masks[0, 10:80, 10:100] = True
    result = CameraResult(
        camera="overhead_left", masks=masks, scores=np.array([0.9], np.float32), labels=np.array([1]),
        boxes=np.zeros((1, 4), np.float32), support_counts=np.array([8]), mode="confidence_mask", p=0.9,
        num_samples=8,
    )
    factory = rclpy_factory()
    return build_confidence_mask_array(result, factory.make_header(12, 34, "overhead_left_optical"), factory)


def test_diagnostics_warn_without_input_then_ok_with_a_measured_latency(context):
    node = GraspNode(context=context, parameter_overrides=[Parameter("input_timeout", value=0.5)])
    if base_node.Updater is None:
        assert isinstance(node.updater, base_node.DiagnosticsPublisher)
    listener = rclpy.create_node("diagnostics_listener", context=context)
    statuses = []
    listener.create_subscription(
        DiagnosticArray, "/diagnostics",
        lambda array: statuses.extend(s for s in array.status if s.name == "suction_grasp_planner: grasp planning"), 10,
    )
    masks = listener.create_publisher(ConfidenceMaskArray, "overhead_left/confidence_masks", 10)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(listener)
    try:
        assert spin_until(executor, lambda: any(s.level == DiagnosticStatus.WARN for s in statuses))
        warning = next(s for s in statuses if s.level == DiagnosticStatus.WARN)
        assert warning.hardware_id == "suction_grasp_planner"
        assert warning.message.startswith("no confidence mask array received since start")
        assert not any(kv.key.startswith("latency") for kv in warning.values)  # nothing measured yet
        statuses.clear()

        def healthy():
            masks.publish(mask_array())
            return any(s.level == DiagnosticStatus.OK for s in statuses)

        assert spin_until(executor, healthy)
        ok = next(s for s in statuses if s.level == DiagnosticStatus.OK)
        values = {kv.key: kv.value for kv in ok.values}
        assert float(values["latency last (ms)"]) > 0.0
        assert int(values["confidence mask arrays received"]) >= 1
    finally:
        executor.shutdown()
        node.destroy_node()


@pytest.mark.skipif(base_node.Updater is not None, reason="diagnostic_updater is installed: its own Updater runs")
@pytest.mark.parametrize("given, expected", [(0.25, 0.25), (-1.0, base_node.DIAGNOSTICS_PERIOD_S),
                                             ("fast", base_node.DIAGNOSTICS_PERIOD_S)])
def test_the_own_diagnostics_follow_diagnostic_updater_period(context, given, expected):
    """diagnostic_updater's parameter sets the period; a bad value is refused with a warning."""
    node = GraspNode(context=context, parameter_overrides=[Parameter(base_node.PERIOD_PARAMETER, value=given)])
    listener = rclpy.create_node("diagnostics_listener", context=context)
    arrived = []
    listener.create_subscription(DiagnosticArray, "/diagnostics", lambda array: arrived.append(time.monotonic()), 10)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(listener)
    try:
        assert node.updater.period_s == expected
        if given == 0.25:
            (result,) = node.set_parameters([Parameter(base_node.PERIOD_PARAMETER, value=1.0)])
            assert not result.successful  # read-only, as the updater's
        assert spin_until(executor, lambda: len(arrived) >= 5, timeout=10 * expected)
        gaps = np.diff(arrived[1:])
        assert abs(float(np.median(gaps)) - expected) < 0.4 * expected
    finally:
        executor.shutdown()
        node.destroy_node()
