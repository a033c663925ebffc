"""Command-line options that stand for node parameters or the simulated gripper.

Their defaults and the defaults their help shows come from the one place each is defined
(the node parameter table in `latent_segmentation_ros.core.parameters`, the gripper defaults in
`latent_maskrcnn.evaluation.gripper_defaults`), so the command line cannot drift from the nodes. Light
imports only: ``latent-seg --help`` builds every parser. Validation stays where the values are
used (the pipeline settings), so a bad value gets the node's reason.
"""
from __future__ import annotations

import argparse
import copy

from latent_maskrcnn.evaluation.gripper_defaults import SIMULATED_GRIPPER_CIRCLES, SIMULATED_GRIPPER_RADIUS
from latent_segmentation_ros.core.parameters import GRASP_PARAMETERS, SEGMENTATION_PARAMETERS, ParameterSpec

_TYPES = {"double": float, "integer": int, "string": str, "string_array": str, "double_array": float}


def node_parameter(name: str) -> ParameterSpec:
    """The spec of a segmentation or grasp node parameter, by name."""
    spec = SEGMENTATION_PARAMETERS.get(name) or GRASP_PARAMETERS.get(name)
    if spec is None:
        raise KeyError(f"no node parameter {name!r}")
    return spec


def add_node_option(
    parser: argparse.ArgumentParser, flag: str, parameter: str, help: str, **kwargs
) -> argparse.Action:
    """``flag`` with the node parameter's default, type and choices; the help ends with
    "(default: the node's <parameter>, <default>)". The action is tagged with
    ``node_parameter`` so that tests can find every such option."""
    spec = node_parameter(parameter)
    if spec.kind == "bool":
        kwargs.setdefault("action", argparse.BooleanOptionalAction)
    else:
        kwargs.setdefault("type", _TYPES[spec.kind])
    if spec.choices:
        kwargs.setdefault("choices", list(spec.choices))
    if spec.kind.endswith("_array"):
        kwargs.setdefault("nargs", "+")
    action = parser.add_argument(
        flag,
        default=copy.copy(spec.default),
        help=f"{help} (default: the node's {spec.name}, %(default)s)",
        **kwargs,
    )
    action.node_parameter = spec.name  # type: ignore[attr-defined]
    return action


COMPARISON_MASK_THRESHOLD = 0.5
"""The binarisation of the confidence masks and the table rows in the comparison commands
(evaluate, sweep-p, grasp-causes, demo): the paper's and torchvision's, at which docs/results.md
measured them. The baselines are read along their own curves over the mask threshold; the node
starts at its own default (the prior mean's operating point)."""


def add_comparison_mask_threshold(parser: argparse.ArgumentParser, help: str) -> argparse.Action:
    """--mask-threshold of a command that compares the confidence masks with the baselines."""
    action = parser.add_argument(
        "--mask-threshold", type=float, default=COMPARISON_MASK_THRESHOLD,
        help=f"{help} (default %(default)s, the comparisons' binarisation; the node starts at "
             f"{SEGMENTATION_PARAMETERS['mask_threshold'].default}, its prior mean's)",
    )
    action.comparison_option = "mask_threshold"  # type: ignore[attr-defined]
    return action


def add_flip_option(parser: argparse.ArgumentParser) -> argparse.Action:
    """--flip-samples / --no-flip-samples: the node's flip_samples, the same on every command."""
    return add_node_option(parser, "--flip-samples", "flip_samples", "half of the K codes decoded on the mirrored image")


def add_gripper_options(parser: argparse.ArgumentParser) -> None:
    """--gripper-radius and --circles of the simulated gripper of the double-pick metric."""
    parser.add_argument(
        "--gripper-radius", type=int, default=SIMULATED_GRIPPER_RADIUS,
        help="radius in pixels of the simulated gripper circle of the double-pick metric (default %(default)s)",
    )
    parser.add_argument(
        "--circles", type=int, default=SIMULATED_GRIPPER_CIRCLES,
        help="simulated gripper circles per image (default %(default)s)",
    )


# One rule for the options many commands share: the same flag has the same default and the same
# words everywhere (tested over every subcommand's parser in test_cli_defaults.py). The
# benchmarks of latent_maskrcnn, which never import this package, spell out the same defaults.
DEVICE_HELP = "torch device: auto (cuda when available, else cpu), cpu, cuda or cuda:N"
THREADS_HELP = "torch CPU threads (default: torch's choice, one per core)"
STORAGE_CHOICES = ("mcap", "sqlite3")


def _tag(action: argparse.Action, name: str) -> argparse.Action:
    action.common_option = name  # type: ignore[attr-defined]
    return action


def add_device_option(parser: argparse.ArgumentParser) -> argparse.Action:
    """--device: the node's ``device`` parameter and its default (auto) on every command."""
    return add_node_option(parser, "--device", "device", DEVICE_HELP)


def add_threads_option(parser: argparse.ArgumentParser) -> argparse.Action:
    """--threads: torch's intra-op CPU threads; None leaves torch's choice (one per core).
    Apply it with ``core.cpu_threads.configure_torch_cpu(args.threads)`` before torch runs."""
    return _tag(parser.add_argument("--threads", type=int, default=None, help=THREADS_HELP), "threads")


def add_seed_option(parser: argparse.ArgumentParser, what: str) -> argparse.Action:
    """--seed, default 0 everywhere: the same command gives the same result unless asked."""
    return _tag(parser.add_argument("--seed", type=int, default=0, help=f"{what} (default %(default)s)"), "seed")


def add_storage_option(parser: argparse.ArgumentParser, what: str) -> argparse.Action:
    """--storage of a bag the command writes: mcap (default) or sqlite3."""
    return _tag(parser.add_argument("--storage", default=STORAGE_CHOICES[0], choices=list(STORAGE_CHOICES),
                                    help=f"{what}: mcap or sqlite3 (default %(default)s)"), "storage")
