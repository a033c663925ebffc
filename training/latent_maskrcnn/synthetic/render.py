"""Rasterise a tote layout as one camera sees it: painter's algorithm over anti-aliased signed
distances, plus the visible-pixel instance masks of the same camera."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from latent_maskrcnn.synthetic.ambiguity import FILM_BAG
from latent_maskrcnn.synthetic.appearance import shade_item, tote_background
from latent_maskrcnn.synthetic.cameras import RIG, apply_homography, pixel_to_tote, tote_grid
from latent_maskrcnn.synthetic.layout import SEAMLESS_PAIR, InstanceRef, Item, ToteLayout

CONTACT_SHADOW = 0.35
"""Darkening right outside a bag's outline (soft contact shadow on whatever lies below)."""
BLUR_SIGMA = 0.5
"""Optical blur of the camera, pixels."""


def _pixel_box(item: Item, inverse: np.ndarray, height: int, width: int, pad_tote: float) -> tuple[slice, slice] | None:
    cx, cy = item.shape.center
    r = item.shape.radius + pad_tote
    px, py = apply_homography(inverse, np.array([cx - r, cx + r, cx - r, cx + r]), np.array([cy - r, cy - r, cy + r, cy + r]))
    x0, x1 = int(max(0, np.floor(px.min()) - 1)), int(min(width, np.ceil(px.max()) + 1))
    y0, y1 = int(max(0, np.floor(py.min()) - 1)), int(min(height, np.ceil(py.max()) + 1))
    if x0 >= x1 or y0 >= y1:
        return None
    return slice(y0, y1), slice(x0, x1)


def _alpha(distance: np.ndarray, pixel: float) -> np.ndarray:
    return np.clip(0.5 - distance / np.float32(pixel), 0.0, 1.0)[..., None]


def _glint_shift(item: Item, shift: tuple[float, float]) -> tuple[float, float]:
    c, s = np.cos(item.shape.angle), np.sin(item.shape.angle)
    return (c * shift[0] + s * shift[1], -s * shift[0] + c * shift[1])


def render_view(layout: ToteLayout, view: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray, list[InstanceRef]]:
    """Image uint8 [H, W, 3], visible instance masks bool [G, H, W] and the instances they
    belong to (instances with no visible pixel in this view are left out)."""
    x, y, pixel = tote_grid(view, height, width)
    inverse = np.linalg.inv(pixel_to_tote(view, height, width))
    pose = RIG[view]
    canvas = tote_background(layout.tote, x, y, layout.aspect)
    shadow_reach = np.float32(max(3 * pixel, 0.01))
    covers: list[tuple[tuple[slice, slice], np.ndarray, np.ndarray | None] | None] = []
    for item in layout.items:
        box = _pixel_box(item, inverse, height, width, pad_tote=4 * float(shadow_reach))
        if box is None:
            covers.append(None)
            continue
        xs, ys = x[box], y[box]
        lx, ly = item.shape.to_local(xs, ys)
        distance = item.shape.sdf_local(lx, ly)
        region = canvas[box]
        shine = _glint_shift(item, pose.glint_shift)
        if item.film is None:
            halo = np.where(distance > 0, np.exp(-distance / shadow_reach), 0.0)
            region *= (1 - CONTACT_SHADOW * halo)[..., None]
            alpha = _alpha(distance, pixel)
            colour = shade_item(item.look, lx, ly, distance, pixel, shine)
            region[:] = region * (1 - alpha) + colour * alpha
        else:
            film = item.film
            clx, cly = film.content.to_local(xs, ys)
            content_distance = np.maximum(film.content.sdf_local(clx, cly), distance)
            halo = np.where(content_distance > 0, np.exp(-content_distance / shadow_reach), 0.0)
            region *= (1 - 0.5 * CONTACT_SHADOW * halo)[..., None]
            alpha = _alpha(distance, pixel)
            filmed = region * (1 - film.opacity) + film.tint * film.opacity
            rim = film.edge_strength * np.exp(-((distance / np.float32(1.2 * pixel)) ** 2))
            filmed += (1 - filmed) * rim[..., None]
            region[:] = region * (1 - alpha) + filmed * alpha
            content_alpha = _alpha(content_distance, pixel)
            colour = shade_item(item.look, clx, cly, content_distance, pixel, shine)
            region[:] = region * (1 - content_alpha) + colour * content_alpha
        covers.append((box, distance < 0, (lx >= 0) if item.kind == SEAMLESS_PAIR else None))

    visible: list[np.ndarray | None] = [None] * len(covers)
    occupied = np.zeros((height, width), dtype=bool)
    for index in range(len(covers) - 1, -1, -1):
        if covers[index] is None:
            continue
        box, cover, _ = covers[index]
        visible[index] = cover & ~occupied[box]
        occupied[box] |= cover

    masks: list[np.ndarray] = []
    kept: list[InstanceRef] = []
    for ref in layout.instances():
        entry = covers[ref.item]
        if entry is None:
            continue
        box, _, right = entry
        part = visible[ref.item]
        if ref.part is not None:
            part = part & (right if ref.part == 1 else ~right)
        if not part.any():
            continue
        mask = np.zeros((height, width), dtype=bool)
        mask[box] = part
        masks.append(mask)
        kept.append(ref)

    noise_rng = np.random.default_rng([layout.noise_seed, view])
    canvas = ndimage.gaussian_filter(canvas, sigma=(BLUR_SIGMA, BLUR_SIGMA, 0), mode="nearest")
    canvas *= np.float32(noise_rng.uniform(0.94, 1.06))
    canvas = canvas * 255 + noise_rng.standard_normal(canvas.shape, dtype=np.float32) * np.float32(layout.noise_sigma)
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    stacked = np.stack(masks) if masks else np.zeros((0, height, width), dtype=bool)
    return image, stacked, kept
