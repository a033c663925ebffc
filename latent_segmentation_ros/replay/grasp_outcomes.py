"""The node's grasp planner on an evaluation's predictions: the chosen grasp, scored on the truth.

`latent-seg evaluate` (in the ROS-free `latent_maskrcnn`) takes the planner as a function, so that
its operating curves and matched comparison also report the paper's Table II numbers: the share
of chosen grasps that double-pick and the mean cups sealed on one item. The masks reach the
planner as the node publishes them (`pipeline.published_masks`), and the chosen grasp is scored
exactly as `sweep-p` scores it (`scoring.grasp_against_truth`).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from latent_maskrcnn.evaluation.operating_curves import GraspOutcome
from latent_segmentation_ros.core.parameters import SEGMENTATION_PARAMETERS
from latent_segmentation_ros.core.pipeline import published_masks
from latent_segmentation_ros.replay.runner import build_planner
from latent_segmentation_ros.replay.scoring import grasp_against_truth


def planner_grasp_scorer(
    min_mask_area: int = SEGMENTATION_PARAMETERS["min_mask_area"].default,
    grasp_overrides: dict[str, Any] | None = None,
) -> Callable[[dict, Any], GraspOutcome]:
    """``scorer(prediction, truth_masks)``: the planner's first grasp on the prediction's masks
    (``masks`` bool [N, H, W], ``scores`` [N], torch or numpy) against ground truth [G, H, W]."""
    planner = build_planner(grasp_overrides)
    radius = float(planner.layout.cup_radius)

    def scorer(prediction: dict, truth_masks: Any) -> GraspOutcome:
        masks = _numpy(prediction["masks"]).astype(bool).reshape(-1, *np.shape(truth_masks)[-2:])
        scores = _numpy(prediction["scores"]).astype(np.float64).reshape(-1)
        shown = published_masks(masks, scores, min_mask_area)
        grasps = planner.plan(masks[shown], scores[shown])
        if not grasps:
            return GraspOutcome(found=False)
        sealed, _touched, double = grasp_against_truth(grasps[0], radius, _numpy(truth_masks).astype(bool))
        return GraspOutcome(found=True, double_pick=bool(double), sealed_cups=int(sealed))

    return scorer


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def record_outcome(record: Any) -> tuple[Any, GraspOutcome] | None:
    """(`PickCounts`, `GraspOutcome`) of a scored `report.FrameRecord`; None without ground truth."""
    if not record.has_ground_truth or record.evaluation is None or record.evaluation.picks is None:
        return None
    found = bool(record.grasp_found and record.grasp_double_pick is not None)
    return record.evaluation.picks, GraspOutcome(found, bool(record.grasp_double_pick),
                                                 int(record.grasp_sealed_cups_on_truth or 0))


def prediction_outcome(
    prediction: dict, truth_masks: np.ndarray | None, stamp_ns: int, planner: Any, gripper: Any, min_mask_area: int
) -> tuple[Any, GraspOutcome] | None:
    """The same two for an aggregated prediction dict, its masks published as the node publishes
    them (`pipeline.published_masks`), without the data-set metrics a `Scorer` computes (an
    operating curve needs only the picks and the chosen grasp): the circles of `Scorer.score` (its
    image id from the stamp) and its scoring of the chosen grasp. None without ground truth."""
    import torch

    from latent_maskrcnn.evaluation.double_pick import simulate_picks
    from latent_segmentation_ros.replay.scoring import image_id_of

    if truth_masks is None:
        return None
    truth = np.asarray(truth_masks, dtype=bool)
    masks = _numpy(prediction["masks"]).astype(bool)
    if masks.shape[1:] != truth.shape[1:]:
        raise ValueError(f"stamp {stamp_ns}: ground truth is {truth.shape[1:]} but the predictions are for a "
                         f"{masks.shape[1:]} image")
    scores = _numpy(prediction["scores"]).astype(np.float64).reshape(-1)
    shown = published_masks(masks, scores, min_mask_area)
    masks, scores = np.ascontiguousarray(masks[shown]), scores[shown]
    picks = simulate_picks(torch.from_numpy(masks), torch.from_numpy(truth), gripper, image_id_of(stamp_ns))
    grasps = planner.plan(masks, scores)
    if not grasps:
        return picks, GraspOutcome(found=False)
    sealed, _touched, double = grasp_against_truth(grasps[0], float(planner.layout.cup_radius), truth)
    return picks, GraspOutcome(True, bool(double), int(sealed))
