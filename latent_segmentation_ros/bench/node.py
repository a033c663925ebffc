"""`latent-seg bench node`: both nodes live, as processes over DDS, fed camera pairs at a given
rate for a given time: pairs/s answered, end-to-end latency (pair published -> mask array
received), drops by reason (from the node's /diagnostics) and the nodes' resident memory.

Needs rclpy and this package built with colcon (the nodes run from the install, as
``ros2 run`` would start them); rclpy is imported only when the benchmark runs.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from latent_segmentation_ros.bench.node_setup import add_node_setup_arguments, node_parameters, setup_fields

HELP = "both nodes live over DDS: pairs/s, publish -> masks latency, drops, memory (needs rclpy + colcon build)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from latent_segmentation_ros.core.parameter_options import add_threads_option

    parser.add_argument("--rate", type=float, default=8.0, help="camera pairs published per second (default 8)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of publishing measured (default 30)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of publishing before measuring (default 5)")
    add_node_setup_arguments(parser)
    add_threads_option(parser)  # the nodes' (OMP_NUM_THREADS)
    parser.add_argument("--domain-id", type=int, default=42, help="ROS_DOMAIN_ID used, on loopback (default 42)")
    parser.add_argument("--install-prefix", default=None, help="colcon install prefix (default: from AMENT_PREFIX_PATH)")
    parser.add_argument("--scenes", type=int, default=8, help="distinct tote scenes cycled through (default 8)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here (default: only print it)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _percentile(values: list[float], q: float) -> float | None:
    import numpy as np

    return float(np.percentile(values, q)) if values else None


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.rate <= 0 or args.duration <= 0 or args.warmup < 0:
        raise ValueError("--rate and --duration must be > 0, --warmup >= 0")
    try:
        from latent_segmentation_ros.ros import rig_node
    except ImportError as error:
        raise ValueError(f"needs rclpy and the built messages (colcon build, then source the workspace): {error}")

    prefix = rig_node.find_install_prefix(args.install_prefix)
    pairs = rig_node.synthetic_pairs(args.scenes, args.height, args.width, seed=0)
    parameters = node_parameters(args)
    log_dir = Path(tempfile.mkdtemp(prefix="bench_node_"))
    started = time.monotonic()
    processes = [
        rig_node.start_node("segmentation_node", prefix=prefix, domain_id=args.domain_id, log_dir=log_dir / "seg",
                            parameters=parameters, threads=args.threads),
        rig_node.start_node("grasp_node", prefix=prefix, domain_id=args.domain_id, log_dir=log_dir / "grasp",
                            threads=args.threads),
    ]
    stamp = [1_704_067_200 * 1_000_000_000]

    def publish(rig: Any, index: int) -> int:
        stamp[0] += int(1e9 / args.rate)
        rig.publish(rig.pair(pairs[index % len(pairs)], stamp[0]))
        return stamp[0]

    try:
        with rig_node.Rig(args.domain_id) as rig:
            counter = iter(range(1 << 30))
            rig.wait_for(lambda: rig.answered_stamps() or any(p.returncode is not None for p in processes),
                                 180, every=lambda: publish(rig, next(counter)), period=1.0)
            if not rig.answered_stamps():
                logs = "\n".join(f"--- {p.name}:\n{p.output()[-2000:]}" for p in processes)
                raise ValueError(f"the nodes did not answer within 180 s\n{logs}")
            ready_s = time.monotonic() - started

            def publish_for(seconds: float) -> list[int]:
                sent, index = [], 0
                period = 1.0 / args.rate
                begin = time.monotonic()
                while time.monotonic() - begin < seconds:
                    sent.append(publish(rig, index))
                    index += 1
                    next_at = begin + index * period
                    time.sleep(max(0.0, next_at - time.monotonic()))
                return sent

            publish_for(args.warmup)
            time.sleep(2.0)  # the warm-up's last pair is processed, a /diagnostics update goes out
            drops_before = rig_node.drops_by_reason(rig.diagnostic(rig_node.SEGMENTATION_NODE))
            grasps_before = len(rig.grasp_arrays())
            sent = publish_for(args.duration)
            # The level while input flows; after the wait below the node rightly warns that no
            # pair came for input_timeout seconds.
            status_under_load = rig.diagnostic(rig_node.SEGMENTATION_NODE)
            rig.wait_for(lambda: False, 5.0)  # let the last pairs through and diagnostics update
            drops_after = rig_node.drops_by_reason(rig.diagnostic(rig_node.SEGMENTATION_NODE))
            grasp_status = rig.diagnostic(rig_node.GRASP_NODE)
            memory = {p.name: p.memory_kib() for p in processes}

            sent_set = set(sent)
            with rig.lock:
                published_at = dict(rig.published_at)
            latencies = {camera: [] for camera in rig.cameras}
            for index, camera in enumerate(rig.cameras):
                for received in rig.mask_arrays(camera):
                    first_stamp = rig_node.stamp_ns_of(received.message.header) - index * 2_000_000
                    if first_stamp in sent_set:
                        latencies[camera].append((received.at - published_at[first_stamp]) * 1000.0)
            answered = rig.answered_stamps() & sent_set
            pair_latency = []
            for s in answered:
                arrival = max(
                    r.at for index, camera in enumerate(rig.cameras) for r in rig.mask_arrays(camera)
                    if rig_node.stamp_ns_of(r.message.header) - index * 2_000_000 == s
                )
                pair_latency.append((arrival - published_at[s]) * 1000.0)
            grasps = len(rig.grasp_arrays()) - grasps_before
    finally:
        exit_codes = rig_node.stop_all(processes)

    result = _result(args, locals())
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _level(level: Any) -> int:
    return level[0] if isinstance(level, (bytes, bytearray)) else int(level)


def _result(args: argparse.Namespace, measured: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    from latent_segmentation_ros.ros import rig_node

    latencies, pair_latency, sent, answered = (measured[k] for k in ("latencies", "pair_latency", "sent", "answered"))
    drops_before, drops_after, status = measured["drops_before"], measured["drops_after"], measured["status_under_load"]
    grasp_status, memory, grasps = measured["grasp_status"], measured["memory"], measured["grasps"]
    ready_s, exit_codes = measured["ready_s"], measured["exit_codes"]
    all_latencies = [value for values in latencies.values() for value in values]
    grasp_values = rig_node.status_values(grasp_status) if grasp_status is not None else {}
    return {
        "benchmark": "node",
        **setup_fields(args),
        "cameras": 2,
        "rate_published_hz": args.rate,
        "duration_s": args.duration,
        "pairs_published": len(sent),
        "pairs_answered": len(answered),
        "pairs_per_s": len(answered) / args.duration,
        "mask_arrays_per_camera": {camera: len(values) for camera, values in latencies.items()},
        "grasp_arrays": grasps,
        "latency_ms_mask_array": {"mean": float(np.mean(all_latencies)) if all_latencies else None,
                                  "p95": _percentile(all_latencies, 95), "max": max(all_latencies, default=None)},
        "latency_ms_pair": {"mean": float(np.mean(pair_latency)) if pair_latency else None,
                            "p95": _percentile(pair_latency, 95)},
        "drops_by_reason": {reason: drops_after.get(reason, 0) - drops_before.get(reason, 0)
                            for reason in sorted(set(drops_after) | set(drops_before))},
        "diagnostics_level": None if status is None else rig_node.LEVEL_NAMES.get(_level(status.level), "?"),
        "diagnostics_message": None if status is None else status.message,
        "grasp_latency_ms_mean": float(grasp_values["latency mean (ms)"]) if "latency mean (ms)" in grasp_values else None,
        "resident_memory_mb": {name: round(values.get("VmRSS", 0) / 1024, 1) for name, values in memory.items()},
        "peak_resident_memory_mb": {name: round(values.get("VmHWM", 0) / 1024, 1) for name, values in memory.items()},
        "ready_after_s": ready_s,
        "exit_codes": exit_codes,
        "threads": args.threads,
        "host": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
    }


def format_table(result: dict[str, Any]) -> str:
    lines = [
        f"pairs/s answered     {result['pairs_per_s']:.2f} ({result['pairs_answered']} of {result['pairs_published']} published at {result['rate_published_hz']:g}/s)",
        f"latency (mask array) mean {result['latency_ms_mask_array']['mean']:.0f} ms, p95 {result['latency_ms_mask_array']['p95']:.0f} ms",
        f"latency (pair)       mean {result['latency_ms_pair']['mean']:.0f} ms, p95 {result['latency_ms_pair']['p95']:.0f} ms",
        f"drops by reason      {result['drops_by_reason']}",
        f"resident memory (MB) {result['resident_memory_mb']}",
    ]
    return "\n".join(lines)
