"""One prediction per image from the K samples: confidence masks, Union-NMS or the prior mean.

`aggregate` is what the ROS pipeline, the replay tool and the evaluation call; the mode string
is the one used everywhere (``"confidence_mask"``, ``"union_nms"``, ``"prior_mean"``).
The algorithms live in `confidence_masks` and `union_nms`; this module re-exports them.
"""
from __future__ import annotations

from typing import Sequence

import torch

from latent_maskrcnn.aggregation.confidence_masks import ConfidenceMaskResult, confidence_masks
from latent_maskrcnn.aggregation.mask_blocks import pixel_boxes
from latent_maskrcnn.aggregation.prepared_samples import (
    DEFAULT_POOL,
    PreparedSamples,
    check_number,
    prepare_samples,
    support_size,
    validate_p,
    validate_samples,
)
from latent_maskrcnn.aggregation.union_nms import UnionNMSResult, union_nms

MODES = ("confidence_mask", "union_nms", "prior_mean")

__all__ = [
    "MODES",
    "ConfidenceMaskResult",
    "PreparedSamples",
    "UnionNMSResult",
    "aggregate",
    "check_mode",
    "confidence_masks",
    "prepare_prediction_samples",
    "prepare_samples",
    "support_size",
    "union_nms",
]


def check_mode(mode: str) -> str:
    """The mode itself, or a ValueError listing the valid modes."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; valid modes: {', '.join(MODES)}")
    return mode


def prepare_prediction_samples(
    samples: Sequence[dict], score_threshold: float | None = 0.1, pool: int = DEFAULT_POOL
) -> PreparedSamples:
    """`prepare_samples` for a list of K prediction dicts (``masks``, ``scores``, ``labels``).

    Keep the result to aggregate the same samples again with another p or mode cheaply."""
    _check_prediction_list(samples)
    return prepare_samples(
        [s["masks"] for s in samples],
        [s["scores"] for s in samples],
        [s["labels"] for s in samples],
        score_threshold=score_threshold,
        pool=pool,
    )


def aggregate(
    samples: Sequence[dict] | PreparedSamples,
    mode: str,
    p: float = 0.9,
    score_threshold: float = 0.1,
    *,
    iou_threshold: float = 0.5,
    vote: float = 0.0,
    pool: int = DEFAULT_POOL,
) -> dict:
    """Turn the K prediction dicts of ONE image (from ``LatentMaskRCNN.sample``) into one.

    - ``"confidence_mask"``: disjoint p-confidence masks (Algorithm 1), scored by the mean
      score-weighted IoU with their support.
    - ``"union_nms"``: Union-NMS over all samples pooled (Algorithm 2) with ``iou_threshold``
      and ``vote``.
    - ``"prior_mean"``: the single prediction (decoded from the prior mean) as it is.

    Every mode first drops detections with score <= ``score_threshold``. ``samples`` may be
    `PreparedSamples` from `prepare_prediction_samples` (not for ``"prior_mean"``).
    Returns a prediction dict (``boxes`` from the masks, x2/y2 one past the last pixel,
    ``labels``, ``scores``, ``masks``) plus ``support_counts`` int64 ``[M]``: the number of
    samples supporting each mask (1 for the prior mean).
    """
    check_mode(mode)
    if mode == "confidence_mask":
        validate_p(p)
    if mode == "prior_mean":
        if isinstance(samples, PreparedSamples):
            raise ValueError("prior_mean needs the prediction dict itself, not PreparedSamples")
        return _prior_mean(samples, score_threshold)
    prepared = (
        samples.with_threshold(score_threshold)
        if isinstance(samples, PreparedSamples)
        else prepare_prediction_samples(samples, score_threshold, pool)
    )
    if mode == "confidence_mask":
        result = confidence_masks(prepared, None, p, score_threshold=score_threshold)
    else:
        result = union_nms(prepared, None, iou_threshold=iou_threshold, vote=vote)
    return {
        "boxes": result.boxes,
        "labels": result.labels,
        "scores": result.scores,
        "masks": result.masks,
        "support_counts": result.support_counts,
    }


def _check_prediction_list(samples) -> None:
    if isinstance(samples, dict) or not isinstance(samples, (list, tuple)):
        raise ValueError(f"samples must be a list of K prediction dicts, got {type(samples).__name__}")
    if not samples:
        raise ValueError("samples is empty: at least one prediction dict is needed")
    for k, sample in enumerate(samples):
        if not isinstance(sample, dict):
            raise ValueError(f"samples[{k}] is a {type(sample).__name__}, not a prediction dict")
        missing = [key for key in ("masks", "scores", "labels") if key not in sample]
        if missing:
            raise ValueError(f"samples[{k}] lacks {', '.join(missing)}")


def _prior_mean(samples: Sequence[dict], score_threshold: float) -> dict:
    _check_prediction_list(samples)
    if len(samples) != 1:
        raise ValueError(f"prior_mean takes the one prediction decoded from the prior mean, got {len(samples)}")
    (prediction,) = samples
    threshold = check_number("score_threshold", score_threshold)
    (masks,), (scores,), (labels,) = validate_samples([prediction["masks"]], [prediction["scores"]], [prediction["labels"]])
    keep = torch.nonzero(scores > threshold).flatten()
    masks = masks[keep]
    return {
        "boxes": pixel_boxes(masks),
        "labels": labels[keep],
        "scores": scores[keep].to(torch.float32),
        "masks": masks,
        "support_counts": torch.ones(keep.numel(), dtype=torch.int64, device=masks.device),
    }
