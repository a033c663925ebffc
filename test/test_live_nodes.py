"""Both nodes as processes over real DDS (loopback, a ROS domain of their own), started from the
colcon install with config/picking.yaml as ``ros2 run`` would: camera pairs rendered as
``latent-seg make-bag`` renders them, published at camera rate with the sensor-data QoS, come back
as mask arrays on both cameras and grasp arrays; parameters go through the nodes' services;
malformed images are dropped and counted in /diagnostics; signals end the nodes cleanly; a
checkpoint that does not load stops the node at once.

One pair of nodes serves this module's tests, in file order (pytest-xdist keeps the module on
one worker), in a domain of their own; the last test ends them with SIGTERM.
test_live_signals.py starts nodes of its own per test.
"""
from __future__ import annotations

import math
import signal
import time

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("latent_segmentation_ros.msg", reason="messages not built (colcon build)")

from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402

from latent_segmentation_ros.core.messages import confidence_mask_array_to_result  # noqa: E402
from latent_segmentation_ros.replay.synthetic_bag import optical_frame  # noqa: E402
from latent_segmentation_ros.ros import rig_node  # noqa: E402
from latent_segmentation_ros.ros.rig_node import (  # noqa: E402
    CAMERAS, GRASP_NODE, SEGMENTATION_NODE, Rig, drops_by_reason, stamp_ns_of, start_node, stop_all,
)

pytestmark = pytest.mark.xdist_group("live_nodes")

HEIGHT, WIDTH = 240, 320
RATE_HZ = 8.0  # the camera rate of `latent-seg make-bag`
START_TIMEOUT = 120.0  # first start after a fresh build, on a loaded 2-core machine
# The demo model with few samples keeps the test quick; the rest is the package's parameter file.
SEGMENTATION_PARAMETERS = {"device": "cpu", "num_samples": 2, "input_timeout": 0.0}
GRASP_PARAMETERS = {"input_timeout": 0.0}
SECOND = 1_000_000_000


@pytest.fixture(scope="module")
def prefix():
    return rig_node.find_install_prefix()


@pytest.fixture(scope="module")
def pairs():
    return rig_node.synthetic_pairs(4, HEIGHT, WIDTH, seed=3)


class Stamps:
    """Increasing camera stamps, one second apart (pairs never mix across tests)."""

    def __init__(self) -> None:
        self.next = 1_704_067_200 * SECOND

    def __call__(self) -> int:
        self.next += SECOND
        return self.next


def start_cell(prefix, domain, log_dir, segmentation=None, grasp=None):
    seg = start_node("segmentation_node", prefix=prefix, domain_id=domain, log_dir=log_dir / "seg", threads=1,
                     parameters={**SEGMENTATION_PARAMETERS, **(segmentation or {})})
    grasp_node = start_node("grasp_node", prefix=prefix, domain_id=domain, log_dir=log_dir / "grasp", threads=1,
                            parameters={**GRASP_PARAMETERS, **(grasp or {})})
    return seg, grasp_node


def wait_until_answering(rig, processes, pairs, stamps, timeout=START_TIMEOUT):
    """Publish pairs at 2 Hz until one comes back on both cameras; fail with the logs if not."""
    answered = lambda: rig.answered_stamps() or any(p.returncode is not None for p in processes)  # noqa: E731
    rig.wait_for(answered, timeout, every=lambda: rig.publish(rig.pair(pairs[0], stamps())), period=0.5)
    logs = "\n".join(f"--- {p.name} (exit {p.returncode}):\n{p.output()[-3000:]}" for p in processes)
    assert rig.answered_stamps(), f"no mask arrays within {timeout:g} s\n{logs}"


@pytest.fixture(scope="module")
def cell(prefix, pairs, tmp_path_factory, ros_module_domain):
    """Both nodes, one rig, one domain for the module's tests."""
    domain = ros_module_domain
    processes = start_cell(prefix, domain, tmp_path_factory.mktemp("cell"))
    rig = Rig(domain)
    stamps = Stamps()
    try:
        wait_until_answering(rig, processes, pairs, stamps)
        yield rig, processes, stamps
    finally:
        rig.close()
        stop_all(processes)


def publish_at_camera_rate(rig, pairs, stamps, count):
    sent = []
    for index in range(count):
        stamp = stamps()
        rig.publish(rig.pair(pairs[index % len(pairs)], stamp))
        sent.append(stamp)
        time.sleep(1.0 / RATE_HZ)
    return sent


def settle(rig, quiet=1.5, timeout=30.0):
    """Wait until no mask array arrived for ``quiet`` seconds (the worker is idle)."""
    def quiet_now():
        latest = max((r.at for c in rig.cameras for r in rig.mask_arrays(c)), default=0.0)
        return time.monotonic() - latest > quiet
    assert rig.wait_for(quiet_now, timeout), "the node kept publishing"


