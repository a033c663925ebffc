"""`latent-seg score`: the replay report for any bag of ConfidenceMaskArray messages."""
from __future__ import annotations

import argparse

HELP = "score a bag of ConfidenceMaskArray messages (replay output or live recording) against ground truth"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from latent_segmentation_ros.core.parameter_options import add_gripper_options

    parser.add_argument("--predictions", required=True, help="bag with ConfidenceMaskArray (and GraspCandidateArray) topics")
    parser.add_argument("--ground-truth", required=True, help="bag with /<camera>/ground_truth mono16 label images")
    parser.add_argument("--out", required=True, help="folder for report.json, report.md and the overlays")
    add_gripper_options(parser)
    from latent_segmentation_ros.cli.commands.replay import add_max_image_pixels_option

    add_max_image_pixels_option(parser)


def run(args: argparse.Namespace) -> int:
    import sys

    from latent_segmentation_ros.replay.bag_io import BagError
    from latent_segmentation_ros.replay.report import summary_table
    from latent_segmentation_ros.replay.scoring import ScoringConfig, score_bag

    try:
        config = ScoringConfig(gripper_radius=args.gripper_radius, circles=args.circles)
        report = score_bag(args.predictions, args.ground_truth, args.out, config,
                           max_image_pixels=args.max_image_pixels)
    except (BagError, ValueError) as error:
        print(f"score: {error}", file=sys.stderr)
        return 2
    print(summary_table(report["aggregate"]))
    print(f"report: {args.out}/report.md")
    if report.get("stopped"):
        print(f"score: stopped early: {report['stopped']['error']}", file=sys.stderr)
        return 3
    return 0
