"""Synthetic two-camera rosbag2 recordings of tote scenes, with ground truth.

The replay evaluation needs bags that look like a recording of the picking cell: two overhead
cameras at a realistic rate whose stamps differ by a few milliseconds, now and then a dropped
frame, messages logged a little after they were stamped, and, beside each image, the ground
truth of that camera as an instance-label image (mono16, 0 = background, 1..G = items) on
``<camera>/ground_truth`` with the image's header. Frames are generated and written one at a
time, so a bag of any length is made in constant memory.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from latent_segmentation_ros.replay.bag_io import BagWriter, check_storage, make_qos

CAMERAS = ("overhead_left", "overhead_right")
IMAGE_TYPE = "sensor_msgs/msg/Image"
# An arbitrary fixed epoch (2024-01-01T00:00:00Z) keeps bags reproducible byte for byte.
DEFAULT_START_NS = 1_704_067_200 * 1_000_000_000


def image_topic(camera: str) -> str:
    return f"/{camera}/image_raw"


def ground_truth_topic(camera: str) -> str:
    return f"/{camera}/ground_truth"


def optical_frame(camera: str) -> str:
    return f"{camera}_optical_frame"


def camera_of_topic(topic: str) -> str:
    """Camera name of an image topic: its parent namespace (``/a/overhead_left/image_raw``)."""
    parts = [part for part in topic.split("/") if part]
    if len(parts) < 2:
        raise ValueError(f"cannot tell the camera of topic {topic!r}: expected /<camera>/<image topic>")
    return parts[-2]


def ground_truth_topic_for(image_topic_name: str) -> str:
    """The ground-truth topic beside an image topic (same namespace)."""
    return image_topic_name.rsplit("/", 1)[0] + "/ground_truth"


@dataclass(frozen=True)
class BagTiming:
    """How the cameras fire: rate, jitter, inter-camera offset, drops, transport delay."""

    rate_hz: float = 8.0
    frame_jitter_ms: float = 1.0
    camera_offset_ms: float = 4.0
    drop_probability: float = 0.03
    transport_delay_ms: tuple[float, float] = (2.0, 8.0)
    start_ns: int = DEFAULT_START_NS

    def __post_init__(self) -> None:
        if not 0.5 <= self.rate_hz <= 120.0:
            raise ValueError(f"camera rate must be within 0.5..120 Hz, got {self.rate_hz}")
        if not 0.0 <= self.drop_probability < 1.0:
            raise ValueError(f"drop probability must be in [0, 1), got {self.drop_probability}")
        if self.frame_jitter_ms < 0 or self.camera_offset_ms < 0:
            raise ValueError("jitter and camera offset must be >= 0 ms")
        low, high = self.transport_delay_ms
        if not 0.0 <= low <= high:
            raise ValueError(f"transport delay range must satisfy 0 <= low <= high, got {self.transport_delay_ms}")
        # Frames must not interleave: jitter (4 sigma), offset and delay stay within half a period.
        period_ms = 1000.0 / self.rate_hz
        if 4 * self.frame_jitter_ms + self.camera_offset_ms + high >= period_ms / 2:
            raise ValueError(
                f"jitter, camera offset and transport delay must stay below half a frame period ({period_ms / 2:.1f} ms)"
            )


@dataclass(frozen=True)
class CameraShot:
    """When one camera's frame was stamped and logged, or that it was dropped."""

    camera: str
    stamp_ns: int
    log_time_ns: int
    dropped: bool


def frame_schedule(
    frames: int, timing: BagTiming, rng: np.random.Generator, cameras: Sequence[str] = CAMERAS
) -> Iterator[list[CameraShot]]:
    """Per frame, one shot per camera (stamp, log time, dropped), lazily."""
    period_ns = 1e9 / timing.rate_hz
    for frame in range(frames):
        base = timing.start_ns + frame * period_ns + rng.normal(0.0, timing.frame_jitter_ms) * 1e6
        shots = []
        for index, camera in enumerate(cameras):
            # The first camera triggers; the others fire a few milliseconds off it.
            offset = 0.0 if index == 0 else rng.uniform(-timing.camera_offset_ms, timing.camera_offset_ms)
            stamp = int(round(base + offset * 1e6))
            delay = rng.uniform(*timing.transport_delay_ms)
            dropped = bool(rng.random() < timing.drop_probability)
            shots.append(CameraShot(camera, stamp, stamp + int(round(delay * 1e6)), dropped))
        yield shots


def masks_to_label_image(masks: np.ndarray) -> np.ndarray:
    """bool [G, H, W] -> uint16 [H, W] with 0 = background and i + 1 for mask i.

    Ground-truth masks of visible item parts do not overlap; where they would, the later mask
    (the one on top) wins.
    """
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3:
        raise ValueError(f"ground-truth masks must be [G, H, W], got shape {tuple(masks.shape)}")
    if masks.shape[0] > np.iinfo(np.uint16).max:
        raise ValueError(f"{masks.shape[0]} instances do not fit a mono16 label image")
    labels = np.zeros(masks.shape[1:], dtype=np.uint16)
    for index in range(masks.shape[0]):
        labels[masks[index]] = index + 1
    return labels


