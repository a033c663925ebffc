"""The p sweep: how the double-pick rate and the pickable area trade off as p varies.

An operator picks p for the cell from this (paper Fig. 5, Section V-D): the network samples
each frame once, the kept samples are re-aggregated for every p, and every p is scored with
the replay scorer. The prior-mean prediction (the plain MaskRCNN-like point estimate) is
scored beside them; it decodes a different latent code, so it costs one more network pass per
frame (``include_prior_mean=False`` skips it). A MaskRCNN baseline (a checkpoint saved with
``latent_dim = 0``, loaded as its own pipeline) is one more scored method: one pass of that
network per frame, the same scorer, circles and grasp planner.

Per method: D / N, pickable area, the false-positive picks (circles of N on no item), MR@HP and
the chosen grasps (the node's planner) that double-pick; and the issue's grasp target: the
share of chosen grasps that double-pick with confidence masks at p = 0.9 is at most half of
the prior mean's (`latent_maskrcnn.evaluation.targets`).

Beside the sweep, the baselines' operating curves over the mask threshold (`sweep_curves`: the
prior mean and MaskRCNN, each with and without the mirror view) and the matched comparison at
the confidence masks' pickable area and N, with paired-bootstrap intervals over the images.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from latent_maskrcnn.evaluation.comparison_defaults import BOOTSTRAP_RESAMPLES, MASK_THRESHOLDS
from latent_segmentation_ros.core.camera_sync import SyncPolicy
from latent_segmentation_ros.core.parameters import SEGMENTATION_PARAMETERS
from latent_segmentation_ros.core.heap import HeapTrimmer
from latent_segmentation_ros.replay.bag_io import BagError, BagReader
from latent_segmentation_ros.replay.ground_truth import GroundTruthStream, ground_truth_topics
from latent_segmentation_ros.replay.report import ReportAccumulator
from latent_segmentation_ros.replay.runner import PairSetup, PairStream, _Progress, node_sync_policy
from latent_segmentation_ros.replay.scoring import Scorer, ScoringConfig
from latent_segmentation_ros.replay.synthetic_bag import CAMERAS, image_topic

DEFAULT_PS = tuple(round(0.1 * step, 1) for step in range(1, 11))
PRIOR_MEAN = "prior_mean"
BASELINE = "maskrcnn_baseline"
METHOD_LABELS = {PRIOR_MEAN: "prior mean", BASELINE: "MaskRCNN baseline"}
CURVE_OF_ROW = {PRIOR_MEAN: ("prior_mean", "mask_threshold"), BASELINE: ("maskrcnn", "mask_threshold")}
"""The operating curve a baseline row is the default point of (the others are confidence masks)."""


@dataclass
class SweepOptions:
    bag: Path
    out_dir: Path
    ps: Sequence[float] = DEFAULT_PS
    target_double_pick: float = 0.01
    include_prior_mean: bool = True
    image_topics: tuple[str, ...] = tuple(image_topic(camera) for camera in CAMERAS)
    sync: SyncPolicy = field(default_factory=node_sync_policy)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    progress: bool = True
    max_pairs: int | None = None
    mask_thresholds: Sequence[float] = MASK_THRESHOLDS
    mirror_baselines: bool = True
    reference_p: float = SEGMENTATION_PARAMETERS["p"].default
    resamples: int = BOOTSTRAP_RESAMPLES

    def __post_init__(self) -> None:
        from latent_maskrcnn.model.postprocess import validate_mask_threshold

        self.bag, self.out_dir = Path(self.bag), Path(self.out_dir)
        ps = [float(p) for p in self.ps]
        if not ps or any(not 0.0 < p <= 1.0 for p in ps):
            raise ValueError(f"every p must lie in (0, 1], got {ps}")
        self.mask_thresholds = sorted({validate_mask_threshold(t) for t in self.mask_thresholds})
        if self.curves:
            if not 0.0 < float(self.reference_p) <= 1.0:
                raise ValueError(f"the reference p must lie in (0, 1], got {self.reference_p}")
            ps.append(float(self.reference_p))
        if isinstance(self.resamples, bool) or not isinstance(self.resamples, int) or self.resamples < 1:
            raise ValueError(f"resamples must be a positive integer, got {self.resamples!r}")
        self.ps = sorted(set(ps))
        if not 0.0 <= self.target_double_pick <= 1.0:
            raise ValueError(f"target double-pick rate must be a fraction in [0, 1], got {self.target_double_pick}")

    @property
    def curves(self) -> bool:
        """Whether the baselines' curves over the mask threshold are drawn (thresholds given)."""
        return bool(self.mask_thresholds)


