"""`latent-seg demo` (what `make demo` runs): a small synthetic bag replayed with the bundled model."""
from __future__ import annotations

import argparse

HELP = "make a small synthetic two-camera bag, replay it with the bundled demo model, print the report"

MARKER = ".latent_seg_demo"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from latent_segmentation_ros.cli.commands.node_options import add_node_option

    parser.add_argument("--out", default="demo_output", help="output folder (default demo_output)")
    parser.add_argument("--frames", type=int, default=24, help="frames per camera (default 24)")
    parser.add_argument("--seed", type=int, default=0, help="scene seed (default 0)")
    parser.add_argument("--height", type=int, default=240, help="image height (default 240)")
    parser.add_argument("--width", type=int, default=320, help="image width (default 320)")
    parser.add_argument("--checkpoint", default=None, help="model .safetensors (default: the bundled demo model)")
    add_node_option(parser, "--samples", "num_samples", "samples K per image")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")


def _prepare_out(out) -> None:
    """Reuse a folder the demo made before; refuse to write into anything else."""
    import shutil

    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise ValueError(f"{out} exists and was not made by the demo; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by latent-seg demo\n")


def run(args: argparse.Namespace) -> int:
    import sys
    import time
    from pathlib import Path

    from latent_segmentation_ros.cli.commands.replay import print_summary
    from latent_segmentation_ros.core.resources import DEMO_CHECKPOINT
    from latent_segmentation_ros.replay.bag_io import BagError
    from latent_segmentation_ros.replay.runner import ReplayOptions, build_pair_processor, replay_bag
    from latent_segmentation_ros.replay.synthetic_bag import write_synthetic_bag

    out = Path(args.out)
    start = time.perf_counter()
    try:
        if args.checkpoint is None:
            from latent_segmentation_ros.core.resources import default_checkpoint

            try:
                default_checkpoint()
            except FileNotFoundError:
                raise ValueError(
                    f"the bundled demo model {DEMO_CHECKPOINT} is missing. Train it on synthetic scenes "
                    f"(see `latent-seg train --help` and the README) and save it there, or run the demo "
                    f"with --checkpoint PATH"
                ) from None
        setup = build_pair_processor(args.checkpoint, samples=args.samples, device=args.device)
        _prepare_out(out)
        print(f"demo: writing a {args.frames}-frame synthetic two-camera bag to {out / 'bag'}")
        write_synthetic_bag(out / "bag", args.frames, args.seed, height=args.height, width=args.width)
        print(f"demo: replaying it with {setup.header_info['model_id']} "
              f"({setup.header_info['mode']}, p = {setup.header_info['p']}, K = {setup.header_info['num_samples']})")
        summary = replay_bag(
            ReplayOptions(bag=out / "bag", out_dir=out / "replay"), setup.process_pair, setup.cup_radius, setup.header_info
        )
    except (BagError, ValueError) as error:
        print(f"demo: {error}", file=sys.stderr)
        return 2
    print_summary(summary.report, str(out / "replay"))
    print(f"demo: done in {time.perf_counter() - start:.0f} s")
    return summary.exit_code
