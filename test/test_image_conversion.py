"""Image fields <-> numpy with cv_bridge's semantics: every encoding, row padding, byte order,
bad input, and (where cv_bridge is installed) agreement with cv_bridge itself."""
import array
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latent_segmentation_ros.core.image_conversion import (
    ENCODINGS,
    ImageFields,
    image_to_numpy,
    image_to_rgb,
    message_to_numpy,
    message_to_rgb,
    numpy_to_image,
    to_rgb8,
)


def random_pixels(encoding, height=3, width=5, seed=0):
    dtype, channels = ENCODINGS[encoding]
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels == 1 else (height, width, channels)
    return rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)


def padded_fields(pixels, encoding, padding, big_endian=False, fill=0xAB):
    """Image fields with ``padding`` junk bytes after every row, stored in the given byte order."""
    dtype, _ = ENCODINGS[encoding]
    stored = pixels.astype(dtype.newbyteorder(">" if big_endian else "<"))
    rows = stored.reshape(pixels.shape[0], -1).view(np.uint8)
    junk = np.full((pixels.shape[0], padding), fill, dtype=np.uint8)
    data = np.concatenate([rows, junk], axis=1).tobytes()
    return dict(
        encoding=encoding,
        height=pixels.shape[0],
        width=pixels.shape[1],
        step=rows.shape[1] + padding,
        is_bigendian=int(big_endian),
        data=data,
    )


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_round_trip_every_encoding(encoding):
    pixels = random_pixels(encoding)
    fields = numpy_to_image(pixels, encoding)
    dtype, channels = ENCODINGS[encoding]
    assert fields.encoding == encoding
    assert (fields.height, fields.width) == (3, 5)
    assert fields.step == 5 * channels * dtype.itemsize
    assert len(fields.data) == fields.step * fields.height
    back = image_to_numpy(
        fields.encoding, fields.height, fields.width, fields.step, fields.is_bigendian, fields.data
    )
    assert back.dtype == dtype
    assert back.shape == pixels.shape
    np.testing.assert_array_equal(back, pixels)


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("padding", [1, 3, 8])
def test_row_padding_is_skipped(encoding, padding):
    pixels = random_pixels(encoding, seed=padding)
    fields = padded_fields(pixels, encoding, padding)
    np.testing.assert_array_equal(image_to_numpy(**fields), pixels)


@pytest.mark.parametrize("big_endian", [False, True])
def test_mono16_byte_order(big_endian):
    pixels = np.array([[1, 256, 65535], [4660, 0, 43981]], dtype=np.uint16)
    fields = padded_fields(pixels, "mono16", padding=2, big_endian=big_endian)
    out = image_to_numpy(**fields)
    assert out.dtype == np.dtype(np.uint16)  # native order
    np.testing.assert_array_equal(out, pixels)
    # the other byte order reads the bytes swapped, as cv_bridge would
    fields["is_bigendian"] = int(not big_endian)
    np.testing.assert_array_equal(image_to_numpy(**fields), pixels.byteswap())


def test_numpy_to_image_keeps_the_array_byte_order():
    values = np.array([[1, 2, 4660]], dtype=np.uint16)
    for dtype, big in ((">u2", 1), ("<u2", 0)):
        fields = numpy_to_image(values.astype(dtype), "mono16")
        assert fields.is_bigendian == big
        assert bytes(fields.data) == values.astype(dtype).tobytes()
        np.testing.assert_array_equal(image_to_numpy(**fields.__dict__), values)


def test_to_rgb_per_encoding():
    rgb = np.array([[[10, 20, 30], [40, 50, 60]]], dtype=np.uint8)
    bgr = rgb[:, :, ::-1].copy()
    alpha = np.full((1, 2, 1), 7, dtype=np.uint8)
    np.testing.assert_array_equal(to_rgb8(rgb, "rgb8"), rgb)
    np.testing.assert_array_equal(to_rgb8(bgr, "bgr8"), rgb)
    np.testing.assert_array_equal(to_rgb8(np.concatenate([rgb, alpha], 2), "rgba8"), rgb)
    np.testing.assert_array_equal(to_rgb8(np.concatenate([bgr, alpha], 2), "bgra8"), rgb)
    np.testing.assert_array_equal(to_rgb8(bgr, "8UC3"), rgb)
    np.testing.assert_array_equal(to_rgb8(rgb, "8UC3", generic_3_channel_order="rgb"), rgb)
    gray = np.array([[0, 200]], dtype=np.uint8)
    np.testing.assert_array_equal(to_rgb8(gray, "mono8"), np.repeat(gray[:, :, None], 3, 2))
    deep = np.array([[0, 257, 32896, 65535, 128]], dtype=np.uint16)
    expected = np.array([[0, 1, 128, 255, 0]], dtype=np.uint8)
    np.testing.assert_array_equal(to_rgb8(deep, "mono16"), np.repeat(expected[:, :, None], 3, 2))
    for out in (to_rgb8(bgr, "bgr8"), to_rgb8(deep, "mono16")):
        assert out.dtype == np.uint8 and out.flags.c_contiguous


def test_image_to_rgb_reads_padded_bgra():
    rgb = random_pixels("rgb8", height=4, width=6, seed=3)
    bgra = np.concatenate([rgb[:, :, ::-1], np.zeros((4, 6, 1), np.uint8)], axis=2)
    fields = padded_fields(bgra, "bgra8", padding=4)
    np.testing.assert_array_equal(image_to_rgb(**fields), rgb)


