"""Offline replay of a two-camera bag through the node's own pipeline.

Frames are read from the bag one at a time in log-time order, paired with the node's
approximate-time policy (:mod:`camera_sync`), converted with the node's image conversion, run
through :class:`PerceptionPipeline` and :class:`SuctionGraspPlanner`, and written to
``DIR/output`` as ``ConfidenceMaskArray`` (``/<camera>/confidence_masks``) and
``GraspCandidateArray`` (``/grasp_candidates``) messages stamped like their source images.
The written messages are decoded again and scored by :class:`Scorer` (the same path as
``latent-seg score`` on any recorded bag). Nothing grows with the length of the bag.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from latent_segmentation_ros.core.camera_sync import ApproximateTimePairer, SyncPolicy
from latent_segmentation_ros.core.heap import HeapTrimmer
from latent_segmentation_ros.core.results import CameraResult, GraspCandidate
from latent_segmentation_ros.replay.bag_io import BagError, BagMessageError, BagReader, BagReadError, BagWriter, deserialize
from latent_segmentation_ros.replay.ground_truth import GroundTruthStream, ground_truth_topics, stamp_ns_of
from latent_segmentation_ros.replay.report import ReportWriter
from latent_segmentation_ros.replay.scoring import Scorer, ScoringConfig
from latent_segmentation_ros.replay.synthetic_bag import CAMERAS, camera_of_topic, image_topic

LOGGER = logging.getLogger(__name__)

IMAGE_TYPE = "sensor_msgs/msg/Image"
GRASP_TOPIC = "/grasp_candidates"
OUTPUT_BAG = "output"


def confidence_topic(camera: str) -> str:
    return f"/{camera}/confidence_masks"


def node_max_image_pixels() -> int:
    """The segmentation node's default max_image_pixels: replay refuses what the node refuses."""
    from latent_segmentation_ros.core.parameters import SEGMENTATION_PARAMETERS

    return int(SEGMENTATION_PARAMETERS["max_image_pixels"].default)


def node_sync_policy() -> SyncPolicy:
    """The pairing the segmentation node uses by default (its sync_slop and queue_size)."""
    from latent_segmentation_ros.core.parameters import SEGMENTATION_PARAMETERS

    return SyncPolicy(
        slop=SEGMENTATION_PARAMETERS["sync_slop"].default, queue_size=SEGMENTATION_PARAMETERS["queue_size"].default
    )


@dataclass
class Frame:
    """One decoded camera image waiting for its partner."""

    camera: str
    header: Any
    rgb: np.ndarray
    log_time_ns: int

    @property
    def stamp_ns(self) -> int:
        return stamp_ns_of(self.header)


@dataclass
class PairOutcome:
    """What processing one synchronised pair produced (per camera, in camera order)."""

    results: list[CameraResult]
    grasps: list[list[GraspCandidate]]
    latency_ms: float


# (left rgb, right rgb) -> per-camera results and grasps; the replay of the pipeline.
PairProcessor = Callable[[Sequence[np.ndarray]], PairOutcome]


@dataclass
class ReplayOptions:
    bag: Path
    out_dir: Path
    image_topics: tuple[str, ...] = tuple(image_topic(camera) for camera in CAMERAS)
    sync: SyncPolicy = field(default_factory=node_sync_policy)
    output_storage: str = "mcap"
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    worst_frames: int = 4
    progress: bool = True
    max_pairs: int | None = None
    max_image_pixels: int = field(default_factory=node_max_image_pixels)

    def __post_init__(self) -> None:
        self.bag = Path(self.bag)
        self.out_dir = Path(self.out_dir)
        if isinstance(self.max_image_pixels, bool) or not isinstance(self.max_image_pixels, int) \
                or self.max_image_pixels < 1:
            raise ValueError(f"max_image_pixels must be a positive integer, got {self.max_image_pixels!r}")
        if len(self.image_topics) != 2:
            raise ValueError(f"replay pairs exactly two camera topics, got {list(self.image_topics)}")
        cameras = [camera_of_topic(topic) for topic in self.image_topics]
        if len(set(cameras)) != 2:
            raise ValueError(f"the two camera topics must lie in different namespaces, got {list(self.image_topics)}")

    @property
    def cameras(self) -> list[str]:
        return [camera_of_topic(topic) for topic in self.image_topics]


