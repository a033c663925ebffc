"""This package's messages for offline use (rosbags) and the builders/readers shared with the nodes.

``get_typestore()`` registers the very ``msg/*.msg`` files that ``rosidl_generate_interfaces``
builds for ROS, so bags written offline and topics published by the nodes carry identical
types. Builders turn pipeline and planner results into message objects through a
:class:`MessageFactory`, so the same code produces rosbags objects (offline, tests) and rclpy
objects (the nodes); readers turn either kind back into numpy records.
"""
from __future__ import annotations

import array
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from latent_segmentation_ros.core.image_conversion import check_declared_size, message_to_numpy
from latent_segmentation_ros.core.parameters import GRASP_PARAMETERS
from latent_segmentation_ros.core.resources import PACKAGE, candidate_paths
from latent_segmentation_ros.core.results import CameraResult, GraspCandidate, MaskRegions, tight_boxes

MESSAGE_NAMES = ("ConfidenceMask", "ConfidenceMaskArray", "GraspCandidate", "GraspCandidateArray")
CONFIDENCE_MASK = f"{PACKAGE}/msg/ConfidenceMask"
CONFIDENCE_MASK_ARRAY = f"{PACKAGE}/msg/ConfidenceMaskArray"
GRASP_CANDIDATE = f"{PACKAGE}/msg/GraspCandidate"
GRASP_CANDIDATE_ARRAY = f"{PACKAGE}/msg/GraspCandidateArray"
IMAGE = "sensor_msgs/msg/Image"
# Most cups a grasp may hold: the largest cup grid the grasp node's parameters allow.
MAX_CUPS = int(GRASP_PARAMETERS["cup_rows"].maximum * GRASP_PARAMETERS["cup_cols"].maximum)
FLOAT32_MAX = float(np.finfo(np.float32).max)
# Class ids a mask array may carry: names are kept per class 1..C, so an id bounds that list.
MAX_CLASS_ID = 65535


def find_msg_dir() -> Path:
    """The folder holding this package's .msg files.

    Looked up in the source tree (``<repo>/msg``), then in the ``share/latent_segmentation_ros/msg``
    folder of an install prefix: the one this module is installed under (colcon install or a
    pip install, which ships the files there), the AMENT_PREFIX_PATH entries, and sys.prefix.
    """
    candidates = candidate_paths("msg")
    for candidate in candidates:
        if all((candidate / f"{name}.msg").is_file() for name in MESSAGE_NAMES):
            return candidate
    searched = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"the {PACKAGE} .msg files were not found; searched: {searched}")


def get_typestore(msg_dir: str | Path | None = None, store: Any = None) -> Any:
    """A fresh rosbags typestore (ROS 2 Humble types by default) with our four messages added."""
    from rosbags.typesys import Stores, get_types_from_msg
    from rosbags.typesys import get_typestore as rosbags_typestore

    folder = Path(msg_dir) if msg_dir is not None else find_msg_dir()
    typestore = rosbags_typestore(store if store is not None else Stores.ROS2_HUMBLE)
    types: dict = {}
    for name in MESSAGE_NAMES:
        path = folder / f"{name}.msg"
        types.update(get_types_from_msg(path.read_text(encoding="utf-8"), f"{PACKAGE}/msg/{name}"))
    typestore.register(types)
    return typestore


@dataclass(frozen=True)
class MessageFactory:
    """How to build messages with one message library.

    Message classes are called with keyword arguments for every field (both rclpy and rosbags
    classes accept that); the three array converters adapt numpy arrays to what the library
    stores for ``uint8[]``, ``float32[]`` and ``bool[]`` fields.
    """

    confidence_mask: type
    confidence_mask_array: type
    grasp_candidate: type
    grasp_candidate_array: type
    image: type
    region_of_interest: type
    header: type
    time: type
    byte_array: Callable[[bytes], Any]
    float32_array: Callable[[np.ndarray], Any]
    bool_array: Callable[[np.ndarray], Any]

    def make_header(self, sec: int, nanosec: int, frame_id: str) -> Any:
        return self.header(stamp=self.time(sec=int(sec), nanosec=int(nanosec)), frame_id=str(frame_id))


def rosbags_factory(typestore: Any = None) -> MessageFactory:
    """A factory producing rosbags message objects (numpy arrays for array fields)."""
    typestore = typestore if typestore is not None else get_typestore()
    types = typestore.types
    return MessageFactory(
        confidence_mask=types[CONFIDENCE_MASK],
        confidence_mask_array=types[CONFIDENCE_MASK_ARRAY],
        grasp_candidate=types[GRASP_CANDIDATE],
        grasp_candidate_array=types[GRASP_CANDIDATE_ARRAY],
        image=types[IMAGE],
        region_of_interest=types["sensor_msgs/msg/RegionOfInterest"],
        header=types["std_msgs/msg/Header"],
        time=types["builtin_interfaces/msg/Time"],
        byte_array=lambda data: np.frombuffer(bytes(data), dtype=np.uint8),
        float32_array=lambda values: np.ascontiguousarray(values, dtype=np.float32).reshape(-1),
        bool_array=lambda values: np.ascontiguousarray(values, dtype=bool).reshape(-1),
    )