def load_baseline(checkpoint: str | Path, setup: PairSetup) -> Any:
    """The MaskRCNN baseline as a pipeline that decodes one prediction per image (prior-mean
    mode; a ``latent_dim = 0`` model has no latent), with the sweep's score threshold and mask
    area. Raises ValueError (CheckpointLoadError) naming the file and the cause."""
    import logging

    from latent_segmentation_ros.core.pipeline import PerceptionPipeline

    settings = setup.pipeline.settings
    baseline = PerceptionPipeline.from_checkpoint(
        checkpoint, device=setup.pipeline.device, settings=replace(settings, mode=PRIOR_MEAN), warm_up_kernel=False,
    )
    latent_dim = getattr(baseline.model, "latent_dim", 0)
    if latent_dim:
        logging.getLogger(__name__).warning(
            "the baseline %s has latent_dim = %s: its prior-mean prediction stands in for MaskRCNN", checkpoint, latent_dim)
    return baseline


def method_label(row: dict[str, Any]) -> str:
    """How a sweep row is named in tables: ``p = 0.90``, ``prior mean``, ``MaskRCNN baseline``."""
    if row.get("method") in METHOD_LABELS:
        return METHOD_LABELS[row["method"]]
    return f"p = {row['p']:.2f}"


def sweep_p(
    options: SweepOptions, setup: PairSetup, baseline: Any | None = None, observe: Any = None
) -> dict[str, Any]:
    """Run the sweep; writes sweep.json, sweep.md and fig5_double_pick_vs_pickable_area.png.

    ``baseline``: a pipeline from :func:`load_baseline` (or any `PerceptionPipeline` of a plain
    MaskRCNN), scored as one more method with the same circles and planner. ``observe(images,
    results)`` is called with every pair's images and the pipeline's results at the first p (the
    demo replays those instead of running the network a second time)."""
    from latent_maskrcnn.evaluation.double_pick import double_pick_rate_on_items
    from latent_segmentation_ros.core.messages import (
        build_confidence_mask_array,
        build_grasp_candidate_array,
        confidence_mask_array_to_result,
        get_typestore,
        grasp_candidate_array_to_list,
        rosbags_factory,
    )

    heap = HeapTrimmer()  # flat resident memory over long bags (see heap.py)
    typestore = get_typestore()
    factory = rosbags_factory(typestore)
    scorer = Scorer(options.scoring, coco_metrics=False)
    pipeline = setup.pipeline
    accumulators: dict[str, ReportAccumulator] = {str(p): ReportAccumulator() for p in options.ps}
    if options.include_prior_mean:
        accumulators[PRIOR_MEAN] = ReportAccumulator()
    if baseline is not None:
        accumulators[BASELINE] = ReportAccumulator()
    false_positives = {key: 0 for key in accumulators}
    calls_before = pipeline.network_calls
    baseline_calls_before = 0 if baseline is None else baseline.network_calls
    curves = None
    if options.curves:
        from latent_segmentation_ros.replay.sweep_curves import SweepCurves

        curves = SweepCurves(options.mask_thresholds, pipeline.settings.mask_threshold, setup.planner,
                             options.scoring.gripper(), options.mirror_baselines)

    def score(key: str, frame_index: int, pair, results) -> None:
        outcome = setup.outcome(results)
        for frame, result, grasps in zip(pair, outcome.results, outcome.grasps):
            masks_message = build_confidence_mask_array(result, frame.header, factory)
            grasp_message = build_grasp_candidate_array(grasps, frame.header, frame.camera, setup.cup_radius, factory)
            record = scorer.score(
                frame=frame_index,
                stamp_ns=frame.stamp_ns,
                result=confidence_mask_array_to_result(masks_message),
                truth_masks=truth_masks[frame.camera],
                grasps=grasp_candidate_array_to_list(grasp_message),
                cup_radius=setup.cup_radius,
                latency_ms=result.inference_time_ms,
            )
            accumulators[key].add(record)
            if record.evaluation is not None and record.evaluation.picks is not None:
                false_positives[key] += int(record.evaluation.picks.false_positives)
            if curves is not None:
                method, value = CURVE_OF_ROW.get(key, ("confidence_mask", None))
                curves.add_record(method, float(key) if value is None else pipeline.settings.mask_threshold,
                                  frame_index, record)

    with BagReader(options.bag) as reader:
        stream = PairStream(reader, typestore, options.image_topics, options.sync)
        truth_topics = ground_truth_topics(reader, dict(zip(stream.cameras, options.image_topics)))
        if not truth_topics:
            raise BagError(
                f"sweep-p needs ground truth (/<camera>/ground_truth) in {options.bag}; topics in the bag: {reader.topic_list()}"
            )
        options.out_dir.mkdir(parents=True, exist_ok=True)
        total = stream.expected_pairs if options.max_pairs is None else min(stream.expected_pairs, options.max_pairs)
        progress = _Progress(options.progress, total)
        try:
            with GroundTruthStream(options.bag, truth_topics, typestore) as truth:
                for frame_index, (pair, _log_time) in enumerate(stream):
                    truth_masks = {frame.camera: truth.lookup(frame.camera, frame.stamp_ns) for frame in pair}
                    pipeline.update_settings(mode="confidence_mask", p=options.ps[0])
                    results = pipeline.process([frame.rgb for frame in pair], setup.cameras)
                    if observe is not None:
                        observe([frame.rgb for frame in pair], results)
                    score(str(options.ps[0]), frame_index, pair, results)
                    for p in options.ps[1:]:
                        pipeline.set_p(p)
                        score(str(p), frame_index, pair, pipeline.refresh())
                    images = [frame.rgb for frame in pair]
                    if options.include_prior_mean:
                        pipeline.set_mode(PRIOR_MEAN)
                        score(PRIOR_MEAN, frame_index, pair, pipeline.refresh())
                        if curves is not None:
                            curves.threshold_points("prior_mean", pipeline, frame_index, pair, truth_masks, images)
                    if baseline is not None:
                        score(BASELINE, frame_index, pair, baseline.process(images, setup.cameras))
                        if curves is not None:
                            curves.threshold_points("maskrcnn", baseline, frame_index, pair, truth_masks, images)
                    progress.update()
                    heap.tick()
                    if options.max_pairs is not None and frame_index + 1 >= options.max_pairs:
                        break
        finally:
            progress.close()

    rows = []
    for key, accumulator in accumulators.items():
        summary = accumulator.summary()
        picks = summary["picks"]
        rows.append({
            "method": key if key in METHOD_LABELS else "confidence_mask",
            "p": None if key in METHOD_LABELS else float(key),
            "mode": PRIOR_MEAN if key in METHOD_LABELS else "confidence_mask",
            "double_pick_rate": summary["double_pick_rate"],
            "picks": picks,
            "double_picks": summary["double_picks"],
            "pickable_area": summary["pickable_area"],
            "false_positive_picks": false_positives[key],
            "false_positive_rate": false_positives[key] / picks if picks else None,
            "double_pick_rate_on_items": double_pick_rate_on_items(summary["double_picks"], picks, false_positives[key]),
            "mr_at_hp": summary["mr_at_hp"],
            "mean_sealed_cups": summary["mean_sealed_cups"],
            "mean_sealed_cups_on_truth": summary["mean_sealed_cups_on_truth"],
            "grasps": summary["grasps"],
            "grasps_scored": accumulator.grasps_scored,
            "grasp_double_picks": summary["grasp_double_picks"],
            "grasp_double_pick_rate": summary["grasp_double_pick_rate"],
            "images": summary["images_with_ground_truth"],
        })
    meeting = [r["p"] for r in rows if r["p"] is not None and r["double_pick_rate"] is not None
               and r["double_pick_rate"] <= options.target_double_pick]
    result = {
        "title": "p sweep",
        "bag": str(options.bag),
        **setup.header_info,
        "mode": "confidence_mask",
        "baseline": None if baseline is None else baseline.model_id,
        "target_double_pick": options.target_double_pick,
        "recommended_p": min(meeting) if meeting else None,
        "pairs": stream.pairs,
        "network_calls": pipeline.network_calls - calls_before,
        "baseline_network_calls": 0 if baseline is None else baseline.network_calls - baseline_calls_before,
        "counts": {**stream.counts(), "truth_size_mismatches": scorer.truth_size_mismatches},
        "stopped": stream.stopped,
        "rows": rows,
    }
    curve_data, matched = ({}, None) if curves is None else curves.matched(options.reference_p, options.resamples,
                                                                             options.scoring.seed)
    result["grasp_target"] = grasp_target(rows, None if curves is None else curves.grasp_margin(options.resamples,
                                                                                                options.scoring.seed))
    if curve_data:
        result["mask_thresholds"] = list(options.mask_thresholds)
        result["curve_network_calls"] = curves.network_calls
        result["operating_curves"] = {method: {"label": curve.label, "knob": curve.knob, "points": curve.points()}
                                      for method, curve in curve_data.items()}
        (options.out_dir / "curves.json").write_text(json.dumps(
            {"bag": str(options.bag), "curves": [curve.to_dict() for curve in curve_data.values()]}) + "\n",
            encoding="utf-8")
    if matched is not None:
        result["matched_comparison"] = matched.to_dict()
    plot = plot_fig5(rows, options.out_dir / "fig5_double_pick_vs_pickable_area.png", result.get("operating_curves"))
    result["plot"] = str(plot)
    (options.out_dir / "sweep.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    (options.out_dir / "sweep.md").write_text(sweep_markdown(result), encoding="utf-8")
    return result


def grasp_target(rows: list[dict[str, Any]], margin: Any = None) -> dict[str, Any]:
    """The issue's grasp target on these rows: chosen grasps that double-pick with confidence
    masks at p = 0.9 at most half as often as with the prior mean (`targets.grasp_target`),
    decided by the interval of its ``margin`` when the curves give one."""
    from latent_maskrcnn.evaluation.targets import TARGET_P
    from latent_maskrcnn.evaluation.targets import grasp_target as check

    at_p = next((r for r in rows if r["p"] is not None and abs(r["p"] - TARGET_P) < 1e-9), None)
    prior = next((r for r in rows if r.get("method") == PRIOR_MEAN), None)
    count = "" if at_p is None or prior is None else (
        f"{at_p['grasps_scored']} and {prior['grasps_scored']} chosen grasps")
    result = check(None if at_p is None else at_p["grasp_double_pick_rate"],
                   None if prior is None else prior["grasp_double_pick_rate"], margin=margin, count=count)
    # the counts behind the shares: a small bag decides little
    result["grasps"] = {name: [row["grasp_double_picks"], row["grasps_scored"]]
                        for name, row in (("confidence_mask", at_p), ("prior_mean", prior)) if row is not None}
    return result


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f} %"


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def share_cell(part: int, whole: int) -> str:
    """``part/whole (x %)``: a share with the counts behind it."""
    return f"{part}/{whole}" + ("" if not whole else f" ({100 * part / whole:.1f} %)")


