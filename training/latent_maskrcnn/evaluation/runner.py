"""`latent-seg evaluate`: the paper's Table I, Table III, Fig. 5 and Fig. 8 on a COCO data set.

The network runs once per image: K samples (seeded per image) and the prior-mean prediction of
the Latent-MaskRCNN checkpoint, and one prediction of the MaskRCNN baseline checkpoint (a
model saved with ``latent_dim = 0``). The K samples are prepared once and re-aggregated for
Union-NMS and for every p, so every method sees exactly the same samples. Each method has its
own `DatasetMetrics`; the data-set numbers pool the per-image matches (see `metrics`).

Beside the paper's numbers: the simulated double picks of every method split by cause (the
ambiguity kinds of the items a double-picking circle touches, `double_pick.classify_picks`)
with the false-positive picks on empty floor, and the seamless-pair probe (`pair_probe`) on
the evaluated images that hold a pair, computed from the same samples. The double-pick targets
(`targets`: confidence masks against MaskRCNN and the prior mean, the p knob, seam cover, Table
I's orderings) are checked on these measurements, each with its numbers and met / not met.

Operating curves and the matched comparison: the confidence masks over p, and the baselines a
user tries first (MaskRCNN and the prior mean, each with and without the mirror view) over the
mask threshold (`threshold_curves`), per image, with the chosen grasp of a planner when one is
given (``grasp_scorer``). The baselines are read along their curves at the confidence masks'
pickable area and N and compared with paired-bootstrap intervals (`matched`); this table is the
comparison the package reports.

Output folder: ``results.json``, ``results.md`` (tables), ``matched.md`` (the matched comparison),
``curves.json`` (the curves' per-image counts, `OperatingCurve.from_dict`), ``fig5_double_pick.png``,
``double_pick_causes.png``, ``fig8_score_quality.png`` and ``samples.png`` (image, ground truth,
MaskRCNN, latent samples, confidence masks for the first images).
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from latent_maskrcnn.aggregation.aggregate import aggregate, prepare_prediction_samples
from latent_maskrcnn.aggregation.prepared_samples import validate_p
from latent_maskrcnn.evaluation.double_pick import CAUSES, GripperSimulation, PickCauses, classify_picks
from latent_maskrcnn.evaluation.bootstrap import DEFAULT_RESAMPLES
from latent_maskrcnn.evaluation.gripper_defaults import SIMULATED_GRIPPER_CIRCLES, SIMULATED_GRIPPER_RADIUS
from latent_maskrcnn.evaluation.matched import MatchedComparison, comparison_markdown, matched_comparison
from latent_maskrcnn.evaluation.metrics import DatasetMetrics
from latent_maskrcnn.evaluation.mirror_view import mirror_view_predictions
from latent_maskrcnn.evaluation.operating_curves import OperatingCurve
from latent_maskrcnn.evaluation.pair_probe import PairResult, PairSource, ProbeSettings, instance_kinds, instance_regions, probe_pair, summarize_probe
from latent_maskrcnn.evaluation.targets import double_pick_targets, targets_markdown
from latent_maskrcnn.evaluation.comparison_defaults import MASK_THRESHOLDS
from latent_maskrcnn.evaluation.threshold_curves import (
    CONFIDENCE_MASK,
    POINT_ESTIMATES,
    GraspScorer,
    new_recorder,
    record_threshold_curves,
)
from latent_maskrcnn.model.postprocess import MASK_THRESHOLD, validate_mask_threshold

LOG = logging.getLogger(__name__)

P_VALUES = tuple(round(0.1 * i, 1) for i in range(1, 11))
TABLE_METHODS = (
    ("maskrcnn", "MaskRCNN"),
    ("latent_union_nms", "Latent Union NMS"),
    ("latent_confidence_mask", "Latent Confidence Mask"),
    ("latent_prior_mean", "Latent Prior Mean"),
)
# The paper's numbers on Apparel-5k, for the side-by-side reading in the report.
PAPER_TABLE_1_APPAREL = {
    "maskrcnn": (23.6, 39.9, 26.9),
    "latent_union_nms": (13.6, 61.4, 34.1),
    "latent_confidence_mask": (42.4, 41.8, 35.1),
    "latent_prior_mean": (26.9, 49.4, 34.3),
}
PAPER_TABLE_3_APPAREL = {"maskrcnn": 0.7756, "latent_confidence_mask": 0.9435}


@dataclass
class EvaluationSettings:
    """What `evaluate` varies; the defaults are the paper's (K = 8, p = 0.9, tau = 0.1) and the
    authors' K = 4 codes x {image, mirror image} (``flip_samples``). ``mask_threshold`` binarises
    every method's masks for the tables; the baselines' curves run over ``mask_thresholds``."""

    num_samples: int = 8
    flip_samples: bool = True
    seed: int = 0
    p: float = 0.9
    p_values: tuple[float, ...] = P_VALUES
    score_threshold: float = 0.1
    iou_threshold: float = 0.5
    gripper_radius: int = SIMULATED_GRIPPER_RADIUS
    circles: int = SIMULATED_GRIPPER_CIRCLES
    grid_images: int = 3
    grid_samples: int = 3
    max_images: int | None = None
    probe: bool = True
    probe_iou_threshold: float = 0.5
    seam_fraction: float = 0.2
    mask_threshold: float = MASK_THRESHOLD
    mask_thresholds: tuple[float, ...] = MASK_THRESHOLDS
    curves: bool = True
    mirror_baselines: bool = True
    resamples: int = DEFAULT_RESAMPLES

    def __post_init__(self) -> None:
        if isinstance(self.num_samples, bool) or not isinstance(self.num_samples, int) or self.num_samples < 1:
            raise ValueError(f"num_samples must be a positive integer, got {self.num_samples!r}")
        if not isinstance(self.flip_samples, bool):
            raise ValueError(f"flip_samples must be true or false, got {self.flip_samples!r}")
        validate_p(self.p)
        self.p_values = tuple(sorted({validate_p(p) for p in self.p_values} | {float(self.p)}))
        self.mask_threshold = validate_mask_threshold(self.mask_threshold)
        self.mask_thresholds = tuple(sorted({validate_mask_threshold(t) for t in self.mask_thresholds}
                                            | {self.mask_threshold}))
        if isinstance(self.resamples, bool) or not isinstance(self.resamples, int) or self.resamples < 1:
            raise ValueError(f"resamples must be a positive integer, got {self.resamples!r}")
        if self.max_images is not None and self.max_images < 1:
            raise ValueError(f"max_images must be at least 1, got {self.max_images}")
        if self.grid_images < 0 or self.grid_samples < 0:
            raise ValueError("grid_images and grid_samples must not be negative")
        GripperSimulation(self.gripper_radius, self.circles, self.seed)  # validates
        self.probe_settings  # validates

    @property
    def gripper(self) -> GripperSimulation:
        return GripperSimulation(radius=self.gripper_radius, circles=self.circles, seed=self.seed)

    @property
    def probe_settings(self) -> ProbeSettings:
        return ProbeSettings(iou_threshold=self.probe_iou_threshold, seam_fraction=self.seam_fraction)


@dataclass
class GridRow:
    """What the sample picture shows for one image (CPU tensors)."""

    image: torch.Tensor
    ground_truth: torch.Tensor
    maskrcnn: torch.Tensor | None
    samples: list[torch.Tensor]
    confidence: torch.Tensor


@dataclass
class EvaluationRun:
    """Per-method metrics plus what the pictures need."""

    settings: EvaluationSettings
    metrics: dict[str, DatasetMetrics] = field(default_factory=dict)
    grid: list[GridRow] = field(default_factory=list)
    images: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    pick_causes: dict[str, PickCauses] = field(default_factory=dict)
    probe: list[PairResult] = field(default_factory=list)
    probe_dropped: dict[str, int] = field(default_factory=dict)
    curves: dict[str, OperatingCurve] = field(default_factory=dict)
    grasps_scored: bool = False


def _p_key(p: float) -> str:
    return f"confidence_mask_p{p:.2f}"


def _cpu_masks(prediction: dict) -> torch.Tensor:
    return prediction["masks"].detach().to("cpu")


def run_methods(
    model,
    dataset: Sequence,
    baseline=None,
    settings: EvaluationSettings | None = None,
    progress: bool = True,
    grasp_scorer: GraspScorer | None = None,
) -> EvaluationRun:
    """Predict every image of ``dataset`` (items ``(image [3, H, W], target)`` with bool-able
    ``masks`` and ``labels``) with every method and accumulate the metrics; with
    ``settings.curves`` also every method's operating curve, with ``grasp_scorer`` (the node's
    planner, given by the ROS side) the chosen grasp at every point of them."""
    from tqdm import tqdm

    settings = settings or EvaluationSettings()
    if getattr(model, "latent_dim", 1) == 0:
        raise ValueError(
            "the checkpoint is a plain MaskRCNN (latent_dim = 0): evaluate needs a Latent-MaskRCNN "
            "checkpoint; give the MaskRCNN one as the baseline"
        )
    if baseline is not None and getattr(baseline, "latent_dim", 0) != 0:
        LOG.warning("the baseline has latent_dim = %s: its prior-mean prediction stands in for MaskRCNN",
                    baseline.latent_dim)
    names = ["latent_union_nms", "latent_confidence_mask", "latent_prior_mean"]
    names += [_p_key(p) for p in settings.p_values]
    if baseline is not None:
        names.insert(0, "maskrcnn")
    run = EvaluationRun(settings, {name: DatasetMetrics(settings.gripper) for name in names})
    run.pick_causes = {name: PickCauses() for name in names}
    pairs = PairSource(dataset) if settings.probe and hasattr(dataset, "coco") else None
    count = len(dataset) if settings.max_images is None else min(len(dataset), settings.max_images)
    network = aggregation = scoring = curve_seconds = 0.0
    recorder = new_recorder() if settings.curves else None
    keep = settings.curves
    device = next(model.parameters()).device
    for index in tqdm(range(count), desc="evaluate", unit="image", disable=not progress):
        image, target = dataset[index]
        image_id = int(target["image_id"]) if "image_id" in target else index
        truth = {"masks": target["masks"].to(torch.bool).cpu(), "labels": target["labels"].cpu()}
        kinds = target.get("kinds") if "kinds" in target else (
            instance_kinds(dataset, index, target) if hasattr(dataset, "coco") else None)
        regions = instance_regions(dataset, index, target) if hasattr(dataset, "coco") else None
        start = time.perf_counter()
        images = [image.to(device)]
        threshold = settings.mask_threshold
        samples = model.sample(images, num_samples=settings.num_samples, seed=settings.seed + index,
                               flip=settings.flip_samples, mask_threshold=threshold)[0]
        prior = model.sample(images, num_samples=1, mode="prior_mean", mask_threshold=threshold,
                             keep_mask_probabilities=keep)[0]
        baseline_images = None if baseline is None else [image.to(next(baseline.parameters()).device)]
        plain = None if baseline is None else baseline.sample(
            baseline_images, num_samples=1, mode="prior_mean", mask_threshold=threshold, keep_mask_probabilities=keep)[0]
        views = {}
        if settings.curves:
            views = {"prior_mean": [prior[0]]}
            if settings.mirror_baselines:
                views["prior_mean_mirror"] = [prior[0], mirror_view_predictions(model, images, threshold, True)[0]]
            if plain is not None:
                views["maskrcnn"] = [plain[0]]
                if settings.mirror_baselines:
                    views["maskrcnn_mirror"] = [plain[0], mirror_view_predictions(baseline, baseline_images, threshold, True)[0]]
        network += time.perf_counter() - start

        start = time.perf_counter()
        prepared = prepare_prediction_samples(samples, settings.score_threshold)
        predictions = {
            "latent_union_nms": aggregate(prepared, "union_nms", iou_threshold=settings.iou_threshold,
                                          score_threshold=settings.score_threshold),
            "latent_prior_mean": aggregate(prior, "prior_mean", score_threshold=settings.score_threshold),
        }
        for p in settings.p_values:
            predictions[_p_key(p)] = aggregate(prepared, "confidence_mask", p=p, score_threshold=settings.score_threshold)
        predictions["latent_confidence_mask"] = predictions[_p_key(settings.p)]
        if plain is not None:
            predictions["maskrcnn"] = aggregate(plain, "prior_mean", score_threshold=settings.score_threshold)
        aggregation += time.perf_counter() - start

        start = time.perf_counter()
        evaluations = {}
        for name, prediction in predictions.items():
            evaluations[name] = run.metrics[name].add(
                {key: value.detach().cpu() for key, value in prediction.items()}, truth, image_id)
            run.pick_causes[name].add(classify_picks(_cpu_masks(prediction), truth["masks"], kinds, settings.gripper, image_id, regions))
        for pair in ([] if pairs is None else pairs.pairs(index, target, image)):
            shown = [_cpu_masks(s)[s["scores"].cpu() > settings.score_threshold] for s in samples]
            methods = {"confidence_mask": "latent_confidence_mask", "union_nms": "latent_union_nms",
                       "prior_mean": "latent_prior_mean", "maskrcnn": "maskrcnn"}
            run.probe.append(probe_pair(pair, shown, {
                short: _cpu_masks(predictions[key]) for short, key in methods.items() if key in predictions
            }, settings.probe_settings))
        scoring += time.perf_counter() - start
        if recorder is not None:
            start = time.perf_counter()
            for p in settings.p_values:
                key = _p_key(p)
                grasp = None if grasp_scorer is None else grasp_scorer(predictions[key], truth["masks"])
                recorder.add(CONFIDENCE_MASK, p, index, evaluations[key].picks, grasp)
            record_threshold_curves(recorder, views, settings.mask_thresholds, truth["masks"], settings.gripper,
                                    image_id, index, settings.score_threshold, grasp_scorer)
            curve_seconds += time.perf_counter() - start
        if len(run.grid) < settings.grid_images:
            shown = [_cpu_masks(s)[s["scores"].cpu() > settings.score_threshold] for s in samples[: settings.grid_samples]]
            run.grid.append(GridRow(
                image=image.detach().cpu(),
                ground_truth=truth["masks"],
                maskrcnn=None if plain is None else _cpu_masks(predictions["maskrcnn"]),
                samples=shown,
                confidence=_cpu_masks(predictions["latent_confidence_mask"]),
            ))
    run.images = count
    run.probe_dropped = {} if pairs is None else dict(pairs.dropped)
    run.seconds = {"network": round(network, 3), "aggregation": round(aggregation, 3), "metrics": round(scoring, 3),
                   "curves": round(curve_seconds, 3)}
    if recorder is not None and count:
        run.curves = recorder.curves()
        run.grasps_scored = grasp_scorer is not None
    return run


def target_margins(run: EvaluationRun) -> dict[str, list]:
    """The margins of targets (a) and (b2) with their intervals (`targets.decide`), from the
    curves: (a) D / N(p = 0.9) - 0.5 D / N(MaskRCNN) and 0.6 area(MaskRCNN) - area(p = 0.9);
    (b2) D / N(p = 0.9) - D / N(prior mean), both baselines at the table's mask threshold."""
    from latent_maskrcnn.evaluation.matched import linear_margin
    from latent_maskrcnn.evaluation.targets import (
        MAX_DOUBLE_PICK_RATIO_TO_BASELINE,
        MIN_PICKABLE_AREA_RATIO_TO_BASELINE,
        TARGET_P,
    )

    curves, settings = run.curves, run.settings
    confidence = curves.get(CONFIDENCE_MASK)
    if confidence is None or all(abs(value - TARGET_P) > 1e-9 for value in confidence.values):
        return {}
    draws = {"resamples": settings.resamples, "seed": settings.seed}
    at_p, threshold = (confidence, TARGET_P), settings.mask_threshold
    margins = {}
    if "maskrcnn" in curves:
        maskrcnn = (curves["maskrcnn"], threshold)
        margins["a"] = [
            linear_margin([(1.0, *at_p, "double_pick_rate"),
                           (-MAX_DOUBLE_PICK_RATIO_TO_BASELINE, *maskrcnn, "double_pick_rate")], **draws),
            linear_margin([(MIN_PICKABLE_AREA_RATIO_TO_BASELINE, *maskrcnn, "pickable_area"),
                           (-1.0, *at_p, "pickable_area")], **draws),
        ]
    if "prior_mean" in curves:
        margins["b2"] = [linear_margin([(1.0, *at_p, "double_pick_rate"),
                                        (-1.0, curves["prior_mean"], threshold, "double_pick_rate")], **draws)]
    return margins


