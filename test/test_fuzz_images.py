"""Fuzzing camera images: every encoding, random sizes, steps, byte orders, data lengths and data
containers. Conversion returns the image in its documented layout or raises ValueError with the
reason (ImageTooLarge before the data is touched when the image declares too many pixels); the
segmentation node turns each pair into masks or exactly one counted drop; memory follows the
bytes an image carries, never the size it declares."""
from __future__ import annotations

import array
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import event, given
from hypothesis import strategies as st

from fuzzing import MIB, bounded, fuzz
from latent_maskrcnn.model.config import tiny_config
from latent_maskrcnn.model.latent_mask_rcnn import LatentMaskRCNN
from latent_segmentation_ros.core import messages
from latent_segmentation_ros.core.image_conversion import (
    ENCODINGS,
    ImageTooLarge,
    message_to_numpy,
    message_to_rgb,
    numpy_to_image,
)
from latent_segmentation_ros.core.node_support import DROP_IMAGE, DROP_SIZE, DROP_STAMPS, DROP_TOO_LARGE, Work
from latent_segmentation_ros.core.parameters import SEGMENTATION_PARAMETERS, ParameterSet
from latent_segmentation_ros.core.pipeline import PerceptionPipeline
from latent_segmentation_ros.core.segmentation import SegmentationCore

UINT32 = 2**32 - 1
any_size = st.one_of(st.sampled_from([0, 1, 2**16, 2**31 - 1, UINT32]), st.integers(0, UINT32))
ENCODING_NAMES = sorted(ENCODINGS)
CONTAINERS = {
    "bytes": bytes,
    "bytearray": bytearray,
    "array": lambda data: array.array("B", data),
    "numpy": lambda data: np.frombuffer(data, np.uint8),
    "list": list,
    "memoryview": memoryview,
}
WRONG_CONTAINERS = {
    "array of uint16": lambda data: array.array("H", data[: len(data) // 2 * 2]),
    "numpy float32": lambda data: np.frombuffer(data[: len(data) // 4 * 4], np.float32),
    "text": lambda data: data.hex(),
    "none": lambda data: None,
}


@st.composite
def well_formed(draw, max_side=12):
    """(pixels, message fields) of a valid image: any encoding, row padding, either byte order."""
    encoding = draw(st.sampled_from(ENCODING_NAMES))
    dtype, channels = ENCODINGS[encoding]
    height, width = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    shape = (height, width) if channels == 1 else (height, width, channels)
    rng = np.random.default_rng(draw(st.integers(0, UINT32)))
    pixels = rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)
    big_endian = draw(st.booleans()) if dtype.itemsize > 1 else False
    padding = draw(st.sampled_from([0, 0, 1, 5]))
    rows = pixels.astype(dtype.newbyteorder(">" if big_endian else "<")).reshape(height, -1).view(np.uint8)
    data = np.concatenate([rows, np.full((height, padding), 0xAB, np.uint8)], axis=1).tobytes()
    fields = dict(encoding=encoding, height=height, width=width, step=rows.shape[1] + padding,
                  is_bigendian=int(big_endian), data=data)
    return pixels, fields


MUTATIONS = {
    "encoding": st.sampled_from(["", "MONO8", "mono 8", "16UC1", "32FC1", "yuv422", "bayer_rggb8", "rgb8\x00"]),
    "height": any_size,
    "width": any_size,
    "step": any_size,
    "is_bigendian": st.integers(0, 255),
    "data": st.binary(max_size=512),
}


@st.composite
def images(draw, max_side=12):
    """(pixels or None when changed, an Image-like object): a valid image, then up to 3 fields set
    to anything their type holds, its data in any container a message library uses (or a wrong one)."""
    pixels, fields = draw(well_formed(max_side))
    changed = draw(st.lists(st.sampled_from(sorted(MUTATIONS)), max_size=3, unique=True))
    for name in changed:
        fields[name] = draw(MUTATIONS[name])
        event(f"changed: {name}")
    if changed and not (changed == ["is_bigendian"] and ENCODINGS[fields["encoding"]][0].itemsize == 1):
        pixels = None
    container = draw(st.sampled_from(sorted(CONTAINERS) + sorted(WRONG_CONTAINERS)))
    fields["data"] = {**CONTAINERS, **WRONG_CONTAINERS}[container](fields["data"])
    if container in WRONG_CONTAINERS:
        pixels = None
    return pixels, SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(sec=0, nanosec=0), frame_id="cam"),
                                   **fields)


def data_bytes(message) -> int:
    data = message.data
    return 0 if data is None else len(bytes(data)) if not isinstance(data, str) else len(data)


@fuzz(3000)
@given(case=images(), max_pixels=st.sampled_from([None, 64, 10**6]))
def test_images_convert_in_their_layout_or_are_refused_with_a_reason(case, max_pixels):
    pixels, message = case
    with bounded(seconds=10, max_bytes=40 * data_bytes(message) + MIB):
        try:
            stored = message_to_numpy(message, max_pixels)
            rgb = message_to_rgb(message, "bgr", max_pixels)
        except ImageTooLarge:
            assert max_pixels is not None and message.height * message.width > max_pixels
            event("too large")
            return
        except ValueError as error:
            assert str(error)
            assert pixels is None, f"a valid image was refused: {error}"
            event("refused")
            return
    event("converted")
    dtype, channels = ENCODINGS[message.encoding]
    expected_shape = (message.height, message.width) + (() if channels == 1 else (channels,))
    assert stored.shape == expected_shape and stored.dtype == dtype
    assert rgb.shape == (message.height, message.width, 3) and rgb.dtype == np.uint8
    if pixels is not None:
        np.testing.assert_array_equal(stored, pixels)


def test_regression_a_non_integer_size_field_is_a_clear_error():
    """Found by fuzzing Image-like objects: a height of None raised TypeError from int(), which
    the segmentation node counted as a processing error instead of a bad image."""
    fields = numpy_to_image(np.zeros((2, 3), np.uint8), "mono8")
    message = SimpleNamespace(encoding="mono8", height=None, width=3, step=3, is_bigendian=0, data=fields.data)
    with pytest.raises(ValueError, match="image field height must be an integer, got None"):
        message_to_numpy(message)


def test_regression_a_huge_declared_image_is_refused_before_its_data_is_read():
    message = SimpleNamespace(encoding="rgb8", height=60_000, width=60_000, step=180_000, is_bigendian=0, data=b"")
    with bounded(seconds=5, max_bytes=64 * 1024):
        with pytest.raises(ImageTooLarge, match="declares 60000x60000 = 3600000000 pixels, more than max_image_pixels"):
            message_to_rgb(message, max_pixels=33_177_600)


# ---- the segmentation node's handling of pairs ------------------------------------------------


@pytest.fixture(scope="module")
def core():
    torch.manual_seed(0)
    model = LatentMaskRCNN(tiny_config(num_classes=2, class_names=["__background__", "polybag"])).eval()
    parameters = ParameterSet(SEGMENTATION_PARAMETERS, {"num_samples": 2, "max_image_pixels": 4096,
                                                        "publish_overlay": False})
    core = SegmentationCore(PerceptionPipeline(model, model_id="tiny@0"), messages.rosbags_factory(), parameters)
    pixels = np.zeros((16, 16, 3), np.uint8)
    warm_up = [SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(sec=0, nanosec=0), frame_id="c"),
                               **vars(numpy_to_image(pixels, "rgb8"))) for _ in range(2)]
    assert core.handle(Work("pair", tuple(warm_up))).output is not None  # the model's first run allocates its pools
    return core


