"""The segmentation node's behaviour without ROS: Image messages (rosbags objects) in, mask arrays
and overlays out with the source stamps; bad frames dropped with reasons; parameters refused or
applied live with a re-publication; the worker keeps only the newest pair."""
import math
import threading

import numpy as np
import pytest
import torch

from latent_maskrcnn.model.config import tiny_config
from latent_maskrcnn.model.latent_mask_rcnn import LatentMaskRCNN
from latent_segmentation_ros.core import messages
from latent_segmentation_ros.core.image_conversion import message_to_rgb, numpy_to_image
from latent_segmentation_ros.core.node_support import DROP_BUSY, DROP_ERROR, DROP_IMAGE, DROP_SIZE, DROP_STAMPS, Work
from latent_segmentation_ros.core.parameters import SEGMENTATION_PARAMETERS, ParameterSet
from latent_segmentation_ros.core.pipeline import PerceptionPipeline
from latent_segmentation_ros.core.segmentation import FrameWorker, SegmentationCore

CAMERAS = ["overhead_left", "overhead_right"]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return LatentMaskRCNN(tiny_config(num_classes=2, class_names=["__background__", "polybag"])).eval()


@pytest.fixture(scope="module")
def typestore():
    return messages.get_typestore()


@pytest.fixture(scope="module")
def factory(typestore):
    return messages.rosbags_factory(typestore)


@pytest.fixture
def core(model, factory):
    parameters = ParameterSet(
        SEGMENTATION_PARAMETERS,
        # The K-sample path (the node starts with the prior mean, one pass).
        {"mode": "confidence_mask", "mask_threshold": 0.5, "num_samples": 3, "p": 0.6, "score_threshold": 0.05,
         "min_mask_area": 0, "sync_slop": 0.05},
    )
    return SegmentationCore(PerceptionPipeline(model, model_id="tiny@0"), factory, parameters)


def image_message(factory, pixels, encoding, sec, nanosec, frame_id, padding=0):
    fields = numpy_to_image(pixels, encoding)
    data = bytes(fields.data)
    step = fields.step
    if padding:
        rows = np.frombuffer(data, np.uint8).reshape(fields.height, step)
        data = np.concatenate([rows, np.zeros((fields.height, padding), np.uint8)], axis=1).tobytes()
        step += padding
    return factory.image(
        header=factory.make_header(sec, nanosec, frame_id),
        height=fields.height,
        width=fields.width,
        encoding=encoding,
        is_bigendian=fields.is_bigendian,
        step=step,
        data=factory.byte_array(data),
    )


def camera_pair(factory, sec=10, left_ns=0, right_ns=20_000_000, size=(64, 80)):
    rng = np.random.default_rng(sec)
    rgb = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
    left = image_message(factory, rgb, "rgb8", sec, left_ns, "left_optical")
    right = image_message(factory, np.ascontiguousarray(rgb[:, :, ::-1]), "bgr8", sec, right_ns, "right_optical", padding=4)
    return left, right