def test_pairs_at_camera_rate_yield_masks_on_both_cameras_and_grasps(cell, pairs):
    rig, processes, stamps = cell
    settle(rig)
    before = {camera: len(rig.mask_arrays(camera)) for camera in CAMERAS}
    grasps_before = len(rig.grasp_arrays())
    sent = publish_at_camera_rate(rig, pairs, stamps, 16)
    assert rig.wait_for(lambda: len(rig.answered_stamps() & set(sent)) >= 2, 60), (
        f"too few pairs answered: {sorted(rig.answered_stamps() & set(sent))}\n{processes[0].output()[-3000:]}"
    )
    settle(rig)
    answered = rig.answered_stamps() & set(sent)
    masks_seen = 0
    for index, camera in enumerate(CAMERAS):
        arrays = [r.message for r in rig.mask_arrays(camera)[before[camera]:]]
        assert arrays
        for array in arrays:
            stamp = stamp_ns_of(array.header)
            # the source image's stamp (the second camera fires 2 ms after the first) and frame
            assert stamp - index * 2_000_000 in sent
            assert array.header.frame_id == optical_frame(camera)
            assert array.camera == camera
            assert (array.image_height, array.image_width) == (HEIGHT, WIDTH)
            assert math.isclose(array.p, 0.9, rel_tol=1e-6) and array.num_samples == 2
            result = confidence_mask_array_to_result(array)  # raises on a mask that leaves the image
            for item, mask in zip(array.masks, result.masks):
                assert item.mask.encoding == "mono8"
                assert (item.mask.height, item.mask.width) == (item.roi.height, item.roi.width) != (0, 0)
                assert item.roi.x_offset + item.roi.width <= WIDTH and item.roi.y_offset + item.roi.height <= HEIGHT
                assert item.area == int(mask.sum()) > 0
            masks_seen += len(array.masks)
    assert masks_seen > 0, "the demo model found no item in any tote scene"

    assert rig.wait_for(lambda: len(rig.grasp_arrays()) > grasps_before, 10)
    answered_by_camera = {
        (camera, stamp_ns_of(r.message.header)) for camera in CAMERAS for r in rig.mask_arrays(camera)
    }
    for received in rig.grasp_arrays()[grasps_before:]:
        grasps = received.message
        assert (grasps.camera, stamp_ns_of(grasps.header)) in answered_by_camera
        assert grasps.header.frame_id == optical_frame(grasps.camera)
        for candidate in grasps.candidates:
            assert 0 <= candidate.u < WIDTH and 0 <= candidate.v < HEIGHT
            assert 1 <= candidate.sealed_cups <= candidate.total_cups == len(candidate.cup_u)
    assert answered


def test_parameters_through_the_services(cell, pairs):
    rig, processes, stamps = cell
    settle(rig)
    last = {camera: rig.mask_arrays(camera)[-1].message for camera in CAMERAS}
    counts = {camera: len(rig.mask_arrays(camera)) for camera in CAMERAS}

    (result,) = rig.set_parameters(SEGMENTATION_NODE, {"p": 0.95})
    answered_at = time.monotonic()
    assert result.successful, result.reason
    assert rig.wait_for(lambda: all(len(rig.mask_arrays(c)) > counts[c] for c in CAMERAS), 1.0), (
        "the last frame was not re-published within a second of p = 0.95"
    )
    for camera in CAMERAS:
        received = rig.mask_arrays(camera)[counts[camera]]
        assert received.at - answered_at < 1.0
        again = received.message
        assert math.isclose(again.p, 0.95, rel_tol=1e-6)
        assert stamp_ns_of(again.header) == stamp_ns_of(last[camera].header)
        assert again.header.frame_id == last[camera].header.frame_id
        assert all(math.isclose(item.p, 0.95, rel_tol=1e-6) for item in again.masks)
    settle(rig, quiet=1.0)

    refused = {
        "p": 1.7,
        "num_samples": 0,
        "mode": "bogus",
        "checkpoint": "/elsewhere/model.safetensors",  # read-only
    }
    counts = {camera: len(rig.mask_arrays(camera)) for camera in CAMERAS}
    for name, value in refused.items():
        (result,) = rig.set_parameters(SEGMENTATION_NODE, {name: value})
        assert not result.successful, name
        assert name in result.reason, (name, result.reason)
    (result,) = rig.set_parameters(SEGMENTATION_NODE, {"p": math.nan})
    assert not result.successful and "p" in result.reason and result.reason
    (result,) = rig.set_parameters(GRASP_NODE, {"cup_spacing": 4.0})
    assert not result.successful and "overlap" in result.reason
    values = rig.get_parameters(SEGMENTATION_NODE, ["p", "num_samples", "mode", "checkpoint"])
    assert values == {"p": 0.95, "num_samples": 2, "mode": "confidence_mask", "checkpoint": ""}
    # a refused set changes nothing: no re-publication, and the next pair still has p = 0.95
    time.sleep(1.0)
    assert {camera: len(rig.mask_arrays(camera)) for camera in CAMERAS} == counts
    stamp = stamps()
    assert rig.wait_for(lambda: stamp in rig.answered_stamps(), 30,
                        every=lambda: rig.publish(rig.pair(pairs[1], stamp)), period=2.0)
    for camera in CAMERAS:
        latest = rig.mask_arrays(camera)[-1].message
        assert math.isclose(latest.p, 0.95, rel_tol=1e-6) and latest.mode == "confidence_mask"