@dataclass
class ReplaySummary:
    report: dict[str, Any]
    output_bag: Path
    stopped: dict[str, Any] | None

    @property
    def exit_code(self) -> int:
        return 3 if self.stopped else 0


class _Progress:
    def __init__(self, enabled: bool, total: int) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="pair", desc="replay", disable=None)

    def update(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class PairStream:
    """The synchronised camera pairs of a bag, decoded, one at a time.

    A frame in an unsupported encoding, malformed, or declaring more than ``max_image_pixels``
    pixels is counted in ``skipped`` and its pair is dropped, as the node drops it; a message
    whose bytes do not decode is counted in ``skipped`` too (``<camera>:undecodable``); a damaged
    bag ends the stream and ``stopped`` says where (for the caller to report).
    """

    def __init__(
        self,
        reader: BagReader,
        typestore: Any,
        image_topics: Sequence[str],
        sync: SyncPolicy,
        max_image_pixels: int | None = None,
    ) -> None:
        self.reader = reader
        self.typestore = typestore
        self.max_image_pixels = node_max_image_pixels() if max_image_pixels is None else int(max_image_pixels)
        self.image_topics = list(image_topics)
        self.cameras = [camera_of_topic(topic) for topic in self.image_topics]
        self.pairer: ApproximateTimePairer[tuple[Any, int]] = ApproximateTimePairer(sync, num_streams=len(self.image_topics))
        self.skipped: Counter[str] = Counter()
        self.dropped_pairs = 0
        self.stopped: dict[str, Any] | None = None
        self.pairs = 0
        reader.require_topics(self.image_topics, msgtype=IMAGE_TYPE)

    @property
    def expected_pairs(self) -> int:
        return min(self.reader.topics[topic].message_count for topic in self.image_topics)

    def __iter__(self):
        from latent_segmentation_ros.core.image_conversion import ImageTooLarge, message_to_rgb

        topic_index = {topic: index for index, topic in enumerate(self.image_topics)}
        try:
            for raw in self.reader.messages(self.image_topics):
                index = topic_index[raw.topic]
                try:
                    message = deserialize(self.typestore, raw)
                except BagMessageError as error:
                    self.skipped[f"{self.cameras[index]}:undecodable"] += 1
                    LOGGER.warning("frame skipped: %s", error)
                    continue
                # Like the node: pair the messages first, convert the pair afterwards.
                pair = self.pairer.add(index, stamp_ns_of(message.header), (message, raw.log_time_ns))
                if pair is None:
                    continue
                frames = []
                for camera, (paired, log_time) in zip(self.cameras, pair):
                    try:
                        rgb = message_to_rgb(paired, max_pixels=self.max_image_pixels)
                        frames.append(Frame(camera, paired.header, rgb, log_time))
                    except ValueError as error:
                        if isinstance(error, ImageTooLarge):
                            reason = "too_large"
                        elif "unsupported image encoding" in str(error):
                            reason = "unsupported_encoding"
                        else:
                            reason = "malformed_image"
                        self.skipped[f"{camera}:{reason}:{paired.encoding}"] += 1
                        LOGGER.warning("pair dropped, %s frame unusable: %s", camera, error)
                if len(frames) != len(pair):
                    self.dropped_pairs += 1
                    continue
                # Counted before handing it out: a consumer that stops after it (--max-pairs) has
                # used it.
                self.pairs += 1
                yield tuple(frames), raw.log_time_ns
        except BagReadError as error:
            self.stopped = {
                "frame": self.pairs,
                "messages_read": error.messages_read,
                "last_log_time_ns": error.last_log_time_ns,
                "error": str(error),
            }

    def counts(self) -> dict[str, Any]:
        return {
            "pairs": self.pairs,
            "skipped_frames": dict(self.skipped),
            "dropped_pairs": self.dropped_pairs,
            "pairing": self.pairer.summary(),
        }


def replay_bag(
    options: ReplayOptions,
    process_pair: PairProcessor,
    cup_radius: float,
    header_info: dict[str, Any] | None = None,
) -> ReplaySummary:
    """Replay ``options.bag``; writes DIR/output, DIR/report.{json,md}, overlays. A bag damaged
    part-way does not raise: the report keeps what was evaluated and says where it stopped."""
    from latent_segmentation_ros.core.messages import (
        CONFIDENCE_MASK_ARRAY,
        GRASP_CANDIDATE_ARRAY,
        build_confidence_mask_array,
        build_grasp_candidate_array,
        confidence_mask_array_to_result,
        get_typestore,
        grasp_candidate_array_to_list,
        rosbags_factory,
    )

    output_bag = options.out_dir / OUTPUT_BAG
    if output_bag.exists():
        raise BagError(f"{output_bag} exists already; choose another --out or remove it")
    heap = HeapTrimmer()  # flat resident memory over long bags (see heap.py)
    typestore = get_typestore()
    factory = rosbags_factory(typestore)
    scorer = Scorer(options.scoring)
    failed_pairs = 0
    with BagReader(options.bag) as reader:
        stream = PairStream(reader, typestore, options.image_topics, options.sync, options.max_image_pixels)
        truth_topics = ground_truth_topics(reader, dict(zip(stream.cameras, options.image_topics)))
        options.out_dir.mkdir(parents=True, exist_ok=True)
        total = stream.expected_pairs if options.max_pairs is None else min(stream.expected_pairs, options.max_pairs)
        report = ReportWriter(options.out_dir, options.worst_frames, expected_frames=total)
        progress = _Progress(options.progress, total)
        try:
            with BagWriter(output_bag, typestore, storage=options.output_storage) as writer, GroundTruthStream(
                options.bag, truth_topics, typestore, max_image_pixels=options.max_image_pixels
            ) as truth:
                writer.set_custom_data("source_bag", str(options.bag))
                for camera in stream.cameras:
                    writer.add_topic(confidence_topic(camera), CONFIDENCE_MASK_ARRAY)
                writer.add_topic(GRASP_TOPIC, GRASP_CANDIDATE_ARRAY)
                started = time.perf_counter()
                for frame_index, (pair, log_time_ns) in enumerate(stream):
                    try:
                        outcome = process_pair([frame.rgb for frame in pair])
                    except ValueError as error:
                        failed_pairs += 1
                        LOGGER.warning("pair at %d ns not processed: %s", pair[0].stamp_ns, error)
                        continue
                    for frame, result, grasps in zip(pair, outcome.results, outcome.grasps):
                        masks_message = build_confidence_mask_array(result, frame.header, factory)
                        grasp_message = build_grasp_candidate_array(grasps, frame.header, frame.camera, cup_radius, factory)
                        masks_data = writer.write(confidence_topic(frame.camera), log_time_ns, masks_message)
                        grasp_data = writer.write(GRASP_TOPIC, log_time_ns, grasp_message)
                        # Score the bytes written, decoded as any consumer of the bag decodes them.
                        decoded = confidence_mask_array_to_result(typestore.deserialize_cdr(masks_data, CONFIDENCE_MASK_ARRAY))
                        decoded_grasps = grasp_candidate_array_to_list(typestore.deserialize_cdr(grasp_data, GRASP_CANDIDATE_ARRAY))
                        truth_masks = truth.lookup(frame.camera, frame.stamp_ns)
                        record = scorer.score(
                            frame=frame_index,
                            stamp_ns=frame.stamp_ns,
                            result=decoded,
                            truth_masks=truth_masks,
                            grasps=decoded_grasps,
                            cup_radius=cup_radius,
                            latency_ms=decoded.inference_time_ms,
                        )
                        picture = None
                        if report.wants_picture(record):
                            picture = _picture(frame.rgb, decoded, truth_masks, decoded_grasps, cup_radius)
                        report.add(record, picture)
                    progress.update()
                    heap.tick()
                    if options.max_pairs is not None and frame_index + 1 >= options.max_pairs:
                        break
                report.set_throughput(stream.pairs - failed_pairs, time.perf_counter() - started)
                truth_error, truth_unreadable = truth.error, truth.unreadable
        finally:
            progress.close()
        counts = stream.counts()
        counts.update(
            failed_pairs=failed_pairs,
            cameras_with_ground_truth=sorted(truth_topics),
            unreadable_ground_truth=truth_unreadable,
            truth_size_mismatches=scorer.truth_size_mismatches,
        )
        header = {
            "title": "Replay report",
            "bag": str(options.bag),
            "output_bag": str(output_bag),
            **(header_info or {}),
            "sync": {"slop_s": options.sync.slop, "queue_size": options.sync.queue_size},
            "max_image_pixels": options.max_image_pixels,
            "counts": counts,
            "stopped": stream.stopped,
        }
        if truth_error and not stream.stopped:
            header["ground_truth_error"] = truth_error
        final = report.finish(header)
    return ReplaySummary(final, output_bag, stream.stopped)


def _picture(
    rgb: np.ndarray, result: CameraResult, truth_masks: np.ndarray | None, grasps: list[GraspCandidate],
    cup_radius: float,
) -> dict[str, Any]:
    chosen = grasps[0] if grasps else None
    return {
        "rgb": rgb,
        "pred_masks": result.masks,
        "truth_masks": truth_masks,
        "cups": [] if chosen is None else np.asarray(chosen.cup_centers).tolist(),
        "cup_sealed": [] if chosen is None else np.asarray(chosen.cup_sealed).tolist(),
        "cup_radius": cup_radius,
    }


@dataclass
class PairSetup:
    """The node's pipeline and grasp planner, ready to process camera pairs."""

    pipeline: Any
    planner: Any
    cameras: list[str]
    cup_radius: float
    header_info: dict[str, Any]

    def outcome(self, results: list[CameraResult]) -> PairOutcome:
        grasps = [self.planner.plan_result(result) for result in results]
        latency = max((result.inference_time_ms for result in results), default=0.0)
        return PairOutcome(results, grasps, latency)

    def process_pair(self, images: Sequence[np.ndarray]) -> PairOutcome:
        return self.outcome(self.pipeline.process(images, self.cameras))


def build_planner(overrides: dict[str, Any] | None = None) -> Any:
    """The grasp node's planner from its parameters (defaults unless overridden)."""
    from latent_segmentation_ros.core.grasping import planner_from_parameters
    from latent_segmentation_ros.core.parameters import GRASP_PARAMETERS, ParameterSet

    return planner_from_parameters(ParameterSet(GRASP_PARAMETERS, overrides or {}).values)


def build_pair_processor(
    checkpoint: str | Path | None = None,
    *,
    mode: str | None = None,
    p: float | None = None,
    mask_threshold: float | None = None,
    samples: int | None = None,
    score_threshold: float | None = None,
    min_mask_area: int | None = None,
    device: str = "cpu",
    flip_samples: bool | None = None,
    cameras: Sequence[str] = CAMERAS,
    grasp_overrides: dict[str, Any] | None = None,
) -> PairSetup:
    """Load the checkpoint (default: the bundled demo model) into the node's pipeline.

    Unset settings take the node's parameter defaults. Raises ValueError (CheckpointLoadError)
    naming the checkpoint and the cause, e.g. when the demo model has not been trained yet.
    """
    from latent_segmentation_ros.core.pipeline import PerceptionPipeline, PipelineSettings

    changes = {
        name: value
        for name, value in (
            ("mode", mode), ("p", p), ("mask_threshold", mask_threshold), ("num_samples", samples),
            ("flip_samples", flip_samples),
            ("score_threshold", score_threshold), ("min_mask_area", min_mask_area),
        )
        if value is not None
    }
    settings = PipelineSettings(**changes)
    pipeline = PerceptionPipeline.from_checkpoint(checkpoint, device=device, settings=settings)
    planner = build_planner(grasp_overrides)
    header = {
        "checkpoint": str(checkpoint) if checkpoint else "bundled demo model",
        "model_id": pipeline.model_id,
        "mode": settings.mode,
        "p": settings.p,
        "mask_threshold": settings.mask_threshold,
        "num_samples": settings.samples_drawn,
        "flip_samples": settings.flips,
        "score_threshold": settings.score_threshold,
        "device": pipeline.device,
    }
    return PairSetup(pipeline, planner, list(cameras), float(planner.layout.cup_radius), header)
