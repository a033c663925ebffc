"""`latent-seg grasp-causes`: which items the planner's chosen grasps lift when they double-pick."""
from __future__ import annotations

import argparse

HELP = "trace the planner's chosen grasps on COCO scenes with ambiguity kinds: double picks split by cause"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from latent_segmentation_ros.core.parameter_options import (
        add_comparison_mask_threshold,
        add_device_option,
        add_flip_option,
        add_node_option,
        add_threads_option,
    )

    parser.add_argument("--data", required=True,
                        help="data folder as written by make-dataset (annotations.json and images/)")
    parser.add_argument("--out", required=True, help="output folder for grasp_causes.json and grasp_causes.md")
    parser.add_argument("--checkpoint", default=None, help="model .safetensors (default: the bundled demo model)")
    parser.add_argument("--baseline", default=None,
                        help="a MaskRCNN checkpoint (latent_dim = 0) traced beside, with the same planner "
                             "(default: none)")
    add_node_option(parser, "--p", "p", "confidence requirement of the confidence masks")
    add_comparison_mask_threshold(parser, "probability at which every method's masks are binarised")
    add_node_option(parser, "--samples", "num_samples", "samples K per image")
    add_flip_option(parser)
    add_node_option(parser, "--score-threshold", "score_threshold", "detections at or below this score are ignored")
    parser.add_argument("--no-prior-mean", action="store_true", help="skip the prior mean (one network pass less per scene)")
    parser.add_argument("--max-scenes", type=int, default=None, help="trace only the first N scenes (default: all)")
    add_device_option(parser)
    add_threads_option(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from latent_segmentation_ros.core.cpu_threads import configure_torch_cpu

    try:
        configure_torch_cpu(args.threads)  # before torch is imported
    except ValueError as error:
        print(f"grasp-causes: {error}", file=sys.stderr)
        return 2

    from latent_maskrcnn.data.coco_dataset import CocoInstanceDataset, DatasetError
    from latent_segmentation_ros.replay.grasp_causes import (
        SCENE_CAMERA,
        combinations_lines,
        grasp_causes_table,
        trace_grasps,
        write_grasp_causes,
    )
    from latent_segmentation_ros.replay.runner import build_pair_processor
    from latent_segmentation_ros.replay.sweep import load_baseline

    if args.max_scenes is not None and args.max_scenes < 1:
        print("grasp-causes: --max-scenes must be at least 1", file=sys.stderr)
        return 2
    data = Path(args.data)
    try:
        dataset = CocoInstanceDataset(data / "annotations.json", data / "images")
        setup = build_pair_processor(
            args.checkpoint, mode="confidence_mask", p=args.p, mask_threshold=args.mask_threshold, samples=args.samples,
            flip_samples=args.flip_samples,
            score_threshold=args.score_threshold, device=args.device, cameras=[SCENE_CAMERA],
        )
        baseline = None if args.baseline is None else load_baseline(args.baseline, setup)
        result = trace_grasps(setup, dataset, p=args.p, baseline=baseline, include_prior_mean=not args.no_prior_mean,
                              max_scenes=args.max_scenes, progress=not args.no_progress)
    except (DatasetError, ValueError) as error:
        print(f"grasp-causes: {error}", file=sys.stderr)
        return 2
    write_grasp_causes(result, Path(args.out))
    print(grasp_causes_table(result))
    print("kinds of the items lifted by double-picking grasps:")
    for line in combinations_lines(result):
        print(f"  {line}")
    if result["scenes_without_kinds"]:
        print(f"grasp-causes: {result['scenes_without_kinds']} scenes carry no ambiguity kinds; "
              "their double picks count as unknown", file=sys.stderr)
    print(f"written: {Path(args.out) / 'grasp_causes.md'}")
    return 0
