"""`latent-seg make-dataset`: synthetic ambiguous tote scenes as a COCO data set."""
from __future__ import annotations

import argparse
from dataclasses import fields

HELP = "generate synthetic tote scenes with ambiguous labels as a COCO data set (RLE masks, PNG)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (gets annotations.json and images/)")
    parser.add_argument("--images", type=int, required=True, help="number of scenes")
    from latent_segmentation_ros.core.parameter_options import add_seed_option

    add_seed_option(parser, "data set seed: same seed, same files; give training and held-out sets different seeds")
    parser.add_argument("--height", type=int, default=240, help="image height in pixels (default 240)")
    parser.add_argument("--width", type=int, default=320, help="image width in pixels (default 320)")
    parser.add_argument("--views", type=int, default=1, help="overhead cameras per scene (default 1; the cell has 2)")
    from latent_maskrcnn.data.synthetic.ambiguity import DEFAULT_RATES, RATE_DESCRIPTIONS, AmbiguityRates

    for field in fields(AmbiguityRates):
        default = getattr(DEFAULT_RATES, field.name)
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=float, default=default, metavar="RATE",
                            help=f"{RATE_DESCRIPTIONS[field.name]} (default {default:g})")
    parser.add_argument("--overwrite", action="store_true", help="replace a data set already in --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from latent_maskrcnn.data.synthetic import AmbiguityRates, make_dataset

    try:
        rates = AmbiguityRates(**{field.name: getattr(args, field.name) for field in fields(AmbiguityRates)})
        path = make_dataset(
            args.out,
            args.images,
            args.seed,
            height=args.height,
            width=args.width,
            views=args.views,
            rates=rates,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    except ValueError as error:
        print(f"make-dataset: {error}", file=sys.stderr)
        return 2
    with open(path) as handle:
        document = json.load(handle)
    counts: dict[str, int] = {}
    for annotation in document["annotations"]:
        counts[annotation["ambiguity"]] = counts.get(annotation["ambiguity"], 0) + 1
    summary = {
        "annotations": str(path),
        "images": len(document["images"]),
        "instances": len(document["annotations"]),
        "instances_by_kind": dict(sorted(counts.items())),
    }
    print(json.dumps(summary, indent=2))
    return 0
