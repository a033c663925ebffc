"""`latent-seg bench aggregate`: time the aggregation of K samples of one image.

The masks imitate K samples of a tote: item-sized elliptic blobs laid out edge to edge that
shift and resize a little from sample to sample; in some samples two neighbours are merged
into one mask or an item is split in two (the ambiguity the samples exist for). Reported
(medians over ``--repeats`` runs, milliseconds): ``confidence_masks_ms`` (from the raw
masks, p = ``--p``), ``union_nms_ms``, ``reaggregate_ms`` (a new p on samples already
prepared, as the node does when an operator changes p) and ``prepare_ms``. CPU times
(``*_cpu_ms``, all threads of the process) are reported too: on a shared machine they are
less noisy than wall time.
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

HELP = "time p-confidence masks, Union-NMS and re-aggregation for a new p on K random samples"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--samples", type=int, default=8, help="K, samples per image (default 8)")
    parser.add_argument("--masks", type=int, default=30, help="masks per sample (default 30)")
    parser.add_argument("--height", type=int, default=480, help="image height in pixels (default 480)")
    parser.add_argument("--width", type=int, default=640, help="image width in pixels (default 640)")
    parser.add_argument("--p", type=float, default=0.9, help="confidence requirement (default 0.9)")
    parser.add_argument("--pool", type=int, default=8, help="block size of candidate scoring (default 8)")
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per measurement (default 15)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random masks (default 0)")
    # The same defaults and words as every latent-seg command (latent_segmentation_ros.core.parameter_options).
    parser.add_argument("--device", default="auto",
                        help="torch device: auto (cuda when available, else cpu), cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice, one per core)")
    parser.add_argument("--kernel", default="auto", choices=["auto", "compiled", "torch"],
                        help="implementation of the greedy loop (default auto: compiled on CPU)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> dict:
    """Time each aggregation on the same random samples; returns the JSON-ready result."""
    import torch

    from latent_maskrcnn.aggregation import confidence_kernel
    from latent_maskrcnn.aggregation.aggregate import confidence_masks, prepare_samples, union_nms
    from latent_maskrcnn.aggregation.confidence_masks import resolve_kernel

    for name in ("samples", "masks", "height", "width", "repeats"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    masks, scores = random_samples(args.samples, args.masks, args.height, args.width, args.seed, device)
    other_p = 0.5 if args.p > 0.5 else 0.9

    def timed(function) -> tuple[float, float, object]:
        wall, cpu = [], []
        result = function()  # warm-up
        for _ in range(args.repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start, start_cpu = time.perf_counter(), time.process_time()
            result = function()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            wall.append((time.perf_counter() - start) * 1000.0)
            cpu.append((time.process_time() - start_cpu) * 1000.0)
        return round(statistics.median(wall), 3), round(statistics.median(cpu), 3), result

    kernel = resolve_kernel(args.kernel, device)
    confidence_ms, confidence_cpu, confidence = timed(
        lambda: confidence_masks(masks, scores, args.p, pool=args.pool, kernel=kernel)
    )
    union_ms, union_cpu, union = timed(lambda: union_nms(masks, scores, score_threshold=0.1))
    prepare_ms, prepare_cpu, prepared = timed(lambda: prepare_samples(masks, scores, pool=args.pool))
    prepared.overlaps()  # what the first aggregation of a frame computes and keeps
    reaggregate_ms, reaggregate_cpu, _ = timed(lambda: confidence_masks(prepared, None, other_p, kernel=kernel))
    # The other implementation on the same samples, for the ratio in the same run.
    other_kernel = "torch" if kernel == "compiled" else ("compiled" if device.type == "cpu" and confidence_kernel.AVAILABLE else None)
    other_ms = None
    if other_kernel is not None:
        other_ms, _, _ = timed(lambda: confidence_masks(masks, scores, args.p, pool=args.pool, kernel=other_kernel))
    result = {
        "samples": args.samples,
        "masks_per_sample": args.masks,
        "height": args.height,
        "width": args.width,
        "p": args.p,
        "reaggregate_p": other_p,
        "pool": args.pool,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "confidence_masks_ms": confidence_ms,
        "union_nms_ms": union_ms,
        "reaggregate_ms": reaggregate_ms,
        "prepare_ms": prepare_ms,
        "confidence_masks_cpu_ms": confidence_cpu,
        "union_nms_cpu_ms": union_cpu,
        "reaggregate_cpu_ms": reaggregate_cpu,
        "prepare_cpu_ms": prepare_cpu,
        "kernel": kernel,
        "confidence_masks_out": len(confidence),
        "union_nms_out": len(union),
        "target_confidence_masks_ms": 50.0,
    }
    if other_ms is not None:
        result[f"confidence_masks_{other_kernel}_kernel_ms"] = other_ms
    return result


def random_samples(num_samples: int, num_masks: int, height: int, width: int, seed: int, device) -> tuple[list, list]:
    """K samples of ``num_masks`` item-sized blob masks each, overlapping across samples."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    columns = max(1, round(math.sqrt(num_masks * width / height)))
    rows = math.ceil(num_masks / columns)
    cell_h, cell_w = height / rows, width / columns
    index = torch.arange(num_masks)
    centre_y = (index // columns + 0.5) * cell_h + (torch.rand(num_masks, generator=generator) - 0.5) * 0.3 * cell_h
    centre_x = (index % columns + 0.5) * cell_w + (torch.rand(num_masks, generator=generator) - 0.5) * 0.3 * cell_w
    radius_y = cell_h * (0.45 + 0.15 * torch.rand(num_masks, generator=generator))
    radius_x = cell_w * (0.45 + 0.15 * torch.rand(num_masks, generator=generator))
    yy = torch.arange(height, dtype=torch.float32)[:, None]
    xx = torch.arange(width, dtype=torch.float32)[None, :]
    all_masks, all_scores = [], []
    for _ in range(num_samples):
        jitter = lambda scale: (torch.rand(num_masks, generator=generator) - 0.5) * scale  # noqa: E731
        cy = centre_y + jitter(0.06 * cell_h)
        cx = centre_x + jitter(0.06 * cell_w)
        ry = radius_y * (1 + jitter(0.1))
        rx = radius_x * (1 + jitter(0.1))
        inside = ((yy - cy[:, None, None]) / ry[:, None, None]) ** 2 + ((xx - cx[:, None, None]) / rx[:, None, None]) ** 2
        sample_masks = inside <= 1.0
        ambiguous = torch.rand(num_masks, generator=generator)
        for i in range(num_masks):
            if ambiguous[i] < 0.1 and (i + 1) % columns and i + 1 < num_masks:   # merged with its right neighbour
                sample_masks[i] |= sample_masks[i + 1]
            elif ambiguous[i] > 0.92:                             # split down the middle
                sample_masks[i, :, : int(cx[i])] = False
        all_masks.append(sample_masks.to(device))
        all_scores.append((0.5 + 0.5 * torch.rand(num_masks, generator=generator)).to(device))
    return all_masks, all_scores
