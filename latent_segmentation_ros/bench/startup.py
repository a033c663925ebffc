"""`latent-seg bench startup`: the segmentation node's cold start, as a launch file sees it.

Starts the node (from a colcon install, as ``ros2 run`` would) again and again and measures,
per start, the seconds from starting the process to the model being loaded and the node
being ready (both read from the node's own log lines) and to the first ConfidenceMaskArray
answering a camera pair (pairs are published every ``--period`` seconds from the start).
With ``--baseline-prefix`` the starts alternate between two installs (interleaved, so a
machine that gets busier or quieter affects both alike) and the ratio of the medians is
reported: the way to show that a change made the start faster.

Needs rclpy and this package built with colcon; rclpy is imported only when it runs.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from latent_segmentation_ros.bench.node_setup import add_node_setup_arguments, node_parameters, setup_fields

HELP = "cold start of the segmentation node: seconds to model loaded, ready and first answer (needs rclpy + colcon build)"

LOADED = re.compile(r"loaded in (\d+(?:\.\d+)?) s")
READY = re.compile(r"ready \d+(?:\.\d+)? s after rclpy\.init, (\d+(?:\.\d+)?) s after the process started")
KERNEL = re.compile(r"compiled aggregation kernel ready after (\d+(?:\.\d+)?) s")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeats", type=int, default=5, help="starts per install (default 5)")
    parser.add_argument("--period", type=float, default=0.1,
                        help="seconds between the camera pairs published while waiting (default 0.1)")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds one start may take (default 180)")
    add_node_setup_arguments(parser)
    parser.add_argument("--domain-id", type=int, default=43, help="ROS_DOMAIN_ID used, on loopback (default 43)")
    parser.add_argument("--install-prefix", default=None, help="colcon install prefix (default: from AMENT_PREFIX_PATH)")
    parser.add_argument("--baseline-prefix", default=None,
                        help="a second colcon install to alternate with, e.g. a build of the previous version "
                             "(default: none)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def parse_node_log(text: str) -> dict[str, float | None]:
    """Seconds to 'loaded' and 'ready' (since the process started) and the background kernel
    load, from the segmentation node's log; None where a line is missing."""
    found = {}
    for key, pattern in (("loaded_in_s", LOADED), ("ready_s", READY), ("kernel_s", KERNEL)):
        match = pattern.search(text)
        found[key] = float(match.group(1)) if match else None
    return found


def _one_start(args: argparse.Namespace, prefix: Path, pair: Any, log_dir: Path) -> dict[str, Any]:
    from latent_segmentation_ros.ros import rig_node

    parameters = node_parameters(args)
    stamp = [1_704_067_200 * 1_000_000_000]
    with rig_node.Rig(args.domain_id) as rig:
        started = time.monotonic()
        process = rig_node.start_node("segmentation_node", prefix=prefix, domain_id=args.domain_id,
                                      log_dir=log_dir, parameters=parameters)

        def publish() -> None:
            stamp[0] += 1_000_000_000
            rig.publish(rig.pair(pair, stamp[0]))

        try:
            answered = rig.wait_for(lambda: rig.answered_stamps() or process.returncode is not None,
                                    args.timeout, every=publish, period=args.period)
            first_answer = time.monotonic() - started
            if not rig.answered_stamps():
                raise ValueError(f"the node did not answer within {args.timeout:g} s (answered: {answered}):\n"
                                 f"{process.output()[-2000:]}")
        finally:
            exit_code = process.stop()
        logged = parse_node_log(process.output())
    return {
        "loaded_in_s": logged["loaded_in_s"],  # the node's own: from the start of the model load
        "ready_s": logged["ready_s"],  # since the process started
        "first_answer_s": first_answer,
        "kernel_s": logged["kernel_s"],
        "exit_code": exit_code,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.repeats < 1 or args.period <= 0 or args.timeout <= 0:
        raise ValueError("--repeats must be >= 1, --period and --timeout > 0")
    try:
        from latent_segmentation_ros.ros import rig_node
    except ImportError as error:
        raise ValueError(f"needs rclpy and the built messages (colcon build, then source the workspace): {error}")

    installs = {"install": rig_node.find_install_prefix(args.install_prefix)}
    if args.baseline_prefix:
        installs["baseline"] = rig_node.find_install_prefix(args.baseline_prefix)
    pair = rig_node.synthetic_pairs(1, args.height, args.width, seed=0)[0]
    log_root = Path(tempfile.mkdtemp(prefix="bench_startup_"))
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in installs}
    try:
        for repeat in range(args.repeats):
            # Alternate which install starts first, so neither always follows the other.
            order = list(installs) if repeat % 2 == 0 else list(reversed(installs))
            for name in order:
                runs[name].append(_one_start(args, installs[name], pair, log_root / f"{name}_{repeat}"))
    finally:
        shutil.rmtree(log_root, ignore_errors=True)
    result: dict[str, Any] = {
        "benchmark": "startup",
        **setup_fields(args),
        "repeats": args.repeats,
        "publish_period_s": args.period,
        "host": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_average_1min": os.getloadavg()[0],
    }
    for name, prefix in installs.items():
        result[name] = {"prefix": str(prefix), "median": _medians(runs[name]), "runs": runs[name]}
    if "baseline" in installs:
        result["ratio_to_baseline"] = {
            key: _ratio(result["install"]["median"][key], result["baseline"]["median"][key])
            for key in ("loaded_in_s", "ready_s", "first_answer_s")
        }
    return result


def _medians(runs: list[dict[str, Any]]) -> dict[str, float | None]:
    medians = {}
    for key in ("loaded_in_s", "ready_s", "first_answer_s", "kernel_s"):
        values = [run[key] for run in runs if run[key] is not None]
        medians[key] = statistics.median(values) if values else None
    return medians


def _ratio(value: float | None, baseline: float | None) -> float | None:
    return None if value is None or not baseline else value / baseline


def format_table(result: dict[str, Any]) -> str:
    lines = [f"{'install':<10} {'loaded in':>10} {'ready':>8} {'first answer':>13}  (medians of {result['repeats']}, s)"]
    for name in ("install", "baseline"):
        if name in result:
            median = result[name]["median"]
            lines.append(f"{name:<10} " + " ".join(
                f"{'-' if median[key] is None else format(median[key], '.2f'):>{width}}"
                for key, width in (("loaded_in_s", 10), ("ready_s", 8), ("first_answer_s", 13))))
    if "ratio_to_baseline" in result:
        ratio = result["ratio_to_baseline"]
        lines.append("ratio      " + " ".join(
            f"{'-' if ratio[key] is None else format(ratio[key], '.2f'):>{width}}"
            for key, width in (("loaded_in_s", 10), ("ready_s", 8), ("first_answer_s", 13))))
    return "\n".join(lines)
