"""`latent-seg bench model`: K-sample Latent-MaskRCNN inference against torchvision's MaskRCNN
single pass, on the same inputs, threads and weights, in one run.

Top level imports only argparse so that ``latent-seg --help`` stays fast.
"""
from __future__ import annotations

import argparse
from typing import Any

HELP = "time K-sample Latent-MaskRCNN inference against torchvision's MaskRCNN single pass"

DESCRIPTION = """\
Times, in one process and on the same random images and thread count:
  (a) torchvision's MaskRCNN single pass (torchvision.models.detection.MaskRCNN, run by its own
      forward) with the same backbone module and the same decoder weights as the latent model:
      for resnet50_fpn this is the architecture of maskrcnn_resnet50_fpn with frozen batch norm;
  (b) Latent-MaskRCNN `sample(images, num_samples=K)` with the same backbone and decoder weights,
      also from the prior mean alone and with ``flip=True`` (K/2 codes on each image and on its
      mirror image: the node's default, one more backbone pass per image).
The models are untrained (random weights, nothing is downloaded), so the budgets are fixed
identically for both paths: --proposals pre- and post-NMS RPN proposals per image (per image
and per sample for the latent model), box_score_thresh = 0 so every path keeps the full
--detections detections per image (per image and per sample), the input size as the network
size (min_size/max_size = the image sides, no resizing). The proposal and detection counts that
really resulted are reported. Each path is warmed up, then the runs alternate (single, latent,
prior mean, latent with flip) --repeats times; medians are reported. `ratio` = latent_ms / single_pass_ms.
CPU times (all threads) are reported too: on a shared machine they are less noisy than wall time.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--backbone", default="resnet50_fpn", choices=["resnet50_fpn", "resnet18_fpn", "mobilenet_v3_fpn"],
                        help="backbone of both models (default resnet50_fpn)")
    parser.add_argument("--samples", type=int, default=8, help="K, latent codes per image (default 8)")
    parser.add_argument("--images", type=int, default=2, help="images per batch (default 2)")
    parser.add_argument("--height", type=int, default=480, help="image height (default 480)")
    parser.add_argument("--width", type=int, default=640, help="image width (default 640)")
    # The same default and words as every latent-seg command (latent_segmentation_ros.core.parameter_options).
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice, one per core)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per path; medians reported (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per path first (default 1)")
    parser.add_argument("--proposals", type=int, default=1000,
                        help="RPN proposals per image (and per sample), pre- and post-NMS (default 1000)")
    parser.add_argument("--detections", type=int, default=20,
                        help="detections per image (and per sample), score threshold 0 (default 20)")
    parser.add_argument("--latent-dim", type=int, default=64, help="latent code size (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights, images and codes (default 0)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _check(args: argparse.Namespace) -> None:
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be at least 1, got {args.threads}")
    for name in ("samples", "images", "height", "width", "repeats", "proposals", "detections", "latent_dim"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.warmup < 0:
        raise ValueError(f"--warmup must be >= 0, got {args.warmup}")
    if min(args.height, args.width) < 32:
        raise ValueError("--height and --width must be at least 32")


class _Clock:
    """Accumulates wall and CPU seconds per named stage (a ``stage_timer`` for the model)."""

    def __init__(self) -> None:
        import time

        self._time = time
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def __call__(self, name: str):
        import contextlib

        @contextlib.contextmanager
        def timed():
            wall, cpu = self._time.perf_counter(), self._time.process_time()
            try:
                yield
            finally:
                self.wall[name] = self.wall.get(name, 0.0) + self._time.perf_counter() - wall
                self.cpu[name] = self.cpu.get(name, 0.0) + self._time.process_time() - cpu

        return timed()


def _torchvision_single_pass(model):
    """torchvision's MaskRCNN with the latent model's backbone module and decoder weights."""
    import copy

    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

    config = model.config
    baseline = MaskRCNN(
        copy.deepcopy(model.backbone),
        num_classes=None,
        min_size=config.min_size,
        max_size=config.max_size,
        image_mean=config.image_mean,
        image_std=config.image_std,
        rpn_anchor_generator=AnchorGenerator(
            tuple((s,) for s in config.anchor_sizes), (tuple(config.aspect_ratios),) * len(config.anchor_sizes)
        ),
        rpn_pre_nms_top_n_test=config.rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_test=config.rpn_post_nms_top_n_test,
        rpn_nms_thresh=config.rpn_nms_thresh,
        box_score_thresh=config.box_score_thresh,
        box_nms_thresh=config.box_nms_thresh,
        box_detections_per_img=config.box_detections_per_img,
        box_head=TwoMLPHead(config.fpn_channels * 49, config.box_head_dim),
        box_predictor=FastRCNNPredictor(config.box_head_dim, config.num_classes),
        mask_head=MaskRCNNHeads(config.fpn_channels, [config.mask_head_channels] * 4, 1),
        mask_predictor=MaskRCNNPredictor(config.mask_head_channels, config.mask_head_channels, config.num_classes),
    )
    decoder = {k: v for k, v in model.state_dict().items() if k.split(".")[0] in ("backbone", "rpn", "roi_heads")}
    baseline.load_state_dict(decoder, strict=True)
    return baseline.eval()


def _instrument(baseline, clock: _Clock, counts: dict[str, list[int]]):
    """Forward hooks that split torchvision's own forward into stages (and count outputs)."""
    import time

    marks: dict[str, tuple[float, float]] = {}

    def start(name):
        def hook(module, inputs):
            marks[name] = (time.perf_counter(), time.process_time())
        return hook

    def stop(name):
        def hook(module, inputs, output):
            wall, cpu = marks.pop(name)
            clock.wall[name] = clock.wall.get(name, 0.0) + time.perf_counter() - wall
            clock.cpu[name] = clock.cpu.get(name, 0.0) + time.process_time() - cpu
            if name == "rpn":
                counts["proposals"].extend(len(p) for p in output[0])
        return hook

    for name, module in (("backbone", baseline.backbone), ("rpn", baseline.rpn), ("roi_heads", baseline.roi_heads)):
        module.register_forward_pre_hook(start(name))
        module.register_forward_hook(stop(name))


