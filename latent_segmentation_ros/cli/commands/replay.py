"""`latent-seg replay`: a two-camera bag through the node's pipeline, with a metrics report."""
from __future__ import annotations

import argparse

HELP = "replay a two-camera rosbag2 through the pipeline: output bag, metrics report, worst-frame pictures"


def add_pipeline_arguments(parser: argparse.ArgumentParser, with_mode: bool = True,
                           out_help: str = "output folder (report, pictures, output bag)") -> None:
    """Options shared by replay and sweep-p; the defaults are the node's parameters."""
    from latent_segmentation_ros.core.parameter_options import (
        add_comparison_mask_threshold,
        add_device_option,
        add_flip_option,
        add_gripper_options,
        add_node_option,
        add_threads_option,
    )

    parser.add_argument("--bag", required=True, help="input rosbag2 (directory, or .mcap/.db3 file)")
    parser.add_argument("--out", required=True, help=out_help)
    parser.add_argument("--checkpoint", default=None, help="model .safetensors (default: the bundled demo model)")
    if with_mode:
        add_node_option(parser, "--mode", "mode", "aggregation mode")
        add_node_option(parser, "--p", "p", "confidence requirement in (0, 1]")
    if with_mode:
        add_node_option(parser, "--mask-threshold", "mask_threshold", "probability at which masks are binarised, in (0, 1)")
    else:
        add_comparison_mask_threshold(parser, "probability at which the confidence masks are binarised, in (0, 1)")
    add_node_option(parser, "--samples", "num_samples", "samples K per image")
    add_flip_option(parser)
    add_node_option(parser, "--score-threshold", "score_threshold", "detections at or below this score are ignored")
    add_device_option(parser)
    add_threads_option(parser)
    add_node_option(parser, "--topics", "camera_topics", "the two camera image topics", nargs=2, metavar=("LEFT", "RIGHT"))
    add_node_option(parser, "--slop", "sync_slop", "sync slop in seconds")
    add_node_option(parser, "--queue-size", "queue_size", "sync queue size")
    add_gripper_options(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def scoring_config(args: argparse.Namespace):
    from latent_segmentation_ros.replay.scoring import ScoringConfig

    return ScoringConfig(gripper_radius=args.gripper_radius, circles=args.circles)


def sync_policy(args: argparse.Namespace):
    """The node's pairing with --slop / --queue-size (whose defaults are the node's)."""
    from latent_segmentation_ros.core.camera_sync import SyncPolicy

    return SyncPolicy(slop=args.slop, queue_size=args.queue_size)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from latent_segmentation_ros.core.parameter_options import add_storage_option

    add_pipeline_arguments(parser)
    add_storage_option(parser, "storage of DIR/output")
    parser.add_argument("--worst-frames", type=int, default=4,
                        help="overlays of the worst frames to draw; without ground truth, of frames spread over the "
                             "bag (default 4)")
    parser.add_argument("--max-pairs", type=int, default=None,
                        help="stop after this many synchronised pairs (default: all)")
    add_max_image_pixels_option(parser)


def add_max_image_pixels_option(parser: argparse.ArgumentParser) -> None:
    """--max-image-pixels: images (and mask arrays) declaring more pixels are skipped, counted."""
    from latent_segmentation_ros.core.parameter_options import add_node_option

    add_node_option(parser, "--max-image-pixels", "max_image_pixels",
                    "images and mask arrays declaring more pixels are skipped unread and counted")


def run(args: argparse.Namespace) -> int:
    import sys

    from latent_segmentation_ros.core.cpu_threads import configure_torch_cpu

    try:
        configure_torch_cpu(args.threads)  # before torch is imported
    except ValueError as error:
        print(f"replay: {error}", file=sys.stderr)
        return 2
    from latent_segmentation_ros.replay.bag_io import BagError
    from latent_segmentation_ros.replay.runner import ReplayOptions, build_pair_processor, replay_bag
    from latent_segmentation_ros.replay.synthetic_bag import camera_of_topic

    try:
        options = ReplayOptions(
            bag=args.bag, out_dir=args.out, image_topics=tuple(args.topics), sync=sync_policy(args),
            output_storage=args.storage, worst_frames=args.worst_frames, progress=not args.no_progress,
            max_pairs=args.max_pairs, scoring=scoring_config(args), max_image_pixels=args.max_image_pixels,
        )
        setup = build_pair_processor(
            args.checkpoint, mode=args.mode, p=args.p, mask_threshold=args.mask_threshold, samples=args.samples,
            flip_samples=args.flip_samples,
            score_threshold=args.score_threshold, device=args.device,
            cameras=[camera_of_topic(topic) for topic in args.topics],
        )
        summary = replay_bag(options, setup.process_pair, setup.cup_radius, setup.header_info)
    except (BagError, ValueError) as error:
        print(f"replay: {error}", file=sys.stderr)
        return 2
    print_summary(summary.report, args.out)
    if summary.stopped:
        print(f"replay: stopped early at frame {summary.stopped['frame']}: {summary.stopped['error']}", file=sys.stderr)
    return summary.exit_code


def print_summary(report: dict, out: str) -> None:
    from pathlib import Path

    from latent_segmentation_ros.replay.report import summary_table

    counts = report.get("counts", {})
    print(summary_table(report["aggregate"]))
    print(f"pairs: {counts.get('pairs')}  skipped frames: {counts.get('skipped_frames') or 0}")
    print(f"output bag: {report.get('output_bag')}")
    print(f"report: {Path(out) / 'report.md'}")
    for picture in report.get("worst_frames", []):
        print(f"worst frame: {picture}")
    for picture in report.get("frame_pictures", []):
        print(f"frame (no ground truth): {picture}")
