"""The p sweep: how the double-pick rate and the pickable area trade off as p varies.

An operator picks p for the cell from this (paper Fig. 5, Section V-D): the network samples
each frame once, the kept samples are re-aggregated for every p, and every p is scored with
the replay scorer. The prior-mean prediction (the plain MaskRCNN-like point estimate) is
scored beside them; it decodes a different latent code, so it costs one more network pass per
frame (``include_prior_mean=False`` skips it).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from latent_segmentation_ros.core.camera_sync import SyncPolicy
from latent_segmentation_ros.core.heap import HeapTrimmer
from latent_segmentation_ros.replay.bag_io import BagError, BagReader
from latent_segmentation_ros.replay.ground_truth import GroundTruthStream, ground_truth_topics
from latent_segmentation_ros.replay.report import ReportAccumulator
from latent_segmentation_ros.replay.runner import PairSetup, PairStream, _Progress, node_sync_policy
from latent_segmentation_ros.replay.scoring import Scorer, ScoringConfig
from latent_segmentation_ros.replay.synthetic_bag import CAMERAS, image_topic

DEFAULT_PS = tuple(round(0.1 * step, 1) for step in range(1, 11))
PRIOR_MEAN = "prior_mean"


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

    def __post_init__(self) -> None:
        self.bag, self.out_dir = Path(self.bag), Path(self.out_dir)
        ps = [float(p) for p in self.ps]
        if not ps or any(not 0.0 < p <= 1.0 for p in ps):
            raise ValueError(f"every p must lie in (0, 1], got {ps}")
        self.ps = sorted(set(ps))
        if not 0.0 <= self.target_double_pick <= 1.0:
            raise ValueError(f"target double-pick rate must be a fraction in [0, 1], got {self.target_double_pick}")


def sweep_p(options: SweepOptions, setup: PairSetup) -> dict[str, Any]:
    """Run the sweep; writes sweep.json, sweep.md and fig5_double_pick_vs_pickable_area.png."""
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
    calls_before = pipeline.network_calls

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
                    score(str(options.ps[0]), frame_index, pair, results)
                    for p in options.ps[1:]:
                        pipeline.set_p(p)
                        score(str(p), frame_index, pair, pipeline.refresh())
                    if options.include_prior_mean:
                        pipeline.set_mode(PRIOR_MEAN)
                        score(PRIOR_MEAN, frame_index, pair, pipeline.refresh())
                    progress.update()
                    heap.tick()
                    if options.max_pairs is not None and frame_index + 1 >= options.max_pairs:
                        break
        finally:
            progress.close()

    rows = []
    for key, accumulator in accumulators.items():
        summary = accumulator.summary()
        rows.append({
            "p": None if key == PRIOR_MEAN else float(key),
            "mode": PRIOR_MEAN if key == PRIOR_MEAN else "confidence_mask",
            "double_pick_rate": summary["double_pick_rate"],
            "pickable_area": summary["pickable_area"],
            "mr_at_hp": summary["mr_at_hp"],
            "mean_sealed_cups": summary["mean_sealed_cups"],
            "mean_sealed_cups_on_truth": summary["mean_sealed_cups_on_truth"],
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
        "target_double_pick": options.target_double_pick,
        "recommended_p": min(meeting) if meeting else None,
        "pairs": stream.pairs,
        "network_calls": pipeline.network_calls - calls_before,
        "counts": stream.counts(),
        "stopped": stream.stopped,
        "rows": rows,
    }
    plot = plot_fig5(rows, options.out_dir / "fig5_double_pick_vs_pickable_area.png")
    result["plot"] = str(plot)
    (options.out_dir / "sweep.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    (options.out_dir / "sweep.md").write_text(sweep_markdown(result), encoding="utf-8")
    return result


def sweep_table(result: dict[str, Any]) -> str:
    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.2f} %"

    def num(value: float | None, digits: int = 3) -> str:
        return "n/a" if value is None else f"{value:.{digits}f}"

    lines = [
        "| p | double-pick rate | pickable area | MR@HP | mean sealed cups | grasp double picks |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in result["rows"]:
        name = "prior mean" if row["p"] is None else f"{row['p']:.2f}"
        lines.append(
            f"| {name} | {pct(row['double_pick_rate'])} | {num(row['pickable_area'])} | {num(row['mr_at_hp'])} | "
            f"{num(row['mean_sealed_cups'], 2)} | {pct(row['grasp_double_pick_rate'])} |"
        )
    return "\n".join(lines)


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
        f"- model: `{result.get('model_id')}`, K = {result.get('num_samples')}",
        f"- pairs: {result['pairs']}, network calls: {result['network_calls']}",
    ]
    if result.get("stopped"):
        lines.append(f"- **stopped early at frame {result['stopped']['frame']}:** {result['stopped']['error']}")
    lines += ["", sweep_table(result), "", recommendation(result), "", f"![Fig. 5]({Path(result['plot']).name})", ""]
    return "\n".join(lines)


def plot_fig5(rows: list[dict[str, Any]], path: Path) -> Path:
    """Double-pick rate (x, %) against pickable area fraction (y), one point per p."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5.5, 4.2), dpi=110)
    sweep = [r for r in rows if r["p"] is not None and r["double_pick_rate"] is not None and r["pickable_area"] is not None]
    if sweep:
        x = np.array([100 * r["double_pick_rate"] for r in sweep])
        y = np.array([r["pickable_area"] for r in sweep])
        axis.plot(x, y, "o-", color="tab:blue", label="p-confidence mask")
        for r, xi, yi in zip(sweep, x, y):
            axis.annotate(f"{r['p']:.1f}", (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7)
    for r in rows:
        if r["p"] is None and r["double_pick_rate"] is not None and r["pickable_area"] is not None:
            axis.plot([100 * r["double_pick_rate"]], [r["pickable_area"]], "s", color="tab:red", label="prior mean")
    axis.set_xlabel("Double pick rate % (lower better)")
    axis.set_ylabel("Pickable area fraction (higher better)")
    axis.set_title("Double pick rate vs pickable area")
    axis.grid(True, alpha=0.3)
    if sweep or any(r["p"] is None for r in rows):
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
