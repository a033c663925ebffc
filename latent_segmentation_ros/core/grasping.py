"""Everything the grasp node does, without ROS: ConfidenceMaskArray in, GraspCandidateArray out."""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Mapping

from latent_segmentation_ros.core.grasp_planner import SuctionCupLayout, SuctionGraspPlanner
from latent_segmentation_ros.core.image_conversion import ImageTooLarge
from latent_segmentation_ros.core.messages import (
    MessageFactory,
    build_grasp_candidate_array,
    decode_confidence_mask_array,
)
from latent_segmentation_ros.core.node_support import DROP_ERROR, DROP_MESSAGE, DROP_TOO_LARGE, NodeStats
from latent_segmentation_ros.core.parameters import GRASP_PARAMETERS, ParameterSet
from latent_segmentation_ros.core.segmentation import Outcome, ParameterDecision

PLANNER_PARAMETERS = (
    "cup_radius",
    "cup_spacing",
    "cup_rows",
    "cup_cols",
    "angles_deg",
    "candidates_per_mask",
    "min_sealed_cups",
    "max_candidates",
)


def planner_from_parameters(values: Mapping[str, Any]) -> SuctionGraspPlanner:
    """The planner the grasp node's parameters describe; ValueError with the reason if invalid."""
    layout = SuctionCupLayout.grid(
        rows=int(values["cup_rows"]),
        cols=int(values["cup_cols"]),
        spacing=float(values["cup_spacing"]),
        cup_radius=float(values["cup_radius"]),
    )
    return SuctionGraspPlanner(
        layout,
        angles=[math.radians(float(a)) for a in values["angles_deg"]],
        candidates_per_mask=int(values["candidates_per_mask"]),
        min_sealed_cups=int(values["min_sealed_cups"]),
        max_candidates=int(values["max_candidates"]),
    )


class GraspCore:
    """Plans suction grasps on each incoming mask array; parameters apply to the next array."""

    def __init__(
        self,
        factory: MessageFactory,
        parameters: ParameterSet | None = None,
        stats: NodeStats | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.factory = factory
        self.parameters = parameters or ParameterSet(GRASP_PARAMETERS)
        self.stats = stats or NodeStats()
        self._clock = clock
        self.planner = planner_from_parameters(self.parameters.values)

    def on_parameters(self, changes: Mapping[str, Any]) -> ParameterDecision:
        reasons = self.parameters.validate(changes)
        if reasons:
            return ParameterDecision(False, "; ".join(reasons))
        merged = {**self.parameters.values, **{k: v for k, v in changes.items() if k in self.parameters.specs}}
        try:
            planner = planner_from_parameters(merged)
        except ValueError as error:
            return ParameterDecision(False, str(error))
        changed = self.parameters.apply(changes)
        self.planner = planner
        return ParameterDecision(True, "", False, changed)

    def handle(self, mask_array: Any, publish: Callable[[Any], None] | None = None) -> Outcome:
        """A GraspCandidateArray for one ConfidenceMaskArray, or a counted drop with the reason.

        The masks are read and planned as the crops the message carries: an array declaring an
        image larger than ``max_image_pixels`` is dropped unread (``too_large``), any other costs
        what its masks hold. With ``publish``, the message is published here and the latency reported to
        diagnostics is measured from the call (the array's arrival) until ``publish`` returned;
        without it, until the message was built.
        """
        start = self._clock()
        self.stats.input_arrived()
        try:
            decoded = decode_confidence_mask_array(mask_array, self.parameters["max_image_pixels"])
        except ImageTooLarge as error:
            detail = f"confidence masks from {getattr(mask_array, 'camera', '?')!r}: {error}"
            self.stats.drop(DROP_TOO_LARGE, detail)
            return Outcome(drop_reason=DROP_TOO_LARGE, detail=detail)
        except (ValueError, AttributeError, TypeError) as error:
            detail = f"confidence masks from {getattr(mask_array, 'camera', '?')!r} unreadable: {error}"
            self.stats.drop(DROP_MESSAGE, detail)
            return Outcome(drop_reason=DROP_MESSAGE, detail=detail)
        try:
            planner = self.planner
            candidates = planner.plan_regions(decoded.regions, decoded.scores)
            message = build_grasp_candidate_array(
                candidates, mask_array.header, decoded.camera, planner.layout.cup_radius, self.factory
            )
            if publish is not None:
                publish(message)
        except Exception as error:  # the node must survive anything one message can cause
            detail = f"{type(error).__name__}: {error}"
            self.stats.drop(DROP_ERROR, detail)
            return Outcome(drop_reason=DROP_ERROR, detail=detail)
        self.stats.frame_done((self._clock() - start) * 1000.0)
        return Outcome(output=message)
