"""`latent-seg train`: train Latent-MaskRCNN (or the plain MaskRCNN baseline) from a YAML recipe."""
from __future__ import annotations

import argparse

HELP = "train Latent-MaskRCNN (or --baseline MaskRCNN) on COCO-format data; torchrun for several GPUs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="YAML recipe (sections model, data, optimizer, schedule, run)")
    parser.add_argument("overrides", nargs="*", metavar="SECTION.KEY=VALUE",
                        help="config overrides, e.g. schedule.steps=2000 model.latent_dim=32")
    parser.add_argument("--baseline", action="store_true",
                        help="plain MaskRCNN with the same recipe (latent_dim=0), written to <run.output_dir>_baseline")
    parser.add_argument("--resume", action="store_true", help="continue the run in run.output_dir from its latest checkpoint")
    parser.add_argument("--resume-from", metavar="CHECKPOINT",
                        help="continue from this checkpoint folder (or run folder), writing to run.output_dir "
                             "(default: a fresh start)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import json
    import logging
    import os
    import sys

    from latent_maskrcnn.data.coco_dataset import DatasetError
    from latent_maskrcnn.model.checkpoint import CheckpointError
    from latent_maskrcnn.training.config import ConfigError, load_config
    from latent_maskrcnn.training.state import ResumeError
    from latent_maskrcnn.training.trainer import SUMMARY, baseline_config, train

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config, args.overrides)
        if args.baseline:
            config = baseline_config(config)
        if args.resume and args.resume_from:
            raise ConfigError("give either --resume or --resume-from, not both")
        resume = args.resume_from or (True if args.resume else None)
        result = train(config, resume=resume, progress=not args.no_progress)
    except (ConfigError, DatasetError, ResumeError, CheckpointError) as error:
        print(f"train: {error}", file=sys.stderr)
        return 2
    summary_path = result.output_dir / SUMMARY
    if int(os.environ.get("RANK", "0")) == 0 and summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        summary.pop("config", None)
        print(json.dumps(summary, indent=2))
    return 0
