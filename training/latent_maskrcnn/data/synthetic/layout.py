"""What lies in the tote: items, their stacking order, looks and ambiguity kinds.

A layout is sampled once per scene and rendered by any camera. The pixels depend only on the
geometry stream of random numbers; how the ambiguous regions are labelled (the annotator style
and the coins of regions that do not follow it) is drawn from a separate label stream, so an
image never carries information about its own labelling.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from latent_maskrcnn.data.synthetic.ambiguity import (
    DEFAULT_RATES,
    FILM_BAG,
    FILM_GARMENT,
    FILM_REGION,
    GLARE_HALF,
    GLARE_STRIPE,
    GLARE_STRIPE_REGION,
    PAIR_HALF,
    PAIR_LABELINGS,
    PAIR_MERGED,
    PLAIN,
    SEAMLESS_PAIR_REGION,
    STYLES,
    THROUGH_FILM,
    UNDER_FILM,
    AmbiguityRates,
)
from latent_maskrcnn.data.synthetic.appearance import Look, ToteLook, sample_look, sample_tote_look, stripe_far_side
from latent_maskrcnn.data.synthetic.geometry import ROUNDED_RECT, Shape, sample_shape

SEAMLESS_PAIR = "seamless_pair"
"""Item kind of the two-bag pair (rendered as one outline, labelled as one or two items)."""
MIN_VISIBLE_FRACTION = 0.4
"""Every labelled part keeps at least this fraction of its area visible (layout grid)."""
MIN_PART_SHARE = 0.25
"""Each part of a glare-striped item that may be labelled as two holds at least this share of
the item (layout grid), so neither part is a sliver."""
LAYOUT_GRID_ROWS = 60
PLACEMENT_TRIES = 30

REGION_OF_KIND = {SEAMLESS_PAIR: SEAMLESS_PAIR_REGION, GLARE_STRIPE: GLARE_STRIPE_REGION, FILM_BAG: FILM_REGION}
"""Item kind -> the ambiguous region kind it heads (its labelling is stored per heading item)."""


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
    under: int | None = None
    """For an item under a clear bag: the index of that bag in the layout."""


@dataclass(frozen=True)
class InstanceRef:
    """One labelled instance of a layout: an item, or one part of an item labelled as two."""

    item: int
    part: int | None
    """None for the whole item; 0 or 1 for a part of a split pair (item x < 0, x >= 0) or of a
    split glare-striped item (the near and the far side of the stripe's centre line)."""
    kind: str
    track_id: int
    """Index in the layout's instance list: the same instance in every camera view."""
    region: int | None = None
    """The ambiguous region the instance belongs to (the layout index of the pair, the striped
    item or the clear bag; both parts of a split item and the item under a clear bag share it);
    None for a plain item."""


@dataclass(frozen=True, eq=False)
class ToteLayout:
    aspect: float
    tote: ToteLook
    items: tuple[Item, ...]
    """Bottom to top."""
    labelings: tuple[str | None, ...]
    """Per item: 'merged' or 'split' for an item heading an ambiguous region (a seamless pair, a
    glare-striped item, a clear bag), else None."""
    style: str | None
    """The annotator style ('merged' or 'split') that labels every styled region, or None when
    the layout holds no region that follows it (no style was drawn)."""
    noise_seed: int
    noise_sigma: float
    rates: AmbiguityRates = DEFAULT_RATES

    def styled(self, index: int) -> bool:
        """Whether item ``index`` heads a region that follows the annotator style."""
        region = REGION_OF_KIND.get(self.items[index].kind)
        return region is not None and self.rates.styled(region)

    def splits_glare(self, index: int) -> bool:
        """Whether the glare-striped item ``index`` is labelled as two parts."""
        return self.items[index].kind == GLARE_STRIPE and self.styled(index) and self.labelings[index] == "split"

    def film_shows_through(self, index: int) -> bool:
        """Whether the clear bag ``index`` is labelled as its garment only (its film margin
        see-through for the labels of what lies below)."""
        return self.items[index].kind == FILM_BAG and self.labelings[index] == "split"

    def instances(self) -> list[InstanceRef]:
        refs: list[tuple[int, int | None, str, int | None]] = []
        for index, item in enumerate(self.items):
            labeling = self.labelings[index]
            if item.kind == SEAMLESS_PAIR:
                if labeling == "merged":
                    refs.append((index, None, PAIR_MERGED, index))
                else:
                    refs.extend([(index, 0, PAIR_HALF, index), (index, 1, PAIR_HALF, index)])
            elif item.kind == GLARE_STRIPE:
                if self.splits_glare(index):
                    refs.extend([(index, 0, GLARE_HALF, index), (index, 1, GLARE_HALF, index)])
                else:
                    refs.append((index, None, GLARE_STRIPE, index))
            elif item.kind == FILM_BAG:
                refs.append((index, None, FILM_GARMENT if self.film_shows_through(index) else FILM_BAG, index))
            elif item.kind == UNDER_FILM:
                refs.append((index, None, THROUGH_FILM if self.film_shows_through(item.under) else UNDER_FILM, item.under))
            else:
                refs.append((index, None, item.kind, None))
        return [InstanceRef(i, p, k, track, r) for track, (i, p, k, r) in enumerate(refs)]

    @property
    def pair_labeling(self) -> str | None:
        """How the seamless pairs are labelled: 'merged' or 'split' when they all agree,
        'mixed' when pairs that do not follow the style drew different coins, None without a
        pair."""
        found = {self.labelings[i] for i, item in enumerate(self.items) if item.kind == SEAMLESS_PAIR}
        if not found:
            return None
        return found.pop() if len(found) == 1 else "mixed"

    @property
    def pair_count(self) -> int:
        return sum(item.kind == SEAMLESS_PAIR for item in self.items)

    @property
    def has_pair(self) -> bool:
        return self.pair_count > 0

    @property
    def has_styled_region(self) -> bool:
        return any(self.styled(index) for index in range(len(self.items)))

    def with_pair_labeling(self, labeling: str) -> "ToteLayout":
        """The same pixels with every seamless pair labelled ``labeling`` (other regions
        unchanged)."""
        if labeling not in PAIR_LABELINGS:
            raise ValueError(f"pair labeling must be one of {PAIR_LABELINGS}, got {labeling!r}")
        labelings = tuple(labeling if item.kind == SEAMLESS_PAIR else old for item, old in zip(self.items, self.labelings))
        return replace(self, labelings=labelings)

    def with_style(self, style: str) -> "ToteLayout":
        """The same pixels labelled by an annotator of ``style``: every region that follows the
        style is labelled that way; regions that do not keep their labelling."""
        if style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, got {style!r}")
        labelings = tuple(style if self.styled(index) else old for index, old in enumerate(self.labelings))
        return replace(self, labelings=labelings, style=style)


class _Grid:
    """Coarse tote-frame grid used to keep every labelled part sufficiently visible."""

    def __init__(self, aspect: float, rates: AmbiguityRates) -> None:
        rows = LAYOUT_GRID_ROWS
        cols = max(2, round(rows * aspect))
        self.y, self.x = np.meshgrid(
            (np.arange(rows, dtype=np.float32) + 0.5) / rows,
            (np.arange(cols, dtype=np.float32) + 0.5) / cols * np.float32(aspect),
            indexing="ij",
        )
        self.rates = rates

    def parts(self, item: Item) -> tuple[np.ndarray, list[np.ndarray]]:
        """Cover of the whole item and of each part that some labelling may label separately
        (independent of the labelling drawn, so the pixels do not depend on it)."""
        lx, ly = item.shape.to_local(self.x, self.y)
        cover = item.shape.sdf_local(lx, ly) < 0
        if item.kind == SEAMLESS_PAIR:
            return cover, [cover & (lx < 0), cover & (lx >= 0)]
        if item.kind == GLARE_STRIPE and self.rates.styled(GLARE_STRIPE_REGION):
            far = stripe_far_side(item.look.stripe, lx, ly)
            return cover, [cover, cover & ~far, cover & far]
        if item.kind == FILM_BAG and self.rates.styled(FILM_REGION):
            content = item.film.content
            garment = cover & (content.sdf(self.x, self.y) < 0)
            return cover, [cover, garment]
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


def _parts_balanced(item: Item, parts: tuple[np.ndarray, list[np.ndarray]]) -> bool:
    """A glare-striped item that may be cut in two: neither part is a sliver."""
    cover, pieces = parts
    if item.kind != GLARE_STRIPE or len(pieces) < 3:
        return True
    return min(pieces[1].sum(), pieces[2].sum()) >= MIN_PART_SHARE * cover.sum()


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
    look = sample_look(rng, shape.half_size, glare_stripe=stripe, centred_stripe=rates.styled(GLARE_STRIPE_REGION))
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


def _place_films(rng: np.random.Generator, films: int, items: list[Item],
                 stack: list[tuple[np.ndarray, list[np.ndarray]]], grid: _Grid) -> None:
    """Lay up to ``films`` clear bags on top, each over a different plain item."""
    for _ in range(films):
        targets = [index for index, item in enumerate(items) if item.kind == PLAIN]
        if not targets:
            return
        target_index = targets[int(rng.integers(len(targets)))]
        target_cover = stack[target_index][0]
        for _ in range(PLACEMENT_TRIES):
            candidate = _film_item(rng, items[target_index])
            parts = grid.parts(candidate)
            film_over_target = (parts[0] & target_cover).sum() / max(1, target_cover.sum())
            if film_over_target >= 0.12 and _visible_enough(stack + [parts], MIN_VISIBLE_FRACTION):
                items[target_index] = replace(items[target_index], kind=UNDER_FILM, under=len(items))
                items.append(candidate)
                stack.append(parts)
                break


def _check_labeling(name: str, value: str | None) -> None:
    if value is not None and value not in STYLES:
        raise ValueError(f"{name} must be one of {STYLES} or None, got {value!r}")


def sample_layout(
    geometry_rng: np.random.Generator,
    label_rng: np.random.Generator,
    aspect: float,
    rates: AmbiguityRates = DEFAULT_RATES,
    pair_labeling: str | None = None,
    style: str | None = None,
) -> ToteLayout:
    """Random tote content. ``style`` forces the annotator style (every styled region);
    ``pair_labeling`` forces how every seamless pair is labelled (over the style). The geometry
    and label streams are consumed identically either way, so the pixels do not change."""
    _check_labeling("pair_labeling", pair_labeling)
    _check_labeling("style", style)
    tote = sample_tote_look(geometry_rng)
    grid = _Grid(aspect, rates)
    plain_count = int(geometry_rng.integers(4, 10))
    pairs = sum(bool(geometry_rng.random() < rates.seamless_pair) for _ in range(rates.max_pairs))
    films = sum(bool(geometry_rng.random() < rates.transparent_film) for _ in range(rates.max_films))
    plan = ["plain"] * plain_count + ["pair"] * pairs
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
            if _parts_balanced(candidate, parts) and _visible_enough(stack + [parts], MIN_VISIBLE_FRACTION):
                items.append(candidate)
                stack.append(parts)
                break
    _place_films(geometry_rng, films, items, stack, grid)
    noise_seed = int(geometry_rng.integers(2**31))
    noise_sigma = float(geometry_rng.uniform(1.0, 3.0))

    layout = ToteLayout(aspect, tote, tuple(items), (None,) * len(items), None, noise_seed, noise_sigma, rates)
    labelings: list[str | None] = [None] * len(items)
    drawn_style = None
    if layout.has_styled_region:
        drawn_style = "merged" if label_rng.random() < rates.pair_merged else "split"
    for index, item in enumerate(items):
        if item.kind not in REGION_OF_KIND:
            continue
        if layout.styled(index):
            labelings[index] = style or drawn_style
        elif item.kind == SEAMLESS_PAIR:  # a pair outside the style: a coin of its own
            labelings[index] = "merged" if label_rng.random() < rates.pair_merged else "split"
        else:  # glare stripes and clear bags outside the style: one item, the film with its bag
            labelings[index] = "merged"
    layout = replace(layout, labelings=tuple(labelings), style=(style or drawn_style) if layout.has_styled_region else style)
    return layout.with_pair_labeling(pair_labeling) if pair_labeling is not None else layout


__all__ = ["Film", "InstanceRef", "Item", "ToteLayout", "SEAMLESS_PAIR", "sample_layout"]
