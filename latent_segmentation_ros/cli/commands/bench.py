"""`latent-seg bench <what>`: benchmarks measured as ratios in one run, JSON or a table.

Each benchmark lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> dict`` (and optionally ``HELP`` and ``format_table(result) -> str``); a module
that is not present in this installation is left out of the menu.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util

HELP = "benchmarks: model inference speed, aggregation speed, synthetic data, bag replay, live nodes (JSON with --json)"

BENCHMARKS = {
    "model": "latent_maskrcnn.bench.model",
    "aggregate": "latent_maskrcnn.bench.aggregate",
    "synthetic": "latent_maskrcnn.bench.synthetic",
    "replay": "latent_segmentation_ros.bench.replay",
    "node": "latent_segmentation_ros.bench.node",
    "startup": "latent_segmentation_ros.bench.startup",
}


def _available(module_name: str) -> bool:
    try:
        return importlib.util.find_spec(module_name) is not None
    except ModuleNotFoundError:  # the parent package itself is missing
        return False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    subparsers = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    for name, module_name in BENCHMARKS.items():
        if not _available(module_name):
            continue
        module = importlib.import_module(module_name)
        help_text = getattr(module, "HELP", f"{name} benchmark")
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(sub)
        sub.set_defaults(bench_module=module_name)


def _table(result: dict) -> str:
    width = max((len(str(key)) for key in result), default=0)
    return "\n".join(f"{key:<{width}}  {value}" for key, value in result.items())


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    module = importlib.import_module(args.bench_module)
    try:
        result = module.run(args)
    except ValueError as error:
        print(f"bench {args.benchmark}: {error}", file=sys.stderr)
        return 2
    if getattr(args, "json", False):
        print(json.dumps(result, indent=2))
    else:
        formatter = getattr(module, "format_table", _table)
        print(formatter(result))
    return 0