def test_a_pair_yields_two_arrays_with_the_source_stamps(core, factory, typestore):
    left, right = camera_pair(factory)
    outcome = core.handle(Work("pair", (left, right)))
    assert outcome.drop_reason == ""
    output = outcome.output
    assert [camera for camera, _ in output.mask_arrays] == CAMERAS
    for (camera, array), source in zip(output.mask_arrays, (left, right)):
        decoded = typestore.deserialize_cdr(typestore.serialize_cdr(array, array.__msgtype__), array.__msgtype__)
        assert (decoded.header.stamp.sec, decoded.header.stamp.nanosec) == (source.header.stamp.sec, source.header.stamp.nanosec)
        assert decoded.header.frame_id == source.header.frame_id
        assert decoded.camera == camera
        assert (decoded.image_height, decoded.image_width) == (64, 80)
        assert (decoded.mode, decoded.num_samples, decoded.model_id) == ("confidence_mask", 3, "tiny@0")
        assert decoded.p == pytest.approx(0.6)
        assert len(decoded.masks) > 0
        assert all(m.num_supporting_samples >= math.ceil(0.6 * 3) for m in decoded.masks)
    # the messages carry what the pipeline computes for the decoded pixels (rgb8, padded bgr8)
    rgb = message_to_rgb(left)
    np.testing.assert_array_equal(message_to_rgb(right), rgb)
    reference = PerceptionPipeline(core.pipeline.model)
    reference.update_settings(mode="confidence_mask", mask_threshold=0.5, num_samples=3, p=0.6, score_threshold=0.05,
                              min_mask_area=0)
    for (_, array), want in zip(output.mask_arrays, reference.process([rgb, rgb], CAMERAS)):
        got = messages.confidence_mask_array_to_result(array)
        np.testing.assert_array_equal(got.masks, want.masks)
        np.testing.assert_allclose(got.scores, want.scores, rtol=1e-6)
    assert [camera for camera, _ in output.overlays] == CAMERAS
    overlay = output.overlays[0][1]
    assert (overlay.encoding, overlay.height, overlay.width) == ("rgb8", 64, 80)
    assert overlay.header.stamp.nanosec == left.header.stamp.nanosec
    assert not np.array_equal(message_to_rgb(overlay), message_to_rgb(left))
    snapshot = core.stats.snapshot()
    assert snapshot["processed"] == 1 and snapshot["dropped_total"] == 0
    assert core.heap.ticks == 1  # processed pairs count towards releasing free heap pages


def test_bad_frames_are_dropped_with_reasons(core, factory):
    left, right = camera_pair(factory)
    right.encoding = "yuv422"
    outcome = core.handle(Work("pair", (left, right)))
    assert outcome.output is None and outcome.drop_reason == DROP_IMAGE
    assert "overhead_right" in outcome.detail and "unsupported image encoding 'yuv422'" in outcome.detail

    left, right = camera_pair(factory)
    left.data = left.data[:-10]
    outcome = core.handle(Work("pair", (left, right)))
    assert outcome.drop_reason == DROP_IMAGE and "fewer than step * height" in outcome.detail

    left, _ = camera_pair(factory)
    _, small = camera_pair(factory, size=(32, 40))
    outcome = core.handle(Work("pair", (left, small)))
    assert outcome.drop_reason == DROP_SIZE and "overhead_left 80x64, overhead_right 40x32" in outcome.detail

    left, right = camera_pair(factory, left_ns=0, right_ns=300_000_000)
    outcome = core.handle(Work("pair", (left, right)))
    assert outcome.drop_reason == DROP_STAMPS and "0.300 s apart" in outcome.detail

    outcome = core.handle(Work("pair", (object(), object())))  # not even an image
    assert outcome.drop_reason == DROP_ERROR and "AttributeError" in outcome.detail

    snapshot = core.stats.snapshot()
    assert snapshot["dropped"] == {DROP_IMAGE: 2, DROP_SIZE: 1, DROP_STAMPS: 1, DROP_ERROR: 1}
    assert snapshot["processed"] == 0
    assert core.pipeline.network_calls == 0
    assert core.heap.ticks == 0


