"""`latent-seg probe-latent`: does the latent path carry the seamless-pair labelling?"""
from __future__ import annotations

import argparse

HELP = "probe the latent path on seamless pairs: code spread, and fine-tuning with posterior or oracle codes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="Latent-MaskRCNN checkpoint (.safetensors)")
    parser.add_argument("--data", required=True, help="data folder as written by make-dataset (annotations.json, images/)")
    parser.add_argument("--pairs", type=int, default=24, help="images with a seamless pair to use (default 24)")
    parser.add_argument("--train-pairs", type=int, default=8,
                        help="of those, the first N are fine-tuned on, the rest held out (default 8)")
    parser.add_argument("--steps", type=int, default=300, help="fine-tuning steps; 0: code spread only (default 300)")
    parser.add_argument("--lr", type=float, default=1e-3, help="fine-tuning learning rate (AdamW, default 1e-3)")
    parser.add_argument("--code", choices=["posterior", "oracle"], default="posterior",
                        help="codes: the encoder's posterior means, or the prior mean +/- --amplitude prior std "
                             "along one dimension (default posterior)")
    parser.add_argument("--amplitude", type=float, default=3.0, help="oracle code offset in prior std (default 3)")
    parser.add_argument("--report-every", type=int, default=100, help="report every N steps (default 100)")
    parser.add_argument("--box-iou", type=float, nargs=2, metavar=("FG", "BG"),
                        help="fine-tune with these box-head IoU thresholds for positives / negatives "
                             "(default: the checkpoint's, see ModelConfig.box_fg_iou_thresh)")
    parser.add_argument("--film", action="store_true",
                        help="add the FiLM channel scale (model.latent_injection=film, starting at zero) "
                             "to a checkpoint with the plain injection before fine-tuning")
    from latent_segmentation_ros.core.parameter_options import add_seed_option, add_threads_option

    add_seed_option(parser, "torch seed of the fine-tuning's sampling")
    add_threads_option(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON document at the end")


def run(args: argparse.Namespace) -> int:
    import json
    import sys
    from pathlib import Path

    from latent_segmentation_ros.core.cpu_threads import configure_torch_cpu

    try:
        configure_torch_cpu(args.threads)  # before torch is imported
    except ValueError as error:
        print(f"probe-latent: {error}", file=sys.stderr)
        return 2

    import torch

    from latent_maskrcnn.evaluation.latent_path import code_spread, fit_labellings
    from latent_maskrcnn.evaluation.pair_probe import load_probe_set
    from latent_maskrcnn.model.checkpoint import CheckpointError, load_model

    torch.manual_seed(args.seed)
    data = Path(args.data)
    try:
        model = load_model(args.checkpoint, device="cpu")
        if args.film:
            model = model.with_film_injection()
        if args.box_iou is not None:
            model.set_box_iou_thresholds(*args.box_iou)
        probe_set = load_probe_set(str(data / "annotations.json"), str(data / "images"), args.pairs)
        spread = code_spread(model, probe_set)
        reports = []
        if not args.json:
            print(f"{spread['pairs']} pairs: labellings' codes {spread['distance_median']:.2f} prior std apart "
                  f"(median; max {spread['distance_max']:.2f}), posterior std {spread['posterior_std_ratio']:.2f} "
                  "of the prior's")
        if args.steps > 0:
            for report in fit_labellings(model, probe_set, args.train_pairs, args.steps, args.lr, args.code,
                                         args.amplitude, args.report_every):
                reports.append(report)
                if not args.json:
                    train, held_out = report["train"], report["held_out"]
                    loss = "" if report["loss"] is None else f" loss {report['loss']:.3f}"
                    print(f"step {report['step']}{loss}: follows the labelling {train['follows_labelling']}/"
                          f"{train['pairs']} trained, {held_out['follows_labelling']}/{held_out['pairs']} held out; "
                          f"code changes the answer {train['code_changes_answer']} / "
                          f"{held_out['code_changes_answer']} ({report['seconds']:.0f} s)", flush=True)
    except (CheckpointError, ValueError, OSError) as error:
        print(f"probe-latent: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"code_spread": spread, "code": args.code, "fit": reports}, indent=2))
    return 0
