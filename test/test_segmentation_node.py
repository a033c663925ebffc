"""The rclpy segmentation node (runs where ROS 2 and the built messages exist, e.g. `colcon test`):
parameters refused and applied, a published camera pair yields one array per camera with the
source stamps, a new p re-publishes at once, bad frames do not stop the node."""
import math
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("latent_segmentation_ros.msg", reason="messages not built (colcon build)")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from latent_segmentation_ros.core.image_conversion import numpy_to_image  # noqa: E402
from latent_segmentation_ros.msg import ConfidenceMaskArray  # noqa: E402
from latent_segmentation_ros.ros.base_node import StartupError  # noqa: E402
from latent_segmentation_ros.ros.segmentation_node import SegmentationNode  # noqa: E402
from tiny_models import save_tiny_checkpoint  # noqa: E402

CAMERAS = ("overhead_left", "overhead_right")


@pytest.fixture(scope="module")
def ros():
    rclpy.init()
    yield
    rclpy.shutdown()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("model"), seed=0)


@pytest.fixture
def node(ros, checkpoint):
    overrides = [
        Parameter("checkpoint", value=str(checkpoint)),
        Parameter("device", value="cpu"),
        Parameter("mode", value="confidence_mask"),  # the K-sample path; the default is the prior mean
        Parameter("mask_threshold", value=0.5),
        Parameter("num_samples", value=2),
        Parameter("p", value=0.5),
        Parameter("score_threshold", value=0.05),
        Parameter("min_mask_area", value=0),
    ]
    node = SegmentationNode(parameter_overrides=overrides)
    yield node
    node.destroy_node()


class Camera(Node):
    """Publishes image pairs and collects the node's mask arrays."""

    def __init__(self):
        super().__init__("test_cameras")
        self.image_publishers = [
            self.create_publisher(Image, f"/{camera}/image_raw", qos_profile_sensor_data) for camera in CAMERAS
        ]
        self.received = {camera: [] for camera in CAMERAS}
        self.subscriptions_ = [
            self.create_subscription(
                ConfidenceMaskArray, f"/{camera}/confidence_masks", self.received[camera].append, 10
            )
            for camera in CAMERAS
        ]

    def publish_pair(self, sec, nanosec, encoding="rgb8", size=(64, 80)):
        rgb = np.random.default_rng(sec).integers(0, 256, size=(*size, 3), dtype=np.uint8)
        for publisher, camera in zip(self.image_publishers, CAMERAS):
            fields = numpy_to_image(rgb, "rgb8")
            message = Image()
            message.header.stamp.sec = sec
            message.header.stamp.nanosec = nanosec
            message.header.frame_id = f"{camera}_optical"
            message.height, message.width, message.step = fields.height, fields.width, fields.step
            message.encoding = encoding
            message.is_bigendian = fields.is_bigendian
            message.data = bytes(fields.data)
            publisher.publish(message)


def spin_until(executor, condition, timeout=90.0, every=None):
    deadline = time.monotonic() + timeout
    last = 0.0
    while time.monotonic() < deadline:
        if condition():
            return True
        if every is not None and time.monotonic() - last > 1.0:
            every()
            last = time.monotonic()
        executor.spin_once(timeout_sec=0.05)
    return condition()


def test_parameters_refused_and_applied(node):
    refused = {
        "p above 1": Parameter("p", value=1.7),
        "p NaN": Parameter("p", value=math.nan),
        "negative samples": Parameter("num_samples", value=-1),
        "unknown mode": Parameter("mode", value="average"),
        "read-only checkpoint": Parameter("checkpoint", value="/elsewhere.safetensors"),
    }
    for label, parameter in refused.items():
        (result,) = node.set_parameters([parameter])
        assert not result.successful, label
        assert result.reason, label
    (result,) = node.set_parameters([Parameter("mode", value="average")])
    assert "mode must be one of" in result.reason
    assert node.get_parameter("p").value == 0.5
    assert node.core.pipeline.settings.p == 0.5

    (result,) = node.set_parameters([Parameter("p", value=0.95)])
    assert result.successful
    assert node.get_parameter("p").value == 0.95
    assert node.core.pipeline.settings.p == 0.95
    (result,) = node.set_parameters([Parameter("mode", value="union_nms")])
    assert result.successful and node.core.pipeline.settings.mode == "union_nms"