def malformed(rig, kind, rgbs, stamp):
    """A pair whose first image is malformed in the given way (the other one is good)."""
    left, right = rig.pair(rgbs, stamp)
    if kind == "32FC1":
        # a depth image at half resolution: a full-size one (300 kB) was lost in transit on every
        # try where Fast DDS could not use shared memory; the encoding is what is refused
        left.encoding, left.height, left.width, left.step = "32FC1", HEIGHT // 2, WIDTH // 2, WIDTH // 2 * 4
        left.data = np.zeros((HEIGHT // 2, WIDTH // 2), np.float32).tobytes()
    elif kind == "yuv422":
        left.encoding, left.step = "yuv422", WIDTH * 2
        left.data = bytes(HEIGHT * WIDTH * 2)
    elif kind == "truncated":
        left.data = bytes(left.data)[: len(left.data) // 2]
    elif kind == "zero_size":
        left.height = left.width = left.step = 0
        left.data = b""
    elif kind == "empty_encoding":
        left.encoding = ""
    elif kind == "size_mismatch":
        small = rig_node.image_message(rgbs[1][: HEIGHT // 2, : WIDTH // 2].copy(), stamp + 2_000_000,
                                       right.header.frame_id)
        right = small
    else:
        raise ValueError(kind)
    return [left, right]


MALFORMED = {
    "32FC1": "bad_image",
    "yuv422": "bad_image",
    "truncated": "bad_image",
    "zero_size": "bad_image",
    "empty_encoding": "bad_image",
    "size_mismatch": "size_mismatch",
}


def test_malformed_images_are_dropped_counted_and_the_next_pair_processed(cell, pairs):
    rig, processes, stamps = cell
    settle(rig)
    for kind, reason in MALFORMED.items():
        status = rig.diagnostic(SEGMENTATION_NODE)
        dropped = drops_by_reason(status).get(reason, 0)
        bad = malformed(rig, kind, pairs[2], stamps())

        def counted():
            current = rig.diagnostic(SEGMENTATION_NODE)
            return current is not None and drops_by_reason(current).get(reason, 0) > dropped and current

        # best-effort delivery (sensor-data QoS): a camera would send the next frame; so do we
        current = rig.wait_for(counted, 15, every=lambda: rig.publish(bad), period=3.0)
        assert current, f"{kind}: no '{reason}' drop in /diagnostics; last: {rig.diagnostic(SEGMENTATION_NODE)}"
        assert current.level == DiagnosticStatus.WARN, (kind, current.level, current.message)
        assert reason in current.message, (kind, current.message)
        good = stamps()
        assert rig.wait_for(lambda: good in rig.answered_stamps(), 30,
                            every=lambda: rig.publish(rig.pair(pairs[0], good)), period=2.0), (
            f"{kind}: the next good pair was not processed\n{processes[0].output()[-2000:]}"
        )
    assert all(p.returncode is None for p in processes)


def assert_clean_exit(processes, started, limit=5.0):
    for process in processes:
        code = process.wait(max(0.1, started + limit - time.monotonic()))
        output = process.output()
        assert code == 0, f"{process.name}: exit {code} within {limit:g} s\n{output[-3000:]}"
        assert "Traceback" not in output, f"{process.name}:\n{output[-3000:]}"
        assert "KeyboardInterrupt" not in output, f"{process.name}:\n{output[-3000:]}"


def test_sigterm_ends_both_nodes_with_exit_0(cell):
    """Last of the group: the shared nodes, busy, asked to terminate."""
    rig, processes, stamps = cell
    assert all(p.returncode is None for p in processes)
    started = time.monotonic()
    for process in processes:
        process.send(signal.SIGTERM)
    assert_clean_exit(processes, started)