def matched_target_lines(run: EvaluationRun, matched: MatchedComparison | None) -> list[dict]:
    """Targets (m1)-(m3) of `targets.matched_targets` from the curves, at the table's p."""
    from latent_maskrcnn.evaluation.matched import matched_margin
    from latent_maskrcnn.evaluation.targets import (
        MAX_DOUBLE_PICK_RATIO_TO_BEST_BASELINE,
        MAX_GRASP_DOUBLE_PICK_RATIO_TO_MASKRCNN,
        matched_targets,
    )

    if matched is None:
        return []
    curves, settings = run.curves, run.settings
    reference, p = curves[CONFIDENCE_MASK], settings.p
    draws = {"resamples": settings.resamples, "seed": settings.seed}
    best = matched.best_baseline
    row = None if best is None else matched.row(best, "pickable_area", "double_pick_rate")
    values = {"confidence_mask": matched.reference_point.get("double_pick_rate"),
              "best_baseline": None if row is None else row.baseline_value}
    margins = {}
    if best is not None:
        margins["m1"] = matched_margin(reference, p, curves[best], MAX_DOUBLE_PICK_RATIO_TO_BEST_BASELINE, **draws)
        margins["m2"] = matched_margin(reference, p, curves[best], 1.0, **draws)
    maskrcnn = curves.get("maskrcnn")
    if maskrcnn is not None and reference.has("grasp_double_pick_rate") and maskrcnn.has("grasp_double_pick_rate"):
        margins["m3"] = matched_margin(reference, p, maskrcnn, MAX_GRASP_DOUBLE_PICK_RATIO_TO_MASKRCNN,
                                       "grasp_double_pick_rate", **draws)
        margins["m3_cups"] = matched_margin(reference, p, maskrcnn, 1.0, "mean_sealed_cups", **draws)
        share, cups = (matched.row("maskrcnn", "pickable_area", metric)
                       for metric in ("grasp_double_pick_rate", "mean_sealed_cups"))
        values.update({"grasp_confidence_mask": matched.reference_point.get("grasp_double_pick_rate"),
                       "grasp_maskrcnn": None if share is None else share.baseline_value,
                       "cups_confidence_mask": matched.reference_point.get("mean_sealed_cups"),
                       "cups_maskrcnn": None if cups is None else cups.baseline_value})
    grasps = f"{matched.grasps} grasps" if matched.grasps is not None else ""
    return matched_targets(best, margins, values, f"{run.images} scenes", grasps)