def test_every_refusal_is_logged_and_the_described_range_is_what_is_accepted(node, capfd):
    (descriptor,) = node.describe_parameters(["p"])
    (bounds,) = descriptor.floating_point_range
    assert 0.0 < bounds.from_value < 1e-300 and bounds.to_value == 1.0  # 0 < p <= 1, not [0, 1]
    (result,) = node.set_parameters([Parameter("p", value=bounds.from_value)])
    assert result.successful
    capfd.readouterr()
    # 0.0, 1.7, -0.5 and NaN are refused by rclpy's range check before the node's own rules run.
    for value in (0.0, 1.7, -0.5, math.nan):
        (result,) = node.set_parameters([Parameter("p", value=value)])
        assert not result.successful, value
    logged = capfd.readouterr().err
    for value in ("0.0", "1.7", "-0.5", "nan"):
        assert f"parameter change refused (p={value})" in logged, logged
    (result,) = node.set_parameters([Parameter("mode", value="average")])  # the node's own rule
    assert "parameter change refused (mode='average'): mode must be one of" in capfd.readouterr().err


def test_a_published_pair_yields_two_arrays_with_the_source_stamps(node):
    camera = Camera()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    executor.add_node(camera)
    try:
        got_both = spin_until(
            executor,
            lambda: all(camera.received[c] for c in CAMERAS),
            every=lambda: camera.publish_pair(1700000000, 250),
        )
        assert got_both, f"no mask arrays; node stats: {node.stats.snapshot()}"
        for name in CAMERAS:
            array = camera.received[name][0]
            assert (array.header.stamp.sec, array.header.stamp.nanosec) == (1700000000, 250)
            assert array.header.frame_id == f"{name}_optical"
            assert array.camera == name and array.num_samples == 2
            assert (array.image_height, array.image_width) == (64, 80)

        # a new p re-publishes the last frame at once, without running the network again
        drain_until = time.monotonic() + 3.0  # let pairs still in flight be processed first
        spin_until(executor, lambda: time.monotonic() > drain_until, timeout=5.0)
        calls = node.core.pipeline.network_calls
        counts = {c: len(camera.received[c]) for c in CAMERAS}
        (result,) = node.set_parameters([Parameter("p", value=1.0)])
        assert result.successful
        assert spin_until(executor, lambda: all(len(camera.received[c]) > counts[c] for c in CAMERAS), timeout=30)
        for name in CAMERAS:
            array = camera.received[name][-1]
            assert math.isclose(array.p, 1.0)
            assert array.header.stamp.nanosec == 250
        assert node.core.pipeline.network_calls == calls

        # a bad frame is a counted drop; the node goes on with the next good pair
        camera.publish_pair(1700000001, 0, encoding="yuv422")
        assert spin_until(executor, lambda: node.stats.snapshot()["dropped"].get("bad_image", 0) >= 1, timeout=30)
        counts = {c: len(camera.received[c]) for c in CAMERAS}
        assert spin_until(
            executor,
            lambda: all(len(camera.received[c]) > counts[c] for c in CAMERAS),
            every=lambda: camera.publish_pair(1700000002, 0),
        )
        assert camera.received["overhead_left"][-1].header.stamp.sec == 1700000002
    finally:
        executor.remove_node(camera)
        executor.remove_node(node)
        camera.destroy_node()


def test_a_checkpoint_that_does_not_load_refuses_start(ros, tmp_path):
    missing = tmp_path / "missing.safetensors"
    with pytest.raises(StartupError, match=f"{missing}: no such file"):
        SegmentationNode(parameter_overrides=[Parameter("checkpoint", value=str(missing))])
    with pytest.raises(StartupError, match="parameter p"):
        SegmentationNode(parameter_overrides=[Parameter("p", value=1.7)])
