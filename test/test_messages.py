"""Our four messages: registered from msg/ with rosbags, built from results, CDR round trips
with every field intact, and read back to numpy."""
from pathlib import Path

import numpy as np
import pytest

from latent_segmentation_ros.core import messages
from latent_segmentation_ros.core.results import CameraResult, GraspCandidate

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def typestore():
    return messages.get_typestore()


@pytest.fixture(scope="module")
def factory(typestore):
    return messages.rosbags_factory(typestore)


def cdr_round_trip(typestore, message):
    raw = typestore.serialize_cdr(message, message.__msgtype__)
    return typestore.deserialize_cdr(raw, message.__msgtype__)


def make_result(camera="overhead_left"):
    masks = np.zeros((3, 12, 16), dtype=bool)
    masks[0, 2:6, 3:9] = True
    masks[0, 3, 4] = False  # a hole survives the crop
    masks[1, 7:12, 10:16] = True  # touches the image corner
    masks[2, 0, 0] = True  # a single pixel
    return CameraResult(
        camera=camera,
        masks=masks,
        scores=np.array([0.95, 0.7, 0.31], dtype=np.float32),
        labels=np.array([1, 2, 1], dtype=np.int64),
        boxes=np.zeros((3, 4), dtype=np.float32),
        support_counts=np.array([8, 7, 8], dtype=np.int64),
        mode="confidence_mask",
        p=0.875,
        num_samples=8,
        model_id="demo-1234abcd",
        inference_time_ms=412.5,
        class_names=["polybag", "box"],
    )


def test_msg_files_are_the_source_tree_ones():
    assert messages.find_msg_dir() == REPO / "msg"
    for name in messages.MESSAGE_NAMES:
        assert (REPO / "msg" / f"{name}.msg").is_file()


def test_typestore_has_the_fields_of_the_msg_files(typestore):
    for name in messages.MESSAGE_NAMES:
        text = (REPO / "msg" / f"{name}.msg").read_text()
        declared = [
            line.split("#")[0].split()[1]
            for line in text.splitlines()
            if line.split("#")[0].strip()
        ]
        cls = typestore.types[f"latent_segmentation_ros/msg/{name}"]
        assert [f for f in cls.__dataclass_fields__ if f != "__msgtype__"] == declared


def test_missing_msg_dir_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError):
        messages.get_typestore(tmp_path / "nowhere")


def test_confidence_mask_array_round_trip(typestore, factory):
    result = make_result()
    header = factory.make_header(1700000000, 123456789, "overhead_left_optical")
    message = messages.build_confidence_mask_array(result, header, factory)
    decoded = cdr_round_trip(typestore, message)

    assert decoded.header.stamp.sec == 1700000000
    assert decoded.header.stamp.nanosec == 123456789
    assert decoded.header.frame_id == "overhead_left_optical"
    assert decoded.camera == "overhead_left"
    assert (decoded.image_height, decoded.image_width) == (12, 16)
    assert decoded.mode == "confidence_mask"
    assert decoded.p == pytest.approx(0.875)
    assert decoded.num_samples == 8
    assert decoded.model_id == "demo-1234abcd"
    assert decoded.inference_time_ms == pytest.approx(412.5)
    assert len(decoded.masks) == 3

    first = decoded.masks[0]
    assert (first.id, first.class_id, first.class_name) == (0, 1, "polybag")
    assert first.score == pytest.approx(0.95)
    assert first.p == pytest.approx(0.875)
    assert first.num_supporting_samples == 8
    assert (first.roi.x_offset, first.roi.y_offset, first.roi.width, first.roi.height) == (3, 2, 6, 4)
    assert first.area == 23
    assert first.mask.encoding == "mono8"
    assert (first.mask.height, first.mask.width, first.mask.step) == (4, 6, 6)
    assert first.mask.header.frame_id == "overhead_left_optical"
    crop = np.asarray(first.mask.data).reshape(4, 6)
    assert set(np.unique(crop)) == {0, 255}
    np.testing.assert_array_equal(crop == 255, result.masks[0, 2:6, 3:9])
    second = decoded.masks[1]
    assert (second.class_id, second.class_name, second.num_supporting_samples) == (2, "box", 7)
    assert (second.roi.x_offset, second.roi.y_offset, second.roi.width, second.roi.height) == (10, 7, 6, 5)
    assert decoded.masks[2].area == 1

    back = messages.confidence_mask_array_to_result(decoded)
    np.testing.assert_array_equal(back.masks, result.masks)
    np.testing.assert_allclose(back.scores, result.scores)
    np.testing.assert_array_equal(back.labels, result.labels)
    np.testing.assert_array_equal(back.support_counts, result.support_counts)
    np.testing.assert_array_equal(back.boxes, [[3, 2, 9, 6], [10, 7, 16, 12], [0, 0, 1, 1]])
    assert back.class_names == ["polybag", "box"]
    assert (back.camera, back.mode, back.num_samples, back.model_id) == (
        "overhead_left",
        "confidence_mask",
        8,
        "demo-1234abcd",
    )


