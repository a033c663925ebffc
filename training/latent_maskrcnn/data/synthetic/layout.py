"""What lies in the tote: items, their stacking order, looks and ambiguity kinds.

A layout is sampled once per scene and rendered by any camera. The pixels depend only on the
geometry stream of random numbers; how a seamless pair is labelled is drawn from a separate
label stream, so an image never carries information about its own labelling.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from latent_maskrcnn.data.synthetic.ambiguity import (
    DEFAULT_RATES,
    FILM_BAG,
    GLARE_STRIPE,
    PAIR_HALF,
    PAIR_LABELINGS,
    PAIR_MERGED,
    PLAIN,
    UNDER_FILM,
    AmbiguityRates,
)
from latent_maskrcnn.data.synthetic.appearance import Look, ToteLook, sample_look, sample_tote_look
from latent_maskrcnn.data.synthetic.geometry import ROUNDED_RECT, Shape, sample_shape

SEAMLESS_PAIR = "seamless_pair"
"""Item kind of the two-bag pair (rendered as one outline, labelled as one or two items)."""
MIN_VISIBLE_FRACTION = 0.4
"""Every labelled part keeps at least this fraction of its area visible (layout grid)."""
LAYOUT_GRID_ROWS = 60
PLACEMENT_TRIES = 30


@dataclass(frozen=True, eq=False)
class Film:
    """A clear polybag: the film outline (the item's shape) holds a smaller opaque garment."""

    content: Shape
    tint: np.ndarray
    opacity: float
    edge_strength: float


@dataclass(frozen=True, eq=False)
class Item:
    shape: Shape
    look: Look
    kind: str
    film: Film | None = None


@dataclass(frozen=True)
class InstanceRef:
    """One labelled instance of a layout: an item, or one bag of a split seamless pair."""

    item: int
    part: int | None
    """None for the whole item; 0 (item x < 0) or 1 (x >= 0) for a half of a split pair."""
    kind: str
    track_id: int
    """Index in the layout's instance list: the same instance in every camera view."""


@dataclass(frozen=True, eq=False)
class ToteLayout:
    aspect: float
    tote: ToteLook
    items: tuple[Item, ...]
    """Bottom to top."""
    pair_labeling: str | None
    """'merged' or 'split' when the layout holds a seamless pair, else None."""
    noise_seed: int
    noise_sigma: float

    def instances(self) -> list[InstanceRef]:
        refs: list[tuple[int, int | None, str]] = []
        for index, item in enumerate(self.items):
            if item.kind != SEAMLESS_PAIR:
                refs.append((index, None, item.kind))
            elif self.pair_labeling == "merged":
                refs.append((index, None, PAIR_MERGED))
            else:
                refs.extend([(index, 0, PAIR_HALF), (index, 1, PAIR_HALF)])
        return [InstanceRef(i, p, k, track) for track, (i, p, k) in enumerate(refs)]

    def with_pair_labeling(self, labeling: str) -> "ToteLayout":
        """The same pixels labelled the other way (if the layout holds a seamless pair)."""
        if labeling not in PAIR_LABELINGS:
            raise ValueError(f"pair labeling must be one of {PAIR_LABELINGS}, got {labeling!r}")
        if self.pair_labeling is None:
            return self
        return replace(self, pair_labeling=labeling)

    @property
    def has_pair(self) -> bool:
        return self.pair_labeling is not None


class _Grid:
    """Coarse tote-frame grid used to keep every labelled part sufficiently visible."""

    def __init__(self, aspect: float) -> None:
        rows = LAYOUT_GRID_ROWS
        cols = max(2, round(rows * aspect))
        self.y, self.x = np.meshgrid(
            (np.arange(rows, dtype=np.float32) + 0.5) / rows,
            (np.arange(cols, dtype=np.float32) + 0.5) / cols * np.float32(aspect),
            indexing="ij",
        )

    def parts(self, item: Item) -> tuple[np.ndarray, list[np.ndarray]]:
        """Cover of the whole item and of each separately labelled part."""
        lx, ly = item.shape.to_local(self.x, self.y)
        cover = item.shape.sdf_local(lx, ly) < 0
        if item.kind == SEAMLESS_PAIR:
            return cover, [cover & (lx < 0), cover & (lx >= 0)]
        return cover, [cover]


def _visible_enough(stack: list[tuple[np.ndarray, list[np.ndarray]]], min_fraction: float) -> bool:
    above = np.zeros_like(stack[0][0])
    for cover, parts in reversed(stack):
        for part in parts:
            area = part.sum()
            if area == 0 or (part & ~above).sum() < min_fraction * area:
                return False
        above |= cover
    return True


def _centre(rng: np.random.Generator, aspect: float, radius: float, wall: float) -> tuple[float, float]:
    margin = wall + 0.5 * radius
    return (
        float(rng.uniform(margin, max(margin + 1e-3, aspect - margin))),
        float(rng.uniform(margin, max(margin + 1e-3, 1 - margin))),
    )


def _plain_item(rng: np.random.Generator, aspect: float, wall: float, rates: AmbiguityRates) -> Item:
    long_half = float(rng.uniform(0.11, 0.24))
    shape = sample_shape(rng, (0.0, 0.0), long_half, float(rng.uniform(0.45, 0.95)))
    shape = replace(shape, center=_centre(rng, aspect, shape.radius, wall))
    stripe = bool(rng.random() < rates.glare_stripe)
    look = sample_look(rng, shape.half_size, glare_stripe=stripe)
    return Item(shape, look, GLARE_STRIPE if stripe else PLAIN)


def _pair_item(rng: np.random.Generator, aspect: float, wall: float) -> Item:
    """Two identical bags edge to edge, drawn as one outline with a print that repeats exactly
    at the join, so nothing in the pixels tells one item from two."""
    bag_half = float(rng.uniform(0.07, 0.13))
    width_half = float(rng.uniform(0.07, 0.13))
    corner = float(rng.uniform(0.15, 0.4) * min(bag_half, width_half))
    shape = Shape(ROUNDED_RECT, (0.0, 0.0), float(rng.uniform(-np.pi, np.pi)), (2 * bag_half, width_half), corner)
    shape = replace(shape, center=_centre(rng, aspect, shape.radius, wall))
    look = sample_look(rng, shape.half_size, repeat_length=2 * bag_half)
    return Item(shape, look, SEAMLESS_PAIR)


def _film_item(rng: np.random.Generator, target: Item) -> Item:
    """A clear bag whose film margin (not its garment) lies over ``target``."""
    long_half = float(rng.uniform(0.11, 0.18))
    half = (long_half, long_half * float(rng.uniform(0.6, 0.95)))
    direction = float(rng.uniform(-np.pi, np.pi))
    distance = float(rng.uniform(0.45, 0.85)) * (target.shape.radius + np.hypot(*half)) * 0.75
    centre = (
        target.shape.center[0] + distance * np.cos(direction),
        target.shape.center[1] + distance * np.sin(direction),
    )
    bag = Shape(ROUNDED_RECT, centre, float(rng.uniform(-np.pi, np.pi)), half, float(rng.uniform(0.1, 0.3) * half[1]))
    # the garment sits in the half of the bag away from the target, leaving film over it
    tx, ty = bag.to_local(np.float32(target.shape.center[0]), np.float32(target.shape.center[1]))
    norm = float(np.hypot(tx, ty)) or 1.0
    scale = float(rng.uniform(0.5, 0.7))
    content_half = (half[0] * scale, half[1] * scale)
    offset_x = -float(tx) / norm * (half[0] - content_half[0]) * 0.9
    offset_y = -float(ty) / norm * (half[1] - content_half[1]) * 0.9
    content = Shape(
        ROUNDED_RECT,
        bag.to_tote(offset_x, offset_y),
        bag.angle + float(rng.uniform(-0.15, 0.15)),
        content_half,
        float(rng.uniform(0.15, 0.4) * min(content_half)),
    )
    film = Film(
        content=content,
        tint=np.clip(np.array([0.85, 0.9, 0.95], np.float32) + rng.uniform(-0.05, 0.05, 3).astype(np.float32), 0, 1),
        opacity=float(rng.uniform(0.1, 0.22)),
        edge_strength=float(rng.uniform(0.2, 0.4)),
    )
    return Item(bag, sample_look(rng, content_half), FILM_BAG, film)


def sample_layout(
    geometry_rng: np.random.Generator,
    label_rng: np.random.Generator,
    aspect: float,
    rates: AmbiguityRates = DEFAULT_RATES,
    pair_labeling: str | None = None,
) -> ToteLayout:
    """Random tote content. ``pair_labeling`` forces how a seamless pair is labelled; the
    geometry stream is consumed identically either way, so the pixels do not change."""
    if pair_labeling is not None and pair_labeling not in PAIR_LABELINGS:
        raise ValueError(f"pair_labeling must be one of {PAIR_LABELINGS} or None, got {pair_labeling!r}")
    tote = sample_tote_look(geometry_rng)
    grid = _Grid(aspect)
    plain_count = int(geometry_rng.integers(4, 10))
    has_pair = bool(geometry_rng.random() < rates.seamless_pair)
    has_film = bool(geometry_rng.random() < rates.transparent_film)
    plan = ["plain"] * plain_count + (["pair"] if has_pair else [])
    geometry_rng.shuffle(plan)

    items: list[Item] = []
    stack: list[tuple[np.ndarray, list[np.ndarray]]] = []
    for entry in plan:
        for _ in range(PLACEMENT_TRIES):
            if entry == "pair":
                candidate = _pair_item(geometry_rng, aspect, tote.wall_width)
            else:
                candidate = _plain_item(geometry_rng, aspect, tote.wall_width, rates)
            parts = grid.parts(candidate)
            if _visible_enough(stack + [parts], MIN_VISIBLE_FRACTION):
                items.append(candidate)
                stack.append(parts)
                break
    if has_film:
        targets = [index for index, item in enumerate(items) if item.kind == PLAIN]
        if targets:
            target_index = targets[int(geometry_rng.integers(len(targets)))]
            target_cover = stack[target_index][0]
            for _ in range(PLACEMENT_TRIES):
                candidate = _film_item(geometry_rng, items[target_index])
                parts = grid.parts(candidate)
                film_over_target = (parts[0] & target_cover).sum() / max(1, target_cover.sum())
                if film_over_target >= 0.12 and _visible_enough(stack + [parts], MIN_VISIBLE_FRACTION):
                    items[target_index] = replace(items[target_index], kind=UNDER_FILM)
                    items.append(candidate)
                    stack.append(parts)
                    break
    noise_seed = int(geometry_rng.integers(2**31))
    noise_sigma = float(geometry_rng.uniform(1.0, 3.0))

    labeling = None
    if any(item.kind == SEAMLESS_PAIR for item in items):
        drawn = "merged" if label_rng.random() < rates.pair_merged else "split"
        labeling = pair_labeling or drawn
    return ToteLayout(aspect, tote, tuple(items), labeling, noise_seed, noise_sigma)


__all__ = ["Film", "InstanceRef", "Item", "ToteLayout", "SEAMLESS_PAIR", "sample_layout"]
