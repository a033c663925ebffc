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
DEADLINE_S = 60.0  # for anything the nodes answer; a passing run waits a second or two
# The demo model with few samples keeps the test quick; the rest is the package's parameter file.
# The K-sample path, the heavier one (the node starts with the prior mean, one pass).
SEGMENTATION_PARAMETERS = {"device": "cpu", "mode": "confidence_mask", "mask_threshold": 0.5, "num_samples": 2,
                           "input_timeout": 0.0}
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


def settle(rig, quiet=1.5, timeout=DEADLINE_S):
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
    assert rig.wait_for(lambda: len(rig.answered_stamps() & set(sent)) >= 2, DEADLINE_S), (
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

    assert rig.wait_for(lambda: len(rig.grasp_arrays()) > grasps_before, DEADLINE_S)
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
    assert result.successful, result.reason
    # no new pair is sent: what arrives now is the last frame again, at the new p
    assert rig.wait_for(lambda: all(len(rig.mask_arrays(c)) > counts[c] for c in CAMERAS), DEADLINE_S), (
        "the last frame was not re-published after p = 0.95"
    )
    for camera in CAMERAS:
        again = rig.mask_arrays(camera)[counts[camera]].message
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
    # a refused set changes nothing: no re-publication (a refresh would be published before the
    # answer to the next pair, so the arrays after the refusals are that pair's alone), and the
    # next pair still has p = 0.95
    stamp = stamps()
    assert rig.wait_for(lambda: stamp in rig.answered_stamps(), DEADLINE_S,
                        every=lambda: rig.publish(rig.pair(pairs[1], stamp)), period=2.0)
    for index, camera in enumerate(CAMERAS):
        since = {stamp_ns_of(r.message.header) for r in rig.mask_arrays(camera)[counts[camera]:]}
        assert since == {stamp + index * 2_000_000}, f"{camera}: arrays of other frames after a refused change"
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
        current = rig.wait_for(counted, DEADLINE_S, every=lambda: rig.publish(bad), period=3.0)
        assert current, f"{kind}: no '{reason}' drop in /diagnostics; last: {rig.diagnostic(SEGMENTATION_NODE)}"
        assert current.level == DiagnosticStatus.WARN, (kind, current.level, current.message)
        assert reason in current.message, (kind, current.message)
        good = stamps()
        assert rig.wait_for(lambda: good in rig.answered_stamps(), DEADLINE_S,
                            every=lambda: rig.publish(rig.pair(pairs[0], good)), period=2.0), (
            f"{kind}: the next good pair was not processed\n{processes[0].output()[-2000:]}"
        )
    assert all(p.returncode is None for p in processes)


HOSTILE_S = 30.0
HOSTILE_PER_CYCLE = 12  # malformed pairs published between two good pairs
SEGMENTATION_REASONS = {"bad_image", "too_large", "size_mismatch"}


def hostile_pair(rng, rig, rgbs, stamp):
    """(a pair of camera images one of which the node must refuse, the drop reason it must give):
    random encodings, data cut short, short rows, sizes up to 2^32 - 1 with a few bytes of data,
    no pixels, 1 x 1 images, and cameras of different sizes."""
    images = rig.pair(rgbs, stamp)
    side = int(rng.integers(0, 2))
    image = images[side]
    kind = rng.choice(["encoding", "truncated", "short_step", "declared_huge", "random_fields", "zero_size",
                       "tiny", "size_mismatch"])
    reason = "bad_image"
    if kind == "encoding":
        image.encoding = str(rng.choice(["yuv422", "32FC1", "", "bayer_rggb8", "rgb8 ", "MONO8"]))
    elif kind == "truncated":
        image.data = bytes(image.data)[: int(rng.integers(0, len(image.data)))]
    elif kind == "short_step":
        image.step = int(rng.integers(0, image.width * 3))
    elif kind == "declared_huge":  # more than max_image_pixels (8K UHD), refused before its data is read
        image.height, image.width = (int(v) for v in rng.integers(6000, 2**32, size=2))
        image.step = int(rng.integers(0, 2**32))
        reason = "too_large"
    elif kind == "random_fields":
        image.height, image.width, image.step = (int(v) for v in rng.integers(8, 2**32, size=3))
        image.data = rng.integers(0, 256, int(rng.integers(0, 64)), dtype=np.uint8).tobytes()
        reason = "too_large" if image.height * image.width > 7680 * 4320 else "bad_image"
    elif kind == "zero_size":
        image.height = image.width = image.step = 0
        image.data = b""
    elif kind == "tiny":  # valid, but smaller than the model takes: both cameras
        images = [rig_node.image_message(rgb[:1, :1].copy(), stamp_ns_of(i.header), i.header.frame_id)
                  for rgb, i in zip(rgbs, images)]
    else:
        small = rgbs[side][: HEIGHT // 2, : WIDTH // 2].copy()
        images[side] = rig_node.image_message(small, stamp_ns_of(image.header), image.header.frame_id)
        reason = "size_mismatch"
    return images, reason


def hostile_mask_arrays(stamp):
    """Mask arrays the grasp node must drop: one declaring a 20000 x 20000 image with two 40 x 40
    masks (too_large, unread), one with a NaN score (bad_message)."""
    from latent_segmentation_ros.core.messages import numpy_to_image_message
    from latent_segmentation_ros.msg import ConfidenceMask, ConfidenceMaskArray
    from latent_segmentation_ros.ros.base_node import rclpy_factory

    factory = rclpy_factory()
    header = factory.make_header(*divmod(stamp, SECOND), "overhead_right_optical_frame")
    crop = np.full((40, 40), 255, np.uint8)
    arrays = []
    for side, score in ((20_000, 0.9), (HEIGHT, math.nan)):
        masks = []
        for index, (x, y) in enumerate([(0, 0), (side - 40, side - 40)]):
            mask = ConfidenceMask(id=index, class_id=1, score=score, p=0.9, num_supporting_samples=2, area=1600)
            mask.roi.x_offset, mask.roi.y_offset, mask.roi.width, mask.roi.height = x, y, 40, 40
            mask.mask = numpy_to_image_message(crop, "mono8", header, factory)
            masks.append(mask)
        arrays.append(ConfidenceMaskArray(header=header, camera="overhead_right", image_height=side, image_width=side,
                                          mode="confidence_mask", p=0.9, num_samples=2, masks=masks))
    return arrays


def diagnostic_counts(rig, node, input_name):
    status = rig.diagnostic(node)
    values = rig_node.status_values(status) if status is not None else {}
    return {
        "received": int(values.get(f"{input_name}s received", 0)),
        "processed": int(values.get("frames processed", 0)),
        "dropped": drops_by_reason(status),
    }


def test_a_hostile_publisher_changes_nothing_but_the_drop_counts(cell, pairs):
    """For 30 s random malformed images on both camera topics, and malformed mask arrays for the
    grasp node, with a good pair after every dozen: both nodes stay up, every good pair is
    answered, every malformed one is counted by its reason in /diagnostics, and the nodes'
    resident memory stays flat."""
    from rclpy.qos import QoSProfile

    from latent_segmentation_ros.msg import ConfidenceMaskArray

    rig, processes, stamps = cell
    segmentation, grasp = processes
    settle(rig)
    rng = np.random.default_rng(20)
    masks_publisher = rig.node.create_publisher(ConfidenceMaskArray, "/overhead_right/confidence_masks",
                                                QoSProfile(depth=50))
    assert rig.wait_for(lambda: masks_publisher.get_subscription_count() >= 2, DEADLINE_S)  # the grasp node, the rig
    before = {"segmentation": diagnostic_counts(rig, SEGMENTATION_NODE, "synchronised image pair"),
              "grasp": diagnostic_counts(rig, GRASP_NODE, "confidence mask array")}
    sent = {reason: 0 for reason in SEGMENTATION_REASONS}
    good, memory = [], {"segmentation": [], "grasp": []}
    started = time.monotonic()
    while time.monotonic() - started < HOSTILE_S:
        for _ in range(HOSTILE_PER_CYCLE):
            images, reason = hostile_pair(rng, rig, pairs[int(rng.integers(0, len(pairs)))], stamps())
            rig.publish(images)
            sent[reason] += 1
        for array in hostile_mask_arrays(stamps()):
            masks_publisher.publish(array)
        stamp = stamps()
        rig.publish(rig.pair(pairs[len(good) % len(pairs)], stamp))
        good.append(stamp)
        # best effort: a camera would send the next frame; so do we, with the same stamp
        assert rig.wait_for(lambda: stamp in rig.answered_stamps(), DEADLINE_S,
                            every=lambda: rig.publish(rig.pair(pairs[(len(good) - 1) % len(pairs)], stamp)),
                            period=5.0), f"a good pair was not answered\n{segmentation.output()[-3000:]}"
        for name, process in (("segmentation", segmentation), ("grasp", grasp)):
            memory[name].append(process.memory_kib()["VmRSS"])
    settle(rig)
    assert all(p.returncode is None for p in processes), [p.output()[-2000:] for p in processes]

    # /diagnostics (once a second): every pair the node received was answered or dropped with a reason
    def final(name, node, input_name):
        def balanced():
            counts = diagnostic_counts(rig, node, input_name)
            total = sum(counts["dropped"].values())
            return counts if counts["received"] == counts["processed"] + total else None
        return rig.wait_for(balanced, DEADLINE_S)

    segmentation_after = final("segmentation", SEGMENTATION_NODE, "synchronised image pair")
    assert segmentation_after, f"received != processed + dropped: {rig.diagnostic(SEGMENTATION_NODE)}"
    dropped = {reason: count - before["segmentation"]["dropped"].get(reason, 0)
               for reason, count in segmentation_after["dropped"].items()}
    dropped = {reason: count for reason, count in dropped.items() if count}
    processed = segmentation_after["processed"] - before["segmentation"]["processed"]
    assert set(dropped) <= SEGMENTATION_REASONS | {"superseded"}, dropped
    for reason in SEGMENTATION_REASONS:  # best effort may lose a few; most arrive
        assert 0 < dropped.get(reason, 0) <= sent[reason], (reason, dropped, sent)
    assert sum(dropped.values()) <= sum(sent.values()) + len(good)  # re-sent good pairs may supersede
    assert processed >= len(good), (processed, len(good))
    assert set(good) <= rig.answered_stamps()

    grasp_after = final("grasp", GRASP_NODE, "confidence mask array")
    assert grasp_after, f"received != processed + dropped: {rig.diagnostic(GRASP_NODE)}"
    grasp_dropped = {reason: count - before["grasp"]["dropped"].get(reason, 0)
                     for reason, count in grasp_after["dropped"].items()}
    assert {reason for reason, count in grasp_dropped.items() if count} == {"too_large", "bad_message"}
    assert grasp_dropped["too_large"] == grasp_dropped["bad_message"] == len(good)  # reliable: all arrive

    # resident memory: the last third of the run against the first, after a cycle of warm-up
    third = max(len(memory["segmentation"]) // 3, 1)
    for name, limit_kib in (("segmentation", 96 * 1024), ("grasp", 32 * 1024)):
        samples = memory[name][1:]
        growth = max(samples[-third:]) - max(samples[:third])
        print(f"{name} node resident memory over {len(samples)} cycles: first {samples[0] / 1024:.0f} MiB, "
              f"last {samples[-1] / 1024:.0f} MiB, peak {max(samples) / 1024:.0f} MiB, growth {growth / 1024:.1f} MiB")
        assert growth < limit_kib, (name, [round(v / 1024) for v in memory[name]])
    print(f"hostile pairs sent {sum(sent.values())} ({sent}), good pairs {len(good)}, dropped {dropped}, "
          f"processed {processed}; grasp node dropped {grasp_dropped}")


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