def test_empty_array_round_trip(typestore, factory):
    result = CameraResult(
        camera="overhead_right",
        masks=np.zeros((0, 5, 7), dtype=bool),
        scores=np.zeros(0, np.float32),
        labels=np.zeros(0, np.int64),
        boxes=np.zeros((0, 4), np.float32),
        support_counts=np.zeros(0, np.int64),
        mode="prior_mean",
        p=0.9,
        num_samples=1,
    )
    message = messages.build_confidence_mask_array(result, factory.make_header(3, 4, "r"), factory)
    back = messages.confidence_mask_array_to_result(cdr_round_trip(typestore, message))
    assert back.masks.shape == (0, 5, 7)
    assert back.mode == "prior_mean" and back.num_samples == 1


def test_empty_mask_is_refused(factory):
    result = make_result()
    result.masks[1] = False
    with pytest.raises(ValueError, match="mask 1 .* is empty"):
        messages.build_confidence_mask_array(result, factory.make_header(0, 0, ""), factory)


def test_reader_refuses_inconsistent_masks(typestore, factory):
    message = messages.build_confidence_mask_array(make_result(), factory.make_header(0, 0, "f"), factory)
    message.masks[0].roi.x_offset = 14
    with pytest.raises(ValueError, match="leaves the 16x12 image"):
        messages.confidence_mask_array_to_result(message)
    message = messages.build_confidence_mask_array(make_result(), factory.make_header(0, 0, "f"), factory)
    message.masks[1].roi.width = 3
    with pytest.raises(ValueError, match="roi is 3x5"):
        messages.confidence_mask_array_to_result(message)
    message = messages.build_confidence_mask_array(make_result(), factory.make_header(0, 0, "f"), factory)
    message.masks[2].mask.encoding = "rgb8"
    with pytest.raises(ValueError, match="expected mono8"):
        messages.confidence_mask_array_to_result(message)


def test_grasp_candidate_array_round_trip(typestore, factory):
    candidates = [
        GraspCandidate(
            mask_id=4,
            u=120.5,
            v=80.25,
            angle=0.7853982,
            sealed_cups=9,
            total_cups=9,
            score=0.9,
            cup_centers=np.stack(np.meshgrid([100.0, 120.5, 141.0], [60.0, 80.25, 100.5]), -1).reshape(-1, 2),
            cup_sealed=np.ones(9, dtype=bool),
        ),
        GraspCandidate(
            mask_id=1,
            u=10.0,
            v=11.0,
            angle=0.0,
            sealed_cups=2,
            total_cups=3,
            score=0.4,
            cup_centers=np.array([[0.0, 11.0], [10.0, 11.0], [20.0, 11.0]]),
            cup_sealed=np.array([False, True, True]),
        ),
    ]
    header = factory.make_header(5, 6, "overhead_right_optical")
    message = messages.build_grasp_candidate_array(candidates, header, "overhead_right", 6.5, factory)
    decoded = cdr_round_trip(typestore, message)
    assert decoded.camera == "overhead_right"
    assert decoded.cup_radius == pytest.approx(6.5)
    assert (decoded.header.stamp.sec, decoded.header.stamp.nanosec) == (5, 6)
    assert decoded.header.frame_id == "overhead_right_optical"
    back = messages.grasp_candidate_array_to_list(decoded)
    assert len(back) == 2
    for got, want in zip(back, candidates):
        assert (got.mask_id, got.sealed_cups, got.total_cups) == (want.mask_id, want.sealed_cups, want.total_cups)
        assert (got.u, got.v, got.angle, got.score) == pytest.approx((want.u, want.v, want.angle, want.score))
        np.testing.assert_allclose(got.cup_centers, want.cup_centers, rtol=1e-6)
        np.testing.assert_array_equal(got.cup_sealed, want.cup_sealed)


def test_rclpy_converters_make_rclpy_field_types():
    import array

    converters = messages.rclpy_array_converters()
    data = converters["byte_array"](b"\x01\x02")
    assert isinstance(data, array.array) and data.typecode == "B" and list(data) == [1, 2]
    floats = converters["float32_array"](np.array([1.5, -2.0]))
    assert isinstance(floats, array.array) and floats.typecode == "f" and list(floats) == [1.5, -2.0]
    flags = converters["bool_array"](np.array([True, False]))
    assert flags == [True, False] and all(type(v) is bool for v in flags)
