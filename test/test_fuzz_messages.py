"""Fuzzing what the grasp node and the scorer read: ConfidenceMaskArray and GraspCandidateArray
messages with random rois, mask sizes, encodings and data, ids, NaN and infinite numbers, empty
and mismatched arrays, and declared image sizes up to 2^32 - 1 per side. Each is read with a
clear ValueError or in full; the grasp node answers with grasps or a counted drop (never a
processing error); memory follows what the message carries, never the size it declares."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from fuzzing import MIB, bounded, fuzz
from latent_segmentation_ros.core import messages
from latent_segmentation_ros.core.grasping import GraspCore
from latent_segmentation_ros.core.image_conversion import ImageTooLarge
from latent_segmentation_ros.core.node_support import DROP_MESSAGE, DROP_TOO_LARGE
from latent_segmentation_ros.core.parameters import GRASP_PARAMETERS, ParameterSet

TYPESTORE = messages.get_typestore()
FACTORY = messages.rosbags_factory(TYPESTORE)
UINT32 = 2**32 - 1
INT32 = st.integers(-(2**31), 2**31 - 1)
# Anything a uint32 field can hold, biased to the edges.
any_size = st.one_of(st.sampled_from([0, 1, 2**16, 2**31 - 1, UINT32]), st.integers(0, UINT32))
any_float = st.floats(allow_nan=True, allow_infinity=True)


@st.composite
def well_formed_mask(draw, height, width):
    """A mask that fits its roi and the image: mono8, rows padded or not, mostly set pixels."""
    roi_w, roi_h = draw(st.integers(1, min(width, 24))), draw(st.integers(1, min(height, 24)))
    x, y = draw(st.integers(0, width - roi_w)), draw(st.integers(0, height - roi_h))
    step = roi_w + draw(st.sampled_from([0, 0, 3]))
    data = draw(st.binary(min_size=step * roi_h, max_size=step * roi_h))
    mask = FACTORY.image(header=FACTORY.make_header(1, 2, "f"), height=roi_h, width=roi_w, encoding="mono8",
                         is_bigendian=0, step=step, data=np.frombuffer(data, np.uint8))
    return FACTORY.confidence_mask(
        id=draw(st.integers(0, 8)), class_id=draw(st.integers(1, 3)), class_name=draw(st.sampled_from(["", "bag"])),
        score=draw(st.floats(0.0, 1.0)), p=0.9, num_supporting_samples=8, mask=mask, area=roi_w * roi_h,
        roi=FACTORY.region_of_interest(x_offset=x, y_offset=y, height=roi_h, width=roi_w, do_rectify=False),
    )


# One field of a mask set to something hostile: (path, strategy of the value).
MASK_MUTATIONS = {
    "roi.x_offset": any_size, "roi.y_offset": any_size, "roi.width": any_size, "roi.height": any_size,
    "mask.width": any_size, "mask.height": any_size, "mask.step": any_size,
    "mask.encoding": st.sampled_from(["mono16", "rgb8", "8UC1", "", "MONO8"]),
    "mask.data": st.binary(max_size=64).map(lambda data: np.frombuffer(data, np.uint8)),
    "score": any_float, "class_id": INT32, "id": any_size,
}


def mutate(draw, item):
    path = draw(st.sampled_from(sorted(MASK_MUTATIONS)))
    target = item
    *parents, name = path.split(".")
    for parent in parents:
        target = getattr(target, parent)
    setattr(target, name, draw(MASK_MUTATIONS[path]))
    return path


@st.composite
def mask_arrays(draw):
    """A well-formed array of up to 5 masks, then up to 3 hostile changes: a declared image size
    up to 2^32 - 1 per side, a mask field set to anything its type holds, masks dropped."""
    height, width = draw(st.integers(1, 64)), draw(st.integers(1, 64))
    items = draw(st.lists(well_formed_mask(height, width), max_size=5))
    changes = []
    for _ in range(draw(st.integers(0, 3))):
        what = draw(st.sampled_from(["image_height", "image_width", "mask"]))
        if what == "mask" and items:
            changes.append(mutate(draw, draw(st.sampled_from(items))))
        elif what != "mask":
            value = draw(any_size)
            height, width = (value, width) if what == "image_height" else (height, value)
            changes.append(what)
    for change in sorted(set(changes)) or ["nothing"]:
        event(f"changed: {change}")
    return FACTORY.confidence_mask_array(
        header=FACTORY.make_header(3, 4, "cam"), camera="overhead_left", image_height=height, image_width=width,
        mode="confidence_mask", p=0.9, num_samples=8, model_id="m", inference_time_ms=draw(any_float), masks=items,
    )


def carried_bytes(message) -> int:
    return sum(len(item.mask.data) for item in message.masks)


@fuzz(2000)
@given(message=mask_arrays(), max_pixels=st.sampled_from([None, 10_000, int(GRASP_PARAMETERS["max_image_pixels"].default)]))
def test_mask_arrays_are_read_in_full_or_refused_with_a_reason(message, max_pixels):
    with bounded(seconds=10, max_bytes=8 * carried_bytes(message) + MIB):
        try:
            decoded = messages.decode_confidence_mask_array(message, max_pixels)
        except ImageTooLarge:
            assert max_pixels is not None and message.image_height * message.image_width > max_pixels
            event("too large")
            return
        except ValueError as error:
            assert str(error)
            event("refused")
            return
    event("read")
    height, width = decoded.regions.image_size
    assert (height, width) == (message.image_height, message.image_width)
    assert len(decoded.regions) == len(message.masks) == len(decoded.scores)
    assert np.isfinite(decoded.scores).all()
    for item, (x, y), crop in zip(message.masks, decoded.regions.offsets, decoded.regions.crops):
        assert item.mask.encoding == "mono8"
        assert (x, y) == (item.roi.x_offset, item.roi.y_offset)
        assert crop.shape == (item.roi.height, item.roi.width)
        assert x + crop.shape[1] <= width and y + crop.shape[0] <= height
        rows = np.frombuffer(bytes(item.mask.data), np.uint8)[: item.mask.step * crop.shape[0]]
        expected = rows.reshape(crop.shape[0], item.mask.step)[:, : crop.shape[1]] > 0
        np.testing.assert_array_equal(crop, expected)
    if height * width * max(len(decoded.regions), 1) <= 100_000:
        dense = decoded.to_result().masks
        for index, ((x, y), crop) in enumerate(zip(decoded.regions.offsets, decoded.regions.crops)):
            inside = np.zeros((height, width), bool)
            inside[y : y + crop.shape[0], x : x + crop.shape[1]] = True
            np.testing.assert_array_equal(dense[index][inside], crop.reshape(-1))
            assert not dense[index][~inside].any()


def gripper_window_pixels(message, core) -> int:
    """Pixels of the windows the planner works in: each mask's roi grown by the gripper's reach."""
    layout = core.planner.layout
    margin = 2 * (2 * layout.reach + math.ceil(layout.cup_radius) + 2)
    return sum((item.roi.width + margin) * (item.roi.height + margin) for item in message.masks)


@fuzz(1000)
@given(message=mask_arrays(), max_pixels=st.sampled_from([10_000, int(GRASP_PARAMETERS["max_image_pixels"].default)]))
def test_the_grasp_node_answers_or_drops_with_a_reason(message, max_pixels):
    core = GraspCore(FACTORY, ParameterSet(GRASP_PARAMETERS, {"max_image_pixels": max_pixels, "cup_radius": 2.0,
                                                              "cup_spacing": 5.0}))
    budget = 160 * gripper_window_pixels(message, core) + 8 * carried_bytes(message) + 2 * MIB
    with bounded(seconds=20, max_bytes=budget):
        outcome = core.handle(message)
    stats = core.stats.snapshot()
    if outcome.output is None:
        assert outcome.drop_reason in (DROP_MESSAGE, DROP_TOO_LARGE), outcome
        assert stats["dropped"] == {outcome.drop_reason: 1} and outcome.detail in stats["last_error"]
        event(f"dropped: {outcome.drop_reason}")
        return
    event("grasps" if outcome.output.candidates else "answered, no grasp")
    assert stats["processed"] == 1 and stats["dropped_total"] == 0
    grasps = messages.grasp_candidate_array_to_list(outcome.output)
    for grasp in grasps:
        assert 0 <= grasp.mask_id < len(message.masks)
        item = message.masks[grasp.mask_id]
        # a sealed cup lies inside its mask's roi, which lies inside the declared image
        for (u, v), sealed in zip(grasp.cup_centers, grasp.cup_sealed):
            if sealed:
                assert item.roi.x_offset <= u < item.roi.x_offset + item.roi.width
                assert item.roi.y_offset <= v < item.roi.y_offset + item.roi.height


SPECIAL = np.array([np.nan, np.inf, -np.inf, np.finfo(np.float32).max, 0.0], np.float32)


@st.composite
def float32_values(draw, count):
    """``count`` float32 numbers, a few of them NaN, infinite or extreme."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    values = (rng.standard_normal(count) * 100).astype(np.float32)
    for index in draw(st.lists(st.integers(0, max(count - 1, 0)), max_size=2 if count else 0)):
        values[index] = SPECIAL[draw(st.integers(0, len(SPECIAL) - 1))]
    return values


