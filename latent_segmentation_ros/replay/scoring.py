"""One scorer for every evaluation: replayed predictions and bags recorded from the live nodes.

Predictions arrive as ``ConfidenceMaskArray`` (and optionally ``GraspCandidateArray``) messages;
they are decoded with the package's own readers and compared with the ground truth of the
same camera and stamp. ``latent-seg replay`` builds the messages it writes and scores them
through this same path, so a replay report and a ``latent-seg score`` report of the same
predictions agree exactly.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np

from latent_maskrcnn.evaluation.gripper_defaults import SIMULATED_GRIPPER_CIRCLES, SIMULATED_GRIPPER_RADIUS
from latent_segmentation_ros.core.heap import HeapTrimmer
from latent_segmentation_ros.core.results import CameraResult, GraspCandidate
from latent_segmentation_ros.replay.report import FrameRecord, _number

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoringConfig:
    """The simulated gripper of the double-pick metric (paper Section V-D): circle radius in
    pixels, circles per image, seed; the defaults are `latent_maskrcnn.evaluation.gripper_defaults`."""

    gripper_radius: int = SIMULATED_GRIPPER_RADIUS
    circles: int = SIMULATED_GRIPPER_CIRCLES
    seed: int = 0

    def gripper(self) -> Any:
        from latent_maskrcnn.evaluation.metrics import GripperSimulation

        return GripperSimulation(radius=self.gripper_radius, circles=self.circles, seed=self.seed)

    def __post_init__(self) -> None:
        self.gripper()  # refuses a bad radius or circle count with the reason


def image_id_of(stamp_ns: int) -> int:
    """A per-image id from the stamp, so an image gets the same simulated gripper circles in
    every evaluation of it (replay, score of its output bag, each p of a sweep)."""
    return int(stamp_ns) % (2**31 - 1)


def prediction_dict(result: CameraResult) -> dict[str, np.ndarray]:
    """A :class:`CameraResult` as the prediction dict of ``latent_maskrcnn.evaluation.metrics``."""
    import torch

    return {
        "boxes": torch.as_tensor(np.asarray(result.boxes, dtype=np.float32)),
        "labels": torch.as_tensor(np.asarray(result.labels, dtype=np.int64)),
        "scores": torch.as_tensor(np.asarray(result.scores, dtype=np.float32)),
        "masks": torch.as_tensor(np.asarray(result.masks, dtype=bool)),
    }


def truth_dict(masks: np.ndarray) -> dict[str, np.ndarray]:
    """Ground-truth masks [G, H, W] as the ground-truth dict (one class: item = 1)."""
    from latent_segmentation_ros.core.results import tight_boxes

    import torch

    masks = np.asarray(masks, dtype=bool)
    return {
        "boxes": torch.as_tensor(tight_boxes(masks)),
        "labels": torch.ones(masks.shape[0], dtype=torch.int64),
        "masks": torch.as_tensor(masks),
    }


def grasp_against_truth(
    grasp: GraspCandidate, cup_radius: float, truth_masks: np.ndarray
) -> tuple[int, int, bool]:
    """(cups sealed on one real item, real items touched, double pick) for a chosen grasp.

    Only the cups the planner switches on (its sealed cups) lift anything. A cup seals on the
    truth when its whole disk lies inside one ground-truth item; the grasp is a double pick
    when its active cups touch two or more ground-truth items.
    """
    overlap, disk_area = _active_cup_overlap(grasp, cup_radius, truth_masks)
    if overlap.size == 0:
        return 0, 0, False
    sealed = int(np.sum(np.any(overlap == disk_area[:, None], axis=1) & (disk_area > 0)))
    touched = int(np.sum(np.any(overlap > 0, axis=0)))
    return sealed, touched, touched >= 2


def grasp_items_touched(grasp: GraspCandidate, cup_radius: float, truth_masks: np.ndarray) -> np.ndarray:
    """Indices of the ground-truth items that the grasp's active (sealed) cups touch."""
    overlap, _ = _active_cup_overlap(grasp, cup_radius, truth_masks)
    if overlap.size == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.any(overlap > 0, axis=0))


