"""`sensor_msgs/Image` fields <-> numpy, with cv_bridge's semantics but without cv_bridge.

cv_bridge has open NumPy 2 problems on Humble/Jazzy, and the replay tool must work where ROS is
not installed, so the node and the replay tool both convert images here. The behaviour follows
cv_bridge's ``imgmsg_to_cv2(msg, "passthrough")`` / ``cv2_to_imgmsg(array, encoding)``:

- one-channel encodings give ``[H, W]`` arrays, others ``[H, W, C]``;
- ``step`` may carry row padding (it is honoured on reading; written messages have none);
- ``is_bigendian`` says how multi-byte samples (``mono16``) are stored; arrays come back in
  native byte order;
- mono16 -> 8-bit conversion scales by 255/65535 and rounds, as cv_bridge's ``cvtColor2`` does.

Everything works on plain fields, so rclpy messages, rosbags messages and any object with the
same attributes are accepted by :func:`message_to_numpy` and :func:`message_to_rgb`.

Every malformed image raises ValueError with the reason; an image declaring more pixels than a
caller's ``max_pixels`` raises :class:`ImageTooLarge` (a ValueError) before its data is touched.
"""
from __future__ import annotations

import array
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

# encoding -> (sample dtype, channels); the encodings this package reads and writes.
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "8UC3": (np.dtype(np.uint8), 3),
}

# Channel order of the generic "8UC3" encoding when colour is needed: OpenCV images are BGR,
# and cv_bridge's passthrough conversion of such an image is what produces "8UC3".
GENERIC_3_CHANNEL_ORDERS = ("bgr", "rgb")


class ImageTooLarge(ValueError):
    """An image declares more pixels than the reader accepts (checked before reading its data)."""


def check_declared_size(height: int, width: int, max_pixels: int | None, what: str = "image") -> None:
    """ValueError unless ``height`` and ``width`` are positive; ImageTooLarge when their product
    exceeds ``max_pixels`` (None: no limit)."""
    if height <= 0 or width <= 0:
        raise ValueError(f"{what} size must be positive, got height={height} width={width}")
    if max_pixels is not None and height * width > max_pixels:
        raise ImageTooLarge(
            f"{what} declares {width}x{height} = {height * width} pixels, more than max_image_pixels {max_pixels}"
        )


@dataclass(frozen=True)
class ImageFields:
    """The fields of a `sensor_msgs/Image` other than the header."""

    encoding: str
    height: int
    width: int
    step: int
    is_bigendian: int
    data: bytes | memoryview

    @classmethod
    def from_message(cls, message: Any) -> "ImageFields":
        """Copy the fields of any Image-like object (rclpy, rosbags or a plain namespace)."""
        for name in ("encoding", "height", "width", "step", "is_bigendian", "data"):
            if not hasattr(message, name):
                raise ValueError(f"image message has no field {name!r}")
        if not isinstance(message.encoding, str):
            raise ValueError(f"image encoding must be a string, got {type(message.encoding).__name__}")
        return cls(
            encoding=message.encoding,
            height=_integer_field(message, "height"),
            width=_integer_field(message, "width"),
            step=_integer_field(message, "step"),
            is_bigendian=int(bool(message.is_bigendian)),
            data=_as_bytes(message.data),
        )


def encoding_info(encoding: str) -> tuple[np.dtype, int]:
    """(sample dtype, channels) of a supported encoding; ValueError naming the supported ones."""
    try:
        return ENCODINGS[encoding]
    except KeyError:
        supported = ", ".join(ENCODINGS)
        raise ValueError(f"unsupported image encoding {encoding!r} (supported: {supported})") from None


def image_to_numpy(
    encoding: str,
    height: int,
    width: int,
    step: int,
    is_bigendian: int | bool,
    data: Any,
    max_pixels: int | None = None,
) -> np.ndarray:
    """The image as stored (cv_bridge "passthrough"): [H, W] or [H, W, C], native byte order.

    Raises ValueError for an unsupported encoding, a non-positive size, a ``step`` shorter than
    one row of pixels, or ``data`` shorter than ``step * height``; ImageTooLarge when the image
    declares more than ``max_pixels`` pixels (None: no limit).
    """
    dtype, channels = encoding_info(encoding)
    height, width, step = int(height), int(width), int(step)
    check_declared_size(height, width, max_pixels)
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ValueError(
            f"step {step} is shorter than one row of {width} {encoding} pixels ({row_bytes} bytes)"
        )
    buffer = _as_bytes(data)
    needed = step * height
    if len(buffer) < needed:
        raise ValueError(
            f"image data has {len(buffer)} bytes, fewer than step * height = {step} * {height} = {needed}"
        )
    raw = np.frombuffer(buffer, dtype=np.uint8, count=needed).reshape(height, step)[:, :row_bytes]
    stored = dtype.newbyteorder(">" if is_bigendian else "<")
    pixels = np.ascontiguousarray(raw).view(stored).astype(dtype.newbyteorder("="), copy=False)
    if channels == 1:
        return pixels.reshape(height, width)
    return pixels.reshape(height, width, channels)


