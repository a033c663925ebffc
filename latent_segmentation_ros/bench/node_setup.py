"""What the live benchmarks (`bench node`, `bench startup`) start the segmentation node with.

Both run the node as a launch file would; the image size, the model and the node settings that
decide its cost are the same options on both, defaulting to the node's parameters (the prior
mean at mask threshold 0.8; `--mode confidence_mask` measures the K-sample path).
"""
from __future__ import annotations

import argparse
from typing import Any


def add_node_setup_arguments(parser: argparse.ArgumentParser) -> None:
    """--height/--width of the published images, the node settings that decide its cost, the model."""
    from latent_segmentation_ros.core.parameter_options import add_device_option, add_flip_option, add_node_option

    parser.add_argument("--height", type=int, default=240, help="image height (default 240)")
    parser.add_argument("--width", type=int, default=320, help="image width (default 320)")
    add_node_option(parser, "--mode", "mode", "aggregation mode (prior_mean: one network pass)")
    add_node_option(parser, "--mask-threshold", "mask_threshold", "probability at which masks are binarised")
    add_node_option(parser, "--num-samples", "num_samples", "K, samples per image (not the prior mean's)")
    add_flip_option(parser)
    parser.add_argument("--checkpoint", default="", help="model (default: the bundled demo model)")
    add_device_option(parser)


def node_parameters(args: argparse.Namespace) -> dict[str, Any]:
    """The segmentation node's parameter overrides for these options."""
    return {"device": args.device, "mode": args.mode, "mask_threshold": args.mask_threshold,
            "num_samples": args.num_samples, "flip_samples": args.flip_samples, "checkpoint": args.checkpoint}


def setup_fields(args: argparse.Namespace) -> dict[str, Any]:
    """What a benchmark's JSON says about the node it measured."""
    return {
        "model": args.checkpoint or "bundled demo model",
        "device": args.device,
        "mode": args.mode,
        "mask_threshold": args.mask_threshold,
        "num_samples": args.num_samples,
        "flip_samples": args.flip_samples,
        "image_size": [args.height, args.width],
    }
