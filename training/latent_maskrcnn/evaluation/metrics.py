"""The paper's metrics (Table I, Table III, Fig. 5, Fig. 8) per image and over a data set.

One matching routine serves IoU, IoP (intersection over prediction) and IoG (intersection over
ground truth): COCO's greedy matching (per image and class, detections by decreasing score,
at most 100, each taking the still unmatched ground truth with the largest overlap >= the
threshold). Matches are kept per image and pooled per class over the data set before curves
are computed, exactly as COCOeval accumulates, so data-set numbers are not means of
per-image numbers.

- MR@HP: with IoP, for each precision threshold P and IoP threshold t in
  {0.75, 0.8, 0.85, 0.9, 0.95}, the largest recall at which the interpolated precision is
  >= P (0 if never; the paper's formula); mean of the 25 values (and of the classes).
- AR (IoG): recall after all detections, averaged over IoG thresholds 0.5:0.05:0.95 and classes.
- mAP: pycocotools' COCOeval on RLE-encoded masks (`coco_map`), the real library.
- Double-pick rate and pickable area: `double_pick`.
- Score quality: ROC AUC of the scores for IoU(prediction, best ground truth) >= 0.5
  (Table III), and the fraction of predictions with IoP > 0.95 (Fig. 8, right).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from latent_maskrcnn.evaluation.coco_map import encode_masks, mask_average_precision
from latent_maskrcnn.evaluation.double_pick import GripperSimulation, PickCounts, double_pick_rate, pickable_area, simulate_picks

OVERLAP_KINDS = ("iou", "iop", "iog")
HIGH_PRECISION_THRESHOLDS = (0.75, 0.8, 0.85, 0.9, 0.95)
COCO_THRESHOLDS = tuple(float(t) for t in np.linspace(0.5, 0.95, 10))
COCO_RECALL_POINTS = np.linspace(0.0, 1.0, 101)
MAX_DETECTIONS = 100
THRESHOLDS = {"iou": COCO_THRESHOLDS, "iop": HIGH_PRECISION_THRESHOLDS, "iog": COCO_THRESHOLDS}


# --- overlaps -------------------------------------------------------------------------------


def overlap_matrices(predicted_masks: torch.Tensor, ground_truth_masks: torch.Tensor) -> dict[str, torch.Tensor]:
    """IoU, IoP and IoG of every prediction with every ground truth, float64 ``[N, G]`` each,
    from one product of the flattened masks (plus ``intersection``)."""
    _check_masks("predicted masks", predicted_masks)
    _check_masks("ground-truth masks", ground_truth_masks)
    if predicted_masks.shape[1:] != ground_truth_masks.shape[1:]:
        raise ValueError(
            f"predicted masks are {tuple(predicted_masks.shape[1:])} but ground-truth masks are "
            f"{tuple(ground_truth_masks.shape[1:])}"
        )
    predicted = predicted_masks.flatten(1).to(torch.float32)
    truth = ground_truth_masks.flatten(1).to(ground_truth_masks.device, torch.float32)
    intersection = (predicted @ truth.T).to(torch.float64)   # exact: counts < 2**24
    predicted_area = predicted.sum(dim=1, dtype=torch.float64)[:, None]
    truth_area = truth.sum(dim=1, dtype=torch.float64)[None, :]
    union = predicted_area + truth_area - intersection
    return {
        "intersection": intersection,
        "iou": _divide(intersection, union),
        "iop": _divide(intersection, predicted_area.expand_as(intersection)),
        "iog": _divide(intersection, truth_area.expand_as(intersection)),
    }


def iou_matrix(predicted_masks: torch.Tensor, ground_truth_masks: torch.Tensor) -> torch.Tensor:
    """|p ∩ g| / |p ∪ g|, ``[N, G]``."""
    return overlap_matrices(predicted_masks, ground_truth_masks)["iou"]


def iop_matrix(predicted_masks: torch.Tensor, ground_truth_masks: torch.Tensor) -> torch.Tensor:
    """|p ∩ g| / |p| (intersection over prediction), ``[N, G]``."""
    return overlap_matrices(predicted_masks, ground_truth_masks)["iop"]


def iog_matrix(predicted_masks: torch.Tensor, ground_truth_masks: torch.Tensor) -> torch.Tensor:
    """|p ∩ g| / |g| (intersection over ground truth), ``[N, G]``."""
    return overlap_matrices(predicted_masks, ground_truth_masks)["iog"]


def _divide(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    return torch.where(denominator > 0, numerator / denominator.clamp(min=1e-12), torch.zeros_like(numerator))


def _check_masks(name: str, masks) -> None:
    if not isinstance(masks, torch.Tensor) or masks.dtype != torch.bool or masks.dim() != 3:
        described = f"{masks.dtype} {tuple(masks.shape)}" if isinstance(masks, torch.Tensor) else type(masks).__name__
        raise ValueError(f"{name} must be a bool tensor [N, H, W], got {described}")


# --- matching -------------------------------------------------------------------------------


def match_detections(overlap: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """COCO's greedy matching of detections (rows, already in decreasing score order) to ground
    truths (columns), for every threshold at once; bool ``[T, D]``, True for a match.

    Each detection takes, among the ground truths not matched yet, the one with the largest
    overlap >= the threshold (on ties the later one, as COCOeval does)."""
    overlap = np.asarray(overlap, dtype=np.float64)
    num_detections, num_truths = overlap.shape
    thresholds = np.minimum(np.asarray(thresholds, dtype=np.float64), 1 - 1e-10)[:, None]
    matched = np.zeros((thresholds.shape[0], num_detections), dtype=bool)
    if num_truths == 0:
        return matched
    taken = np.zeros((thresholds.shape[0], num_truths), dtype=bool)
    reversed_columns = np.arange(num_truths)[::-1]
    for d in range(num_detections):
        usable = ~taken & (overlap[d][None, :] >= thresholds)
        values = np.where(usable, overlap[d][None, :], -1.0)
        best = values[:, ::-1].argmax(axis=1)             # last of the maxima
        column = reversed_columns[best]
        hit = usable[np.arange(thresholds.shape[0]), column]
        matched[:, d] = hit
        taken[hit, column[hit]] = True
    return matched


# --- one image ------------------------------------------------------------------------------


@dataclass
class ImageEvaluation:
    """Everything the data-set metrics need from one image, small enough to keep for all."""

    image_id: int
    height: int
    width: int
    scores: np.ndarray                         # [D] detections kept, by class then score
    labels: np.ndarray                         # [D]
    matched: dict[str, np.ndarray]             # kind -> bool [T, D]
    truth_labels: np.ndarray                   # [G]
    best_iou: np.ndarray                       # [N] every prediction, input order
    best_iop: np.ndarray                       # [N]
    all_scores: np.ndarray                     # [N]
    picks: PickCounts | None
    predicted_rles: list[dict] = field(repr=False, default_factory=list)
    truth_rles: list[dict] = field(repr=False, default_factory=list)
    predicted_labels: np.ndarray | None = None


def evaluate_image(
    prediction: dict,
    ground_truth: dict,
    image_id: int = 0,
    gripper: GripperSimulation | None = GripperSimulation(),
    keep_rles: bool = True,
) -> ImageEvaluation:
    """Match one image's prediction dict (``masks``, ``scores``, ``labels``) with its ground
    truth (``masks``, ``labels``); ``gripper=None`` skips the double-pick simulation."""
    masks, scores, labels = _prediction_parts(prediction)
    truth_masks, truth_labels = _ground_truth_parts(ground_truth)
    overlaps = overlap_matrices(masks, truth_masks.to(masks.device))
    scores_np = scores.detach().to("cpu", torch.float64).numpy()
    labels_np = labels.detach().to("cpu", torch.int64).numpy()
    truth_labels_np = truth_labels.detach().to("cpu", torch.int64).numpy()
    overlap_np = {kind: overlaps[kind].to("cpu").numpy() for kind in OVERLAP_KINDS}

    kept_scores, kept_labels = [], []
    matched = {kind: [] for kind in OVERLAP_KINDS}
    for label in np.unique(labels_np):
        rows = np.nonzero(labels_np == label)[0]
        rows = rows[np.argsort(-scores_np[rows], kind="mergesort")][:MAX_DETECTIONS]
        columns = np.nonzero(truth_labels_np == label)[0]
        kept_scores.append(scores_np[rows])
        kept_labels.append(labels_np[rows])
        for kind in OVERLAP_KINDS:
            matched[kind].append(match_detections(overlap_np[kind][np.ix_(rows, columns)], THRESHOLDS[kind]))
    height, width = masks.shape[1:]
    best = {kind: (overlap_np[kind].max(axis=1) if overlap_np[kind].shape[1] else np.zeros(len(scores_np))) for kind in ("iou", "iop")}
    return ImageEvaluation(
        image_id=int(image_id),
        height=int(height),
        width=int(width),
        scores=np.concatenate(kept_scores) if kept_scores else np.zeros(0),
        labels=np.concatenate(kept_labels) if kept_labels else np.zeros(0, dtype=np.int64),
        matched={
            kind: np.concatenate(parts, axis=1) if parts else np.zeros((len(THRESHOLDS[kind]), 0), dtype=bool)
            for kind, parts in matched.items()
        },
        truth_labels=truth_labels_np,
        best_iou=best["iou"],
        best_iop=best["iop"],
        all_scores=scores_np,
        picks=None if gripper is None else simulate_picks(masks, truth_masks, gripper, image_id),
        predicted_rles=encode_masks(masks) if keep_rles else [],
        truth_rles=encode_masks(truth_masks) if keep_rles else [],
        predicted_labels=labels_np,
    )


def _prediction_parts(prediction: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if not isinstance(prediction, dict):
        raise ValueError(f"a prediction must be a dict, got {type(prediction).__name__}")
    missing = [key for key in ("masks", "scores", "labels") if key not in prediction]
    if missing:
        raise ValueError(f"prediction lacks {', '.join(missing)}")
    masks, scores, labels = prediction["masks"], prediction["scores"], prediction["labels"]
    _check_masks("predicted masks", masks)
    n = masks.shape[0]
    for name, values in (("scores", scores), ("labels", labels)):
        if not isinstance(values, torch.Tensor) or values.dim() != 1 or values.numel() != n:
            raise ValueError(f"prediction {name} must have shape [{n}] to match its masks")
    if not bool(torch.isfinite(scores.to(torch.float64)).all()):
        raise ValueError("prediction scores contain NaN or infinite values")
    return masks, scores, labels


def _ground_truth_parts(ground_truth: dict) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(ground_truth, dict) or "masks" not in ground_truth:
        raise ValueError("ground truth must be a dict with masks (and labels)")
    masks = ground_truth["masks"]
    _check_masks("ground-truth masks", masks)
    labels = ground_truth.get("labels")
    if labels is None:
        labels = torch.ones(masks.shape[0], dtype=torch.int64)
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.numel() != masks.shape[0]:
        raise ValueError(f"ground-truth labels must have shape [{masks.shape[0]}] to match its masks")
    return masks, labels


# --- data-set curves ------------------------------------------------------------------------


def _as_list(evaluations) -> list[ImageEvaluation]:
    return [evaluations] if isinstance(evaluations, ImageEvaluation) else list(evaluations)


def _class_curves(evaluations: list[ImageEvaluation], kind: str):
    """Per class with ground truth: (cumulative true positives [T, D], false positives, number
    of ground truths), detections pooled over images and ordered by score like COCOeval."""
    classes = sorted({int(c) for e in evaluations for c in e.truth_labels})
    for label in classes:
        scores = np.concatenate([e.scores[e.labels == label] for e in evaluations] or [np.zeros(0)])
        matched = np.concatenate(
            [e.matched[kind][:, e.labels == label] for e in evaluations] or [np.zeros((len(THRESHOLDS[kind]), 0), bool)],
            axis=1,
        )
        order = np.argsort(-scores, kind="mergesort")
        matched = matched[:, order]
        truths = sum(int((e.truth_labels == label).sum()) for e in evaluations)
        yield label, np.cumsum(matched, axis=1, dtype=np.float64), np.cumsum(~matched, axis=1, dtype=np.float64), truths


def max_recall_at_high_precision(
    evaluations: ImageEvaluation | Sequence[ImageEvaluation],
    precisions: Sequence[float] = HIGH_PRECISION_THRESHOLDS,
) -> dict:
    """MR@HP over one image or a data set: ``{"mr_at_hp": mean, "table": [[recall per
    precision threshold] per IoP threshold]}``; NaN without ground truth."""
    evaluations = _as_list(evaluations)
    per_class = []
    for _, tp, fp, truths in _class_curves(evaluations, "iop"):
        table = np.zeros((len(THRESHOLDS["iop"]), len(precisions)))
        if tp.shape[1]:
            recall = tp / truths
            precision = tp / (tp + fp)
            interpolated = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
            for j, level in enumerate(precisions):
                reached = interpolated >= level
                table[:, j] = np.where(reached.any(axis=1), np.where(reached, recall, 0.0).max(axis=1), 0.0)
        per_class.append(table)
    if not per_class:
        return {"mr_at_hp": float("nan"), "table": None}
    table = np.mean(per_class, axis=0)
    return {"mr_at_hp": float(table.mean()), "table": table.tolist()}


def mr_at_hp(evaluations: ImageEvaluation | Sequence[ImageEvaluation]) -> float:
    """The MR@HP number alone (see `max_recall_at_high_precision`)."""
    return max_recall_at_high_precision(evaluations)["mr_at_hp"]


def average_recall(evaluations: ImageEvaluation | Sequence[ImageEvaluation], kind: str = "iog") -> float:
    """COCO-style AR (at most 100 detections) with IoG (the paper's high-recall metric) or
    IoU (equal to COCOeval's AR@100); NaN without ground truth."""
    _check_kind(kind, ("iou", "iog"))
    recalls = [tp[:, -1] / truths if tp.shape[1] else np.zeros(tp.shape[0]) for _, tp, _, truths in _class_curves(_as_list(evaluations), kind)]
    return float(np.mean(recalls)) if recalls else float("nan")


def average_precision(evaluations: ImageEvaluation | Sequence[ImageEvaluation], kind: str = "iou") -> float:
    """COCO's 101-point interpolated AP over thresholds 0.5:0.95 computed from our own matches
    (with IoU it reproduces COCOeval's AP; `mask_map` asks pycocotools itself)."""
    _check_kind(kind, ("iou", "iog"))
    values = []
    for _, tp, fp, truths in _class_curves(_as_list(evaluations), kind):
        for t in range(tp.shape[0]):
            if tp.shape[1] == 0:
                values.append(0.0)
                continue
            recall = tp[t] / truths
            precision = (tp[t] / (fp[t] + tp[t] + np.spacing(1))).tolist()
            for i in range(len(precision) - 1, 0, -1):
                precision[i - 1] = max(precision[i - 1], precision[i])
            index = np.searchsorted(recall, COCO_RECALL_POINTS, side="left")
            sampled = [precision[i] if i < len(precision) else 0.0 for i in index]
            values.append(float(np.mean(sampled)))
    return float(np.mean(values)) if values else float("nan")


def _check_kind(kind: str, allowed: tuple[str, ...]) -> None:
    if kind not in allowed:
        raise ValueError(f"unknown overlap kind {kind!r}; valid: {', '.join(allowed)}")


def mask_map(evaluations: ImageEvaluation | Sequence[ImageEvaluation]) -> dict[str, float]:
    """Mask mAP, AP50 and AP75 from pycocotools' COCOeval on the RLE-encoded masks."""
    evaluations = _as_list(evaluations)
    images, truth, detections = [], [], []
    for e in evaluations:
        images.append((e.image_id, e.height, e.width))
        truth += [{"image_id": e.image_id, "category_id": int(c), "segmentation": r} for c, r in zip(e.truth_labels, e.truth_rles)]
        detections += [
            {"image_id": e.image_id, "category_id": int(c), "segmentation": r, "score": float(s)}
            for c, r, s in zip(e.predicted_labels, e.predicted_rles, e.all_scores)
        ]
    if len({e.image_id for e in evaluations}) != len(evaluations):
        raise ValueError("image ids must be unique within a data set for mAP")
    return mask_average_precision(images, truth, detections)


def roc_auc(scores: np.ndarray, positives: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for the binary ``positives`` (ties count half);
    NaN when either class is missing."""
    from scipy.stats import rankdata

    scores = np.asarray(scores, dtype=np.float64)
    positives = np.asarray(positives, dtype=bool)
    num_pos, num_neg = int(positives.sum()), int((~positives).sum())
    if num_pos == 0 or num_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positives].sum() - num_pos * (num_pos + 1) / 2) / (num_pos * num_neg))


def score_roc_auc(evaluations: ImageEvaluation | Sequence[ImageEvaluation], iou_threshold: float = 0.5) -> float:
    """Table III: how well the scores predict IoU(prediction, best ground truth) >= 0.5."""
    evaluations = _as_list(evaluations)
    scores = np.concatenate([e.all_scores for e in evaluations] or [np.zeros(0)])
    best = np.concatenate([e.best_iou for e in evaluations] or [np.zeros(0)])
    return roc_auc(scores, best >= iou_threshold)


def iop_fraction(evaluations: ImageEvaluation | Sequence[ImageEvaluation], threshold: float = 0.95) -> float:
    """Fig. 8 (right): fraction of predictions lying inside one ground truth, IoP > 0.95."""
    best = np.concatenate([e.best_iop for e in _as_list(evaluations)] or [np.zeros(0)])
    return float((best > threshold).mean()) if best.size else float("nan")


def summarize(evaluations: ImageEvaluation | Sequence[ImageEvaluation]) -> dict:
    """All data-set numbers as a JSON-ready dict (NaN becomes None)."""
    evaluations = _as_list(evaluations)
    picks = [e.picks for e in evaluations if e.picks is not None]
    high_precision = max_recall_at_high_precision(evaluations)
    result = {
        "images": len(evaluations),
        "predictions": int(sum(e.all_scores.size for e in evaluations)),
        "ground_truths": int(sum(e.truth_labels.size for e in evaluations)),
        "mr_at_hp": high_precision["mr_at_hp"],
        "mr_at_hp_table": high_precision["table"],
        "ar_iog": average_recall(evaluations, "iog"),
        **mask_map(evaluations),
        "roc_auc": score_roc_auc(evaluations),
        "iop95_fraction": iop_fraction(evaluations),
        "double_pick_rate": double_pick_rate(picks) if picks else float("nan"),
        "pickable_area": pickable_area(picks) if picks else float("nan"),
        "picks": int(sum(p.picks for p in picks)),
        "double_picks": int(sum(p.double_picks for p in picks)),
    }
    return {key: _json_number(value) for key, value in result.items()}


def _json_number(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class DatasetMetrics:
    """Accumulates `evaluate_image` results image by image; `summary()` gives the data-set
    numbers. Use one instance per method (MaskRCNN, Union-NMS, each p, ...)."""

    def __init__(self, gripper: GripperSimulation | None = GripperSimulation()) -> None:
        self.gripper = gripper
        self.images: list[ImageEvaluation] = []

    def add(self, prediction: dict, ground_truth: dict, image_id: int | None = None) -> ImageEvaluation:
        image_id = len(self.images) if image_id is None else int(image_id)
        evaluation = evaluate_image(prediction, ground_truth, image_id, self.gripper)
        self.images.append(evaluation)
        return evaluation

    def summary(self) -> dict:
        return summarize(self.images)


__all__ = [
    "COCO_THRESHOLDS",
    "DatasetMetrics",
    "GripperSimulation",
    "HIGH_PRECISION_THRESHOLDS",
    "ImageEvaluation",
    "OVERLAP_KINDS",
    "average_precision",
    "average_recall",
    "double_pick_rate",
    "evaluate_image",
    "iog_matrix",
    "iop_fraction",
    "iop_matrix",
    "iou_matrix",
    "mask_map",
    "match_detections",
    "max_recall_at_high_precision",
    "mr_at_hp",
    "overlap_matrices",
    "pickable_area",
    "roc_auc",
    "score_roc_auc",
    "simulate_picks",
    "summarize",
]