def numpy_to_image(array_: np.ndarray, encoding: str) -> ImageFields:
    """Fields of an Image holding ``array_`` in ``encoding`` (cv_bridge ``cv2_to_imgmsg``).

    The array must already be in that encoding's layout: [H, W] (or [H, W, 1]) for one-channel
    encodings, [H, W, C] otherwise, of the encoding's dtype. Rows are written without padding,
    in the array's byte order (``is_bigendian`` says which, as cv_bridge does).
    """
    dtype, channels = encoding_info(encoding)
    pixels = np.asarray(array_)
    if pixels.ndim == 3 and channels == 1 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    expected_ndim = 2 if channels == 1 else 3
    if pixels.ndim != expected_ndim or (channels > 1 and pixels.shape[2] != channels):
        layout = "[H, W]" if channels == 1 else f"[H, W, {channels}]"
        raise ValueError(f"{encoding} needs an array shaped {layout}, got {tuple(pixels.shape)}")
    if pixels.dtype.newbyteorder("=") != dtype:
        raise ValueError(f"{encoding} needs dtype {dtype.name}, got {pixels.dtype}")
    height, width = int(pixels.shape[0]), int(pixels.shape[1])
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {tuple(pixels.shape)}")
    big_endian = pixels.dtype.itemsize > 1 and (
        pixels.dtype.byteorder == ">" or (pixels.dtype.byteorder == "=" and sys.byteorder == "big")
    )
    data = np.ascontiguousarray(pixels).tobytes()
    return ImageFields(
        encoding=encoding,
        height=height,
        width=width,
        step=len(data) // height,
        is_bigendian=int(big_endian),
        data=data,
    )


def to_rgb8(pixels: np.ndarray, encoding: str, generic_3_channel_order: str = "bgr") -> np.ndarray:
    """An array in ``encoding``'s layout converted to uint8 [H, W, 3] RGB (the pipeline's input).

    Alpha is dropped; mono is replicated; mono16 is scaled by 255/65535 with rounding. "8UC3"
    carries no channel order: ``generic_3_channel_order`` says which it is ("bgr" by default).
    """
    encoding_info(encoding)
    if generic_3_channel_order not in GENERIC_3_CHANNEL_ORDERS:
        raise ValueError(
            f"generic_3_channel_order must be one of {GENERIC_3_CHANNEL_ORDERS}, got {generic_3_channel_order!r}"
        )
    if encoding == "8UC3":
        encoding = generic_3_channel_order + "8"
    if encoding == "mono16":
        scaled = np.rint(pixels.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)
        return np.repeat(scaled[:, :, None], 3, axis=2)
    if encoding == "mono8":
        return np.repeat(pixels[:, :, None], 3, axis=2)
    if encoding in ("rgb8", "rgba8"):
        return np.ascontiguousarray(pixels[:, :, :3])
    return np.ascontiguousarray(pixels[:, :, 2::-1])  # bgr8, bgra8


def image_to_rgb(
    encoding: str,
    height: int,
    width: int,
    step: int,
    is_bigendian: int | bool,
    data: Any,
    generic_3_channel_order: str = "bgr",
    max_pixels: int | None = None,
) -> np.ndarray:
    """Image fields -> uint8 [H, W, 3] RGB; errors as in :func:`image_to_numpy`."""
    pixels = image_to_numpy(encoding, height, width, step, is_bigendian, data, max_pixels)
    return to_rgb8(pixels, encoding, generic_3_channel_order)


def message_to_numpy(message: Any, max_pixels: int | None = None) -> np.ndarray:
    """Any Image-like message -> the array as stored (see :func:`image_to_numpy`)."""
    fields = ImageFields.from_message(message)
    return image_to_numpy(
        fields.encoding, fields.height, fields.width, fields.step, fields.is_bigendian, fields.data, max_pixels
    )


def message_to_rgb(message: Any, generic_3_channel_order: str = "bgr", max_pixels: int | None = None) -> np.ndarray:
    """Any Image-like message -> uint8 [H, W, 3] RGB (see :func:`to_rgb8`)."""
    fields = ImageFields.from_message(message)
    return image_to_rgb(
        fields.encoding,
        fields.height,
        fields.width,
        fields.step,
        fields.is_bigendian,
        fields.data,
        generic_3_channel_order,
        max_pixels,
    )


def _integer_field(message: Any, name: str) -> int:
    """An integer field of an Image-like object; ValueError when it holds anything else."""
    value = getattr(message, name)
    if isinstance(value, (bool, float)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"image field {name} must be an integer, got {value!r}")
    return int(value)


def _as_bytes(data: Any) -> bytes | memoryview:
    """A read-only byte view of whatever a message's ``data`` holds (bytes, array, numpy, list)."""
    if isinstance(data, (bytes, bytearray)):
        return data
    if isinstance(data, memoryview):
        return data.cast("B") if data.format != "B" or data.ndim != 1 else data
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise ValueError(f"image data must hold uint8 bytes, got dtype {data.dtype}")
        return np.ascontiguousarray(data).reshape(-1).data
    if isinstance(data, array.array):
        if data.typecode != "B":
            raise ValueError(f"image data array must have type code 'B', got {data.typecode!r}")
        return memoryview(data)
    if isinstance(data, (list, tuple)):
        try:
            return bytes(data)
        except (TypeError, ValueError) as error:
            raise ValueError(f"image data list must hold integers in [0, 255]: {error}") from None
    raise ValueError(f"image data of type {type(data).__name__} is not a byte buffer")
