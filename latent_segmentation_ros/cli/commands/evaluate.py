"""`latent-seg evaluate`: the paper's Table I / III and Fig. 5 / 8 for a checkpoint on COCO data."""
from __future__ import annotations

import argparse

HELP = ("evaluate a checkpoint (and a MaskRCNN baseline) on COCO data: Table I/III, Fig. 5/8, sample grid, "
        "and the baselines matched at the confidence masks' pickable area with intervals")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from latent_segmentation_ros.core.parameter_options import (
        add_comparison_mask_threshold,
        add_device_option,
        add_flip_option,
        add_gripper_options,
        add_node_option,
        add_seed_option,
        add_threads_option,
    )

    parser.add_argument("--checkpoint", required=True, help="Latent-MaskRCNN checkpoint (.safetensors)")
    parser.add_argument("--data", required=True,
                        help="data folder as written by make-dataset (annotations.json and images/)")
    parser.add_argument("--baseline", help="MaskRCNN checkpoint (a model saved with latent_dim=0) for the MaskRCNN rows "
                                           "(default: none)")
    parser.add_argument("--out", required=True, help="output folder for results.json, results.md and the PNGs")
    parser.add_argument("--annotations", help="annotation file (default DATA/annotations.json)")
    parser.add_argument("--images", help="image folder (default DATA/images)")
    add_node_option(parser, "--samples", "num_samples", "K, latent samples per image")
    add_flip_option(parser)
    add_node_option(parser, "--p", "p", "confidence requirement of the table rows")
    parser.add_argument("--p-values", default="0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0",
                        help="comma-separated p values for Fig. 5 and Fig. 8 (default 0.1 to 1.0)")
    add_node_option(parser, "--score-threshold", "score_threshold", "detections kept above this score")
    add_comparison_mask_threshold(parser, "probability at which every method's masks are binarised")
    parser.add_argument("--mask-thresholds", default=",".join(f"{t:g}" for t in _mask_thresholds()),
                        help="comma-separated mask thresholds of the baselines' operating curves (default %(default)s)")
    parser.add_argument("--no-curves", action="store_true",
                        help="skip the operating curves and the matched comparison (and the grasp planner)")
    parser.add_argument("--no-mirror-baselines", action="store_true",
                        help="leave MaskRCNN and the prior mean with the mirror view out of the curves")
    parser.add_argument("--no-grasps", action="store_true",
                        help="curves without the node's grasp planner (no chosen-grasp numbers; faster)")
    parser.add_argument("--resamples", type=int, default=_resamples(),
                        help="paired-bootstrap draws of the matched comparison's intervals (default %(default)s)")
    parser.add_argument("--iou-threshold", type=float, default=0.5, help="Union-NMS IoU threshold (default 0.5)")
    add_gripper_options(parser)
    parser.add_argument("--max-images", type=int, help="evaluate only the first N images (default: all)")
    parser.add_argument("--grid-images", type=int, default=3, help="images in samples.png (default 3)")
    parser.add_argument("--no-probe", action="store_true", help="skip the seamless-pair probe")
    parser.add_argument("--probe-iou", type=float, default=0.5,
                        help="probe: IoU for a mask to count as the merged outline or a half (default 0.5)")
    parser.add_argument("--seam-fraction", type=float, default=0.2,
                        help="probe: a mask covers the seam when it holds this fraction of each half (default 0.2)")
    add_seed_option(parser, "seed of the latent samples and gripper circles")
    add_device_option(parser)
    add_threads_option(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _mask_thresholds() -> tuple[float, ...]:
    from latent_maskrcnn.evaluation.comparison_defaults import MASK_THRESHOLDS

    return MASK_THRESHOLDS


def _resamples() -> int:
    from latent_maskrcnn.evaluation.comparison_defaults import BOOTSTRAP_RESAMPLES

    return BOOTSTRAP_RESAMPLES


def run(args: argparse.Namespace) -> int:
    import logging
    import sys
    from pathlib import Path

    from latent_segmentation_ros.core.cpu_threads import configure_torch_cpu
    from latent_segmentation_ros.core.pipeline import resolve_device

    try:
        configure_torch_cpu(args.threads)  # before torch is imported
        device = resolve_device(args.device)
    except ValueError as error:
        print(f"evaluate: {error}", file=sys.stderr)
        return 2

    from latent_maskrcnn.data.coco_dataset import CocoInstanceDataset, DatasetError
    from latent_maskrcnn.evaluation.runner import EvaluationSettings, run_methods, write_report
    from latent_maskrcnn.model.checkpoint import CheckpointError, load_model

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    data = Path(args.data)
    try:
        p_values = tuple(float(value) for value in args.p_values.split(",") if value.strip())
        mask_thresholds = tuple(float(value) for value in args.mask_thresholds.split(",") if value.strip())
        settings = EvaluationSettings(
            num_samples=args.samples,
            flip_samples=args.flip_samples,
            seed=args.seed,
            p=args.p,
            p_values=p_values,
            score_threshold=args.score_threshold,
            iou_threshold=args.iou_threshold,
            gripper_radius=args.gripper_radius,
            circles=args.circles,
            grid_images=args.grid_images,
            max_images=args.max_images,
            probe=not args.no_probe,
            probe_iou_threshold=args.probe_iou,
            seam_fraction=args.seam_fraction,
            mask_threshold=args.mask_threshold,
            mask_thresholds=mask_thresholds,
            curves=not args.no_curves,
            mirror_baselines=not args.no_mirror_baselines,
            resamples=args.resamples,
        )
        dataset = CocoInstanceDataset(args.annotations or data / "annotations.json", args.images or data / "images")
        model = load_model(args.checkpoint, device=device)
        baseline = None if args.baseline is None else load_model(args.baseline, device=device)
        grasp_scorer = None
        if settings.curves and not args.no_grasps:
            from latent_segmentation_ros.replay.grasp_outcomes import planner_grasp_scorer

            grasp_scorer = planner_grasp_scorer()
        run_result = run_methods(model, dataset, baseline, settings, progress=not args.no_progress,
                                 grasp_scorer=grasp_scorer)
        report = write_report(run_result, args.out, args.checkpoint, str(data), args.baseline)
    except (ValueError, CheckpointError, DatasetError) as error:  # DatasetError is a ValueError too
        print(f"evaluate: {error}", file=sys.stderr)
        return 2
    print((Path(args.out) / "results.md").read_text())
    print(f"results: {Path(args.out) / 'results.json'}")
    return 0
