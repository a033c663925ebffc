"""How bags and the tote look: colours, printed textures, wrinkle shading, glints, glare.

Everything is a function of coordinates in an item's own frame, so a print moves with its bag
and two camera views of one scene agree.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

TEXTURES = ("plain", "stripes", "dots", "plaid", "print", "mottled")
PERIODIC_TEXTURES = ("plain", "stripes", "dots", "plaid")
"""Prints that repeat exactly along an item's length: a seamless pair uses only these, so the
join of its two bags shows no seam in the print."""


@dataclass(frozen=True, eq=False)
class Look:
    """Appearance parameters of one bag (colours are RGB floats in [0, 1])."""

    base: np.ndarray
    second: np.ndarray
    texture: str
    period: tuple[float, float]
    texture_angle: float
    duty: float
    wrinkle: np.ndarray
    """Small grid of smooth shading noise in [-1, 1] laid over the item's bounding square."""
    wrinkle_amplitude: float
    extent: float
    """Half side of the square (item frame) that the wrinkle grid covers."""
    edge_tone: float
    """Brightening (+) or darkening (-) of the bag's welded edge."""
    glints: np.ndarray
    """[n, 5]: x, y, radius x, radius y, strength of small specular glints (item frame)."""
    stripe: tuple[float, float, float] | None = None
    """Glare stripe (angle, offset, half width) in the item frame, or None."""
    patch: tuple[float, float, float, float] | None = None
    """Printed label (cx, cy, half x, half y) in the item frame for the 'print' texture."""


@dataclass(frozen=True, eq=False)
class ToteLook:
    floor: np.ndarray
    wall: np.ndarray
    outside: np.ndarray
    mottle: np.ndarray
    wall_width: float


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32)


def sample_colour(rng: np.random.Generator) -> np.ndarray:
    """Apparel colours: any hue, from greys and dark navy to saturated brights."""
    if rng.random() < 0.2:
        return _hsv(rng.random(), rng.uniform(0.0, 0.15), rng.uniform(0.15, 0.95))
    return _hsv(rng.random(), rng.uniform(0.25, 0.9), rng.uniform(0.3, 0.95))


def contrasting_colour(rng: np.random.Generator, base: np.ndarray) -> np.ndarray:
    h, s, v = colorsys.rgb_to_hsv(*base.tolist())
    value = v - 0.45 if v > 0.55 else v + 0.45
    return _hsv(h + rng.uniform(-0.5, 0.5), rng.uniform(0.0, 0.9), float(np.clip(value, 0.05, 1.0)))


def sample_look(
    rng: np.random.Generator,
    half_size: tuple[float, float],
    repeat_length: float | None = None,
    glare_stripe: bool = False,
    centred_stripe: bool = False,
) -> Look:
    """Random bag appearance. ``repeat_length``: the print must repeat exactly every that many
    units along x (a seamless pair's bag length). ``centred_stripe``: the glare stripe's offset
    is drawn relative to the item's extent across the stripe, so cutting the item along the
    stripe leaves two parts of comparable size (for glare stripes that may be labelled as two
    items); the same random numbers are drawn either way."""
    hx, hy = half_size
    base = sample_colour(rng)
    second = contrasting_colour(rng, base)
    if repeat_length is None:
        texture = str(rng.choice(TEXTURES, p=[0.25, 0.2, 0.15, 0.1, 0.15, 0.15]))
        period = (float(rng.uniform(0.02, 0.06)), float(rng.uniform(0.02, 0.06)))
        texture_angle = float(rng.uniform(0, np.pi))
    else:
        texture = str(rng.choice(PERIODIC_TEXTURES))
        repeats = int(rng.integers(1, 5))
        period = (repeat_length / repeats, float(rng.uniform(0.02, 0.06)))
        texture_angle = 0.0
    extent = float(max(hx, hy) * 1.3)
    glint_count = int(rng.integers(0, 4))
    glints = np.stack(
        [
            rng.uniform(-hx * 0.8, hx * 0.8, glint_count),
            rng.uniform(-hy * 0.8, hy * 0.8, glint_count),
            rng.uniform(0.008, 0.03, glint_count),
            rng.uniform(0.004, 0.012, glint_count),
            rng.uniform(0.3, 0.85, glint_count),
        ],
        axis=1,
    ).astype(np.float32) if glint_count else np.zeros((0, 5), np.float32)
    stripe = None
    if glare_stripe:
        angle = float(rng.uniform(-0.35, 0.35) + (np.pi / 2 if rng.random() < 0.7 else 0.0))
        across = abs(np.cos(angle)) * hx + abs(np.sin(angle)) * hy if centred_stripe else hx
        stripe = (angle, float(rng.uniform(-0.35, 0.35) * across), float(rng.uniform(0.004, 0.009)))
    patch = None
    if texture == "print":
        patch = (
            float(rng.uniform(-0.4, 0.4) * hx),
            float(rng.uniform(-0.4, 0.4) * hy),
            float(rng.uniform(0.25, 0.45) * hx),
            float(rng.uniform(0.2, 0.4) * hy),
        )
    return Look(
        base=base,
        second=second,
        texture=texture,
        period=period,
        texture_angle=texture_angle,
        duty=float(rng.uniform(0.3, 0.6)),
        wrinkle=rng.uniform(-1, 1, size=(6, 6)).astype(np.float32),
        wrinkle_amplitude=float(rng.uniform(0.05, 0.22)),
        extent=extent,
        edge_tone=float(rng.uniform(-0.12, 0.16)),
        glints=glints,
        stripe=stripe,
        patch=patch,
    )


