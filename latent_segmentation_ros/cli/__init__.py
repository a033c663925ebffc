"""The `latent-seg` command line: one subcommand per module in `commands/`."""
from __future__ import annotations

import argparse
import importlib
import sys

from latent_segmentation_ros.cli.commands import COMMAND_MODULES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="latent-seg",
        description="Latent-MaskRCNN p-confidence masks: data, training, evaluation, replay, benchmarks.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMAND_MODULES.items():
        try:
            module = importlib.import_module(f"latent_segmentation_ros.cli.commands.{module_name}")
        except ModuleNotFoundError as error:
            if error.name != f"latent_segmentation_ros.cli.commands.{module_name}":
                raise
            continue
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

