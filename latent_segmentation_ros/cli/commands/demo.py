"""`latent-seg demo` (what `make demo` runs): a small synthetic bag replayed with the bundled model,
and the double-pick comparison on that bag: confidence masks at the configured p against the prior
mean and the bundled MaskRCNN baseline, each with and without the mirror view, read along their
curves over the mask threshold at the confidence masks' pickable area and N, with paired-bootstrap
intervals (`replay.sweep`, the same scorer, circles and planner)."""
from __future__ import annotations

import argparse

HELP = ("make a small synthetic two-camera bag, replay it with the bundled demo model, print the report "
        "and the double-pick comparison with the prior mean and the MaskRCNN baseline at equal pickable area")

MARKER = ".latent_seg_demo"
COMPARISON = "double_pick_comparison"
DEMO_MASK_THRESHOLDS = (0.5, 0.7, 0.85, 0.95)
"""Fewer points than `sweep-p`'s curves, so the demo stays short."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from latent_segmentation_ros.core.parameter_options import (
        add_comparison_mask_threshold,
        add_device_option,
        add_flip_option,
        add_gripper_options,
        add_node_option,
        add_seed_option,
        add_threads_option,
    )

    parser.add_argument("--out", default="demo_output", help="output folder (default demo_output)")
    parser.add_argument("--frames", type=int, default=24, help="frames per camera (default 24)")
    add_seed_option(parser, "scene seed")
    parser.add_argument("--height", type=int, default=240, help="image height (default 240)")
    parser.add_argument("--width", type=int, default=320, help="image width (default 320)")
    parser.add_argument("--checkpoint", default=None, help="model .safetensors (default: the bundled demo model)")
    parser.add_argument("--baseline", default=None,
                        help="MaskRCNN checkpoint (latent_dim = 0) to compare with "
                             "(default: the bundled models/demo/maskrcnn_baseline.safetensors, if present)")
    add_node_option(parser, "--samples", "num_samples", "samples K per image")
    add_flip_option(parser)
    add_comparison_mask_threshold(parser, "probability at which the confidence masks are binarised, in (0, 1)")
    add_device_option(parser)
    add_threads_option(parser)
    add_gripper_options(parser)
    from latent_segmentation_ros.cli.commands.sweep_p import add_curve_options

    add_curve_options(parser, reference_p=False)
    parser.set_defaults(mask_thresholds=list(DEMO_MASK_THRESHOLDS))


def _prepare_out(out) -> None:
    """Reuse a folder the demo made before; refuse to write into anything else."""
    import shutil

    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise ValueError(f"{out} exists and was not made by the demo; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by latent-seg demo\n")


def _baseline(args: argparse.Namespace, setup):
    """(baseline pipeline or None, one line saying what the comparison uses). A missing or
    unloadable baseline is said in that line; the demo goes on with the prior mean only."""
    from latent_segmentation_ros.core.resources import DEMO_BASELINE, default_baseline
    from latent_segmentation_ros.replay.sweep import load_baseline

    path = args.baseline
    if path is None:
        try:
            path = default_baseline()
        except FileNotFoundError:
            return None, f"no MaskRCNN baseline bundled ({DEMO_BASELINE}); comparing with the prior mean only"
    try:
        baseline = load_baseline(path, setup)
    except ValueError as error:
        return None, f"MaskRCNN baseline not used ({error}); comparing with the prior mean only"
    return baseline, f"MaskRCNN baseline: {baseline.model_id} ({path})"


def compare(out, setup, baseline, baseline_note: str, scoring=None, curves: dict | None = None, observe=None) -> dict:
    """The double-pick comparison on the demo bag: a sweep at the configured p with the prior
    mean and the baseline, their curves over the mask threshold (``curves``: SweepOptions'
    curve fields) and the matched comparison; writes DIR/double_pick_comparison.{json,md}.
    ``observe``: `sweep_p`'s, to keep the confidence masks of each pair."""
    import json

    from latent_maskrcnn.evaluation.matched import comparison_from_dict, comparison_text
    from latent_segmentation_ros.replay.scoring import ScoringConfig
    from latent_segmentation_ros.replay.sweep import SweepOptions, comparison_table, grasp_target_line, matched_lines, sweep_p

    p = setup.header_info["p"]
    curves = {"mask_thresholds": DEMO_MASK_THRESHOLDS, **(curves or {}), "reference_p": p}
    options = SweepOptions(bag=out / "bag", out_dir=out / "comparison", ps=[p], progress=False,
                           scoring=scoring or ScoringConfig(), **curves)
    result = sweep_p(options, setup, baseline, observe)
    table = comparison_table(result, p)
    comparison = {
        "title": "Double-pick comparison on the demo bag",
        "bag": str(out / "bag"),
        "model_id": result.get("model_id"),
        "p": p,
        "num_samples": result.get("num_samples"),
        "baseline": result.get("baseline"),
        "baseline_note": baseline_note,
        "images": max((row["images"] for row in result["rows"]), default=0),
        "rows": [row for row in result["rows"] if row["p"] is None or abs(row["p"] - p) < 1e-9],
        "grasp_target": result.get("grasp_target"),
        "matched_comparison": result.get("matched_comparison"),
        "sweep": str(out / "comparison" / "sweep.json"),
    }
    (out / f"{COMPARISON}.json").write_text(json.dumps(comparison, indent=2), encoding="utf-8")
    lines = [
        f"# {comparison['title']}",
        "",
        f"- model: `{comparison['model_id']}`, K = {comparison['num_samples']}, p = {p}",
        f"- {baseline_note}",
        f"- images with ground truth: {comparison['images']}",
        "",
        "D/N: gripper circles inside exactly one predicted mask (N) that touch two or more items (D). "
        "Grasps: the node's planner's chosen grasp per image whose sealed cups touch two or more items. "
        "False-positive picks: circles of N on no item. Pickable area fraction: predicted mask area over "
        "ground-truth area (over 1 where masks cover floor or overlap).",
        "",
        "## Each method at its own setting (different pickable areas: not a comparison)",
        "",
        comparison_table(result, p, markdown=True),
        "",
        grasp_target_line(result),
        "",
    ]
    if result.get("matched_comparison"):
        lines += ["## Matched comparison: the baselines at the confidence masks' pickable area and N", "",
                  *matched_lines(result), ""]
        comparison["matched_text"] = "\n".join(comparison_text(comparison_from_dict(result["matched_comparison"])))
    (out / f"{COMPARISON}.md").write_text("\n".join(lines), encoding="utf-8")
    comparison["table"] = table
    return comparison


