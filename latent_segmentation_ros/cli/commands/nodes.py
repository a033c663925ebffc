"""`latent-seg nodes`: both nodes with the package's parameter file, without `ros2 launch`."""
from __future__ import annotations

import argparse

HELP = "start the segmentation and grasp nodes like picking.launch.py (for a ROS 2 without ros2 launch)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "arguments",
        nargs="*",
        metavar="name:=value",
        help="launch arguments of picking.launch.py, e.g. device:=cpu config:=my.yaml (see --show-args)",
    )
    parser.add_argument("-s", "--show-args", action="store_true", help="list the arguments with their defaults")


def run(args: argparse.Namespace) -> int:
    from latent_segmentation_ros.ros.run_nodes import main

    return main([*args.arguments, *(["--show-args"] if args.show_args else [])])
