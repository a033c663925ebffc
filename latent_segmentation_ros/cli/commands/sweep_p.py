"""`latent-seg sweep-p`: choose p on a recorded bag (double-pick rate against pickable area)."""
from __future__ import annotations

import argparse

HELP = "sweep p over a bag: double-pick rate vs pickable area (Fig. 5) and the smallest p meeting a target"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from latent_segmentation_ros.cli.commands.replay import add_pipeline_arguments

    add_pipeline_arguments(parser, with_mode=False,
                           out_help="output folder (sweep.json, sweep.md, the Fig. 5 plot)")
    parser.add_argument("--ps", type=float, nargs="+", default=None,
                        help="values of p to evaluate (default 0.1 0.2 ... 1.0)")
    parser.add_argument("--target-double-pick", type=float, default=0.01,
                        help="double-pick rate to meet, as a fraction (default 0.01: the warehouse tolerance)")
    parser.add_argument("--no-prior-mean", action="store_true",
                        help="skip the prior-mean point (saves one network pass per frame)")
    parser.add_argument("--max-pairs", type=int, default=None,
                        help="stop after this many synchronised pairs (default: all)")
    parser.add_argument("--baseline", default=None,
                        help="a MaskRCNN checkpoint (latent_dim = 0) scored beside the sweep with the same circles "
                             "and planner (default: none)")
    add_curve_options(parser)


def add_curve_options(parser: argparse.ArgumentParser, thresholds_help: str = "", reference_p: bool = True) -> None:
    """The baselines' operating curves over the mask threshold and the matched comparison."""
    from latent_maskrcnn.evaluation.comparison_defaults import BOOTSTRAP_RESAMPLES, MASK_THRESHOLDS
    from latent_segmentation_ros.core.parameter_options import add_node_option

    parser.add_argument("--mask-thresholds", type=float, nargs="+", default=list(MASK_THRESHOLDS),
                        help=thresholds_help or "mask thresholds of the baselines' operating curves (MaskRCNN and the prior "
                             "mean, with and without the mirror view; default %(default)s)")
    parser.add_argument("--no-curves", action="store_true",
                        help="no baseline curves and no matched comparison (saves their network passes and scoring)")
    parser.add_argument("--no-mirror-baselines", action="store_true",
                        help="leave MaskRCNN and the prior mean with the mirror view out of the curves")
    if reference_p:
        add_node_option(parser, "--reference-p", "p", "p of the confidence masks the baselines are matched with")
    parser.add_argument("--resamples", type=int, default=BOOTSTRAP_RESAMPLES,
                        help="paired-bootstrap draws of the matched comparison's intervals (default %(default)s)")


def curve_settings(args: argparse.Namespace) -> dict:
    """SweepOptions' curve fields from the options of `add_curve_options`."""
    settings = {"mask_thresholds": [] if args.no_curves else args.mask_thresholds,
                "mirror_baselines": not args.no_mirror_baselines, "resamples": args.resamples}
    if hasattr(args, "reference_p"):
        settings["reference_p"] = args.reference_p
    return settings


def run(args: argparse.Namespace) -> int:
    import sys

    from latent_segmentation_ros.core.cpu_threads import configure_torch_cpu

    try:
        configure_torch_cpu(args.threads)  # before torch is imported
    except ValueError as error:
        print(f"sweep-p: {error}", file=sys.stderr)
        return 2

    from latent_segmentation_ros.cli.commands.replay import scoring_config, sync_policy
    from latent_segmentation_ros.replay.bag_io import BagError
    from latent_segmentation_ros.replay.runner import build_pair_processor
    from latent_segmentation_ros.replay.sweep import (
        DEFAULT_PS,
        SweepOptions,
        grasp_target_line,
        load_baseline,
        matched_lines,
        recommendation,
        sweep_p,
        sweep_table,
    )
    from latent_segmentation_ros.replay.synthetic_bag import camera_of_topic

    try:
        options = SweepOptions(
            bag=args.bag, out_dir=args.out, ps=args.ps or DEFAULT_PS, target_double_pick=args.target_double_pick,
            include_prior_mean=not args.no_prior_mean, image_topics=tuple(args.topics), sync=sync_policy(args),
            progress=not args.no_progress, max_pairs=args.max_pairs, scoring=scoring_config(args),
            **curve_settings(args),
        )
        setup = build_pair_processor(
            args.checkpoint, mode="confidence_mask", samples=args.samples, flip_samples=args.flip_samples,
            mask_threshold=args.mask_threshold,
            score_threshold=args.score_threshold, device=args.device,
            cameras=[camera_of_topic(topic) for topic in args.topics],
        )
        baseline = None if args.baseline is None else load_baseline(args.baseline, setup)
        result = sweep_p(options, setup, baseline)
    except (BagError, ValueError) as error:
        print(f"sweep-p: {error}", file=sys.stderr)
        return 2
    print(sweep_table(result))
    print(recommendation(result))
    if grasp_target_line(result):
        print(grasp_target_line(result))
    if result.get("matched_comparison"):
        print("\n".join(["", "matched comparison:", *matched_lines(result)]))
    print(f"plot: {result['plot']}")
    if result.get("stopped"):
        print(f"sweep-p: stopped early at frame {result['stopped']['frame']}: {result['stopped']['error']}", file=sys.stderr)
        return 3
    return 0