def rclpy_array_converters() -> dict[str, Callable]:
    """The array converters for rclpy's generated classes (array.array / list of bools)."""

    def float32_array(values: np.ndarray) -> array.array:
        out = array.array("f")
        out.frombytes(np.asarray(values, dtype=np.float32).reshape(-1).tobytes())
        return out

    return {
        "byte_array": lambda data: array.array("B", bytes(data)),
        "float32_array": float32_array,
        "bool_array": lambda values: [bool(v) for v in np.asarray(values).reshape(-1)],
    }


def numpy_to_image_message(
    pixels: np.ndarray, encoding: str, header: Any, factory: MessageFactory
) -> Any:
    """A `sensor_msgs/Image` object of ``factory``'s library holding ``pixels``."""
    from latent_segmentation_ros.core.image_conversion import numpy_to_image

    fields = numpy_to_image(pixels, encoding)
    return factory.image(
        header=header,
        height=fields.height,
        width=fields.width,
        encoding=fields.encoding,
        is_bigendian=fields.is_bigendian,
        step=fields.step,
        data=factory.byte_array(fields.data),
    )


def build_confidence_mask_array(result: CameraResult, header: Any, factory: MessageFactory) -> Any:
    """A ConfidenceMaskArray for one camera's result; ``header`` is the source image's."""
    height, width = result.image_size
    boxes = tight_boxes(result.masks).astype(np.int64)
    areas = result.areas
    masks = []
    for index in range(result.masks.shape[0]):
        x1, y1, x2, y2 = (int(v) for v in boxes[index])
        if areas[index] == 0:
            raise ValueError(f"mask {index} of camera {result.camera!r} is empty; empty masks are not published")
        crop = result.masks[index, y1:y2, x1:x2].astype(np.uint8) * np.uint8(255)
        roi = factory.region_of_interest(
            x_offset=x1, y_offset=y1, height=y2 - y1, width=x2 - x1, do_rectify=False
        )
        masks.append(
            factory.confidence_mask(
                id=index,
                class_id=int(result.labels[index]),
                class_name=result.class_name(int(result.labels[index])),
                score=float(result.scores[index]),
                p=float(result.p),
                num_supporting_samples=int(result.support_counts[index]),
                roi=roi,
                mask=numpy_to_image_message(crop, "mono8", header, factory),
                area=int(areas[index]),
            )
        )
    return factory.confidence_mask_array(
        header=header,
        camera=result.camera,
        image_height=height,
        image_width=width,
        mode=result.mode,
        p=float(result.p),
        num_samples=int(result.num_samples),
        model_id=result.model_id,
        inference_time_ms=float(result.inference_time_ms),
        masks=masks,
    )


@dataclass
class DecodedMaskArray:
    """What a ConfidenceMaskArray holds, its masks as crops at their rois (:class:`MaskRegions`):
    reading it costs what the message carries, whatever image size it declares."""

    camera: str
    regions: MaskRegions
    scores: np.ndarray
    labels: np.ndarray
    support_counts: np.ndarray
    mode: str
    p: float
    num_samples: int
    model_id: str
    inference_time_ms: float
    class_names: list[str]

    def to_result(self) -> CameraResult:
        """The full-frame :class:`CameraResult` (memory: masks x the declared image)."""
        masks = self.regions.to_masks()
        return CameraResult(
            camera=self.camera,
            masks=masks,
            scores=self.scores,
            labels=self.labels,
            boxes=tight_boxes(masks),
            support_counts=self.support_counts,
            mode=self.mode,
            p=self.p,
            num_samples=self.num_samples,
            model_id=self.model_id,
            inference_time_ms=self.inference_time_ms,
            class_names=self.class_names,
        )