@st.composite
def grasp_arrays(draw):
    candidates = []
    for _ in range(draw(st.integers(0, 4))):
        cups = draw(st.sampled_from([0, 1, 4, 9, messages.MAX_CUPS, messages.MAX_CUPS + 1, 400]))
        u_count, v_count, sealed_count = draw(st.sampled_from([(cups, cups, cups)] * 3 + [(cups, cups + 1, cups),
                                                                                        (cups, cups, 0)]))
        numbers = draw(float32_values(4))
        candidates.append(FACTORY.grasp_candidate(
            mask_id=draw(st.integers(0, UINT32)), u=float(numbers[0]), v=float(numbers[1]), angle=float(numbers[2]),
            sealed_cups=draw(st.integers(0, UINT32)), total_cups=draw(st.integers(0, UINT32)), score=float(numbers[3]),
            cup_u=draw(float32_values(u_count)), cup_v=draw(float32_values(v_count)),
            cup_sealed=draw(float32_values(sealed_count)) > 0,
        ))
    return FACTORY.grasp_candidate_array(header=FACTORY.make_header(0, 0, "f"), camera="c",
                                         cup_radius=float(draw(float32_values(1))[0]), candidates=candidates)


@fuzz(1000)
@given(message=grasp_arrays())
def test_grasp_arrays_are_read_in_full_or_refused_with_a_reason(message):
    with bounded(seconds=10, max_bytes=MIB):
        try:
            grasps = messages.grasp_candidate_array_to_list(message)
        except ValueError as error:
            event("refused")
            assert str(error).startswith("grasp on mask "), error
            return
    event("read")
    assert len(grasps) == len(message.candidates)
    for grasp, item in zip(grasps, message.candidates):
        assert grasp.cup_centers.shape == (len(item.cup_u), 2) and len(grasp.cup_sealed) == len(item.cup_u)
        assert len(item.cup_u) <= messages.MAX_CUPS
        assert np.isfinite(grasp.cup_centers).all() and math.isfinite(grasp.score)


