"""Why the planner's chosen grasps double-pick: the kinds of the items they lift.

The grasp target is measured on a replayed bag, whose ground truth is instance-label images
without the items' ambiguity kinds. Data written by ``make-dataset`` keep each item's kind, so
this runs the node's pipeline and planner on those scenes (one scene per camera image) and
splits the chosen grasps that touch two or more items by the same causes as ``evaluate``'s split
of the simulated circles (`latent_maskrcnn.evaluation.double_pick.CAUSES`).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from latent_maskrcnn.evaluation.double_pick import CAUSES, cause_of, normal_kind
from latent_segmentation_ros.core.results import GraspCandidate
from latent_segmentation_ros.replay.runner import PairSetup, _Progress
from latent_segmentation_ros.replay.scoring import grasp_items_touched
from latent_segmentation_ros.replay.sweep import BASELINE, METHOD_LABELS, PRIOR_MEAN, share_cell

LOGGER = logging.getLogger(__name__)
CONFIDENCE_MASK = "confidence_mask"
SCENE_CAMERA = "scene"


@dataclass
class GraspCauseCounts:
    """The chosen grasp of each scene of one method, counted by what it lifts.

    ``grasps``: scenes with a chosen grasp whose sealed cups switch on; ``no_grasp``: scenes
    without one. Of the grasps, ``on_no_item`` touch no item and ``double_picks`` two or more;
    ``causes`` partitions the double picks (`CAUSES`), ``combinations`` counts the sorted kinds
    of the touched items joined by ``+``."""

    scenes: int = 0
    grasps: int = 0
    no_grasp: int = 0
    on_no_item: int = 0
    double_picks: int = 0
    causes: dict[str, int] = field(default_factory=lambda: {cause: 0 for cause in CAUSES})
    combinations: dict[str, int] = field(default_factory=dict)

    def add(self, chosen: GraspCandidate | None, cup_radius: float, truth_masks: np.ndarray,
            kinds: list[str | None] | None, regions: list[int | None] | None = None) -> None:
        """Count one scene's chosen grasp (None: the planner found none). ``kinds`` that do not
        line up with the masks count as unknown, as in `classify_picks`; ``regions`` (the
        ``region_id`` of each mask) tell the halves of different seamless pairs apart."""
        if kinds is not None and len(kinds) != len(truth_masks):
            LOGGER.warning("%d ambiguity kinds for %d ground-truth masks; this grasp's items count as unknown",
                           len(kinds), len(truth_masks))
            kinds = None
        if regions is not None and len(regions) != len(truth_masks):
            regions = None
        self.scenes += 1
        if chosen is None or not np.any(np.asarray(chosen.cup_sealed, dtype=bool)):
            self.no_grasp += 1
            return
        self.grasps += 1
        touched = grasp_items_touched(chosen, cup_radius, truth_masks)
        if touched.size == 0:
            self.on_no_item += 1
        if touched.size < 2:
            return
        self.double_picks += 1
        items = touched.tolist()
        names = sorted(normal_kind(None if kinds is None else kinds[item]) for item in items)
        self.causes[cause_of([normal_kind(None if kinds is None else kinds[item]) for item in items],
                             None if regions is None or kinds is None else [regions[item] for item in items])] += 1
        key = "+".join(names)
        self.combinations[key] = self.combinations.get(key, 0) + 1

    def summary(self) -> dict[str, Any]:
        """JSON-ready counts, with the double-pick share of the grasps."""
        return {
            "scenes": self.scenes,
            "grasps": self.grasps,
            "no_grasp": self.no_grasp,
            "on_no_item": self.on_no_item,
            "double_picks": self.double_picks,
            "double_pick_rate": self.double_picks / self.grasps if self.grasps else None,
            "causes": dict(self.causes),
            "combinations": dict(sorted(self.combinations.items(), key=lambda item: (-item[1], item[0]))),
        }


def scene_rgb(image: Any) -> np.ndarray:
    """A data set image (float [3, H, W] in [0, 1]) as the uint8 [H, W, 3] RGB a camera sends."""
    array = np.asarray(image, dtype=np.float32)
    return np.ascontiguousarray(np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8).transpose(1, 2, 0))


def trace_grasps(
    setup: PairSetup,
    dataset: Any,
    *,
    p: float,
    baseline: Any | None = None,
    include_prior_mean: bool = True,
    max_scenes: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Chosen grasps of confidence masks at ``p`` (and the prior mean, and a baseline pipeline
    from `sweep.load_baseline`) on the scenes of ``dataset`` (a `CocoInstanceDataset`), split by
    cause. Scenes whose items carry no kinds count their double picks as ``unknown``."""
    from latent_maskrcnn.evaluation.pair_probe import instance_kinds, instance_regions

    counts: dict[str, GraspCauseCounts] = {CONFIDENCE_MASK: GraspCauseCounts()}
    if include_prior_mean:
        counts[PRIOR_MEAN] = GraspCauseCounts()
    if baseline is not None:
        counts[BASELINE] = GraspCauseCounts()
    total = len(dataset) if max_scenes is None else min(len(dataset), max_scenes)
    scenes_without_kinds = 0
    pipeline, cameras = setup.pipeline, [SCENE_CAMERA]
    bar = _Progress(progress, total)
    try:
        for index in range(total):
            image, target = dataset[index]
            truth_masks = target["masks"].numpy().astype(bool)
            kinds = instance_kinds(dataset, index, target)
            regions = instance_regions(dataset, index, target)
            scenes_without_kinds += kinds is None
            rgb = [scene_rgb(image)]
            pipeline.update_settings(mode=CONFIDENCE_MASK, p=p)
            scene_results = {CONFIDENCE_MASK: pipeline.process(rgb, cameras)}
            if include_prior_mean:
                pipeline.set_mode(PRIOR_MEAN)
                scene_results[PRIOR_MEAN] = pipeline.refresh()
            if baseline is not None:
                scene_results[BASELINE] = baseline.process(rgb, cameras)
            for method, (result,) in scene_results.items():
                grasps = setup.planner.plan_result(result)
                counts[method].add(grasps[0] if grasps else None, setup.cup_radius, truth_masks, kinds, regions)
            bar.update()
    finally:
        bar.close()
    return {
        "title": "chosen grasps by cause",
        **setup.header_info,
        "mode": CONFIDENCE_MASK,
        "p": p,
        "baseline": None if baseline is None else baseline.model_id,
        "scenes": total,
        "scenes_without_kinds": scenes_without_kinds,
        "methods": {method: tally.summary() for method, tally in counts.items()},
    }