def sweep_table(result: dict[str, Any]) -> str:
    lines = [
        "| p | double-pick rate | pickable area | false-positive picks | MR@HP | mean sealed cups | grasp double picks |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in result["rows"]:
        name = method_label(row) if row["p"] is None else f"{row['p']:.2f}"
        lines.append(
            f"| {name} | {_pct(row['double_pick_rate'])} | {_num(row['pickable_area'])} | "
            f"{_pct(row.get('false_positive_rate'))} | {_num(row['mr_at_hp'])} | "
            f"{_num(row['mean_sealed_cups'], 2)} | "
            f"{share_cell(row.get('grasp_double_picks', 0), row.get('grasps_scored', 0))} |"
        )
    return "\n".join(lines)


def grasp_target_line(result: dict[str, Any]) -> str:
    target = result.get("grasp_target")
    if not target:
        return ""
    counts = target.get("grasps", {})
    shown = " against ".join(f"{d}/{n}" for d, n in counts.values())
    scored = f" ({shown} chosen grasps)" if len(counts) == 2 else ""
    return f"grasp target: {target['target']}; measured {target['measured']}{scored}: {target['status']}"


def comparison_table(result: dict[str, Any], p: float, markdown: bool = False) -> str:
    """Confidence masks at ``p``, the prior mean and the baseline (the rows present), each with
    D / N, pickable area, the chosen grasps that double-pick, the false-positive picks and D over
    the circles that touch an item: a
    small aligned text table for a terminal, or a Markdown table."""
    chosen = [r for r in result["rows"] if r["p"] is not None and abs(r["p"] - p) < 1e-9]
    chosen += [r for r in result["rows"] if r["p"] is None]
    header = ("method", "double picks (D/N)", "pickable area", "grasps double-picking", "false-positive picks",
              "double picks on items")
    table = [header]
    for row in chosen:
        name = f"confidence masks p = {row['p']:g}" if row["p"] is not None else method_label(row)
        table.append((
            name,
            f"{_pct(row['double_pick_rate'])} ({row['double_picks']}/{row['picks']})",
            _num(row["pickable_area"]),
            share_cell(row["grasp_double_picks"], row["grasps_scored"]),
            f"{_pct(row['false_positive_rate'])} ({row['false_positive_picks']}/{row['picks']})",
            _pct(row.get("double_pick_rate_on_items")),
        ))
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
        return "\n".join(lines + ["| " + " | ".join(line) + " |" for line in table[1:]])
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in table)