def label_image_to_masks(labels: np.ndarray) -> np.ndarray:
    """uint16 [H, W] instance labels -> bool [G, H, W], one mask per label present, in label order."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"a label image must be [H, W], got shape {tuple(labels.shape)}")
    ids = np.unique(labels)
    ids = ids[ids != 0]
    return labels[None, :, :] == ids[:, None, None]


SceneRenderer = Callable[[np.random.Generator, int, int, int], list[tuple[np.ndarray, np.ndarray]]]


def render_synthetic_views(rng: np.random.Generator, height: int, width: int, views: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """One tote scene seen by ``views`` cameras: per view (RGB uint8 [H, W, 3], masks bool [G, H, W])."""
    from latent_maskrcnn.data.synthetic import generate_scene

    scene = generate_scene(rng, height, width, views=views)
    return [_view_image_and_masks(view) for view in _scene_views(scene)]


def _scene_views(scene: Any) -> Sequence[Any]:
    views = getattr(scene, "views", scene)
    return list(views)


def _view_image_and_masks(view: Any) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(view, dict):
        image, masks = view["image"], view["masks"]
    elif isinstance(view, (tuple, list)):
        image, masks = view[0], view[1]
    else:
        image, masks = view.image, view.masks
    return np.asarray(image, dtype=np.uint8), np.asarray(masks, dtype=bool)


@dataclass
class SyntheticBagSummary:
    path: Path
    frames: int
    storage: str
    image_counts: dict[str, int]
    dropped: dict[str, int]
    first_stamp_ns: int
    last_stamp_ns: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "frames": self.frames,
            "storage": self.storage,
            "images": dict(self.image_counts),
            "dropped": dict(self.dropped),
            "duration_s": (self.last_stamp_ns - self.first_stamp_ns) / 1e9,
        }


def write_synthetic_bag(
    path: str | Path,
    frames: int,
    seed: int,
    *,
    storage: str = "mcap",
    height: int = 240,
    width: int = 320,
    timing: BagTiming | None = None,
    cameras: Sequence[str] = CAMERAS,
    renderer: SceneRenderer | None = None,
    progress: Callable[[int], None] | None = None,
    ground_truth: bool = True,
) -> SyntheticBagSummary:
    """Write a bag of ``frames`` synthetic scenes; returns what was written (and dropped)."""
    from latent_segmentation_ros.core.messages import get_typestore, numpy_to_image_message, rosbags_factory

    if frames < 1:
        raise ValueError(f"a bag needs at least 1 frame, got {frames}")
    if height < 16 or width < 16:
        raise ValueError(f"image size must be at least 16x16, got {height}x{width}")
    check_storage(storage)
    timing = timing or BagTiming()
    renderer = renderer or render_synthetic_views
    typestore = get_typestore()
    factory = rosbags_factory(typestore)
    timing_rng = np.random.default_rng([seed, 0])
    counts = {camera: 0 for camera in cameras}
    dropped = {camera: 0 for camera in cameras}
    first = last = None
    with BagWriter(path, typestore, storage=storage) as writer:
        writer.set_custom_data("generator", "latent_segmentation_ros synthetic tote scenes")
        writer.set_custom_data("seed", str(seed))
        writer.set_custom_data("rate_hz", str(timing.rate_hz))
        for camera in cameras:
            writer.add_topic(image_topic(camera), IMAGE_TYPE, make_qos(depth=5))
            if ground_truth:
                writer.add_topic(ground_truth_topic(camera), IMAGE_TYPE, make_qos(depth=5))
        for frame, shots in enumerate(frame_schedule(frames, timing, timing_rng, cameras)):
            views = renderer(np.random.default_rng([seed, 1, frame]), height, width, len(cameras))
            outgoing = []
            for shot, (rgb, masks) in zip(shots, views):
                if shot.dropped:
                    dropped[shot.camera] += 1
                    continue
                header = factory.make_header(shot.stamp_ns // 10**9, shot.stamp_ns % 10**9, optical_frame(shot.camera))
                image = numpy_to_image_message(rgb, "rgb8", header, factory)
                outgoing.append((shot.log_time_ns, image_topic(shot.camera), image))
                if ground_truth:
                    truth = numpy_to_image_message(masks_to_label_image(masks), "mono16", header, factory)
                    # The ground truth is logged just after its image.
                    outgoing.append((shot.log_time_ns + 1000, ground_truth_topic(shot.camera), truth))
                counts[shot.camera] += 1
                first = shot.stamp_ns if first is None else min(first, shot.stamp_ns)
                last = shot.stamp_ns if last is None else max(last, shot.stamp_ns)
            for log_time, topic, message in sorted(outgoing, key=lambda item: item[0]):
                writer.write(topic, log_time, message)
            if progress is not None:
                progress(frame)
    return SyntheticBagSummary(Path(path), frames, storage, counts, dropped, first or 0, last or 0)
