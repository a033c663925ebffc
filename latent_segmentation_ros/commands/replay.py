"""`latent-seg replay`: a two-camera bag through the node's pipeline, with a metrics report."""
from __future__ import annotations

import argparse

HELP = "replay a two-camera rosbag2 through the pipeline: output bag, metrics report, worst-frame pictures"

DEFAULT_TOPICS = ["/overhead_left/image_raw", "/overhead_right/image_raw"]


def add_pipeline_arguments(parser: argparse.ArgumentParser, with_mode: bool = True) -> None:
    """Options shared by replay, sweep-p and demo (defaults: the node's parameters)."""
    parser.add_argument("--bag", required=True, help="input rosbag2 (directory, or .mcap/.db3 file)")
    parser.add_argument("--out", required=True, help="output folder (report, pictures, output bag)")
    parser.add_argument("--checkpoint", default=None, help="model .safetensors (default: the bundled demo model)")
    if with_mode:
        parser.add_argument("--mode", default=None, choices=["confidence_mask", "union_nms", "prior_mean"],
                            help="aggregation mode (default: the node's, confidence_mask)")
        parser.add_argument("--p", type=float, default=None, help="confidence requirement in (0, 1] (default 0.9)")
    parser.add_argument("--samples", type=int, default=None, help="samples K per image (default 8)")
    parser.add_argument("--score-threshold", type=float, default=None,
                        help="detections at or below this score are ignored (default: the node's, 0.5)")
    parser.add_argument("--device", default="cpu", help="torch device: cpu (default), auto, cuda, cuda:N")
    parser.add_argument("--topics", nargs=2, default=DEFAULT_TOPICS, metavar=("LEFT", "RIGHT"),
                        help="the two camera image topics (default: %(default)s)")
    parser.add_argument("--slop", type=float, default=None, help="sync slop in seconds (default: the node's, 0.05)")
    parser.add_argument("--queue-size", type=int, default=None, help="sync queue size (default: the node's, 10)")
    parser.add_argument("--gripper-radius", type=int, default=8,
                        help="radius in pixels of the simulated gripper circle of the double-pick metric (default 8)")
    parser.add_argument("--circles", type=int, default=1000, help="simulated gripper circles per image (default 1000)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def scoring_config(args: argparse.Namespace):
    from latent_segmentation_ros.scoring import ScoringConfig

    return ScoringConfig(gripper_radius=args.gripper_radius, circles=args.circles)


def sync_policy(args: argparse.Namespace):
    """The node's pairing, with --slop / --queue-size where given."""
    from latent_segmentation_ros.camera_sync import SyncPolicy
    from latent_segmentation_ros.replay import node_sync_policy

    default = node_sync_policy()
    return SyncPolicy(
        slop=args.slop if args.slop is not None else default.slop,
        queue_size=args.queue_size if args.queue_size is not None else default.queue_size,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_pipeline_arguments(parser)
    parser.add_argument("--storage", default="mcap", choices=["mcap", "sqlite3"], help="storage of DIR/output")
    parser.add_argument("--worst-frames", type=int, default=4, help="overlays of the worst frames to draw (default 4)")
    parser.add_argument("--max-pairs", type=int, default=None, help="stop after this many synchronised pairs")


def run(args: argparse.Namespace) -> int:
    import sys

    from latent_segmentation_ros.bag_io import BagError
    from latent_segmentation_ros.replay import ReplayOptions, build_pair_processor, replay_bag
    from latent_segmentation_ros.synthetic_bag import camera_of_topic

    try:
        options = ReplayOptions(
            bag=args.bag, out_dir=args.out, image_topics=tuple(args.topics), sync=sync_policy(args),
            output_storage=args.storage, worst_frames=args.worst_frames, progress=not args.no_progress,
            max_pairs=args.max_pairs, scoring=scoring_config(args),
        )
        setup = build_pair_processor(
            args.checkpoint, mode=args.mode, p=args.p, samples=args.samples,
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

    from latent_segmentation_ros.report import summary_table

    counts = report.get("counts", {})
    print(summary_table(report["aggregate"]))
    print(f"pairs: {counts.get('pairs')}  skipped frames: {counts.get('skipped_frames') or 0}")
    print(f"output bag: {report.get('output_bag')}")
    print(f"report: {Path(out) / 'report.md'}")
    for picture in report.get("worst_frames", []):
        print(f"worst frame: {picture}")
