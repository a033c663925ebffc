"""`latent-seg bench replay`: replay throughput and whether memory stays flat over a long bag.

Makes a synthetic bag (default 2000 frames), replays it with the demo model and samples the
resident memory at the start of the stream, after 10 % of the pairs, half way, at the last pair
and after the report (which imports matplotlib for the overlays), plus the peak. A replay that
holds the bag, the predictions or per-frame images would grow with the number of frames; a
streaming one stays flat after warm-up except for the matches pooled for the data-set MR@HP /
AR / AP (41 bytes per detection, in a few contiguous arrays: see ``pooled_matches``).
"""
from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path
from typing import Any


HELP = "replay throughput (pairs/s) with the demo model and resident memory over a long bag (flat?)"


def current_rss_mb() -> float:
    """Resident memory of this process now (Linux /proc; falls back to the peak elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            pages = int(statm.read().split()[1])
        return pages * resource.getpagesize() / 2**20
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from latent_segmentation_ros.core.parameter_options import (
        add_device_option,
        add_flip_option,
        add_node_option,
        add_seed_option,
        add_storage_option,
        add_threads_option,
    )

    parser.add_argument("--frames", type=int, default=2000, help="frames per camera in the bag (default 2000)")
    parser.add_argument("--height", type=int, default=240, help="image height (default 240)")
    parser.add_argument("--width", type=int, default=320, help="image width (default 320)")
    parser.add_argument("--checkpoint", default=None, help="model checkpoint (default: the bundled demo model)")
    add_node_option(parser, "--samples", "num_samples", "samples K per image")
    add_flip_option(parser)
    add_device_option(parser)
    add_threads_option(parser)
    add_storage_option(parser, "bag storage")
    add_seed_option(parser, "scene seed")
    add_node_option(parser, "--mode", "mode", "aggregation mode")
    add_node_option(parser, "--mask-threshold", "mask_threshold", "probability at which masks are binarised")
    parser.add_argument("--without-ground-truth", action="store_true",
                        help="bag without ground truth: replay throughput without the scoring")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--workdir", default=None, help="where to write the bag and the replay (default: a temp dir)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from latent_segmentation_ros.replay.runner import ReplayOptions, build_pair_processor, replay_bag
    from latent_segmentation_ros.replay.synthetic_bag import BagTiming, write_synthetic_bag

    from latent_segmentation_ros.core.cpu_threads import configure_torch_cpu

    if args.frames < 10:
        raise ValueError(f"bench replay needs at least 10 frames, got {args.frames}")
    configure_torch_cpu(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench_replay_") as temporary:
        workdir = Path(args.workdir) if args.workdir else Path(temporary)
        workdir.mkdir(parents=True, exist_ok=True)
        bag = workdir / "bench_bag"
        start = time.perf_counter()
        summary = write_synthetic_bag(
            bag, args.frames, args.seed, storage=args.storage, height=args.height, width=args.width,
            timing=BagTiming(drop_probability=0.0), ground_truth=not args.without_ground_truth,
        )
        make_seconds = time.perf_counter() - start

        setup = build_pair_processor(args.checkpoint, mode=args.mode, mask_threshold=args.mask_threshold,
                                     samples=args.samples, device=args.device, flip_samples=args.flip_samples)
        samples: dict[str, float] = {}
        # No frame is dropped in the bench bag, so the last pair is number ``frames``.
        marks = {1: "rss_mb_first_pair", max(2, args.frames // 10): "rss_mb_10_percent",
                 max(3, args.frames // 2): "rss_mb_50_percent", args.frames: "rss_mb_last_pair"}
        done = {"pairs": 0}

        def measured(images):
            outcome = setup.process_pair(images)
            done["pairs"] += 1
            if done["pairs"] in marks:
                samples[marks[done["pairs"]]] = current_rss_mb()
            return outcome

        samples["rss_mb_before_stream"] = current_rss_mb()
        start = time.perf_counter()
        replay = replay_bag(
            ReplayOptions(bag=bag, out_dir=workdir / "replay", progress=False),
            measured,
            setup.cup_radius,
            setup.header_info,
        )
        replay_seconds = time.perf_counter() - start
        # After the report (matplotlib is imported for the overlays only then).
        samples["rss_mb_after_report"] = current_rss_mb()
        pairs = replay.report["counts"]["pairs"]
        latency = replay.report["aggregate"]["latency_ms"]
        last = samples.get("rss_mb_last_pair", samples["rss_mb_after_report"])
        growth = last - samples.get("rss_mb_10_percent", last)
        return {
            "frames_per_camera": args.frames,
            "image_size": [args.height, args.width],
            "storage": args.storage,
            "ground_truth": not args.without_ground_truth,
            "device": setup.header_info["device"],
            "threads": _torch_threads(),
            "model_id": setup.header_info.get("model_id"),
            "mode": args.mode,
            "mask_threshold": args.mask_threshold,
            "num_samples": setup.header_info.get("num_samples"),
            "bag_bytes": sum(p.stat().st_size for p in bag.iterdir()),
            "make_bag_frames_per_second": summary.frames / make_seconds,
            "pairs_replayed": pairs,
            "replay_pairs_per_second": pairs / replay_seconds if replay_seconds > 0 else None,
            "replay_images_per_second": 2 * pairs / replay_seconds if replay_seconds > 0 else None,
            "pipeline_latency_ms_mean": latency["mean"],
            "pipeline_latency_ms_p95": latency["p95"],
            **{key: round(value, 1) for key, value in samples.items()},
            "rss_growth_mb_10_percent_to_last_pair": round(growth, 1),
            "rss_growth_kb_per_pair": round(1024 * growth / max(1, pairs - args.frames // 10), 2),
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "memory_flat": bool(growth < 50.0),
        }