def _active_cup_overlap(
    grasp: GraspCandidate, cup_radius: float, truth_masks: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pixels each active cup shares with each item ``[C, G]``, and each cup's disk area ``[C]``
    (both empty when no cup is active or there is no item)."""
    truth_masks = np.asarray(truth_masks, dtype=bool)
    active = np.asarray(grasp.cup_centers, dtype=np.float64).reshape(-1, 2)[np.asarray(grasp.cup_sealed, dtype=bool)]
    if active.shape[0] == 0 or truth_masks.shape[0] == 0:
        return np.zeros((0, 0), dtype=np.int64), np.zeros(0, dtype=np.int64)
    height, width = truth_masks.shape[1:]
    overlap = np.zeros((active.shape[0], truth_masks.shape[0]), dtype=np.int64)
    areas = np.zeros(active.shape[0], dtype=np.int64)
    for index, (u, v) in enumerate(active):
        # the pixels of `grasp_planner.cup_disks` (|p - c| <= radius) all lie in this window
        x0, x1 = max(0, int(np.floor(u - cup_radius))), min(width, int(np.ceil(u + cup_radius)) + 1)
        y0, y1 = max(0, int(np.floor(v - cup_radius))), min(height, int(np.ceil(v + cup_radius)) + 1)
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        disk = (xx - u) ** 2 + (yy - v) ** 2 <= cup_radius**2
        areas[index] = int(disk.sum())
        overlap[index] = truth_masks[:, y0:y1, x0:x1][:, disk].sum(axis=1)
    return overlap, areas


class Scorer:
    """Per-image metrics of decoded predictions against ground truth."""

    def __init__(self, config: ScoringConfig | None = None, coco_metrics: bool = True) -> None:
        self.config = config or ScoringConfig()
        self._gripper = self.config.gripper()
        # The p sweep reports no per-image mAP.
        self.coco_metrics = coco_metrics
        # Frames whose ground truth is for another image size (a damaged bag): scored as frames
        # without ground truth, counted and logged, never a stop of the whole run.
        self.truth_size_mismatches = 0

    def score(
        self,
        *,
        frame: int,
        stamp_ns: int,
        result: CameraResult,
        truth_masks: np.ndarray | None,
        grasps: Sequence[GraspCandidate] | None = None,
        cup_radius: float | None = None,
        latency_ms: float | None = None,
    ) -> FrameRecord:
        record = FrameRecord(
            frame=frame,
            camera=result.camera,
            stamp_ns=int(stamp_ns),
            num_predictions=int(result.masks.shape[0]),
            latency_ms=latency_ms,
        )
        chosen = grasps[0] if grasps else None
        if chosen is not None:
            record.grasp_found = True
            record.grasp_sealed_cups = int(chosen.sealed_cups)
            record.grasp_total_cups = int(chosen.total_cups)
        if truth_masks is not None:
            truth_masks = np.asarray(truth_masks, dtype=bool)
            if truth_masks.shape[1:] != tuple(result.image_size):
                self.truth_size_mismatches += 1
                LOGGER.warning(
                    "%s stamp %d: ground truth is %s but the predictions are for a %s image; "
                    "frame scored without ground truth", result.camera, stamp_ns,
                    tuple(truth_masks.shape[1:]), tuple(result.image_size),
                )
                truth_masks = None
        if truth_masks is None:
            # Known without ground truth; everything measured against it stays None (unknown).
            record.predicted_area = int(np.asarray(result.masks, dtype=bool).any(axis=0).sum()) if len(result.masks) else 0
            return record
        from latent_maskrcnn.evaluation import metrics

        prediction, truth = prediction_dict(result), truth_dict(truth_masks)
        record.has_ground_truth = True
        record.num_ground_truth = int(truth_masks.shape[0])
        # COCO AP from the evaluation's own matches (equal to pycocotools' COCOeval, which
        # would cost a COCO object per image); no RLEs kept, so long bags stay small.
        evaluation = metrics.evaluate_image(prediction, truth, image_id_of(stamp_ns), gripper=self._gripper, keep_rles=False)
        record.evaluation = evaluation
        record.mr_at_hp = _number(metrics.mr_at_hp(evaluation))
        record.ar_iog = _number(metrics.average_recall(evaluation, "iog"))
        if self.coco_metrics:
            record.map = _number(metrics.average_precision(evaluation, "iou"))
        picks = evaluation.picks
        record.picks, record.double_picks = int(picks.picks), int(picks.double_picks)
        record.double_pick_rate = _number(metrics.double_pick_rate(picks))
        record.predicted_area, record.ground_truth_area = int(picks.predicted_area), int(picks.ground_truth_area)
        record.pickable_area = _number(metrics.pickable_area(picks))
        if chosen is not None:
            radius = float(cup_radius) if cup_radius is not None else float(self.config.gripper_radius)
            sealed, touched, double = grasp_against_truth(chosen, radius, truth_masks)
            record.grasp_sealed_cups_on_truth = sealed
            record.grasp_items_touched = touched
            record.grasp_double_pick = double
        return record


@dataclass
class PendingPrediction:
    frame: int
    log_time_ns: int
    result: CameraResult
    stamp_ns: int
    grasps: list[GraspCandidate] | None = None
    cup_radius: float | None = None


class PredictionMatcher:
    """Pairs each ConfidenceMaskArray with the GraspCandidateArray of the same camera and stamp.

    Recorded bags hold the grasp array after the mask array (the grasp node runs later);
    a mask array whose grasps have not shown up within ``horizon_s`` of bag time is released
    without grasps, so memory stays bounded.
    """

    def __init__(self, horizon_s: float = 5.0) -> None:
        self.horizon_ns = int(horizon_s * 1e9)
        self._pending: dict[tuple[str, int], PendingPrediction] = {}
        self._early_grasps: dict[tuple[str, int], tuple[int, list[GraspCandidate], float]] = {}
        self._frames = 0

    def add_masks(self, log_time_ns: int, stamp_ns: int, result: CameraResult) -> Iterator[PendingPrediction]:
        key = (result.camera, int(stamp_ns))
        item = PendingPrediction(self._frames, log_time_ns, result, int(stamp_ns))
        self._frames += 1
        early = self._early_grasps.pop(key, None)
        if early is not None:
            _, item.grasps, item.cup_radius = early
            yield item
        else:
            self._pending[key] = item
        yield from self._release(log_time_ns)

    def add_grasps(
        self, log_time_ns: int, camera: str, stamp_ns: int, grasps: list[GraspCandidate], cup_radius: float
    ) -> Iterator[PendingPrediction]:
        key = (camera, int(stamp_ns))
        item = self._pending.pop(key, None)
        if item is None:
            self._early_grasps[key] = (log_time_ns, grasps, cup_radius)
        else:
            item.grasps, item.cup_radius = grasps, cup_radius
            yield item
        yield from self._release(log_time_ns)

    def flush(self) -> Iterator[PendingPrediction]:
        items = sorted(self._pending.values(), key=lambda p: p.frame)
        self._pending.clear()
        self._early_grasps.clear()
        yield from items

    def _release(self, now_ns: int) -> Iterator[PendingPrediction]:
        stale = [k for k, p in self._pending.items() if now_ns - p.log_time_ns > self.horizon_ns]
        for key in sorted(stale, key=lambda k: self._pending[k].frame):
            yield self._pending.pop(key)
        for key in [k for k, g in self._early_grasps.items() if now_ns - g[0] > self.horizon_ns]:
            del self._early_grasps[key]


def find_prediction_topics(reader: Any) -> tuple[list[str], list[str]]:
    """(ConfidenceMaskArray topics, GraspCandidateArray topics) of a bag; error if no masks."""
    from latent_segmentation_ros.core.messages import CONFIDENCE_MASK_ARRAY, GRASP_CANDIDATE_ARRAY
    from latent_segmentation_ros.replay.bag_io import BagError

    masks = [t.name for t in reader.topics.values() if t.msgtype == CONFIDENCE_MASK_ARRAY]
    grasps = [t.name for t in reader.topics.values() if t.msgtype == GRASP_CANDIDATE_ARRAY]
    if not masks:
        raise BagError(
            f"bag {reader.path} has no {CONFIDENCE_MASK_ARRAY} topic; topics in the bag: {reader.topic_list()}"
        )
    return masks, grasps


def find_truth_topics(reader: Any) -> dict[str, str]:
    """camera -> ``/<camera>/ground_truth`` topic of a bag; error if there is none."""
    from latent_segmentation_ros.replay.bag_io import BagError
    from latent_segmentation_ros.replay.synthetic_bag import camera_of_topic

    found = {
        camera_of_topic(t.name): t.name
        for t in reader.topics.values()
        if t.name.endswith("/ground_truth") and t.msgtype == "sensor_msgs/msg/Image" and t.name.count("/") >= 2
    }
    if not found:
        raise BagError(
            f"bag {reader.path} has no ground truth (sensor_msgs/msg/Image on /<camera>/ground_truth); "
            f"topics in the bag: {reader.topic_list()}"
        )
    return found


def score_bag(
    predictions: str | Any,
    ground_truth: str | Any,
    out_dir: str | Any,
    config: ScoringConfig | None = None,
    worst_frames: int = 4,
    progress: bool = True,
    max_image_pixels: int | None = None,
) -> dict[str, Any]:
    """Score every ConfidenceMaskArray of ``predictions`` against ``ground_truth``; write the report.

    A damaged predictions bag stops the scoring with the report of what was scored before; a
    message that does not decode is counted (``undecodable_messages``) and skipped, and so is a
    mask array declaring more than ``max_image_pixels`` pixels (``too_large_messages``; None:
    the segmentation node's default), before its masks are read. A mask array whose image size
    differs from its ground truth's is scored without ground truth (``truth_size_mismatches``).
    """
    from pathlib import Path

    from latent_segmentation_ros.core.messages import (
        CONFIDENCE_MASK_ARRAY,
        confidence_mask_array_to_result,
        get_typestore,
        grasp_candidate_array_to_list,
    )
    from latent_segmentation_ros.core.image_conversion import ImageTooLarge
    from latent_segmentation_ros.core.parameters import SEGMENTATION_PARAMETERS
    from latent_segmentation_ros.replay.bag_io import BagReader, BagReadError, deserialize
    from latent_segmentation_ros.replay.ground_truth import GroundTruthStream
    from latent_segmentation_ros.replay.report import ReportWriter

    if max_image_pixels is None:
        max_image_pixels = int(SEGMENTATION_PARAMETERS["max_image_pixels"].default)

    heap = HeapTrimmer()  # flat resident memory over long bags (see heap.py)
    typestore = get_typestore()
    scorer = Scorer(config)
    matcher = PredictionMatcher()
    per_camera: dict[str, int] = {}
    undecodable = 0
    too_large = 0
    stopped = None
    with BagReader(predictions) as reader, BagReader(ground_truth) as truth_reader:
        mask_topics, grasp_topics = find_prediction_topics(reader)
        truth_topics = find_truth_topics(truth_reader)
        truth_reader.close()
        report = ReportWriter(Path(out_dir), worst_frames)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=sum(reader.topics[t].message_count for t in mask_topics), unit="array", desc="score", disable=None)
        with GroundTruthStream(ground_truth, truth_topics, typestore, max_image_pixels=max_image_pixels) as truth:

            def emit(item: PendingPrediction) -> None:
                index = per_camera.get(item.result.camera, 0)
                per_camera[item.result.camera] = index + 1
                record = scorer.score(
                    frame=index,
                    stamp_ns=item.stamp_ns,
                    result=item.result,
                    truth_masks=truth.lookup(item.result.camera, item.stamp_ns),
                    grasps=item.grasps,
                    cup_radius=item.cup_radius,
                    latency_ms=item.result.inference_time_ms,
                )
                report.add(record)
                if bar is not None:
                    bar.update(1)
                heap.tick()

            try:
                for raw in reader.messages(mask_topics + grasp_topics):
                    try:
                        message = deserialize(typestore, raw)
                        stamp = int(message.header.stamp.sec) * 1_000_000_000 + int(message.header.stamp.nanosec)
                        if raw.msgtype == CONFIDENCE_MASK_ARRAY:
                            result = confidence_mask_array_to_result(message, max_image_pixels)
                            ready = matcher.add_masks(raw.log_time_ns, stamp, result)
                        else:
                            radius = float(message.cup_radius)
                            if not (math.isfinite(radius) and radius > 0):
                                raise ValueError(f"cup_radius {radius} is not a positive number of pixels")
                            ready = matcher.add_grasps(
                                raw.log_time_ns, str(message.camera), stamp, grasp_candidate_array_to_list(message), radius,
                            )
                        ready = list(ready)
                    except ImageTooLarge as error:
                        too_large += 1
                        LOGGER.warning("%s message on %s skipped: %s", raw.msgtype, raw.topic, error)
                        continue
                    except (ValueError, KeyError, IndexError) as error:
                        undecodable += 1
                        LOGGER.warning("undecodable %s message on %s skipped: %s", raw.msgtype, raw.topic, error)
                        continue
                    for item in ready:
                        emit(item)
            except BagReadError as error:
                stopped = {
                    "frame": sum(per_camera.values()),
                    "messages_read": error.messages_read,
                    "last_log_time_ns": error.last_log_time_ns,
                    "error": str(error),
                }
            for item in matcher.flush():
                emit(item)
            if bar is not None:
                bar.close()
        header = {
            "title": "Score report",
            "predictions": str(predictions),
            "ground_truth": str(ground_truth),
            "counts": {
                "arrays_per_camera": per_camera,
                "undecodable_messages": undecodable,
                "too_large_messages": too_large,
                "truth_size_mismatches": scorer.truth_size_mismatches,
                "cameras_with_ground_truth": sorted(truth_topics),
            },
            "stopped": stopped,
        }
        if truth.error:
            header["ground_truth_error"] = truth.error
        return report.finish(header)
