"""The baselines a user tries first, over the mask threshold: MaskRCNN and the prior mean, each
with and without the mirror view.

Each is a point estimate (one prediction per view) kept with its mask probabilities, so every
threshold of the curve is one paste, not a network pass (`postprocess.with_mask_threshold`). One
view is used as it is (score filter only); two views are aggregated as confidence masks at p = 1.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from latent_maskrcnn.aggregation.aggregate import aggregate
from latent_maskrcnn.evaluation.double_pick import GripperSimulation, simulate_picks
from latent_maskrcnn.evaluation.mirror_view import MIRROR_VIEW_P
from latent_maskrcnn.evaluation.operating_curves import CurveRecorder, GraspOutcome
from latent_maskrcnn.model.postprocess import with_mask_threshold

CONFIDENCE_MASK = "confidence_mask"
POINT_ESTIMATES = {
    "maskrcnn": "MaskRCNN",
    "maskrcnn_mirror": "MaskRCNN + mirror view",
    "prior_mean": "prior mean",
    "prior_mean_mirror": "prior mean + mirror view",
}
CURVE_LABELS = {CONFIDENCE_MASK: "confidence masks", **POINT_ESTIMATES}

GraspScorer = Callable[[dict, torch.Tensor], GraspOutcome]
"""(aggregated prediction, ground-truth masks [G, H, W]) -> the planner's chosen grasp, scored."""


def new_recorder() -> CurveRecorder:
    """A recorder that knows the knob and the label of every curve `evaluate` draws."""
    knobs = {CONFIDENCE_MASK: "p", **{method: "mask_threshold" for method in POINT_ESTIMATES}}
    return CurveRecorder(knobs=knobs, labels=dict(CURVE_LABELS))


def threshold_prediction(views: Sequence[dict], threshold: float, score_threshold: float) -> dict:
    """The point estimate of one or two views (kept with their mask probabilities) at ``threshold``."""
    binarised = [with_mask_threshold(view, threshold) for view in views]
    if len(binarised) == 1:
        return aggregate(binarised, "prior_mean", score_threshold=score_threshold)
    return aggregate(binarised, "confidence_mask", p=MIRROR_VIEW_P, score_threshold=score_threshold)


def record_threshold_curves(
    recorder: CurveRecorder,
    views: dict[str, Sequence[dict]],
    thresholds: Sequence[float],
    truth_masks: torch.Tensor,
    gripper: GripperSimulation,
    image_id: int,
    image_index: int,
    score_threshold: float,
    grasp_scorer: GraspScorer | None = None,
) -> None:
    """Every method of ``views`` (method -> its views' predictions) at every threshold on one image."""
    for method, predictions in views.items():
        for threshold in thresholds:
            prediction = threshold_prediction(predictions, threshold, score_threshold)
            masks = prediction["masks"].detach().to("cpu")
            picks = simulate_picks(masks, truth_masks, gripper, image_id)
            grasp = None if grasp_scorer is None else grasp_scorer(prediction, truth_masks)
            recorder.add(method, threshold, image_index, picks, grasp)
