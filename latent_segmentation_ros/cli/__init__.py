"""The `latent-seg` command line: one subcommand per module in `commands/`."""
from __future__ import annotations

import argparse
import importlib
import sys

from latent_segmentation_ros.cli.commands import COMMAND_MODULES


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """All subcommands, or with ``command`` that one's options only (the others are listed):
    options may need imports (make-dataset's read the data recipe), which the others skip."""
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
        if command is None or command == name:
            module.add_arguments(sub)
        sub.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    command = arguments[0] if arguments and arguments[0] in COMMAND_MODULES else None
    args = build_parser(command).parse_args(arguments)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