def recommendation(result: dict[str, Any]) -> str:
    target = f"{100 * result['target_double_pick']:.2f} %"
    if result["recommended_p"] is None:
        return f"no p in the sweep reaches a double-pick rate <= {target}"
    return (
        f"smallest p with double-pick rate <= {target}: p = {result['recommended_p']:.2f} "
        f"(ros2 param set /latent_segmentation p {result['recommended_p']:.2f})"
    )


def sweep_markdown(result: dict[str, Any]) -> str:
    lines = [
        "# p sweep",
        "",
        f"- bag: `{result['bag']}`",
        f"- model: `{result.get('model_id')}`, K = {result.get('num_samples')}"
        f"{' (half on the mirror image)' if result.get('flip_samples') else ''}",
        f"- pairs: {result['pairs']}, network calls: {result['network_calls']}",
    ]
    if result.get("stopped"):
        lines.append(f"- **stopped early at frame {result['stopped']['frame']}:** {result['stopped']['error']}")
    if result.get("baseline"):
        lines.append(f"- MaskRCNN baseline: `{result['baseline']}` ({result['baseline_network_calls']} network calls)")
    lines += ["", "False-positive picks: circles inside exactly one predicted mask that touch no item (not in D / N). "
              "Grasp double picks: chosen grasps (the node's planner) whose sealed cups touch two or more items.",
              "", sweep_table(result), "", recommendation(result)]
    if result.get("grasp_target"):
        lines += ["", grasp_target_line(result)]
    if result.get("matched_comparison"):
        lines += ["", "## Matched comparison", ""] + matched_lines(result)
    lines += ["", f"![Fig. 5]({Path(result['plot']).name})", ""]
    return "\n".join(lines)