def _median(values: list[float]) -> float:
    import statistics

    return float(statistics.median(values)) if values else 0.0


def run(args: argparse.Namespace) -> dict[str, Any]:
    _check(args)
    import os
    import platform
    import resource
    import time

    import torch

    from latent_maskrcnn.model.config import ModelConfig
    from latent_maskrcnn.model.latent_mask_rcnn import LatentMaskRCNN

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    config = ModelConfig(
        backbone=args.backbone,
        latent_dim=args.latent_dim,
        min_size=min(args.height, args.width),
        max_size=max(args.height, args.width),
        rpn_pre_nms_top_n_test=args.proposals,
        rpn_post_nms_top_n_test=args.proposals,
        box_detections_per_img=args.detections,
        box_score_thresh=0.0,
    )
    torch.manual_seed(args.seed)
    model = LatentMaskRCNN(config).eval()
    baseline = _torchvision_single_pass(model)
    generator = torch.Generator().manual_seed(args.seed)
    images = [torch.rand((3, args.height, args.width), generator=generator) for _ in range(args.images)]
    load_before = os.getloadavg()[0]

    def rss_mb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    single_clock, latent_clock, mean_clock = _Clock(), _Clock(), _Clock()
    single_counts: dict[str, list[int]] = {"proposals": [], "detections": []}
    _instrument(baseline, single_clock, single_counts)

    def single_pass():
        with torch.inference_mode():
            output = baseline(images)
        single_counts["detections"].extend(len(o["boxes"]) for o in output)

    latent_counts: dict[str, list[int]] = {"proposals": [], "detections": []}

    def latent():
        samples = model.sample(images, num_samples=args.samples, seed=args.seed)
        latent_counts["detections"].extend(len(p["boxes"]) for per_image in samples for p in per_image)

    def prior_mean():
        model.sample(images, mode="prior_mean")

    def latent_flip():  # the node's default: K/2 codes on the image and again on its mirror image
        model.sample(images, num_samples=args.samples, seed=args.seed, flip=True)

    for _ in range(args.warmup):
        single_pass()
    single_peak_rss = rss_mb()
    for _ in range(args.warmup):
        latent()
        prior_mean()
        latent_flip()
    for values in (*single_counts.values(), *latent_counts.values()):
        values.clear()

    walls: dict[str, list[float]] = {"single": [], "latent": [], "prior_mean": [], "latent_flip": []}
    cpus: dict[str, list[float]] = {"single": [], "latent": [], "prior_mean": [], "latent_flip": []}
    stage_walls: dict[str, list[float]] = {}
    stage_cpus: dict[str, list[float]] = {}
    single_stage_walls: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for name, fn, clock in (("single", single_pass, single_clock), ("latent", latent, latent_clock),
                                ("prior_mean", prior_mean, mean_clock), ("latent_flip", latent_flip, mean_clock)):
            clock.wall.clear()
            clock.cpu.clear()
            model.stage_timer = clock if name != "single" else None
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            walls[name].append(time.perf_counter() - wall)
            cpus[name].append(time.process_time() - cpu)
            if name == "latent":
                latent_counts["proposals"].extend(model.last_proposal_counts)
                for stage, seconds in clock.wall.items():
                    stage_walls.setdefault(stage, []).append(seconds)
                    stage_cpus.setdefault(stage, []).append(clock.cpu[stage])
            if name == "single":
                for stage, seconds in clock.wall.items():
                    single_stage_walls.setdefault(stage, []).append(seconds)
                single_stage_walls.setdefault("transform_and_postprocess", []).append(
                    walls["single"][-1] - sum(clock.wall.values())
                )
    model.stage_timer = None

    single_ms = 1000 * _median(walls["single"])
    latent_ms = 1000 * _median(walls["latent"])
    mean_ms = 1000 * _median(walls["prior_mean"])
    result: dict[str, Any] = {
        "backbone": args.backbone,
        "samples": args.samples,
        "images": args.images,
        "height": args.height,
        "width": args.width,
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "single_pass_ms": round(single_ms, 1),
        "latent_ms": round(latent_ms, 1),
        "ratio": round(latent_ms / single_ms, 3),
        "prior_mean_ms": round(mean_ms, 1),
        "prior_mean_ratio": round(mean_ms / single_ms, 3),
        "latent_flip_ms": round(1000 * _median(walls["latent_flip"]), 1),
        "latent_flip_ratio": round(_median(walls["latent_flip"]) / _median(walls["single"]), 3),
        "single_pass_cpu_ms": round(1000 * _median(cpus["single"]), 1),
        "latent_cpu_ms": round(1000 * _median(cpus["latent"]), 1),
        "cpu_ratio": round(_median(cpus["latent"]) / _median(cpus["single"]), 3),
        "proposals_budget": args.proposals,
        "detections_budget": args.detections,
        "proposals_per_image": round(_mean(single_counts["proposals"]), 1),
        "latent_proposals_per_image_and_sample": round(_mean(latent_counts["proposals"]), 1),
        "detections_per_image": round(_mean(single_counts["detections"]), 1),
        "latent_detections_per_image_and_sample": round(_mean(latent_counts["detections"]), 1),
        "single_pass_stages_ms": {k: round(1000 * _median(v), 1) for k, v in single_stage_walls.items()},
        "latent_stages_ms": {k: round(1000 * _median(v), 1) for k, v in stage_walls.items()},
        "latent_stages_cpu_ms": {k: round(1000 * _median(v), 1) for k, v in stage_cpus.items()},
        "single_pass_peak_rss_mb": round(single_peak_rss, 1),
        "peak_rss_mb": round(rss_mb(), 1),
        "single_pass_runs_ms": [round(1000 * t, 1) for t in walls["single"]],
        "latent_runs_ms": [round(1000 * t, 1) for t in walls["latent"]],
        "load_average_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
    }
    return result


