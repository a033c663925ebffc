"""`latent-seg bench synthetic`: time the scene generator per view, for each preset.

Scenes of the plain and the ambiguity preset are generated in turn (interleaved, so a busy
machine slows both alike), each from its own seed ``[seed, i]``. Reported (medians over the
scenes, milliseconds): ``<preset>_view_ms`` (layout and rendering of one view, masks
included, wall time) and its CPU time ``<preset>_view_cpu_ms``, ``<preset>_relabel_ms`` (the
other annotator style's masks of a rendered scene, `Scene.with_style`) and
``<preset>_png_ms`` (writing one view as the PNG `make-dataset` writes), plus the ratio
ambiguity / plain of the view time.
"""
from __future__ import annotations

import argparse
import io
import statistics
import time

HELP = "time synthetic scene generation per view (plain and ambiguity presets), relabelling and PNG writing"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenes", type=int, default=30, help="scenes per preset (default 30)")
    parser.add_argument("--height", type=int, default=240, help="image height in pixels (default 240)")
    parser.add_argument("--width", type=int, default=320, help="image width in pixels (default 320)")
    parser.add_argument("--views", type=int, default=1, help="views per scene (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the scenes (default 0)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> dict:
    """Generate the scenes and time each step; returns the JSON-ready result."""
    from PIL import Image

    from latent_maskrcnn.data.synthetic import PRESETS, STYLES, generate_scene
    from latent_maskrcnn.data.synthetic.coco import PNG_COMPRESS_LEVEL

    for name in ("scenes", "height", "width", "views"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be at least 1, got {getattr(args, name)}")
    generate_scene(args.seed, args.height, args.width, args.views)  # warm-up (caches, imports)
    timings: dict[str, dict[str, list[float]]] = {
        preset: {"view": [], "view_cpu": [], "relabel": [], "png": []} for preset in PRESETS
    }
    for index in range(args.scenes):
        for preset, rates in PRESETS.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            scene = generate_scene([args.seed, index], args.height, args.width, args.views, rates)
            timings[preset]["view"].append((time.perf_counter() - start) * 1000.0 / args.views)
            timings[preset]["view_cpu"].append((time.process_time() - start_cpu) * 1000.0 / args.views)
            other = "split" if scene.layout.style == "merged" else STYLES[0]
            start = time.perf_counter()
            scene.with_style(other)
            timings[preset]["relabel"].append((time.perf_counter() - start) * 1000.0 / args.views)
            start = time.perf_counter()
            Image.fromarray(scene.image).save(io.BytesIO(), format="PNG", compress_level=PNG_COMPRESS_LEVEL)
            timings[preset]["png"].append((time.perf_counter() - start) * 1000.0)
    result: dict = {"scenes": args.scenes, "height": args.height, "width": args.width, "views": args.views}
    for preset, measured in timings.items():
        for step, values in measured.items():
            result[f"{preset}_{step}_ms"] = round(statistics.median(values), 2)
    result["ratio_ambiguity_over_plain_view"] = round(result["ambiguity_view_ms"] / result["plain_view_ms"], 3)
    return result