def decode_confidence_mask_array(message: Any, max_image_pixels: int | None = None) -> DecodedMaskArray:
    """A ConfidenceMaskArray (rclpy or rosbags) read into crops, without full-frame arrays.

    Raises ImageTooLarge (a ValueError) when the array declares more than ``max_image_pixels``
    pixels (None: no limit), checked before any mask is read; ValueError when a mask is not
    mono8, does not match its roi, leaves the image, or has a score that is not finite.
    """
    height, width = int(message.image_height), int(message.image_width)
    check_declared_size(height, width, max_image_pixels, what="mask array image")
    count = len(message.masks)
    scores = np.zeros(count, dtype=np.float32)
    labels = np.zeros(count, dtype=np.int64)
    supports = np.zeros(count, dtype=np.int64)
    offsets = np.zeros((count, 2), dtype=np.int64)
    crops = []
    names: dict[int, str] = {}
    for index, item in enumerate(message.masks):
        roi = item.roi
        x, y, w, h = int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height)
        if item.mask.encoding != "mono8":
            raise ValueError(f"mask {item.id} has encoding {item.mask.encoding!r}, expected mono8")
        if (int(item.mask.height), int(item.mask.width)) != (h, w):
            raise ValueError(
                f"mask {item.id} is {item.mask.width}x{item.mask.height} but its roi is {w}x{h}"
            )
        if min(x, y, w, h) < 0 or x + w > width or y + h > height:
            raise ValueError(f"mask {item.id} roi ({x}, {y}, {w}x{h}) leaves the {width}x{height} image")
        if not 0 <= int(item.class_id) <= MAX_CLASS_ID:
            raise ValueError(f"mask {item.id} has class_id {item.class_id}, outside 0..{MAX_CLASS_ID}")
        score = float(item.score)
        if not (math.isfinite(score) and abs(score) <= FLOAT32_MAX):
            raise ValueError(f"mask {item.id} has score {score}; scores must be finite float32 numbers")
        crops.append(message_to_numpy(item.mask) > 0)
        offsets[index] = (x, y)
        scores[index] = score
        labels[index] = item.class_id
        supports[index] = item.num_supporting_samples
        if item.class_name:
            names[int(item.class_id)] = str(item.class_name)
    positive = [label for label in names if label >= 1]
    class_names = [names.get(label, "") for label in range(1, max(positive, default=0) + 1)]
    return DecodedMaskArray(
        camera=str(message.camera),
        regions=MaskRegions((height, width), offsets, crops),
        scores=scores,
        labels=labels,
        support_counts=supports,
        mode=str(message.mode),
        p=float(message.p),
        num_samples=int(message.num_samples),
        model_id=str(message.model_id),
        inference_time_ms=float(message.inference_time_ms),
        class_names=class_names,
    )


def confidence_mask_array_to_result(message: Any, max_image_pixels: int | None = None) -> CameraResult:
    """A ConfidenceMaskArray (rclpy or rosbags) back to a full-frame :class:`CameraResult`.

    Errors as :func:`decode_confidence_mask_array`; the full-frame masks cost masks x the
    declared image, which ``max_image_pixels`` bounds.
    """
    return decode_confidence_mask_array(message, max_image_pixels).to_result()


def build_grasp_candidate_array(
    candidates: Sequence[GraspCandidate],
    header: Any,
    camera: str,
    cup_radius: float,
    factory: MessageFactory,
) -> Any:
    """A GraspCandidateArray (best first, as given); ``header`` is the source image's."""
    items = []
    for candidate in candidates:
        centers = np.asarray(candidate.cup_centers, dtype=np.float32).reshape(-1, 2)
        items.append(
            factory.grasp_candidate(
                mask_id=int(candidate.mask_id),
                u=float(candidate.u),
                v=float(candidate.v),
                angle=float(candidate.angle),
                sealed_cups=int(candidate.sealed_cups),
                total_cups=int(candidate.total_cups),
                score=float(candidate.score),
                cup_u=factory.float32_array(centers[:, 0]),
                cup_v=factory.float32_array(centers[:, 1]),
                cup_sealed=factory.bool_array(candidate.cup_sealed),
            )
        )
    return factory.grasp_candidate_array(
        header=header, camera=str(camera), cup_radius=float(cup_radius), candidates=items
    )


def grasp_candidate_array_to_list(message: Any) -> list[GraspCandidate]:
    """A GraspCandidateArray (rclpy or rosbags) back to :class:`GraspCandidate` records.

    Raises ValueError when a grasp's cup arrays differ in length, hold more cups than the
    largest gripper the grasp node plans for (``MAX_CUPS``: a consumer draws every cup), or a
    position, angle or score is not finite.
    """
    out = []
    for item in message.candidates:
        cup_u = np.asarray(item.cup_u, dtype=np.float32).reshape(-1)
        cup_v = np.asarray(item.cup_v, dtype=np.float32).reshape(-1)
        sealed = np.asarray(item.cup_sealed, dtype=bool).reshape(-1)
        if not (len(cup_u) == len(cup_v) == len(sealed)):
            raise ValueError(
                f"grasp on mask {item.mask_id} has {len(cup_u)} cup_u, {len(cup_v)} cup_v and "
                f"{len(sealed)} cup_sealed entries"
            )
        if len(cup_u) > MAX_CUPS:
            raise ValueError(f"grasp on mask {item.mask_id} has {len(cup_u)} cups, more than {MAX_CUPS}")
        values = [float(item.u), float(item.v), float(item.angle), float(item.score)]
        if not (all(math.isfinite(v) for v in values) and np.isfinite(cup_u).all() and np.isfinite(cup_v).all()):
            raise ValueError(f"grasp on mask {item.mask_id} has a position, angle or score that is not finite")
        out.append(
            GraspCandidate(
                mask_id=int(item.mask_id),
                u=float(item.u),
                v=float(item.v),
                angle=float(item.angle),
                sealed_cups=int(item.sealed_cups),
                total_cups=int(item.total_cups),
                score=float(item.score),
                cup_centers=np.stack([cup_u, cup_v], axis=1).reshape(-1, 2),
                cup_sealed=sealed,
            )
        )
    return out


def stamp_of(header: Any) -> tuple[int, int]:
    """(sec, nanosec) of a header (rclpy or rosbags)."""
    return int(header.stamp.sec), int(header.stamp.nanosec)
