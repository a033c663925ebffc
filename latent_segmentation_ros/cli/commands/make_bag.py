"""`latent-seg make-bag`: a synthetic two-camera rosbag2 with ground truth, for replay."""
from __future__ import annotations

import argparse
import json

HELP = "write a synthetic two-camera rosbag2 of tote scenes with per-camera ground truth"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="bag directory to create (must not exist)")
    parser.add_argument("--frames", type=int, default=100, help="camera frames per camera (default 100)")
    from latent_segmentation_ros.core.parameter_options import add_seed_option, add_storage_option

    add_seed_option(parser, "scene and timing seed")
    add_storage_option(parser, "rosbag2 storage")
    parser.add_argument("--height", type=int, default=240, help="image height in pixels (default 240)")
    parser.add_argument("--width", type=int, default=320, help="image width in pixels (default 320)")
    parser.add_argument("--rate", type=float, default=8.0, help="camera rate in Hz (default 8)")
    parser.add_argument(
        "--drop-probability", type=float, default=0.03, help="chance that a camera frame is dropped (default 0.03)"
    )


def run(args: argparse.Namespace) -> int:
    import sys

    from tqdm import tqdm

    from latent_segmentation_ros.replay.bag_io import BagError
    from latent_segmentation_ros.replay.synthetic_bag import BagTiming, write_synthetic_bag

    try:
        timing = BagTiming(rate_hz=args.rate, drop_probability=args.drop_probability)
        with tqdm(total=args.frames, unit="frame", desc="make-bag", disable=None) as bar:
            summary = write_synthetic_bag(
                args.out,
                args.frames,
                args.seed,
                storage=args.storage,
                height=args.height,
                width=args.width,
                timing=timing,
                progress=lambda _frame: bar.update(1),
            )
    except (BagError, ValueError) as error:
        print(f"make-bag: {error}", file=sys.stderr)
        return 2
    print(json.dumps(summary.as_dict(), indent=2))
    return 0
