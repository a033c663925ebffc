"""`latent-seg make-dataset`: synthetic ambiguous tote scenes as a COCO data set."""
from __future__ import annotations

import argparse

HELP = "generate synthetic tote scenes with ambiguous labels as a COCO data set (RLE masks, PNG)"

RATE_OPTIONS = ("seamless_pair", "pair_merged", "glare_stripe", "transparent_film")
COUNT_OPTIONS = ("max_pairs", "max_films")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from latent_maskrcnn.data.synthetic.ambiguity import LABELLINGS, PRESETS, RATE_DESCRIPTIONS, REGION_KINDS

    parser.add_argument("--out", required=True, help="output folder (gets annotations.json and images/)")
    parser.add_argument("--images", type=int, required=True, help="number of scenes")
    from latent_segmentation_ros.core.parameter_options import add_seed_option

    add_seed_option(parser, "data set seed: same seed, same files; give training and held-out sets different seeds")
    parser.add_argument("--height", type=int, default=240, help="image height in pixels (default 240)")
    parser.add_argument("--width", type=int, default=320, help="image width in pixels (default 320)")
    parser.add_argument("--views", type=int, default=1, help="overhead cameras per scene (default 1; the cell has 2)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="plain",
                        help="data recipe: 'plain' (the plain held-out split; default plain) or 'ambiguity' (the "
                             "ambiguity benchmark: several pairs, more glare stripes and clear bags, every region "
                             "labelled by the annotator style); the options below override single values")

    def preset_values(name: str) -> str:
        return ", ".join(f"{preset} {_shown(getattr(rates, name))}" for preset, rates in PRESETS.items())

    for name in RATE_OPTIONS:
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=None, metavar="RATE",
                            help=f"{RATE_DESCRIPTIONS[name]} (default: the preset's, {preset_values(name)})")
    for name in COUNT_OPTIONS:
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=None, metavar="N",
                            help=f"{RATE_DESCRIPTIONS[name]} (default: the preset's, {preset_values(name)})")
    parser.add_argument("--styled-kinds", default=None, metavar="KINDS",
                        help=f"comma-separated regions labelled by the image's annotator style, 'all' or 'none' "
                             f"(of {','.join(REGION_KINDS)}; default: the preset's, {preset_values('styled_kinds')})")
    parser.add_argument("--labellings", choices=LABELLINGS, default="drawn",
                        help="'drawn': one labelling per image, in the style its coin drew (default); 'both': one "
                             "entry per annotator style for every image, pointing at the same file "
                             "(multi-annotator data; see docs/synthetic_data.md)")
    parser.add_argument("--overwrite", action="store_true", help="replace a data set already in --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _shown(value) -> str:
    if isinstance(value, tuple):
        return ",".join(value) if value else "none"
    return f"{value:g}"


def parse_styled_kinds(text: str) -> tuple[str, ...]:
    """``all``, ``none`` or a comma-separated list of region kinds (checked by `AmbiguityRates`)."""
    from latent_maskrcnn.data.synthetic.ambiguity import REGION_KINDS

    words = [word.strip() for word in text.split(",") if word.strip()]
    if words == ["all"]:
        return REGION_KINDS
    if words == ["none"] or not words:
        return ()
    return tuple(words)


def rates_from_args(args: argparse.Namespace):
    """The preset's `AmbiguityRates` with the options given on the command line (ValueError
    names a value out of range)."""
    from dataclasses import replace

    from latent_maskrcnn.data.synthetic.ambiguity import PRESETS

    changes = {name: getattr(args, name) for name in RATE_OPTIONS + COUNT_OPTIONS if getattr(args, name) is not None}
    if args.styled_kinds is not None:
        changes["styled_kinds"] = parse_styled_kinds(args.styled_kinds)
    return replace(PRESETS[args.preset], **changes)


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from latent_maskrcnn.data.synthetic import make_dataset

    try:
        rates = rates_from_args(args)
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
            labellings=args.labellings,
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
        "image_files": len({image["file_name"] for image in document["images"]}),
        "preset": document["info"]["preset"],
        "labellings": document["info"]["labellings"],
        "instances": len(document["annotations"]),
        "instances_by_kind": dict(sorted(counts.items())),
    }
    print(json.dumps(summary, indent=2))
    return 0