@st.composite
def pairs(draw):
    """Half of them a valid pair of one size, the others two independently damaged images."""
    if draw(st.booleans()):
        pixels, fields = draw(well_formed(max_side=24))
        _, other = draw(well_formed(max_side=24))
        other.update(height=fields["height"], width=fields["width"])
        dtype, channels = ENCODINGS[other["encoding"]]
        rows = np.random.default_rng(0).integers(0, 255, (fields["height"], fields["width"] * channels * dtype.itemsize))
        other.update(step=rows.shape[1], data=rows.astype(np.uint8).tobytes())
        header = lambda: SimpleNamespace(stamp=SimpleNamespace(sec=0, nanosec=0), frame_id="cam")  # noqa: E731
        return SimpleNamespace(header=header(), **fields), SimpleNamespace(header=header(), **other)
    return draw(images(max_side=24))[1], draw(images(max_side=24))[1]


DROPS = {DROP_IMAGE, DROP_TOO_LARGE, DROP_SIZE, DROP_STAMPS}


@fuzz(200)
@given(pair=pairs(), apart_ns=st.sampled_from([0, 0, 2_000_000, 10**9]))
def test_the_segmentation_node_answers_a_pair_or_counts_one_drop(core, pair, apart_ns):
    left_message, right_message = pair
    right_message.header.stamp.nanosec = apart_ns % 10**9
    right_message.header.stamp.sec = apart_ns // 10**9
    before = core.stats.snapshot()
    budget = 40 * (data_bytes(left_message) + data_bytes(right_message)) + 64 * MIB  # the model's own work
    with bounded(seconds=60, max_bytes=budget, measure="resident"):
        outcome = core.handle(Work("pair", (left_message, right_message)))
    after = core.stats.snapshot()
    if outcome.output is None:
        assert outcome.drop_reason in DROPS, outcome
        assert after["dropped"][outcome.drop_reason] == before["dropped"].get(outcome.drop_reason, 0) + 1
        assert after["processed"] == before["processed"]
        event(f"dropped: {outcome.drop_reason}")
        return
    event("answered")
    assert after["processed"] == before["processed"] + 1 and after["dropped"] == before["dropped"]
    for (camera, array), image in zip(outcome.output.mask_arrays, (left_message, right_message)):
        assert (array.image_height, array.image_width) == (image.height, image.width)
        assert array.header is image.header


def test_regression_an_image_smaller_than_the_model_takes_is_a_bad_image(core):
    """Found by fuzzing: a valid 1 x 1 pair reached the model, whose ValueError counted as a
    processing error (and /diagnostics reports ERROR while processing fails)."""
    pixels = np.zeros((1, 1, 3), np.uint8)
    pair = tuple(SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(sec=0, nanosec=0), frame_id="c"),
                                 **vars(numpy_to_image(pixels, "bgr8"))) for _ in range(2))
    outcome = core.handle(Work("pair", pair))
    assert outcome.drop_reason == DROP_IMAGE
    assert outcome.detail == "overhead_left: a 1x1 image is smaller than the model's 2 x 2 pixels"