def _mean(values: list[int]) -> float:
    return sum(values) / len(values) if values else 0.0


def format_table(result: dict[str, Any]) -> str:
    lines = [
        f"Latent-MaskRCNN K={result['samples']} vs torchvision MaskRCNN single pass "
        f"({result['backbone']}, {result['images']} images {result['height']}x{result['width']}, "
        f"{result['threads']} threads, median of {result['repeats']})",
        "",
        f"{'path':<28}{'wall ms':>12}{'cpu ms':>12}",
        f"{'single pass (torchvision)':<28}{result['single_pass_ms']:>12.1f}{result['single_pass_cpu_ms']:>12.1f}",
        f"{'latent, K samples':<28}{result['latent_ms']:>12.1f}{result['latent_cpu_ms']:>12.1f}",
        f"{'latent, prior mean':<28}{result['prior_mean_ms']:>12.1f}{'':>12}",
        f"{'latent, K with mirror views':<28}{result['latent_flip_ms']:>12.1f}{'':>12}",
        "",
        f"ratio latent / single: {result['ratio']:.2f} (cpu time {result['cpu_ratio']:.2f}); "
        f"prior mean / single: {result['prior_mean_ratio']:.2f}; with mirror views / single: "
        f"{result['latent_flip_ratio']:.2f}",
        f"proposals per image: {result['proposals_per_image']} single, "
        f"{result['latent_proposals_per_image_and_sample']} latent per sample (budget {result['proposals_budget']})",
        f"detections per image: {result['detections_per_image']} single, "
        f"{result['latent_detections_per_image_and_sample']} latent per sample (budget {result['detections_budget']})",
        f"peak RSS: {result['single_pass_peak_rss_mb']} MB after single pass, {result['peak_rss_mb']} MB overall",
        "",
        "latent stages (wall ms): " + ", ".join(f"{k} {v}" for k, v in result["latent_stages_ms"].items()),
        "single pass stages (wall ms): " + ", ".join(f"{k} {v}" for k, v in result["single_pass_stages_ms"].items()),
        f"load average before/after: {result['load_average_before_after']}",
    ]
    return "\n".join(lines)
