"""Rasterise a tote layout as one camera sees it: painter's algorithm over anti-aliased signed
distances, plus the visible-pixel instance masks of the same camera."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from latent_maskrcnn.data.synthetic.ambiguity import GLARE_STRIPE, GLARE_STRIPE_REGION
from latent_maskrcnn.data.synthetic.appearance import shade_item, stripe_far_side, tote_background
from latent_maskrcnn.data.synthetic.cameras import RIG, apply_homography, pixel_to_tote, tote_grid
from latent_maskrcnn.data.synthetic.layout import SEAMLESS_PAIR, InstanceRef, Item, ToteLayout

CONTACT_SHADOW = 0.35
"""Darkening right outside a bag's outline (soft contact shadow on whatever lies below)."""
BLUR_SIGMA = 0.5
"""Optical blur of the camera, pixels."""


def _pixel_box(item: Item, inverse: np.ndarray, height: int, width: int, pad_tote: float) -> tuple[slice, slice] | None:
    x0, y0, x1, y1 = item.shape.bounds(pad_tote)
    px, py = apply_homography(inverse, np.array([x0, x1, x0, x1]), np.array([y0, y0, y1, y1]))
    left, right = int(max(0, np.floor(px.min()) - 1)), int(min(width, np.ceil(px.max()) + 1))
    top, bottom = int(max(0, np.floor(py.min()) - 1)), int(min(height, np.ceil(py.max()) + 1))
    if left >= right or top >= bottom:
        return None
    return slice(top, bottom), slice(left, right)


def _alpha(distance: np.ndarray, pixel: float) -> np.ndarray:
    return np.clip(0.5 - distance / np.float32(pixel), 0.0, 1.0)[None]


def _halo(distance: np.ndarray, reach: np.float32) -> np.ndarray:
    """Contact-shadow weight: 1 at the outline, fading outside it, 0 inside."""
    return np.exp(-np.maximum(distance, 0) / reach) * (distance > 0)


def _glint_shift(item: Item, shift: tuple[float, float]) -> tuple[float, float]:
    c, s = np.cos(item.shape.angle), np.sin(item.shape.angle)
    return (float(c * shift[0] + s * shift[1]), float(-s * shift[0] + c * shift[1]))


@dataclass(frozen=True, eq=False)
class ItemCover:
    """Where one item lies in one view, in its pixel box: what any labelling of it needs."""

    box: tuple[slice, slice]
    cover: np.ndarray
    """bool: inside the item's outline."""
    garment: np.ndarray | None
    """bool: a clear bag's opaque garment (None for other items)."""
    far_side: np.ndarray | None
    """bool: the second part of an item that may be labelled as two (x >= 0 of a seamless
    pair, the far side of a glare stripe's centre line); None for other items."""


@dataclass(frozen=True, eq=False)
class ViewGeometry:
    """The item covers of one rendered view; `label_masks` turns them into the visible-pixel
    masks of any labelling of the layout, without rendering the pixels again."""

    height: int
    width: int
    covers: tuple[ItemCover | None, ...]
    """Per layout item; None when the item lies outside the view."""


def label_masks(layout: ToteLayout, geometry: ViewGeometry) -> tuple[np.ndarray, list[InstanceRef]]:
    """Visible instance masks bool [G, H, W] of ``layout``'s labelling and the instances they
    belong to (instances with no visible pixel in this view are left out). A clear bag labelled
    as its garment occludes only with the garment: what lies under its film is labelled too."""
    height, width = geometry.height, geometry.width
    visible: list[np.ndarray | None] = [None] * len(geometry.covers)
    occupied = np.zeros((height, width), dtype=bool)
    for index in range(len(geometry.covers) - 1, -1, -1):
        entry = geometry.covers[index]
        if entry is None:
            continue
        cover = entry.garment if layout.film_shows_through(index) else entry.cover
        visible[index] = cover & ~occupied[entry.box]
        occupied[entry.box] |= cover

    masks: list[np.ndarray] = []
    kept: list[InstanceRef] = []
    for ref in layout.instances():
        entry = geometry.covers[ref.item]
        if entry is None:
            continue
        part = visible[ref.item]
        if ref.part is not None:
            part = part & (entry.far_side if ref.part == 1 else ~entry.far_side)
        if not part.any():
            continue
        mask = np.zeros((height, width), dtype=bool)
        mask[entry.box] = part
        masks.append(mask)
        kept.append(ref)
    stacked = np.stack(masks) if masks else np.zeros((0, height, width), dtype=bool)
    return stacked, kept