def method_name(method: str, p: float) -> str:
    return METHOD_LABELS.get(method, f"confidence masks p = {p:.2f}")


def grasp_causes_table(result: dict[str, Any]) -> str:
    """A markdown table: one row per method, the double-picking grasps split by cause."""
    header = ["method", "grasps", "no grasp", "on no item", "double picks", *CAUSES]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for method, summary in result["methods"].items():
        cells = [method_name(method, result["p"]), str(summary["grasps"]), str(summary["no_grasp"]),
                 str(summary["on_no_item"]), share_cell(summary["double_picks"], summary["grasps"]),
                 *(str(summary["causes"][cause]) for cause in CAUSES)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def combinations_lines(result: dict[str, Any], top: int = 5) -> list[str]:
    """The most frequent kinds of the items that double-picking grasps lift, per method."""
    lines = []
    for method, summary in result["methods"].items():
        common = list(summary["combinations"].items())[:top]
        listing = ", ".join(f"{key} {times}" for key, times in common) or "none"
        lines.append(f"{method_name(method, result['p'])}: {listing}")
    return lines


def write_grasp_causes(result: dict[str, Any], out_dir: Path) -> None:
    """grasp_causes.json and grasp_causes.md in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "grasp_causes.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    text = [f"# Chosen grasps by cause ({result['scenes']} scenes, model {result['model_id']})", "",
            grasp_causes_table(result), "", "Kinds of the items lifted by double-picking grasps:", "",
            *(f"- {line}" for line in combinations_lines(result)), ""]
    (out_dir / "grasp_causes.md").write_text("\n".join(text), encoding="utf-8")
