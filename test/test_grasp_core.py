"""The grasp node's behaviour without ROS: a ConfidenceMaskArray in, a GraspCandidateArray out with
the source header; unreadable arrays dropped with the reason; cup parameters refused or applied."""
import numpy as np
import pytest

from latent_segmentation_ros.core import messages
from latent_segmentation_ros.core.grasp_planner import cup_disks
from latent_segmentation_ros.core.grasping import GraspCore
from latent_segmentation_ros.core.node_support import DROP_MESSAGE
from latent_segmentation_ros.core.results import CameraResult


@pytest.fixture(scope="module")
def typestore():
    return messages.get_typestore()


@pytest.fixture(scope="module")
def factory(typestore):
    return messages.rosbags_factory(typestore)


def mask_array(factory):
    masks = np.zeros((2, 90, 140), bool)
    masks[0, 10:80, 5:70] = True  # a large item
    masks[1, 30:58, 70:98] = True  # a small item touching it
    result = CameraResult(
        camera="overhead_left",
        masks=masks,
        scores=np.array([0.6, 0.95], np.float32),
        labels=np.array([1, 1]),
        boxes=np.zeros((2, 4), np.float32),
        support_counts=np.array([8, 8]),
        mode="confidence_mask",
        p=0.9,
        num_samples=8,
    )
    header = factory.make_header(42, 7, "overhead_left_optical")
    return messages.build_confidence_mask_array(result, header, factory), masks


def test_grasps_for_a_mask_array(factory, typestore):
    core = GraspCore(factory)
    core.on_parameters({"cup_radius": 5.0, "cup_spacing": 12.0})
    message, masks = mask_array(factory)
    outcome = core.handle(message)
    array = outcome.output
    decoded = typestore.deserialize_cdr(typestore.serialize_cdr(array, array.__msgtype__), array.__msgtype__)
    assert (decoded.header.stamp.sec, decoded.header.stamp.nanosec, decoded.header.frame_id) == (42, 7, "overhead_left_optical")
    assert decoded.camera == "overhead_left" and decoded.cup_radius == 5.0
    grasps = messages.grasp_candidate_array_to_list(decoded)
    assert [(g.mask_id, g.sealed_cups, g.total_cups) for g in grasps] == [(0, 9, 9), (1, 4, 9)]
    for grasp in grasps:
        disks = cup_disks(grasp.cup_centers, 5.0, masks.shape[1:])
        other = masks[1 - grasp.mask_id]
        assert not (disks & other).any()
        assert all((disk <= masks[grasp.mask_id]).all() for disk in disks[grasp.cup_sealed])
    assert core.stats.snapshot()["processed"] == 1


def test_unreadable_arrays_are_dropped_with_the_reason(factory):
    core = GraspCore(factory)
    message, _ = mask_array(factory)
    message.masks[1].roi.x_offset = 130
    outcome = core.handle(message)
    assert outcome.output is None and outcome.drop_reason == DROP_MESSAGE
    assert "leaves the 140x90 image" in outcome.detail and "overhead_left" in outcome.detail
    outcome = core.handle(object())
    assert outcome.drop_reason == DROP_MESSAGE
    assert core.stats.snapshot()["dropped"] == {DROP_MESSAGE: 2}


def test_cup_parameters_refused_or_applied(factory):
    core = GraspCore(factory)
    decision = core.on_parameters({"cup_spacing": 8.0})
    assert not decision.accepted and "cups overlap" in decision.reason
    decision = core.on_parameters({"min_sealed_cups": 12})
    assert not decision.accepted and "exceeds the 9 cups" in decision.reason
    decision = core.on_parameters({"confidence_mask_topics": ["/x"]})
    assert not decision.accepted and "read-only" in decision.reason
    assert core.planner.layout.num_cups == 9
    decision = core.on_parameters({"cup_rows": 2, "cup_cols": 2, "angles_deg": [0.0, 45.0]})
    assert decision.accepted
    assert core.planner.layout.num_cups == 4
    assert core.planner.angles == pytest.approx([0.0, np.pi / 4])


def test_latency_is_measured_from_arrival_to_published(factory):
    now = [10.0]
    published = []

    def slow_publish(message):
        now[0] += 0.004  # the publisher takes 4 ms
        published.append(message)

    core = GraspCore(factory, clock=lambda: now[0])
    message, _ = mask_array(factory)
    before = core.stats.snapshot()
    assert before["latency_ms_last"] is None  # nothing measured, nothing reported
    outcome = core.handle(message, publish=slow_publish)
    assert published == [outcome.output]
    snapshot = core.stats.snapshot()
    assert snapshot["received"] == 1 and snapshot["processed"] == 1
    assert snapshot["latency_ms_last"] == pytest.approx(4.0)


def test_a_failing_publish_is_a_counted_processing_error(factory):
    from latent_segmentation_ros.core.node_support import DROP_ERROR

    def broken(message):
        raise RuntimeError("publisher's context is invalid")

    core = GraspCore(factory)
    message, _ = mask_array(factory)
    outcome = core.handle(message, publish=broken)
    assert outcome.drop_reason == DROP_ERROR and "context is invalid" in outcome.detail
    assert core.stats.snapshot()["processed"] == 0