def _far_side(layout: ToteLayout, item: Item, lx: np.ndarray, ly: np.ndarray) -> np.ndarray | None:
    if item.kind == SEAMLESS_PAIR:
        return lx >= 0
    if item.kind == GLARE_STRIPE and item.look.stripe is not None and layout.rates.styled(GLARE_STRIPE_REGION):
        return stripe_far_side(item.look.stripe, lx, ly)
    return None


def render_image(layout: ToteLayout, view: int, height: int, width: int) -> tuple[np.ndarray, ViewGeometry]:
    """Image uint8 [H, W, 3] of one view and the item covers its labels are made from. The
    pixels do not depend on the layout's labelling."""
    x, y, pixel = tote_grid(view, height, width)
    inverse = np.linalg.inv(pixel_to_tote(view, height, width))
    pose = RIG[view]
    canvas = tote_background(layout.tote, x, y, layout.aspect)
    shadow_reach = np.float32(max(3 * pixel, 0.01))
    covers: list[ItemCover | None] = []
    for item in layout.items:
        box = _pixel_box(item, inverse, height, width, pad_tote=4 * float(shadow_reach))
        if box is None:
            covers.append(None)
            continue
        xs, ys = x[box], y[box]
        lx, ly = item.shape.to_local(xs, ys)
        distance = item.shape.sdf_local(lx, ly)
        region = canvas[(slice(None),) + box]
        shine = _glint_shift(item, pose.glint_shift)
        garment = None
        if item.film is None:
            region *= (1 - CONTACT_SHADOW * _halo(distance, shadow_reach))[None]
            colour = shade_item(item.look, lx, ly, distance, pixel, shine)
            region += (colour - region) * _alpha(distance, pixel)
        else:
            film = item.film
            clx, cly = film.content.to_local(xs, ys)
            content_distance = np.maximum(film.content.sdf_local(clx, cly), distance)
            region *= (1 - 0.5 * CONTACT_SHADOW * _halo(content_distance, shadow_reach))[None]
            filmed = region * np.float32(1 - film.opacity) + film.tint[:, None, None] * np.float32(film.opacity)
            rim = np.float32(film.edge_strength) * np.exp(-((distance / np.float32(1.2 * pixel)) ** 2))
            filmed += (1 - filmed) * rim[None]
            region += (filmed - region) * _alpha(distance, pixel)
            colour = shade_item(item.look, clx, cly, content_distance, pixel, shine)
            region += (colour - region) * _alpha(content_distance, pixel)
            garment = content_distance < 0
        covers.append(ItemCover(box, distance < 0, garment, _far_side(layout, item, lx, ly)))

    noise_rng = np.random.default_rng([layout.noise_seed, view])
    canvas = ndimage.gaussian_filter(canvas, sigma=(0, BLUR_SIGMA, BLUR_SIGMA), mode="nearest")
    canvas *= np.float32(255 * noise_rng.uniform(0.94, 1.06))
    canvas += noise_rng.standard_normal(canvas.shape, dtype=np.float32) * np.float32(layout.noise_sigma)
    image = np.ascontiguousarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8).transpose(1, 2, 0))
    return image, ViewGeometry(height, width, tuple(covers))


def render_view(layout: ToteLayout, view: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray, list[InstanceRef]]:
    """Image uint8 [H, W, 3], visible instance masks bool [G, H, W] and the instances they
    belong to (instances with no visible pixel in this view are left out)."""
    image, geometry = render_image(layout, view, height, width)
    masks, refs = label_masks(layout, geometry)
    return image, masks, refs
