"""Overlay images for RViz and reports: masks tinted over the camera image, with outlines, and
optionally the suction cups of grasp candidates (sealed cups filled, idle cups as rings)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

from latent_segmentation_ros.core.results import CameraResult, GraspCandidate

# Well-separated colours (RGB), repeated when there are more masks.
PALETTE = np.array(
    [
        [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
        [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212],
        [0, 128, 128], [220, 190, 255], [170, 110, 40], [255, 250, 200], [128, 0, 0],
        [170, 255, 195], [128, 128, 0], [255, 215, 180], [0, 0, 128], [128, 128, 128],
    ],
    dtype=np.uint8,
)


def render_overlay(
    image: np.ndarray,
    result: CameraResult,
    alpha: float = 0.45,
    grasps: Sequence[GraspCandidate] = (),
    cup_radius: float = 0.0,
) -> np.ndarray:
    """uint8 [H, W, 3] RGB: ``image`` with each mask tinted in its colour and outlined."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"overlay needs a uint8 [H, W, 3] image, got {image.dtype} {image.shape}")
    if image.shape[:2] != result.image_size:
        raise ValueError(f"image is {image.shape[:2]} but the masks are {result.image_size}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    out = image.astype(np.float32)
    count = result.masks.shape[0]
    if count:
        colours = PALETTE[np.arange(count) % len(PALETTE)].astype(np.float32)
        # the best-scoring mask is drawn last so it stays visible where masks overlap
        owner = np.full(result.image_size, -1, dtype=np.int64)
        for index in range(count - 1, -1, -1):
            owner[result.masks[index]] = index
        covered = owner >= 0
        out[covered] = (1.0 - alpha) * out[covered] + alpha * colours[owner[covered]]
        outline = covered & ~ndimage.binary_erosion(covered, border_value=0)
        outline |= covered & (ndimage.grey_dilation(owner, size=3) != ndimage.grey_erosion(owner, size=3))
        out[outline] = colours[owner[outline]]
    if grasps:
        out = _draw_cups(out, grasps, cup_radius)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _draw_cups(out: np.ndarray, grasps: Sequence[GraspCandidate], radius: float) -> np.ndarray:
    if radius <= 0:
        raise ValueError("cup_radius must be positive to draw grasps")
    height, width = out.shape[:2]
    reach = int(np.ceil(radius)) + 1
    for grasp in grasps:
        for (u, v), sealed in zip(np.asarray(grasp.cup_centers), np.asarray(grasp.cup_sealed)):
            y0, y1 = max(int(v) - reach, 0), min(int(v) + reach + 1, height)
            x0, x1 = max(int(u) - reach, 0), min(int(u) + reach + 1, width)
            if y0 >= y1 or x0 >= x1:
                continue
            yy, xx = np.mgrid[y0:y1, x0:x1]
            distance = np.hypot(xx - u, yy - v)
            window = out[y0:y1, x0:x1]
            if sealed:
                window[distance <= radius] = (255.0, 255.0, 255.0)
            window[np.abs(distance - radius) <= 0.7] = (0.0, 0.0, 0.0)
    return out