def cdr_round_trip(message):
    return TYPESTORE.deserialize_cdr(TYPESTORE.serialize_cdr(message, message.__msgtype__), message.__msgtype__)


@pytest.mark.parametrize("side", [20_000, 60_000])
def test_regression_a_huge_declared_image_costs_what_its_masks_hold(side):
    """Found by hand, the reason for this file: an array declaring a 20000 x 20000 image with two
    40 x 40 masks cost the planner 4 s and 1.6 GB (full-frame masks, coverage and contact maps)."""
    crop = np.zeros((40, 40), np.uint8)
    crop[2:38, 2:38] = 255
    header = FACTORY.make_header(1, 0, "cam")
    items = [
        FACTORY.confidence_mask(
            id=index, class_id=1, class_name="item", score=0.9, p=0.9, num_supporting_samples=8, area=36 * 36,
            roi=FACTORY.region_of_interest(x_offset=x, y_offset=y, height=40, width=40, do_rectify=False),
            mask=messages.numpy_to_image_message(crop, "mono8", header, FACTORY),
        )
        for index, (x, y) in enumerate([(100, 100), (side - 200, side - 300)])
    ]
    message = cdr_round_trip(FACTORY.confidence_mask_array(
        header=header, camera="cam", image_height=side, image_width=side, mode="confidence_mask", p=0.9,
        num_samples=8, model_id="m", inference_time_ms=1.0, masks=items,
    ))
    refusing = GraspCore(FACTORY)  # the grasp node's default max_image_pixels: 8K UHD
    with bounded(seconds=5, max_bytes=MIB):
        assert refusing.handle(message).drop_reason == DROP_TOO_LARGE
    planner = GraspCore(FACTORY).planner
    with bounded(seconds=30, max_bytes=16 * MIB):  # without a limit: the crops decide the cost
        decoded = messages.decode_confidence_mask_array(message)
        grasps = planner.plan_regions(decoded.regions, decoded.scores)
    assert [(g.mask_id, g.sealed_cups) for g in grasps] == [(0, 4), (1, 4)]  # 36 px items fit 2 x 2 of the 3 x 3 cups
    assert side - 200 < grasps[1].u < side - 160 and side - 300 < grasps[1].v < side - 260