@pytest.mark.parametrize(
    "container",
    [bytes, bytearray, lambda b: array.array("B", b), lambda b: np.frombuffer(b, np.uint8), list, memoryview],
)
def test_message_like_objects_with_any_data_container(container):
    pixels = random_pixels("rgb8", seed=5)
    fields = numpy_to_image(pixels, "rgb8")
    message = SimpleNamespace(**{**fields.__dict__, "data": container(bytes(fields.data))})
    np.testing.assert_array_equal(message_to_numpy(message), pixels)
    np.testing.assert_array_equal(message_to_rgb(message), pixels)


def test_rosbags_image_message_converts():
    from rosbags.typesys import Stores, get_typestore

    typestore = get_typestore(Stores.ROS2_HUMBLE)
    Image = typestore.types["sensor_msgs/msg/Image"]
    Header = typestore.types["std_msgs/msg/Header"]
    Time = typestore.types["builtin_interfaces/msg/Time"]
    pixels = random_pixels("mono16", height=2, width=3, seed=9)
    fields = numpy_to_image(pixels, "mono16")
    message = Image(
        header=Header(stamp=Time(sec=1, nanosec=2), frame_id="cam"),
        height=fields.height,
        width=fields.width,
        encoding=fields.encoding,
        is_bigendian=fields.is_bigendian,
        step=fields.step,
        data=np.frombuffer(fields.data, np.uint8),
    )
    raw = typestore.serialize_cdr(message, "sensor_msgs/msg/Image")
    decoded = typestore.deserialize_cdr(raw, "sensor_msgs/msg/Image")
    np.testing.assert_array_equal(message_to_numpy(decoded), pixels)


@given(
    encoding=st.sampled_from(sorted(ENCODINGS)),
    height=st.integers(1, 6),
    width=st.integers(1, 6),
    padding=st.integers(0, 9),
    big_endian=st.booleans(),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=60, deadline=None)
def test_padding_and_byte_order_property(encoding, height, width, padding, big_endian, seed):
    pixels = random_pixels(encoding, height, width, seed)
    fields = padded_fields(pixels, encoding, padding, big_endian)
    np.testing.assert_array_equal(image_to_numpy(**fields), pixels)


def test_unsupported_encoding_is_named():
    with pytest.raises(ValueError, match="unsupported image encoding 'yuv422'.*rgb8"):
        image_to_numpy("yuv422", 1, 1, 2, 0, b"\0\0")
    with pytest.raises(ValueError, match="unsupported image encoding '32FC1'"):
        numpy_to_image(np.zeros((1, 1), np.float32), "32FC1")


def test_short_data_is_refused_with_sizes():
    with pytest.raises(ValueError, match=r"11 bytes, fewer than step \* height = 6 \* 2 = 12"):
        image_to_numpy("rgb8", 2, 2, 6, 0, bytes(11))


def test_short_step_and_empty_image_are_refused():
    with pytest.raises(ValueError, match="step 5 is shorter than one row"):
        image_to_numpy("rgb8", 2, 2, 5, 0, bytes(12))
    with pytest.raises(ValueError, match="size must be positive"):
        image_to_numpy("mono8", 0, 4, 4, 0, b"")


def test_wrong_array_layout_is_refused():
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        numpy_to_image(np.zeros((2, 2), np.uint8), "rgb8")
    with pytest.raises(ValueError, match="uint16"):
        numpy_to_image(np.zeros((2, 2), np.uint8), "mono16")
    with pytest.raises(ValueError, match="generic_3_channel_order"):
        to_rgb8(np.zeros((1, 1, 3), np.uint8), "8UC3", generic_3_channel_order="grb")


def test_bad_data_containers_are_refused():
    with pytest.raises(ValueError, match="type code 'B'"):
        ImageFields.from_message(
            SimpleNamespace(encoding="mono8", height=1, width=1, step=1, is_bigendian=0, data=array.array("H", [1]))
        )
    with pytest.raises(ValueError, match="not a byte buffer"):
        message_to_numpy(SimpleNamespace(encoding="mono8", height=1, width=1, step=1, is_bigendian=0, data=3.5))
    with pytest.raises(ValueError, match="no field 'step'"):
        message_to_numpy(SimpleNamespace(encoding="mono8", height=1, width=1, is_bigendian=0, data=b"\0"))


# --- agreement with cv_bridge where it is installed -------------------------------------------


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_matches_cv_bridge(encoding):
    cv_bridge = pytest.importorskip("cv_bridge")
    bridge = cv_bridge.CvBridge()
    pixels = random_pixels(encoding, height=4, width=7, seed=11)
    theirs = bridge.cv2_to_imgmsg(pixels, encoding)
    ours = numpy_to_image(pixels, encoding)
    assert (theirs.height, theirs.width, theirs.step, theirs.encoding) == (
        ours.height,
        ours.width,
        ours.step,
        ours.encoding,
    )
    assert bool(theirs.is_bigendian) == bool(ours.is_bigendian)
    assert bytes(theirs.data) == bytes(ours.data)
    np.testing.assert_array_equal(message_to_numpy(theirs), bridge.imgmsg_to_cv2(theirs, "passthrough"))
    if encoding != "8UC3":  # cv_bridge refuses colour conversions of the generic encoding
        np.testing.assert_array_equal(message_to_rgb(theirs), bridge.imgmsg_to_cv2(theirs, "rgb8"))