def matched_lines(result: dict[str, Any]) -> list[str]:
    """The matched comparison of a sweep result as Markdown lines (none without one)."""
    from latent_maskrcnn.evaluation.matched import comparison_markdown, comparison_from_dict

    data = result.get("matched_comparison")
    return comparison_markdown(comparison_from_dict(data)) if data else []


def plot_fig5(rows: list[dict[str, Any]], path: Path, curves: dict[str, Any] | None = None) -> Path:
    """Double-pick rate (x, %) against pickable area fraction (y), one point per p, and the
    baselines' curves over the mask threshold when given (``result["operating_curves"]``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5.5, 4.2), dpi=110)
    sweep = [r for r in rows if r["p"] is not None and r["double_pick_rate"] is not None and r["pickable_area"] is not None]
    if sweep:
        x = np.array([100 * r["double_pick_rate"] for r in sweep])
        y = np.array([r["pickable_area"] for r in sweep])
        axis.plot(x, y, "o-", color="tab:orange", label="p-confidence mask")
        for r, xi, yi in zip(sweep, x, y):
            axis.annotate(f"{r['p']:.1f}", (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7)
    styles = {PRIOR_MEAN: ("^", "tab:green"), BASELINE: ("s", "tab:blue")}  # as the curves of each
    for r in rows:
        if r["p"] is None and r["double_pick_rate"] is not None and r["pickable_area"] is not None:
            marker, colour = styles.get(r.get("method", PRIOR_MEAN), ("s", "tab:red"))
            axis.plot([100 * r["double_pick_rate"]], [r["pickable_area"]], marker, color=colour, label=method_label(r))
    if curves:
        from latent_maskrcnn.evaluation.plots import plot_threshold_curves

        plot_threshold_curves(axis, curves)
    axis.set_xlabel("Double pick rate % (lower better)")
    axis.set_ylabel("Pickable area: predicted / ground-truth item pixels")
    axis.set_title("Double pick rate vs pickable area")
    axis.grid(True, alpha=0.3)
    if axis.get_legend_handles_labels()[0]:
        axis.legend(fontsize=8)
    else:
        axis.text(0.5, 0.5, "no gripper circle fell inside exactly one predicted mask",
                  ha="center", va="center", transform=axis.transAxes, fontsize=9)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