def test_regression_a_negative_roi_offset_is_refused():
    """A roi with a negative offset (possible from Python, not over the wire) was pasted at the
    far side of the image by numpy's negative indexing."""
    from types import SimpleNamespace

    crop = np.full((2, 2), 255, np.uint8)
    mask = messages.numpy_to_image_message(crop, "mono8", FACTORY.make_header(0, 0, ""), FACTORY)
    item = SimpleNamespace(id=0, class_id=1, class_name="", score=0.5, num_supporting_samples=1, mask=mask,
                           roi=SimpleNamespace(x_offset=-1, y_offset=0, width=2, height=2))
    array = SimpleNamespace(image_height=4, image_width=4, masks=[item], camera="c", mode="m", p=0.9, num_samples=1,
                            model_id="", inference_time_ms=0.0)
    with pytest.raises(ValueError, match=r"roi \(-1, 0, 2x2\) leaves the 4x4 image"):
        messages.decode_confidence_mask_array(array)


def test_regression_non_finite_scores_are_refused():
    """A NaN score made the planner's ranking (sorted by score) depend on the masks' order."""
    from types import SimpleNamespace

    mask = messages.numpy_to_image_message(np.full((2, 2), 255, np.uint8), "mono8", FACTORY.make_header(0, 0, ""),
                                           FACTORY)
    for score in (math.nan, math.inf):
        item = SimpleNamespace(id=3, class_id=1, class_name="", score=score, num_supporting_samples=1, mask=mask,
                               roi=SimpleNamespace(x_offset=0, y_offset=0, width=2, height=2))
        array = SimpleNamespace(image_height=4, image_width=4, masks=[item], camera="c", mode="m", p=0.9,
                                num_samples=1, model_id="", inference_time_ms=0.0)
        with pytest.raises(ValueError, match=f"mask 3 has score {score}"):
            messages.decode_confidence_mask_array(array)


def test_regression_a_huge_class_id_with_a_name_is_refused():
    """class_id 2^31 - 1 with a class name made the reader build a list of 2^31 class names."""
    from types import SimpleNamespace

    mask = messages.numpy_to_image_message(np.full((2, 2), 255, np.uint8), "mono8", FACTORY.make_header(0, 0, ""),
                                           FACTORY)
    item = SimpleNamespace(id=0, class_id=2**31 - 1, class_name="bag", score=0.5, num_supporting_samples=1, mask=mask,
                           roi=SimpleNamespace(x_offset=0, y_offset=0, width=2, height=2))
    array = SimpleNamespace(image_height=4, image_width=4, masks=[item], camera="c", mode="m", p=0.9, num_samples=1,
                            model_id="", inference_time_ms=0.0)
    with bounded(seconds=5, max_bytes=MIB):
        with pytest.raises(ValueError, match="class_id 2147483647, outside 0..65535"):
            messages.decode_confidence_mask_array(array)


def test_regression_a_grasp_with_a_million_cups_is_refused():
    """A consumer draws every cup of the chosen grasp at full frame (the scorer's cup disks):
    a grasp array of 9 MB could ask for a million frames of memory."""
    cups = messages.MAX_CUPS + 1
    candidate = FACTORY.grasp_candidate(
        mask_id=0, u=1.0, v=1.0, angle=0.0, sealed_cups=cups, total_cups=cups, score=0.5,
        cup_u=np.ones(cups, np.float32), cup_v=np.ones(cups, np.float32), cup_sealed=np.ones(cups, bool),
    )
    array = FACTORY.grasp_candidate_array(header=FACTORY.make_header(0, 0, "f"), camera="c", cup_radius=3.0,
                                          candidates=[candidate])
    with pytest.raises(ValueError, match=f"{cups} cups, more than {messages.MAX_CUPS}"):
        messages.grasp_candidate_array_to_list(array)
    candidate.cup_u, candidate.cup_v, candidate.cup_sealed = candidate.cup_u[:9], candidate.cup_v[:9], candidate.cup_sealed[:9]
    candidate.u = math.nan
    with pytest.raises(ValueError, match="not finite"):
        messages.grasp_candidate_array_to_list(array)