def matched_result(run: EvaluationRun) -> MatchedComparison | None:
    """The confidence masks at the table's p against every baseline curve (`matched`), or None
    without curves. Seeded with the evaluation's seed, so a rerun prints the same intervals."""
    if CONFIDENCE_MASK not in run.curves:
        return None
    baselines = [run.curves[method] for method in POINT_ESTIMATES if method in run.curves]
    return matched_comparison(run.curves[CONFIDENCE_MASK], run.settings.p, baselines,
                              resamples=run.settings.resamples, seed=run.settings.seed)


def _percent(value: float | None) -> float | None:
    return None if value is None else round(100.0 * value, 2)


def tables(summaries: dict[str, dict], settings: EvaluationSettings) -> dict:
    """Table I, Table III and the data behind Fig. 5 and Fig. 8 from the method summaries."""
    table_1 = [
        {
            "method": label,
            "key": key,
            "mr_at_hp": _percent(summaries[key]["mr_at_hp"]),
            "ar_iog": _percent(summaries[key]["ar_iog"]),
            "map": _percent(summaries[key]["map"]),
            "paper_apparel_5k": dict(zip(("mr_at_hp", "ar_iog", "map"), PAPER_TABLE_1_APPAREL[key])),
        }
        for key, label in TABLE_METHODS
        if key in summaries
    ]
    table_3 = [
        {"method": label, "key": key, "roc_auc": summaries[key]["roc_auc"], "paper_apparel_5k": PAPER_TABLE_3_APPAREL[key]}
        for key, label in (("maskrcnn", "MaskRCNN"), ("latent_confidence_mask", "Confidence Mask"))
        if key in summaries
    ]
    curve = [
        {
            "p": p,
            "double_pick_rate": summaries[_p_key(p)]["double_pick_rate"],
            "pickable_area": summaries[_p_key(p)]["pickable_area"],
            "iop95_fraction": summaries[_p_key(p)]["iop95_fraction"],
            "predictions": summaries[_p_key(p)]["predictions"],
        }
        for p in settings.p_values
    ]
    points = {
        key: {
            "double_pick_rate": summaries[key]["double_pick_rate"],
            "pickable_area": summaries[key]["pickable_area"],
            "iop95_fraction": summaries[key]["iop95_fraction"],
        }
        for key in ("maskrcnn", "latent_prior_mean", "latent_union_nms")
        if key in summaries
    }
    return {"table_1": table_1, "table_3": table_3, "confidence_mask_curve": curve, "reference_points": points}