def sample_tote_look(rng: np.random.Generator) -> ToteLook:
    palettes = (  # grey, blue, black, yellow-ish totes
        (0.0, 0.0, 0.55), (0.6, 0.45, 0.45), (0.0, 0.0, 0.18), (0.13, 0.5, 0.6), (0.55, 0.2, 0.35)
    )
    h, s, v = palettes[int(rng.integers(len(palettes)))]
    floor = _hsv(h + rng.uniform(-0.02, 0.02), s * rng.uniform(0.8, 1.1), v * rng.uniform(0.85, 1.1))
    return ToteLook(
        floor=floor,
        wall=np.clip(floor * rng.uniform(0.6, 0.8), 0, 1).astype(np.float32),
        outside=_hsv(0.08, 0.1, rng.uniform(0.08, 0.2)),
        mottle=rng.uniform(-1, 1, size=(9, 12)).astype(np.float32),
        wall_width=float(rng.uniform(0.035, 0.06)),
    )


FIELD_STRIDE = 4
"""Smooth shading fields are evaluated every FIELD_STRIDE pixels and interpolated between."""


@lru_cache(maxsize=512)
def _interpolation(size: int, stride: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample positions every ``stride`` (and the last one), and for every position the left
    sample and the linear weight of the right one."""
    positions = np.unique(np.concatenate([np.arange(0, size, stride), [size - 1]]))
    target = np.arange(size)
    left = np.clip(np.searchsorted(positions, target, side="right") - 1, 0, len(positions) - 2)
    weight = ((target - positions[left]) / (positions[left + 1] - positions[left])).astype(np.float32)
    return positions, left, weight


def _sample_grid(grid: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    rows, cols = grid.shape
    gx = np.clip(u, 0.0, 1.0) * np.float32(cols - 1)
    gy = np.clip(v, 0.0, 1.0) * np.float32(rows - 1)
    x0 = np.minimum(gx.astype(np.int32), cols - 2)
    y0 = np.minimum(gy.astype(np.int32), rows - 2)
    tx = gx - x0
    ty = gy - y0
    tx = tx * tx * (3 - 2 * tx)
    ty = ty * ty * (3 - 2 * ty)
    top = grid[y0, x0] * (1 - tx) + grid[y0, x0 + 1] * tx
    bottom = grid[y0 + 1, x0] * (1 - tx) + grid[y0 + 1, x0 + 1] * tx
    return (top * (1 - ty) + bottom * ty).astype(np.float32, copy=False)


def smooth_field(grid: np.ndarray, u: np.ndarray, v: np.ndarray, stride: int = FIELD_STRIDE) -> np.ndarray:
    """Sample a small grid at fractional positions (u along columns, v along rows, both in
    [0, 1] over the grid) with smooth-step blending: cheap, soft shading noise. For 2-D pixel
    arrays the field is sampled every ``stride`` pixels and linearly interpolated, which is
    invisible for fields this smooth and several times faster."""
    if u.ndim != 2 or stride <= 1 or min(u.shape) <= 2 * stride:
        return _sample_grid(grid, u, v)
    rows, row_left, row_weight = _interpolation(u.shape[0], stride)
    cols, col_left, col_weight = _interpolation(u.shape[1], stride)
    coarse = _sample_grid(grid, u[np.ix_(rows, cols)], v[np.ix_(rows, cols)])
    # separable linear interpolation by gathers (tiny BLAS products would spin up threads)
    tall = coarse[row_left] * (1 - row_weight)[:, None] + coarse[row_left + 1] * row_weight[:, None]
    return tall[:, col_left] * (1 - col_weight) + tall[:, col_left + 1] * col_weight


def _band(t: np.ndarray, duty: float, softness: float = 0.08) -> np.ndarray:
    """Periodic 0/1 band with soft edges; t in periods."""
    phase = t - np.floor(t)
    distance = np.abs(phase - 0.5) - (0.5 - duty / 2)
    return np.clip(0.5 - distance / softness, 0.0, 1.0)


def print_colour(look: Look, lx: np.ndarray, ly: np.ndarray) -> np.ndarray:
    """RGB planes [3, h, w] of the print (before shading) at item-frame coordinates."""
    base, second = look.base[:, None, None], look.second[:, None, None]
    px, py = look.period
    if look.texture == "plain":
        return np.broadcast_to(base, (3,) + lx.shape).copy()
    if look.texture in ("stripes", "plaid"):
        c, s = np.float32(np.cos(look.texture_angle)), np.float32(np.sin(look.texture_angle))
        along = _band((c * lx + s * ly) / np.float32(px), look.duty)
        if look.texture == "plaid":
            across = _band((-s * lx + c * ly) / np.float32(py), look.duty)
            weight = 0.5 * (along + across)
        else:
            weight = along
    elif look.texture == "dots":
        fx = (lx / px - np.floor(lx / px) - 0.5) * px
        fy = (ly / py - np.floor(ly / py) - 0.5) * py
        radius = 0.3 * min(px, py) * (0.6 + look.duty)
        weight = np.clip((radius - np.sqrt(fx * fx + fy * fy)) / (0.1 * radius) + 0.5, 0.0, 1.0)
    elif look.texture == "mottled":
        u = (lx / look.extent + 1) / 2
        v = (ly / look.extent + 1) / 2
        weight = 0.5 + 0.5 * smooth_field(look.wrinkle.T[::-1], u, v)
        weight = weight * 0.6
    else:  # "print": a contrasting label with text-like bars on a plain bag
        cx, cy, hx, hy = look.patch
        inside = (np.abs(lx - cx) < hx) & (np.abs(ly - cy) < hy)
        bars = _band((ly - cy) / (hy / 2.5), 0.45) * (np.abs(lx - cx) < hx * 0.75)
        weight = inside * (1.0 - 0.8 * bars)
    weight = weight.astype(np.float32, copy=False)[None]
    return base + (second - base) * weight


def shade_item(
    look: Look,
    lx: np.ndarray,
    ly: np.ndarray,
    distance: np.ndarray,
    pixel: float,
    glint_shift: tuple[float, float],
) -> np.ndarray:
    """Colour of a bag at item-frame coordinates: print, wrinkles, welded edge, glints and
    (optionally) the boundary-like glare stripe, as RGB planes [3, h, w]. ``distance`` is the
    outline's signed distance."""
    colour = print_colour(look, lx, ly)
    u = (lx / look.extent + 1) / 2
    v = (ly / look.extent + 1) / 2
    colour *= (1 + look.wrinkle_amplitude * smooth_field(look.wrinkle, u, v))[None]
    edge_width = np.float32(max(2.5 * pixel, 0.008))
    edge = np.clip(1 + distance / edge_width, 0.0, 1.0)
    colour += (look.edge_tone * edge)[None]
    highlight = np.zeros(lx.shape, np.float32)
    shift_x, shift_y = np.float32(glint_shift[0]), np.float32(glint_shift[1])
    for gx, gy, rx, ry, strength in look.glints:
        q = ((lx - (gx + shift_x)) / rx) ** 2 + ((ly - (gy + shift_y)) / ry) ** 2
        highlight = np.maximum(highlight, strength * np.exp(-q))
    if look.stripe is not None:
        angle, offset, half_width = look.stripe
        across = np.float32(np.cos(angle)) * lx + np.float32(np.sin(angle)) * ly - np.float32(offset)
        soft = np.float32(max(0.7 * pixel, 0.002))
        band = np.clip((half_width - np.abs(across)) / soft + 0.5, 0.0, 1.0)
        highlight = np.maximum(highlight, 0.9 * band)
        crease = np.exp(-(((across - half_width - 1.5 * pixel) / (1.2 * pixel)) ** 2))
        colour *= (1 - 0.45 * crease)[None]
    colour += (1 - colour) * highlight[None]
    return colour


def stripe_far_side(stripe: tuple[float, float, float], lx: np.ndarray, ly: np.ndarray) -> np.ndarray:
    """Item-frame points on the far side of a glare stripe's centre line (the side of its
    crease): the second part when the striped item is labelled as two."""
    angle, offset, _ = stripe
    return np.float32(np.cos(angle)) * lx + np.float32(np.sin(angle)) * ly - np.float32(offset) >= 0


def tote_background(tote: ToteLook, x: np.ndarray, y: np.ndarray, aspect: float) -> np.ndarray:
    """The empty tote as RGB planes [3, H, W]: a mottled floor, darker shaded walls, the cell
    floor outside."""
    mottle = 1 + 0.06 * smooth_field(tote.mottle, x / np.float32(aspect), y)
    edge_distance = np.minimum(np.minimum(x, aspect - x), np.minimum(y, 1 - y))
    wall = np.clip(1 - edge_distance / np.float32(tote.wall_width), 0.0, 1.0)
    floor_weight = mottle * (1 - wall)
    wall_weight = (0.75 + 0.25 * (1 - wall)) * wall
    colour = tote.floor[:, None, None] * floor_weight[None] + tote.wall[:, None, None] * wall_weight[None]
    outside = edge_distance < 0
    if outside.any():
        colour[:, outside] = tote.outside[:, None]
    return colour.astype(np.float32, copy=False)
