"""Operating curves on a replayed bag: the baselines over the mask threshold, beside the p sweep.

The p sweep draws the confidence masks' curve over p. A user's first answer to double picks is a
higher mask threshold on MaskRCNN or on the prior mean, or a second (mirror) view, so those curves
are drawn on the same frames, circles and planner. Each baseline's prediction of a frame is the one
its pipeline has just made for the sweep's own row (kept with its mask probabilities), plus one
pass of the same model on the mirror images for the mirror view; every threshold then costs one
paste, no network (`latent_maskrcnn.evaluation.threshold_curves`). The masks are published as the
node publishes them (`pipeline.published_masks`) and scored with the circles and the chosen grasp
of `Scorer` (`grasp_outcomes`). The curves meet in `latent_maskrcnn.evaluation.matched`: each
baseline read at the confidence masks' pickable area and N, with paired-bootstrap intervals over
the camera images.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from latent_maskrcnn.evaluation.matched import MatchedComparison, matched_comparison
from latent_maskrcnn.evaluation.mirror_view import mirror_view_predictions
from latent_maskrcnn.evaluation.operating_curves import CurveRecorder
from latent_maskrcnn.evaluation.threshold_curves import CONFIDENCE_MASK, POINT_ESTIMATES, new_recorder, threshold_prediction
from latent_segmentation_ros.core.pipeline import PerceptionPipeline, image_tensors
from latent_segmentation_ros.replay.grasp_outcomes import prediction_outcome, record_outcome

PRIOR_MEAN_CURVE, BASELINE_CURVE = "prior_mean", "maskrcnn"


class SweepCurves:
    """Collects the curves of one sweep frame by frame. Images are keyed ``(frame, camera)`` in
    the order they arrive, and only images with ground truth count (the same for every method)."""

    def __init__(self, thresholds: Sequence[float], default_threshold: float, planner: Any, gripper: Any,
                 mirror: bool = True) -> None:
        self.recorder: CurveRecorder = new_recorder()
        self.planner, self.gripper, self.mirror = planner, gripper, mirror
        self.default_threshold = float(default_threshold)
        # the pipelines' own threshold is a point of every curve (the rows of the sweep)
        self.thresholds = sorted({float(t) for t in thresholds} | {self.default_threshold})
        self._keys: dict[tuple[int, str], int] = {}
        self.network_calls = 0

    def _image(self, frame: int, camera: str) -> int:
        return self._keys.setdefault((frame, camera), len(self._keys))

    def add_record(self, method: str, value: float, frame: int, record: Any) -> None:
        """A point of ``method``'s curve from the sweep's own scoring of it (a `FrameRecord`): the
        confidence masks at each p, a baseline at the pipelines' own threshold."""
        outcome = record_outcome(record)
        if outcome is not None:
            self.recorder.add(method, value, self._image(frame, record.camera), *outcome)

    def threshold_points(self, method: str, pipeline: PerceptionPipeline, frame: int, pair: Sequence[Any],
                         truth: dict[str, Any], images: Sequence[np.ndarray]) -> None:
        """``method``'s curve (and its mirror view's) on this frame, from the point estimate
        ``pipeline`` has just made (prior-mean mode, or a MaskRCNN) at the default threshold,
        whose own point is the sweep's row of it (`add_record`)."""
        own = pipeline.last_samples()
        if own is None or any(len(samples) != 1 for samples in own):
            raise ValueError(f"{method}: the pipeline holds no point estimate of this frame")
        views = {method: [[samples[0]] for samples in own]}
        if self.mirror:
            mirrored = mirror_view_predictions(pipeline.model, image_tensors(images, pipeline.device),
                                               pipeline.settings.mask_threshold, keep_mask_probabilities=True)
            self.network_calls += 1
            views[f"{method}_mirror"] = [[samples[0], view] for samples, view in zip(own, mirrored)]
        settings = pipeline.settings
        for name, per_camera in views.items():
            for threshold in self.thresholds:
                if name == method and threshold == self.default_threshold:
                    continue  # the sweep's own row of this baseline (`add_record`)
                for frame_data, camera_views in zip(pair, per_camera):
                    prediction = threshold_prediction(camera_views, threshold, settings.score_threshold)
                    outcome = prediction_outcome(prediction, truth[frame_data.camera], frame_data.stamp_ns,
                                                 self.planner, self.gripper, settings.min_mask_area)
                    if outcome is not None:
                        self.recorder.add(name, threshold, self._image(frame, frame_data.camera), *outcome)

    def curves(self) -> dict:
        return self.recorder.curves() if self._keys else {}

    def matched(self, reference_p: float, resamples: int, seed: int) -> tuple[dict, MatchedComparison | None]:
        """(curves by method, the matched comparison or None when there is no image or no
        confidence-mask point at ``reference_p``)."""
        curves = self.curves()
        reference = curves.get(CONFIDENCE_MASK)
        baselines = [curves[m] for m in POINT_ESTIMATES if m in curves]
        if reference is None or not baselines or all(abs(v - reference_p) > 1e-9 for v in reference.values):
            return curves, None
        return curves, matched_comparison(reference, reference_p, baselines, resamples=resamples, seed=seed)

    def grasp_margin(self, resamples: int, seed: int) -> Any:
        """The grasp target's margin, share(p = 0.9) - limit x share(prior mean at the pipeline's
        mask threshold), with its interval; None when either is not on the curves."""
        from latent_maskrcnn.evaluation.matched import linear_margin
        from latent_maskrcnn.evaluation.targets import MAX_GRASP_DOUBLE_PICK_RATIO_TO_PRIOR_MEAN, TARGET_P

        curves = self.curves()
        confidence, prior = curves.get(CONFIDENCE_MASK), curves.get(PRIOR_MEAN_CURVE)
        if confidence is None or prior is None or not confidence.has("grasp_double_pick_rate"):
            return None
        if all(abs(v - TARGET_P) > 1e-9 for v in confidence.values):
            return None
        return linear_margin([(1.0, confidence, TARGET_P, "grasp_double_pick_rate"),
                              (-MAX_GRASP_DOUBLE_PICK_RATIO_TO_PRIOR_MEAN, prior, self.default_threshold,
                               "grasp_double_pick_rate")], resamples, seed)