class RecordedPairs:
    """The pipeline's outcome for each pair of the bag, kept in order as the comparison's sweep
    made them; `process_pair` hands them to the replay, which reads the same bag with the same
    pairing. A pair whose images differ from the kept ones is run through the pipeline."""

    def __init__(self, setup) -> None:
        self.setup = setup
        self.pairs: list = []

    def observe(self, images, results) -> None:
        self.pairs.append(([image.copy() for image in images], self.setup.outcome(results)))

    def process_pair(self, images):
        import numpy as np

        if self.pairs:
            kept, outcome = self.pairs.pop(0)
            if len(kept) == len(images) and all(np.array_equal(a, b) for a, b in zip(kept, images)):
                return outcome
            self.pairs.clear()  # out of step: run the rest through the pipeline
        return self.setup.process_pair(images)


def run(args: argparse.Namespace) -> int:
    import sys
    import time
    from pathlib import Path

    from latent_segmentation_ros.core.cpu_threads import configure_torch_cpu

    try:
        configure_torch_cpu(args.threads)  # before torch is imported
    except ValueError as error:
        print(f"demo: {error}", file=sys.stderr)
        return 2
    from latent_segmentation_ros.cli.commands.replay import print_summary, scoring_config
    from latent_segmentation_ros.core.resources import DEMO_CHECKPOINT
    from latent_segmentation_ros.replay.bag_io import BagError
    from latent_segmentation_ros.replay.runner import ReplayOptions, build_pair_processor, replay_bag
    from latent_segmentation_ros.replay.synthetic_bag import write_synthetic_bag

    out = Path(args.out)
    start = time.perf_counter()
    try:
        if args.checkpoint is None:
            from latent_segmentation_ros.core.resources import default_checkpoint

            try:
                default_checkpoint()
            except FileNotFoundError:
                raise ValueError(
                    f"the bundled demo model {DEMO_CHECKPOINT} is missing. Train it on synthetic scenes "
                    f"(see `latent-seg train --help` and the README) and save it there, or run the demo "
                    f"with --checkpoint PATH"
                ) from None
        setup = build_pair_processor(args.checkpoint, mode="confidence_mask", samples=args.samples, device=args.device,
                                     flip_samples=args.flip_samples, mask_threshold=args.mask_threshold)
        baseline, baseline_note = _baseline(args, setup)
        _prepare_out(out)
        print(f"demo: writing a {args.frames}-frame synthetic two-camera bag to {out / 'bag'}")
        write_synthetic_bag(out / "bag", args.frames, args.seed, height=args.height, width=args.width)
        print(f"demo: replaying it with {setup.header_info['model_id']} "
              f"({setup.header_info['mode']}, p = {setup.header_info['p']}, K = {setup.header_info['num_samples']})")
        scoring = scoring_config(args)
    except (BagError, ValueError) as error:
        print(f"demo: {error}", file=sys.stderr)
        return 2
    from latent_segmentation_ros.cli.commands.sweep_p import curve_settings

    # The comparison runs first and keeps each pair's confidence masks; the replay then writes and
    # scores those (`RecordedPairs`) instead of running the network on the same frames again.
    recorded = RecordedPairs(setup)
    try:
        comparison = compare(out, setup, baseline, baseline_note, scoring, curve_settings(args), recorded.observe)
    except (BagError, ValueError) as error:
        print(f"demo: double-pick comparison not made: {error}", file=sys.stderr)
        return 2
    try:
        summary = replay_bag(
            ReplayOptions(bag=out / "bag", out_dir=out / "replay", scoring=scoring),
            recorded.process_pair, setup.cup_radius, setup.header_info,
        )
    except (BagError, ValueError) as error:
        print(f"demo: {error}", file=sys.stderr)
        return 2
    print_summary(summary.report, str(out / "replay"))
    print(f"demo: {baseline_note}")
    print(f"demo: each method at its own setting on the same bag ({comparison['images']} images, the same gripper "
          f"circles of radius {scoring.gripper_radius} px, grasps from the node's planner; different pickable areas, "
          "so not a comparison):")
    print(comparison["table"])
    if comparison["grasp_target"]:
        from latent_segmentation_ros.replay.sweep import grasp_target_line

        print(grasp_target_line({"grasp_target": comparison["grasp_target"]}))
    if comparison.get("matched_text"):
        print("demo: the comparison, at equal pickable area and equal N (baselines over the mask threshold):")
        print(comparison["matched_text"])
    print(f"comparison: {out / (COMPARISON + '.md')}")
    print(f"demo: done in {time.perf_counter() - start:.0f} s")
    return summary.exit_code