def test_parameters_refused_and_applied_live(core, factory):
    for changes, reason in [
        ({"p": 1.7}, "p must be at most 1"),
        ({"p": float("nan")}, "p must be a finite number"),
        ({"num_samples": -1}, "num_samples must be at least 1"),
        ({"camera_topics": ["/a/image", "/b/image"]}, "camera_topics is read-only"),
    ]:
        decision = core.on_parameters(changes)
        assert not decision.accepted and reason in decision.reason
    assert core.pipeline.settings.p == 0.6

    decision = core.on_parameters({"p": 0.9})
    assert decision.accepted and not decision.refresh  # nothing to re-publish yet
    left, right = camera_pair(factory)
    core.handle(Work("pair", (left, right)))
    calls = core.pipeline.network_calls

    decision = core.on_parameters({"p": 1.0})
    assert decision.accepted and decision.refresh and decision.changed == {"p": 1.0}
    outcome = core.handle(Work("refresh"))
    assert core.pipeline.network_calls == calls  # re-aggregated, not re-run
    assert outcome.output.refreshed
    for _, array in outcome.output.mask_arrays:
        assert array.p == pytest.approx(1.0)
        assert all(m.num_supporting_samples == 3 for m in array.masks)
    assert outcome.output.mask_arrays[0][1].header.stamp.sec == left.header.stamp.sec

    decision = core.on_parameters({"mode": "union_nms", "publish_overlay": False})
    assert decision.accepted and decision.refresh
    outcome = core.handle(Work("refresh"))
    assert outcome.output.overlays == []
    assert all(array.mode == "union_nms" for _, array in outcome.output.mask_arrays)

    decision = core.on_parameters({"num_samples": 2})
    assert decision.accepted and decision.refresh
    outcome = core.handle(Work("refresh"))
    assert core.pipeline.network_calls == calls + 1  # a new K needs the network
    assert all(array.num_samples == 2 for _, array in outcome.output.mask_arrays)
    assert core.stats.snapshot()["refreshed"] == 3


def test_worker_keeps_only_the_newest_pair(core, factory):
    published, dropped = [], []
    worker = FrameWorker(core, published.append, dropped.append)
    pairs = [camera_pair(factory, sec=sec) for sec in (1, 2, 3)]
    for pair in pairs:
        worker.submit(*pair)
    outcome = worker.run_once(timeout=0)
    assert outcome.output is published[0]
    assert published[0].mask_arrays[0][1].header.stamp.sec == 3
    assert core.stats.snapshot()["dropped"] == {DROP_BUSY: 2}
    assert worker.run_once(timeout=0.01) is None

    bad_left, bad_right = camera_pair(factory, sec=4)
    bad_left.encoding = "32FC1"
    worker.submit(bad_left, bad_right)
    worker.run_once(timeout=0)
    assert dropped[-1].drop_reason == DROP_IMAGE


def test_worker_thread_publishes_and_survives_a_failing_publisher(core, factory):
    done = threading.Event()
    published = []

    def publish(output):
        published.append(output)
        if len(published) == 1:
            raise RuntimeError("publisher gone")
        done.set()

    dropped = []
    worker = FrameWorker(core, publish, dropped.append, poll_s=0.05)
    worker.start()
    try:
        worker.submit(*camera_pair(factory, sec=5))
        deadline = threading.Event()
        for _ in range(200):
            if dropped:
                break
            deadline.wait(0.05)
        assert dropped and "publishing failed: RuntimeError: publisher gone" in dropped[0].detail
        worker.submit(*camera_pair(factory, sec=6))
        assert done.wait(60)
    finally:
        worker.stop()
    assert published[-1].mask_arrays[0][1].header.stamp.sec == 6


def test_the_shipped_defaults_publish_the_prior_mean_at_mask_threshold_0_8(model, factory):
    # docs/results.md: the prior mean with its masks binarised at 0.8 double-picks least at equal
    # pickable area on both held-out splits; one network pass per frame.
    parameters = ParameterSet(SEGMENTATION_PARAMETERS, {"score_threshold": 0.05, "min_mask_area": 0})
    core = SegmentationCore(PerceptionPipeline(model, model_id="tiny@0"), factory, parameters)
    assert (core.pipeline.settings.mode, core.pipeline.settings.mask_threshold) == ("prior_mean", 0.8)
    left, right = camera_pair(factory)
    output = core.handle(Work("pair", (left, right))).output
    reference = PerceptionPipeline(model)
    reference.update_settings(mode="prior_mean", mask_threshold=0.8, score_threshold=0.05, min_mask_area=0)
    wanted = reference.process([message_to_rgb(left)] * 2, CAMERAS)
    for (_, array), want in zip(output.mask_arrays, wanted):
        assert (array.mode, array.num_samples) == ("prior_mean", 1)
        np.testing.assert_array_equal(messages.confidence_mask_array_to_result(array).masks, want.masks)
    assert len(wanted[0].masks) > 0
