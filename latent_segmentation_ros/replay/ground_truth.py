"""Ground truth of a bag looked up by camera and stamp, streamed.

Ground truth lives in the source bag as instance-label images (``sensor_msgs/Image`` mono16 on
``<camera>/ground_truth``, header copied from the camera image). Predictions, whether computed
by replay or recorded from the live nodes, carry the stamp of their source image, so both are
matched by (camera, stamp). The stream reads the ground-truth topics with a reader of its own
and keeps only a short window of them, so memory does not grow with the bag.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from latent_segmentation_ros.core.image_conversion import message_to_numpy
from latent_segmentation_ros.replay.bag_io import (
    BagError,
    BagMessageError,
    BagReader,
    BagReadError,
    RawMessage,
    deserialize,
)
from latent_segmentation_ros.replay.synthetic_bag import label_image_to_masks

LOGGER = logging.getLogger(__name__)
# Items a ground-truth label image may hold: each becomes a full-frame mask when looked up, so a
# corrupt image of thousands of distinct labels would cost thousands of frames of memory.
MAX_GROUND_TRUTH_ITEMS = 1000


def stamp_ns_of(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


class GroundTruthStream:
    """``lookup(camera, stamp_ns)`` -> bool masks [G, H, W], or None if the bag has none for it.

    Lookups are expected in roughly increasing stamp order (as frames are replayed). Ground
    truth is read ahead until a message logged later than ``stamp + horizon`` is seen; entries
    stamped more than ``horizon`` before the latest lookup are forgotten. A label image that does
    not decode, is malformed or declares more than ``max_image_pixels`` pixels (None: the
    segmentation node's default) or more than ``MAX_GROUND_TRUTH_ITEMS`` items is counted in
    ``unreadable`` and skipped.
    """

    def __init__(
        self,
        bag: str | Path,
        topics_by_camera: Mapping[str, str],
        typestore: Any,
        horizon_s: float = 5.0,
        max_image_pixels: int | None = None,
    ) -> None:
        from latent_segmentation_ros.core.parameters import SEGMENTATION_PARAMETERS

        if max_image_pixels is None:
            max_image_pixels = int(SEGMENTATION_PARAMETERS["max_image_pixels"].default)
        self.max_image_pixels = int(max_image_pixels)
        self.topics_by_camera = dict(topics_by_camera)
        self.cameras_by_topic = {topic: camera for camera, topic in self.topics_by_camera.items()}
        self.typestore = typestore
        self.horizon_ns = int(horizon_s * 1e9)
        self._buffer: dict[tuple[str, int], np.ndarray] = {}
        self._latest_log_ns = -(2**63)
        self.error: str | None = None
        self.unreadable = 0
        self._reader: BagReader | None = None
        self._stream: Iterator[RawMessage] | None = None
        if self.topics_by_camera:
            self._reader = BagReader(bag)
            self._stream = self._reader.messages(self.cameras_by_topic)

    def __enter__(self) -> "GroundTruthStream":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._stream = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def has_camera(self, camera: str) -> bool:
        return camera in self.topics_by_camera

    def lookup(self, camera: str, stamp_ns: int) -> np.ndarray | None:
        if camera not in self.topics_by_camera:
            return None
        key = (camera, int(stamp_ns))
        while key not in self._buffer and self._stream is not None and self._latest_log_ns <= stamp_ns + self.horizon_ns:
            self._read_one()
        labels = self._buffer.pop(key, None)
        self._forget_before(stamp_ns - self.horizon_ns)
        return None if labels is None else label_image_to_masks(labels)

    def _read_one(self) -> None:
        assert self._stream is not None
        try:
            raw = next(self._stream)
        except StopIteration:
            self._stream = None
            return
        except BagReadError as error:
            self.error = str(error)
            self._stream = None
            return
        self._latest_log_ns = raw.log_time_ns
        try:
            message = deserialize(self.typestore, raw)
            labels = message_to_numpy(message, self.max_image_pixels)
            if labels.ndim != 2:
                raise ValueError(f"ground truth must be a one-channel label image, got encoding {message.encoding!r}")
            items = int(np.count_nonzero(np.unique(labels)))
            if items > MAX_GROUND_TRUTH_ITEMS:
                raise ValueError(f"ground truth holds {items} items, more than {MAX_GROUND_TRUTH_ITEMS} (corrupt?)")
        except (BagMessageError, ValueError) as error:
            self.unreadable += 1
            LOGGER.warning("unreadable ground truth on %s skipped: %s", raw.topic, error)
            return
        self._buffer[(self.cameras_by_topic[raw.topic], stamp_ns_of(message.header))] = labels

    def _forget_before(self, stamp_ns: int) -> None:
        for key in [key for key in self._buffer if key[1] < stamp_ns]:
            del self._buffer[key]


def ground_truth_topics(reader: BagReader, image_topics: Mapping[str, str]) -> dict[str, str]:
    """camera -> ground-truth topic for the cameras whose ``<ns>/ground_truth`` is in the bag."""
    from latent_segmentation_ros.replay.synthetic_bag import ground_truth_topic_for

    found = {}
    for camera, topic in image_topics.items():
        truth = ground_truth_topic_for(topic)
        if truth in reader.topics:
            if reader.topics[truth].msgtype != "sensor_msgs/msg/Image":
                raise BagError(f"ground-truth topic {truth} holds {reader.topics[truth].msgtype}, expected sensor_msgs/msg/Image")
            found[camera] = truth
    return found