CAUSE_METHODS = (("maskrcnn", "MaskRCNN"), ("latent_prior_mean", "Latent Prior Mean"), ("latent_union_nms", "Latent Union NMS"))


def cause_table(run: EvaluationRun) -> list[dict]:
    """Per method (MaskRCNN, prior mean, Union-NMS, confidence masks for each p): the
    double picks split by cause and the false-positive picks (`PickCauses.summary`)."""
    rows = [{"method": label, "key": key, **run.pick_causes[key].summary()}
            for key, label in CAUSE_METHODS if key in run.pick_causes]
    rows += [{"method": f"Confidence Mask p = {p:.2f}", "key": _p_key(p), "p": p, **run.pick_causes[_p_key(p)].summary()}
             for p in run.settings.p_values if _p_key(p) in run.pick_causes]
    return rows


def _cell(value, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _views(settings: dict) -> str:
    if settings.get("flip_samples") and settings["num_samples"] > 1:
        return f" ({(settings['num_samples'] + 1) // 2} codes x image and mirror image)"
    return ""


def markdown(report: dict, matched_lines: list[str] | None = None) -> str:
    """The tables of ``report`` as Markdown (with the matched comparison's lines, if given)."""
    lines = [
        "# Evaluation",
        "",
        f"Checkpoint `{report['checkpoint']}`, baseline `{report.get('baseline') or 'none'}`, "
        f"data `{report['data']}` ({report['images']} images), K = {report['settings']['num_samples']}"
        f"{_views(report['settings'])}, "
        f"p = {report['settings']['p']}, score threshold {report['settings']['score_threshold']}.",
        "",
        "## Table I (percent; the paper's Apparel-5k numbers in brackets)",
        "",
        "| Method | MR@HP | AR (IoG) | mAP |",
        "| --- | --- | --- | --- |",
    ]
    for row in report["table_1"]:
        paper = row["paper_apparel_5k"]
        lines.append(
            f"| {row['method']} | {_cell(row['mr_at_hp'], 1)} ({paper['mr_at_hp']}) | "
            f"{_cell(row['ar_iog'], 1)} ({paper['ar_iog']}) | {_cell(row['map'], 1)} ({paper['map']}) |"
        )
    lines += ["", "## Table III: ROC AUC of the scores for IoU >= 0.5", "", "| Method | ROC AUC | paper (Apparel-5k) |", "| --- | --- | --- |"]
    for row in report["table_3"]:
        lines.append(f"| {row['method']} | {_cell(row['roc_auc'])} | {row['paper_apparel_5k']} |")
    lines += [
        "",
        "## Fig. 5 and Fig. 8 data: confidence masks for each p",
        "",
        "| p | double-pick rate | pickable area | IoP > 0.95 | predictions |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in report["confidence_mask_curve"]:
        lines.append(
            f"| {row['p']:.2f} | {_cell(row['double_pick_rate'])} | {_cell(row['pickable_area'])} | "
            f"{_cell(row['iop95_fraction'])} | {row['predictions']} |"
        )
    for key, point in report["reference_points"].items():
        lines.append(
            f"| {key} | {_cell(point['double_pick_rate'])} | {_cell(point['pickable_area'])} | "
            f"{_cell(point['iop95_fraction'])} | |"
        )
    lines += _curve_markdown(report.get("operating_curves") or {})
    if matched_lines:
        lines += ["", "## Matched comparison: the baselines at the confidence masks' operating point", ""] + matched_lines
    if report.get("double_pick_targets"):
        lines += [
            "",
            "## Double-pick targets",
            "",
            "Each target as stated (thresholds in `latent_maskrcnn.evaluation.targets`), the measured numbers "
            "(double-pick rate D / N, pickable area, Table I in percent) and whether it is met. (a) and (b2) are "
            "decided on the paired-bootstrap interval of their margin (measured minus the limit): met only where it "
            "lies below zero. The targets at different pickable areas say nothing about which method is better: "
            "the matched comparison above does. The grasp target (chosen grasps of the node's planner) is measured "
            "on a replayed bag by `latent-seg sweep-p`.",
            "",
        ] + targets_markdown(report["double_pick_targets"])
    lines += _cause_markdown(report.get("double_pick_causes") or [])
    lines += _probe_markdown(report.get("pair_probe"))
    lines += ["", "## Pictures", ""] + [f"- `{name}`" for name in report["files"]["pictures"]] + [""]
    return "\n".join(lines)


def _curve_markdown(curves: dict) -> list[str]:
    if not curves:
        return []
    lines = [
        "",
        "## Operating curves (Fig. 5)",
        "",
        "Each method over its knob: D / N, pickable area fraction (predicted mask area over ground-truth area; "
        "over 1 where masks cover floor or overlap), N, D over the circles on items, and the planner's chosen "
        "grasps (share that double-picks, mean cups sealed on one item) where a planner was given.",
        "",
        "| method | knob | D / N (%) | pickable area | N | D / on items (%) | grasps double-picking (%) | mean sealed cups |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for curve in curves.values():
        for point in curve["points"]:
            lines.append(
                f"| {curve['label']} | {curve['knob']} = {point[curve['knob']]:g} | {_percent_cell(point.get('double_pick_rate'))} | "
                f"{_cell(point.get('pickable_area'), 3)} | {_cell(point.get('picks'), 0)} | "
                f"{_percent_cell(point.get('double_pick_rate_on_items'))} | {_percent_cell(point.get('grasp_double_pick_rate'))} | "
                f"{_cell(point.get('mean_sealed_cups'), 2)} |")
    return lines


def _percent_cell(value) -> str:
    return "n/a" if value is None else f"{100.0 * value:.2f}"


def _cause_markdown(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    lines = [
        "",
        "## Double picks by cause (percent of the circles inside exactly one predicted mask, N)",
        "",
        "The cause columns partition the double-pick rate D / N (first match wins: both halves of a "
        "seamless pair labelled as two, both parts of a glare-striped item labelled as two, another "
        "seamless-pair contact, clear film, glare stripe, plain items only, unknown kinds). False positives: circles of N that touch no item at all (not in D / N). "
        "On items: D over the circles of N that touch an item (false positives lower D / N; not this).",
        "",
        "| Method | N | double picks | " + " | ".join(CAUSES) + " | false positives | double picks, on items |",
        "| --- | --- | --- | " + " | ".join("---" for _ in CAUSES) + " | --- | --- |",
    ]
    for row in rows:
        causes = " | ".join(_percent_cell(row["causes"][cause]["rate"]) for cause in CAUSES)
        lines.append(f"| {row['method']} | {row['picks']} | {_percent_cell(row['double_pick_rate'])} | {causes} | "
                     f"{_percent_cell(row['false_positive_rate'])} | {_percent_cell(row['double_pick_rate_on_items'])} |")
    unknown = max(row["images_without_kinds"] for row in rows)
    if unknown:
        lines += ["", f"{unknown} image(s) carry no ambiguity kinds; their double picks count as unknown."]
    return lines


def _probe_markdown(probe: dict | None) -> list[str]:
    if probe is None:
        return []
    lines = [
        "",
        f"## Seamless-pair probe ({probe['pairs']} pairs: {probe['pairs_labelled']['split']} labelled as two, "
        f"{probe['pairs_labelled']['merged']} as one)",
        "",
        f"Answer of a prediction: 'one' (a mask matches the merged outline, IoU >= {probe['iou_threshold']}), "
        f"'two' (masks match both halves), 'both', 'neither'. Seam covered: a mask holds >= "
        f"{probe['seam_fraction']} of each half.",
        "",
    ]
    if probe["pairs"] == 0:
        dropped = probe.get("dropped") or {}
        return lines + ["No usable seamless pair in the evaluated images" + (f" (dropped: {dropped})." if dropped else ".")]
    samples = probe.get("samples")
    if samples:
        answers = samples["answers"]
        lines += [
            f"K = {samples['num_samples']} samples: pairs whose samples hold both answers (mixed) "
            f"{_percent_cell(samples['mixed_fraction'])} %, all 'one' {_percent_cell(samples['all_one_fraction'])} %, "
            f"all 'two' {_percent_cell(samples['all_two_fraction'])} %; sample answers one / two / both / neither "
            f"{_percent_cell(answers['one'])} / {_percent_cell(answers['two'])} / {_percent_cell(answers['both'])} / "
            f"{_percent_cell(answers['neither'])} %; samples covering the seam {_percent_cell(samples['seam_covered_fraction'])} %.",
            "",
        ]
    lines += [
        "| Method | one | two | both | neither | seam covered | labelled two | labelled one |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in probe["methods"].items():
        answers = row["answers"]
        lines.append(
            f"| {name} | {_percent_cell(answers['one'])} | {_percent_cell(answers['two'])} | {_percent_cell(answers['both'])} | "
            f"{_percent_cell(answers['neither'])} | {_percent_cell(row['seam_covered'])} | "
            f"{_percent_cell(row['seam_covered_split'])} | {_percent_cell(row['seam_covered_merged'])} |"
        )
    return lines


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_report(run: EvaluationRun, out_dir: str | Path, checkpoint: str, data: str, baseline: str | None = None) -> dict:
    """Summaries, tables, pictures, ``results.json`` and ``results.md`` in ``out_dir``."""
    from latent_maskrcnn.evaluation.plots import plot_double_pick, plot_double_pick_causes, plot_sample_grid, plot_score_quality

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    summaries = {name: metrics.summary() for name, metrics in run.metrics.items()}
    report = {
        "checkpoint": str(checkpoint),
        "baseline": None if baseline is None else str(baseline),
        "data": str(data),
        "images": run.images,
        "settings": asdict(run.settings),
        **tables(summaries, run.settings),
        "double_pick_causes": cause_table(run),
        "pair_probe": summarize_probe(run.probe, run.settings.probe_settings, run.probe_dropped) if run.settings.probe else None,
        "methods": summaries,
    }
    matched = matched_result(run)
    if run.curves:
        report["operating_curves"] = {method: {"label": curve.label, "knob": curve.knob, "points": curve.points()}
                                      for method, curve in run.curves.items()}
        (out / "curves.json").write_text(json.dumps(
            {"images": run.images, "settings": asdict(run.settings),
             "curves": [curve.to_dict() for curve in run.curves.values()]}) + "\n")
    if matched is not None:
        report["matched_comparison"] = matched.to_dict()
        matched_lines = ["# Matched comparison", ""] + comparison_markdown(matched) + [""]
        (out / "matched.md").write_text("\n".join(matched_lines))
    report["double_pick_targets"] = (double_pick_targets(_json_safe(report), target_margins(run), f"{run.images} scenes")
                                     + matched_target_lines(run, matched))
    pictures = []
    plot_double_pick(report, out / "fig5_double_pick.png")
    pictures.append("fig5_double_pick.png")
    plot_score_quality(report, run.metrics, out / "fig8_score_quality.png")
    pictures.append("fig8_score_quality.png")
    if report["double_pick_causes"]:
        plot_double_pick_causes(report, out / "double_pick_causes.png")
        pictures.append("double_pick_causes.png")
    if run.grid:
        plot_sample_grid(run.grid, out / "samples.png")
        pictures.append("samples.png")
    report["files"] = {"json": "results.json", "markdown": "results.md", "pictures": pictures}
    if run.curves:
        report["files"]["curves"] = "curves.json"
    if matched is not None:
        report["files"]["matched"] = "matched.md"
    report["seconds"] = {**run.seconds, "summaries_and_plots": round(time.perf_counter() - start, 3)}
    report = _json_safe(report)
    (out / "results.json").write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    (out / "results.md").write_text(markdown(report, None if matched is None else comparison_markdown(matched)))
    return report
